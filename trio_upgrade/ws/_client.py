"""The WebSocket client: ``async with open_websocket(url) as ws``."""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio

from .._wire import (
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_HEAD_SIZE,
    Address,
    HeadError,
    ResponseParser,
    normalize_address,
)
from ._config import WebSocketConfig
from ._errors import HandshakeError, HandshakeRejected
from ._handshake import check_response, client_request, offered_extensions
from ._request import HandshakeRequest
from ._session import WebSocket, open_session

__all__ = ["open_websocket"]

_DEFAULT_CONFIG = WebSocketConfig()
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[bytes | str, bytes | str]] = (),
    ssl_context: ssl.SSLContext | None = None,
    unix_socket: str | None = None,
    connect_timeout: float = 10.0,
    config: WebSocketConfig = _DEFAULT_CONFIG,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    max_header_fields: int = DEFAULT_MAX_FIELDS,
    max_body_size: int = 64 * 1024,
) -> AsyncIterator[WebSocket]:
    """Connect to *url* (``ws://`` or ``wss://``) and run a session for the block.

    With *unix_socket*, connect to that Unix socket path instead of the URL's
    host (the URL still gives the path and the ``Host`` header). *ssl_context*
    defaults to :func:`ssl.create_default_context` for ``wss://``. Connecting,
    TLS and the opening handshake together take at most *connect_timeout*.

    Raises :class:`HandshakeRejected` (status, headers, first *max_body_size*
    bytes of the body, framed by its Content-Length, chunked, or read to EOF)
    when the server answers anything but 101, and :class:`HandshakeError` for
    every other failure to open (a response head over *max_head_size* bytes or
    with more than *max_header_fields* fields among them). A header or a path
    that cannot be written raises ``ValueError`` before connecting. Leaving
    the block closes the session like :func:`websocket_session` does.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise HandshakeError(f"not a WebSocket URL: {url!r}")
    host = parts.hostname
    if not host:
        raise HandshakeError(f"no host in {url!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise HandshakeError(f"bad port in {url!r}") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != _DEFAULT_PORTS[scheme]:
        host_header += f":{port}"
    extra = [
        (
            (n.encode("latin-1") if isinstance(n, str) else n).lower(),
            v.encode("latin-1") if isinstance(v, str) else v,
        )
        for n, v in headers
    ]
    key = base64.b64encode(os.urandom(16))
    request_bytes, sent = client_request(
        host_header,
        path,
        key,
        subprotocols=subprotocols,
        extensions=offered_extensions(config),
        headers=extra,
    )
    parser = ResponseParser(
        max_size=max_head_size, max_fields=max_header_fields, max_body_size=max_body_size
    )

    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(connect_timeout):
            try:
                if unix_socket is not None:
                    stream = await trio.open_unix_socket(unix_socket)
                else:
                    stream = await trio.open_tcp_stream(host, port)
                if scheme == "wss":
                    context = ssl_context or ssl.create_default_context()
                    stream = trio.SSLStream(stream, context, server_hostname=host)
                    await stream.do_handshake()
            except (OSError, trio.BrokenResourceError) as exc:
                raise HandshakeError(f"cannot connect to {url}: {exc}") from exc
            try:
                await stream.send_all(request_bytes)
                head = None
                while head is None:
                    data = await stream.receive_some(parser.read_size)
                    if not data:
                        raise HandshakeError("connection closed before the handshake response")
                    head = parser.feed(data)
                response_headers = head.fields
                if head.status != 101:
                    while not parser.body_complete:
                        parser.feed_body(await stream.receive_some(65536))
                    raise HandshakeRejected(head.status, response_headers, bytes(parser.body))
            except HeadError as exc:
                raise HandshakeError(f"malformed handshake response: {exc}") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise HandshakeError(f"connection lost during the handshake: {exc}") from exc
            subprotocol, extensions, _ = check_response(
                key, response_headers, subprotocols=subprotocols, config=config
            )
    except trio.TooSlowError:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise HandshakeError(f"opening handshake with {url} timed out") from None
    except BaseException:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        raise
    rest = parser.rest
    del parser
    local, peer = _addresses(stream)
    request = HandshakeRequest(path=path, headers=tuple(sent), client=local, server=peer)
    async with open_session(
        stream,
        client=True,
        prefetched=rest,
        request=request,
        subprotocol=subprotocol,
        extensions=extensions,
        config=config,
        shutdown=None,
    ) as ws:
        yield ws


def _addresses(stream: trio.abc.Stream) -> tuple[Address | None, Address | None]:
    inner: object = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    if not isinstance(inner, trio.SocketStream):
        return None, None
    try:
        local = inner.socket.getsockname()
        peer = inner.socket.getpeername()
    except OSError:
        return None, None
    return normalize_address(local), normalize_address(peer)
