"""Layer 0, sans-I/O: the HTTP/1.1 wire format, in one place for every layer.

No trio, no I/O: values in, values out. Imported by ``core``, ``http``, ``ws``,
``bridge``, ``proxy`` and ``asgi``; not public API (see docs/architecture.md).

- :mod:`._grammar`: tokens, field values, comma lists (RFC 9110 §5);
- :mod:`._head`: the one response-head writer, and small complete responses;
- :mod:`._date`: the cached ``Date`` value;
- :mod:`._framing`: which framing a message has, what is refused, when a
  connection must close, what an intermediary strips (RFC 9112 §6);
- :mod:`._address`: the address type;
- :mod:`._errors`: :class:`TrioUpgradeError`, the root of every exception the
  package defines, and this layer's errors.
"""

from __future__ import annotations

from ._address import Address, normalize_address
from ._date import http_date
from ._errors import TrioUpgradeError
from ._framing import (
    BodyFraming,
    Framing,
    FramingError,
    forwardable_fields,
    parse_content_length,
    request_framing,
    response_framing,
)
from ._grammar import (
    TOKEN_CHARS,
    FieldList,
    InvalidField,
    check_field,
    field_values,
    is_field_value,
    is_token,
    list_tokens,
    split_list,
)
from ._head import reason, reason_phrase, response_head, simple_response

__all__ = [
    "TOKEN_CHARS",
    "Address",
    "BodyFraming",
    "FieldList",
    "Framing",
    "FramingError",
    "InvalidField",
    "TrioUpgradeError",
    "check_field",
    "field_values",
    "forwardable_fields",
    "http_date",
    "is_field_value",
    "is_token",
    "list_tokens",
    "normalize_address",
    "parse_content_length",
    "reason",
    "reason_phrase",
    "request_framing",
    "response_framing",
    "response_head",
    "simple_response",
    "split_list",
]
