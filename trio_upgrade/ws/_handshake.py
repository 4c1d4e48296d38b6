"""The opening handshake (RFC 6455 §4), sans I/O.

Pure functions over header lists (``(name, value)`` bytes, lower-case names),
used by the standalone server and client here and by the bridge with headers
the HTTP layer parsed:

- server: :func:`validate_request` → :class:`ClientOffer` or :class:`Rejection`;
  :func:`accept` → :class:`Accepted` (101 headers + extensions for the session,
  :meth:`Accepted.head` the bytes to send); :meth:`Rejection.response` the
  bytes of a refusal;
- client: :func:`client_request` → request bytes; :func:`check_response`.

Heads are parsed and written by :mod:`trio_upgrade._wire` (one grammar, one
writer); what is WebSocket-specific lives here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from wsproto.extensions import Extension

from .. import _wire
from .._wire import accept_key, check_field, field_values, list_tokens
from ._config import WebSocketConfig
from ._deflate import client_finalize, client_offer, negotiate_server
from ._errors import HandshakeError
from ._request import split_header_tokens

__all__ = [
    "Accepted",
    "ClientOffer",
    "Rejection",
    "accept",
    "check_response",
    "client_request",
    "offered_extensions",
    "validate_request",
]

HeaderList = Sequence[tuple[bytes, bytes]]

# A request-target is visible ASCII only (RFC 9112 §3.2): no space, CR, LF or NUL.
_TARGET = re.compile(rb"[\x21-\x7e]+")


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

    def response(self) -> bytes:
        """The whole refusal to send: this status and headers, the reason as a
        text body, ``Content-Length``, ``Date`` and ``Connection: close``."""
        return _wire.simple_response(self.status, self.headers, f"{self.reason}\n".encode())


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

    def head(self) -> bytes:
        """The 101 response head to send (every field checked: ``ValueError``
        before anything is built)."""
        return _wire.response_head(101, self.headers)


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
    if b"websocket" not in list_tokens(headers, b"upgrade"):
        return Rejection(400, "missing 'Upgrade: websocket' header")
    if b"upgrade" not in list_tokens(headers, b"connection"):
        return Rejection(400, "missing 'Connection: upgrade' header")
    versions = field_values(headers, b"sec-websocket-version")
    if [v.strip() for v in versions] != [b"13"]:
        return Rejection(
            426,
            "unsupported WebSocket version (only 13 is supported)",
            ((b"sec-websocket-version", b"13"),),
        )
    keys = field_values(headers, b"sec-websocket-key")
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
        subprotocols=tuple(split_header_tokens(field_values(headers, b"sec-websocket-protocol"))),
        extensions=tuple(split_header_tokens(field_values(headers, b"sec-websocket-extensions"))),
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
    client offered an acceptable variant. An *extra_headers* field that could
    not be written (a name that is not a token, a value with CR, LF, NUL or
    another control character) raises ``ValueError``.
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
    for name, value in extra_headers:
        name = name.lower()
        # Refused here, before anything is sent (ValueError), rather than
        # when the 101 is written.
        check_field(name, value)
        headers.append((name, value))
    return Accepted(headers, subprotocol, extensions, names)


def client_request(
    host: str,
    path: str,
    key: bytes,
    *,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[str] = (),
    headers: HeaderList = (),
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The client's opening handshake: request bytes and the header list sent.

    Raises ``ValueError`` before building anything for a *path* that is not
    visible ASCII (a space, CR, LF or NUL would split the request line) or a
    field that could not be written (see :func:`trio_upgrade._wire.check_field`).
    """
    target = path.encode("latin-1") if path.isascii() else b""
    if _TARGET.fullmatch(target) is None:
        raise ValueError(f"invalid request target {path!r}")
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
    lines = [b"GET %s HTTP/1.1\r\n" % target]
    for name, value in fields:
        check_field(name, value)
        lines += (name, b": ", value, b"\r\n")
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
    if b"websocket" not in list_tokens(headers, b"upgrade"):
        raise HandshakeError("101 response without 'Upgrade: websocket'")
    if b"upgrade" not in list_tokens(headers, b"connection"):
        raise HandshakeError("101 response without 'Connection: upgrade'")
    accepts = field_values(headers, b"sec-websocket-accept")
    if [a.strip() for a in accepts] != [accept_key(key).encode("ascii")]:
        raise HandshakeError("wrong or missing Sec-WebSocket-Accept")
    chosen = split_header_tokens(field_values(headers, b"sec-websocket-protocol"))
    subprotocol: str | None = None
    if chosen:
        if len(chosen) != 1 or chosen[0] not in subprotocols:
            raise HandshakeError(f"server chose a subprotocol we did not offer: {chosen}")
        subprotocol = chosen[0]
    elements = split_header_tokens(field_values(headers, b"sec-websocket-extensions"))
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
