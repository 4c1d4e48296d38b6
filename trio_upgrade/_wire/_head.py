"""The one writer of HTTP/1.1 response heads (RFC 9112 §4, §5).

Every response head the package writes — the HTTP server's, the WebSocket
handshake's 101 and its refusals, the bridge's, the proxy's — is built here, and
every field it writes passes :func:`~._grammar.check_field` (token names; values
without CR, LF, NUL or other control characters), so a handler's header can
never split a head.
"""

from __future__ import annotations

from http import HTTPStatus

from ._date import http_date
from ._grammar import _FIELD_VALUE, _TOKEN, FieldList, InvalidField

__all__ = ["reason", "reason_phrase", "response_head", "simple_response"]

_REASONS: dict[int, bytes] = {}

# Field lines already checked, by (name, value). A server's responses carry
# the same few fields again and again (a content type, a cache policy), and
# checking one (two regular expressions) cost as much as the rest of writing
# it. A hit writes the line built from the pair that was checked. Bounded: at
# most _CHECKED_MAX short lines, emptied when full.
_CHECKED: dict[tuple[bytes, bytes], bytes] = {}
_CHECKED_MAX = 256
_CHECKED_LINE_MAX = 256


def reason_phrase(status: int) -> str:
    """The standard reason phrase for *status* (``""`` when unknown)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def reason(status: int) -> bytes:
    """:func:`reason_phrase` as bytes, cached."""
    phrase = _REASONS.get(status)
    if phrase is None:
        phrase = _REASONS[status] = reason_phrase(status).encode("ascii")
    return phrase


def response_head(
    status: int, fields: FieldList, *, reason_bytes: bytes | None = None, trusted: bytes = b""
) -> bytes:
    """The bytes of a response head: status line, *fields*, and the blank line.

    *trusted* is field lines (``name: value\r\n``) the caller built itself from
    values it knows are valid (a date, a length it counted), written after
    *fields* without being checked again.

    Raises :class:`~._grammar.InvalidField` (a ``ValueError``) before anything is
    built when a name is not a token or a value is not a valid field value, and
    ``ValueError`` for a status outside 100-999 or a reason with CR or LF.
    """
    if not 100 <= status <= 999:
        raise ValueError(f"invalid status code {status!r}")
    if reason_bytes is None:
        reason_bytes = reason(status)
    elif _FIELD_VALUE.fullmatch(reason_bytes) is None:
        raise ValueError(f"invalid reason phrase {reason_bytes!r}")
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason_bytes)]
    checked = _CHECKED
    for name, value in fields:
        try:
            line = checked.get((name, value))
        except TypeError:  # a bytearray: checked, written, not remembered
            line = None
        if line is None:
            line = _field_line(name, value)
        parts.append(line)
    parts += (trusted, b"\r\n")
    return b"".join(parts)


def _field_line(name: bytes, value: bytes) -> bytes:
    """``name: value\r\n`` once both are checked (and remembered when short)."""
    if _TOKEN.fullmatch(name) is None:
        raise InvalidField(f"invalid header name {name!r}")
    if _FIELD_VALUE.fullmatch(value) is None:
        raise InvalidField(f"invalid value for header {name.decode('latin-1')}: {value!r}")
    line = b"%s: %s\r\n" % (name, value)
    # Only immutable pairs are remembered (a bytearray could change after).
    if len(line) <= _CHECKED_LINE_MAX and type(name) is bytes and type(value) is bytes:
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[name, value] = line
    return line


def simple_response(
    status: int,
    fields: FieldList = (),
    body: bytes | None = None,
    *,
    close: bool = True,
    date: bool = True,
) -> bytes:
    """A complete response with a body of known length, written at once.

    For answers that are not a handler's: errors written before or instead of
    a request loop (400, 408, 431, 500, 503), a refused upgrade. *body* defaults
    to ``"<status> <reason>\\n"`` as plain text; ``Content-Length`` and
    ``Content-Type`` are added unless *fields* has them, ``Date`` unless *fields*
    has one or *date* is false, and ``Connection: close`` when *close*.
    """
    if body is None:
        body = b"%d %s\n" % (status, reason(status))
        fields = [*fields, (b"content-type", b"text/plain; charset=utf-8")]
    names = {n.lower() for n, _ in fields}
    full = list(fields)
    if b"content-length" not in names:
        full.append((b"content-length", b"%d" % len(body)))
    if body and b"content-type" not in names:
        full.append((b"content-type", b"text/plain; charset=utf-8"))
    if date and b"date" not in names:
        full.append((b"date", http_date()))
    if close and b"connection" not in names:
        full.append((b"connection", b"close"))
    return response_head(status, full) + body
