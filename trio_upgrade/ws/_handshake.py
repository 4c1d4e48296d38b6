"""The opening handshake (RFC 6455 §4), sans I/O.

Pure functions over header lists (``(name, value)`` bytes, lower-case names),
used by the standalone server and client here and by the bridge with headers
the HTTP layer parsed:

- server: :func:`validate_request` → :class:`ClientOffer` or :class:`Rejection`;
  :func:`accept` → :class:`Accepted` (101 headers + extensions for the session);
  :func:`response_head` → the bytes of a response head;
- client: :func:`client_request` → request bytes; :func:`check_response`;
- HTTP/1.1 heads: :func:`parse_request_head`, :func:`parse_response_head`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

from wsproto.extensions import Extension

from ._config import WebSocketConfig
from ._deflate import client_finalize, client_offer, negotiate_server
from ._errors import HandshakeError
from ._request import split_header_tokens

__all__ = [
    "Accepted",
    "ClientOffer",
    "HeadError",
    "Rejection",
    "accept",
    "accept_key",
    "check_response",
    "client_request",
    "offered_extensions",
    "parse_request_head",
    "parse_response_head",
    "rejection_response",
    "response_head",
    "validate_request",
]

HeaderList = Sequence[tuple[bytes, bytes]]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 9110 §5.6.2: characters of a token (header names, methods).
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class HeadError(ValueError):
    """An HTTP/1.1 head could not be parsed; *status* is what a server should answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ClientOffer:
    """A valid opening handshake: what the client asked for."""

    key: bytes
    """The ``Sec-WebSocket-Key`` as sent (base64 text of 16 bytes)."""
    subprotocols: tuple[str, ...] = ()
    """Offered subprotocols, in the client's order of preference."""
    extensions: tuple[str, ...] = ()
    """Offered extension elements, e.g. ``"permessage-deflate; client_max_window_bits"``."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is not a valid opening handshake, and what to answer."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class Accepted:
    """The outcome of accepting a handshake: what to send and what to run."""

    headers: list[tuple[bytes, bytes]]
    """Headers of the 101 response (without the status line)."""
    subprotocol: str | None = None
    extensions: list[Extension] = field(default_factory=list)
    """wsproto extensions to hand to the session (fresh objects: one session only)."""
    extension_names: tuple[str, ...] = ()
    """The negotiated ``Sec-WebSocket-Extensions`` elements, as sent."""


def accept_key(key: bytes | str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 step 5.4)."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + _GUID).digest()).decode("ascii")


def _values(headers: HeaderList, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


def _tokens(headers: HeaderList, name: bytes) -> list[str]:
    return [t.lower() for t in split_header_tokens(_values(headers, name))]


def validate_request(
    method: str | bytes, headers: HeaderList, *, http_version: str | bytes = "1.1"
) -> ClientOffer | Rejection:
    """Check an opening handshake (RFC 6455 §4.2.1); never raises.

    A wrong or missing ``Sec-WebSocket-Version`` gives 426 with
    ``Sec-WebSocket-Version: 13`` (§4.2.2); any other defect gives 400 with a
    reason meant for the client's developer.
    """
    if isinstance(method, bytes):
        method = method.decode("latin-1")
    if isinstance(http_version, bytes):
        http_version = http_version.decode("latin-1")
    if method != "GET":
        return Rejection(400, f"a WebSocket handshake must use GET, not {method}")
    if http_version != "1.1":
        return Rejection(400, f"a WebSocket handshake needs HTTP/1.1, not HTTP/{http_version}")
    if "websocket" not in _tokens(headers, b"upgrade"):
        return Rejection(400, "missing 'Upgrade: websocket' header")
    if "upgrade" not in _tokens(headers, b"connection"):
        return Rejection(400, "missing 'Connection: upgrade' header")
    versions = _values(headers, b"sec-websocket-version")
    if [v.strip() for v in versions] != [b"13"]:
        return Rejection(
            426,
            "unsupported WebSocket version (only 13 is supported)",
            ((b"sec-websocket-version", b"13"),),
        )
    keys = _values(headers, b"sec-websocket-key")
    if len(keys) != 1:
        return Rejection(400, "need exactly one Sec-WebSocket-Key header")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        return Rejection(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return ClientOffer(
        key=key,
        subprotocols=tuple(split_header_tokens(_values(headers, b"sec-websocket-protocol"))),
        extensions=tuple(split_header_tokens(_values(headers, b"sec-websocket-extensions"))),
    )


def accept(
    offer: ClientOffer,
    *,
    subprotocol: str | None = None,
    config: WebSocketConfig | None = None,
    extra_headers: HeaderList = (),
) -> Accepted:
    """Build the 101 response headers and the session's extensions for *offer*.

    *subprotocol* must be one the client offered (ValueError otherwise).
    permessage-deflate is negotiated when ``config.compression`` is set and the
    client offered an acceptable variant.
    """
    if config is None:
        config = WebSocketConfig()
    if subprotocol is not None and subprotocol not in offer.subprotocols:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
    headers: list[tuple[bytes, bytes]] = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_key(offer.key).encode("ascii")),
    ]
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    extensions: list[Extension] = []
    names: tuple[str, ...] = ()
    if config.compression is not None and offer.extensions:
        negotiated = negotiate_server(
            list(offer.extensions), config.compression, config.max_message_size
        )
        if negotiated is not None:
            element, ext = negotiated
            headers.append((b"sec-websocket-extensions", element.encode("latin-1")))
            extensions.append(ext)
            names = (element,)
    headers.extend((n.lower(), v) for n, v in extra_headers)
    return Accepted(headers, subprotocol, extensions, names)


def response_head(status: int, headers: HeaderList, reason: bytes | None = None) -> bytes:
    """The bytes of an HTTP/1.1 response head, ending with the blank line."""
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
    parts = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    for name, value in headers:
        _check_field(name, value)
        parts.append(b"%s: %s\r\n" % (name, value))
    parts.append(b"\r\n")
    return b"".join(parts)


def rejection_response(status: int, headers: HeaderList = (), body: bytes = b"") -> bytes:
    """A complete response that refuses an upgrade; the connection closes after it."""
    names = {n.lower() for n, _ in headers}
    full = list(headers)
    if b"content-length" not in names:
        full.append((b"content-length", str(len(body)).encode("ascii")))
    if b"connection" not in names:
        full.append((b"connection", b"close"))
    if body and b"content-type" not in names:
        full.append((b"content-type", b"text/plain; charset=utf-8"))
    return response_head(status, full) + body


def _check_field(name: bytes, value: bytes) -> None:
    if not name or not set(name) <= _TOKEN_CHARS:
        raise ValueError(f"invalid header name {name!r}")
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        raise ValueError(f"invalid header value for {name!r}")


# Header names and values that most handshakes carry, shared by every request
# that has them: a session keeps its request's headers for its whole life, and
# a bytes object per name and value per idle connection adds up (~0.3 KiB).
_COMMON = {
    field: field
    for field in (
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"user-agent",
        b"pragma",
        b"cache-control",
        b"accept-encoding",
        b"accept-language",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"websocket",
        b"Upgrade",
        b"upgrade",
        b"keep-alive, Upgrade",
        b"13",
        b"no-cache",
        b"gzip, deflate, br",
        b"gzip, deflate, br, zstd",
        b"permessage-deflate; client_max_window_bits",
    )
}


def _parse_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    common = _COMMON
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise HeadError("obsolete header line folding")
        name, sep, value = line.partition(b":")
        if not sep or not name or not set(name) <= _TOKEN_CHARS:
            raise HeadError(f"malformed header line {line[:40]!r}")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((common.get(name, name), common.get(value, value)))
    return headers


def parse_request_head(head: bytes) -> tuple[str, str, str, list[tuple[bytes, bytes]]]:
    """Parse a request head (without the final CRLF CRLF) into method, target, version, headers."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HeadError("malformed request line")
    method, target, version = parts
    if not version.startswith(b"HTTP/") or len(version) != 8:
        raise HeadError("malformed HTTP version")
    if version[5:6] != b"1":
        raise HeadError("unsupported HTTP version", 505)
    if not set(method) <= _TOKEN_CHARS:
        raise HeadError("malformed method")
    if any(c <= 0x20 or c == 0x7F for c in target):
        raise HeadError("malformed request target")
    return (
        method.decode("ascii"),
        target.decode("latin-1"),
        version[5:].decode("ascii"),
        _parse_fields(lines[1:]),
    )


def parse_response_head(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Parse a response head (without the final CRLF CRLF) into status and headers."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HeadError("malformed status line")
    return int(code), _parse_fields(lines[1:])


def client_request(
    host: str,
    path: str,
    key: bytes,
    *,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[str] = (),
    headers: HeaderList = (),
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The client's opening handshake: request bytes and the header list sent."""
    fields: list[tuple[bytes, bytes]] = [
        (b"host", host.encode("idna") if not host.isascii() else host.encode("ascii")),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", key),
        (b"sec-websocket-version", b"13"),
    ]
    if subprotocols:
        fields.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode("latin-1")))
    if extensions:
        fields.append((b"sec-websocket-extensions", ", ".join(extensions).encode("latin-1")))
    fields.extend((n.lower(), v) for n, v in headers)
    lines = [b"GET %s HTTP/1.1\r\n" % path.encode("latin-1")]
    for name, value in fields:
        _check_field(name, value)
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines), fields


def check_response(
    key: bytes,
    headers: HeaderList,
    *,
    subprotocols: Sequence[str] = (),
    config: WebSocketConfig | None = None,
) -> tuple[str | None, list[Extension], tuple[str, ...]]:
    """Validate a 101 response (RFC 6455 §4.1 client steps 1-6).

    Returns the chosen subprotocol, the extensions for the session and their
    names; raises :class:`HandshakeError` when the response must fail the
    connection.
    """
    if config is None:
        config = WebSocketConfig()
    if "websocket" not in _tokens(headers, b"upgrade"):
        raise HandshakeError("101 response without 'Upgrade: websocket'")
    if "upgrade" not in _tokens(headers, b"connection"):
        raise HandshakeError("101 response without 'Connection: upgrade'")
    accepts = _values(headers, b"sec-websocket-accept")
    if [a.strip() for a in accepts] != [accept_key(key).encode("ascii")]:
        raise HandshakeError("wrong or missing Sec-WebSocket-Accept")
    chosen = split_header_tokens(_values(headers, b"sec-websocket-protocol"))
    subprotocol: str | None = None
    if chosen:
        if len(chosen) != 1 or chosen[0] not in subprotocols:
            raise HandshakeError(f"server chose a subprotocol we did not offer: {chosen}")
        subprotocol = chosen[0]
    elements = split_header_tokens(_values(headers, b"sec-websocket-extensions"))
    extensions: list[Extension] = []
    if elements:
        if len(elements) != 1 or config.compression is None:
            raise HandshakeError(f"server accepted extensions we did not offer: {elements}")
        try:
            extensions.append(
                client_finalize(elements[0], config.compression, config.max_message_size)
            )
        except ValueError as exc:
            raise HandshakeError(f"bad permessage-deflate response: {exc}") from None
    return subprotocol, extensions, tuple(elements)


def offered_extensions(config: WebSocketConfig) -> list[str]:
    """The ``Sec-WebSocket-Extensions`` elements a client with *config* offers."""
    return [client_offer(config.compression)] if config.compression is not None else []
