"""How an HTTP/1.1 message's body is framed (RFC 9112 §6), decided in one place.

The server and the proxy both ask here: which length wins, when a message must
be refused, when the connection must close after it, and what an intermediary
strips before it frames a message again. Anything that could frame a message
two ways is refused (request smuggling, RFC 9112 §6.3 and §11.2).

The policy, for a request (:func:`request_framing`):

- ``Transfer-Encoding`` and ``Content-Length`` together: refused with 400 (RFC
  9112 §6.3 item 3 lets a server reject it; processing it would oblige us to
  close anyway, and a peer in front of us may have framed it by the length).
- ``Transfer-Encoding`` in an HTTP/1.0 request: refused with 400 (§6.1: the
  framing is faulty).
- ``Transfer-Encoding`` whose final coding is not ``chunked``, or with
  ``chunked`` more than once: 400 (§6.3 item 4, §7.1); codings we do not
  implement (anything but ``chunked``): 501 (§6.1).
- ``Content-Length`` that is not ``1*DIGIT``, or several that differ: 400 (§6.3
  item 5). Repeated identical values (``5, 5``) are one length (§8.6 of RFC 9110).

For a response read by the proxy (:func:`response_framing`), the same faults
are the backend's: 502, and the backend connection is never reused after a
response whose framing was in doubt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._errors import FramingError
from ._grammar import FieldList, list_tokens, split_list

__all__ = [
    "HOP_BY_HOP",
    "BodyFraming",
    "Framing",
    "FramingError",
    "connection_options",
    "forwardable_fields",
    "parse_content_length",
    "request_framing",
    "response_framing",
]


class Framing(enum.IntEnum):
    """How the end of a body is found."""

    NONE = 0
    """No body (a request without framing fields; HEAD, 1xx, 204, 304 responses)."""
    LENGTH = 1
    """``Content-Length`` bytes."""
    CHUNKED = 2
    """The chunked transfer coding (RFC 9112 §7.1)."""
    UNTIL_CLOSE = 3
    """A response without either field: its body ends when the connection does."""


@dataclass(frozen=True, slots=True)
class BodyFraming:
    """The framing of one message, as decided by :func:`request_framing` or
    :func:`response_framing`."""

    kind: Framing
    length: int | None = None
    """The body's length for :attr:`Framing.LENGTH` (``0`` for ``NONE``)."""
    close: bool = False
    """Whether the connection must close after this message (its framing
    leaves nothing certain to follow it)."""


_NO_BODY = BodyFraming(Framing.NONE, 0)
_CHUNKED = BodyFraming(Framing.CHUNKED)
_DIGITS = frozenset(b"0123456789")


def parse_content_length(values: list[bytes]) -> int:
    """The one length that every ``Content-Length`` value states (RFC 9110 §8.6).

    Each field may itself be a list (``5, 5``). Raises :class:`FramingError`
    (400) for an element that is not ``1*DIGIT`` (a sign, a space inside,
    hexadecimal...) or for two different lengths. Leading zeros are allowed
    (``0005`` is 5) and dropped by :func:`forwardable_fields`.
    """
    if len(values) == 1:
        only = values[0]
        # The common case: one field, plain digits (bytes.isdigit is ASCII only).
        if only.isdigit() and len(only) <= 18:
            return int(only)
    length: int | None = None
    for element in split_list(values):
        if not set(element) <= _DIGITS:
            raise FramingError(f"invalid Content-Length {element[:40]!r}")
        if len(element) > 18:
            raise FramingError("Content-Length too large")
        value = int(element)
        if length is not None and value != length:
            raise FramingError("conflicting Content-Length values")
        length = value
    if length is None:
        raise FramingError("empty Content-Length")
    return length


def _codings(values: list[bytes]) -> list[bytes]:
    # Transfer codings are case-insensitive (RFC 9112 §7); parameters are
    # kept with the coding name, which then fails to equal "chunked".
    return [c.lower() for c in split_list(values)]


def _check_codings(codings: list[bytes], status: int, *, request: bool) -> bool:
    """Whether a message with these codings is chunked; raises when faulty."""
    if not codings:
        raise FramingError("empty Transfer-Encoding", status)
    if codings.count(b"chunked") > 1:
        raise FramingError("chunked applied more than once", status)
    if codings[-1] != b"chunked":
        if request:
            # §6.3 item 4: the length of such a request cannot be determined.
            raise FramingError("Transfer-Encoding does not end with chunked", status)
        return False
    if len(codings) > 1:
        # gzip, chunked and the like: valid, but not a coding we decode.
        raise FramingError(
            "unsupported transfer coding " + codings[0].decode("latin-1"),
            501 if request else status,
        )
    return True


def _framing_fields(fields: FieldList) -> tuple[list[bytes] | None, list[bytes] | None]:
    """The values of every ``Transfer-Encoding`` and ``Content-Length`` field
    (``None`` for a field that is absent), in one pass."""
    te: list[bytes] | None = None
    cl: list[bytes] | None = None
    for name, value in fields:
        if name == b"transfer-encoding":
            if te is None:
                te = []
            te.append(value)
        elif name == b"content-length":
            if cl is None:
                cl = []
            cl.append(value)
    return te, cl


def request_framing(fields: FieldList, http_version: bytes = b"1.1") -> BodyFraming:
    """The framing of a request head's body, or :class:`FramingError` (400/501)."""
    te, cl = _framing_fields(fields)
    if te is not None:
        if cl is not None:
            raise FramingError("both Transfer-Encoding and Content-Length")
        if http_version < b"1.1":
            raise FramingError("Transfer-Encoding in an HTTP/1.0 request")
        _check_codings(_codings(te), 400, request=True)
        return _CHUNKED
    if cl is not None:
        length = parse_content_length(cl)
        return BodyFraming(Framing.LENGTH, length) if length else _NO_BODY
    return _NO_BODY


def response_framing(
    status: int,
    fields: FieldList,
    *,
    request_method: bytes = b"GET",
    http_version: bytes = b"1.1",
) -> BodyFraming:
    """The framing of a response's body (RFC 9112 §6.3), or :class:`FramingError` (502).

    ``close`` is set when the connection cannot carry another response after
    this one: a body delimited by the close, a response that carried both
    ``Transfer-Encoding`` and ``Content-Length``, or ``Transfer-Encoding`` from
    an HTTP/1.0 peer.
    """
    te, cl = _framing_fields(fields)
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        # No body whatever the fields say; a 204 or 1xx that declares one is
        # suspicious enough to stop trusting the connection.
        suspicious = (
            status != 304
            and status >= 200
            and request_method != b"HEAD"
            and (te is not None or (cl is not None and cl != [b"0"]))
        )
        return BodyFraming(Framing.NONE, 0, close=suspicious)
    if request_method == b"CONNECT" and 200 <= status < 300:
        return BodyFraming(Framing.UNTIL_CLOSE, close=True)
    if te is not None:
        if http_version < b"1.1":
            # §6.1: faulty framing; read until close and do not reuse.
            return BodyFraming(Framing.UNTIL_CLOSE, close=True)
        chunked = _check_codings(_codings(te), 502, request=False)
        if not chunked:
            return BodyFraming(Framing.UNTIL_CLOSE, close=True)
        # §6.3 item 3: Transfer-Encoding wins; never reuse such a connection.
        return BodyFraming(Framing.CHUNKED, close=cl is not None)
    if cl is not None:
        try:
            length = parse_content_length(cl)
        except FramingError as exc:
            raise FramingError(str(exc), 502) from None
        return BodyFraming(Framing.LENGTH, length)
    return BodyFraming(Framing.UNTIL_CLOSE, close=True)


def forwardable_fields(fields: FieldList) -> list[tuple[bytes, bytes]]:
    """*fields* without ``Content-Length`` and ``Transfer-Encoding``.

    What an intermediary keeps of a message it frames again itself (RFC 9112
    §6.3 item 3: the received ``Content-Length`` is removed before forwarding);
    the caller adds the framing of the next hop, from the
    :class:`BodyFraming` it decided on (so ``Content-Length: 0005`` goes out as
    ``5``).
    """
    return [(n, v) for n, v in fields if n != b"content-length" and n != b"transfer-encoding"]


HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        # Not in RFC 9110 §7.6.1's list, but only meaningful on one hop: a
        # trailer announcement without the chunked coding that carries it.
        b"trailer",
    }
)
"""Fields that describe one connection, never forwarded by an intermediary
(RFC 9110 §7.6.1); fields named in ``Connection`` are removed too."""


def connection_options(fields: FieldList) -> set[bytes]:
    """The lower-cased elements of every ``Connection`` field (``close``,
    ``upgrade``, names of hop-by-hop fields; RFC 9110 §7.6.1)."""
    return set(list_tokens(fields, b"connection"))
