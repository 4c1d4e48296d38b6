"""The HTTP/1.1 field grammar (RFC 9110 §5), the one copy in the package.

Pure functions over bytes: tokens (field names, methods, list elements),
field values (``VCHAR``, ``obs-text``, inner spaces and tabs), and comma-separated
lists (RFC 9110 §5.6.1). Every head this package writes is checked with
:func:`check_field`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ._errors import InvalidField

__all__ = [
    "TOKEN_CHARS",
    "FieldList",
    "InvalidField",
    "check_field",
    "field_values",
    "is_field_value",
    "is_token",
    "split_list",
    "list_tokens",
]

FieldList = Sequence[tuple[bytes, bytes]]
"""Header fields as ``(name, value)`` byte pairs, names lower-cased (as h11 gives them)."""

TOKEN_CHARS: frozenset[int] = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
"""The characters of a ``token`` (RFC 9110 §5.6.2)."""

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# field-value = *field-content; no leading or trailing whitespace, no CTLs
# (CR, LF and NUL among them), obs-text allowed (RFC 9110 §5.5).
_FIELD_VALUE = re.compile(rb"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?")


def is_token(data: bytes) -> bool:
    """Whether *data* is a non-empty RFC 9110 token."""
    return _TOKEN.fullmatch(data) is not None


def is_field_value(data: bytes) -> bool:
    """Whether *data* is a valid field value (RFC 9110 §5.5, obs-text allowed)."""
    return _FIELD_VALUE.fullmatch(data) is not None


def check_field(name: bytes, value: bytes) -> None:
    """Raise :class:`InvalidField` unless ``name: value`` may be written as is."""
    if _TOKEN.fullmatch(name) is None:
        raise InvalidField(f"invalid header name {name!r}")
    if _FIELD_VALUE.fullmatch(value) is None:
        raise InvalidField(f"invalid value for header {name.decode('latin-1')}: {value!r}")


def field_values(fields: FieldList, name: bytes) -> list[bytes]:
    """Every value of the (lower-case) *name*, one per field, in order."""
    return [v for n, v in fields if n == name]


def split_list(values: Iterable[bytes]) -> list[bytes]:
    """The elements of comma-separated list fields, stripped, empty ones dropped
    (RFC 9110 §5.6.1: a recipient ignores empty elements). Case is kept."""
    out: list[bytes] = []
    for value in values:
        for piece in value.split(b","):
            element = piece.strip(b" \t")
            if element:
                out.append(element)
    return out


def list_tokens(fields: FieldList, name: bytes) -> list[bytes]:
    """The lower-cased elements of every *name* field (``Connection``, ``Upgrade``,
    ``Transfer-Encoding``...), in order."""
    return [e.lower() for e in split_list(v for n, v in fields if n == name)]
