"""Test doubles for the bridge tests: raw handshakes, a response reader, a raw WebSocket peer.

This directory has no ``__init__.py``: its modules are imported by their own
names, so none of them is named like a standard-library or third-party module.
"""

from __future__ import annotations

import base64
import functools
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio
import trio.testing
from _wire import RawResponse, ResponseReader, frame, serve_in_memory
from websockets.trio.client import connect as websockets_connect
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, Event, Message, Ping, TextMessage

from trio_upgrade._wire import accept_key
from trio_upgrade.core import Connection, Server, Shutdown
from trio_upgrade.http import Handler, HTTPConfig, serve

KEY = base64.b64encode(b"0123456789abcdef").decode("ascii")


def handshake(
    path: str = "/ws",
    *,
    host: str = "test",
    headers: str = "",
    key: str | None = KEY,
    version: str | None = "13",
    method: str = "GET",
    http_version: str = "1.1",
    upgrade: str = "websocket",
    connection: str = "Upgrade",
) -> bytes:
    """The bytes of an opening handshake; ``None`` leaves a header out."""
    lines = [f"{method} {path} HTTP/{http_version}", f"Host: {host}"]
    if upgrade:
        lines.append(f"Upgrade: {upgrade}")
    if connection:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    head = "\r\n".join(lines) + "\r\n" + headers + "\r\n"
    return head.encode("latin-1")


class Reader(ResponseReader):
    """Reads responses and then WebSocket frames from a stream, keeping leftovers.

    Independent of h11 on purpose: the tests check what the server put on the wire.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        super().__init__(stream)
        self.ws: WSConnection | None = None

    async def next_event(self) -> Event:
        """The next WebSocket event from the server (after a 101)."""
        if self.ws is None:
            self.ws = WSConnection(ConnectionType.CLIENT)
            if self.buffer:
                self.ws.receive_data(bytes(self.buffer))
                self.buffer.clear()
        while True:
            for event in self.ws.events():
                return event
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(bytes(data) or None)

    async def next_message(self) -> str | bytes:
        """The next data message, skipping pings (wsproto answers them for us)."""
        while True:
            event = await self.next_event()
            if isinstance(event, Message):
                assert event.message_finished
                data: str | bytes = event.data
                return data
            if isinstance(event, Ping):
                continue
            raise AssertionError(f"expected a message, got {event!r}")

    async def close_code(self) -> int:
        """Wait for the server's Close frame and return its code."""
        while True:
            event = await self.next_event()
            if isinstance(event, CloseConnection):
                return event.code
            if isinstance(event, (TextMessage, Ping)):
                continue
            raise AssertionError(f"expected Close, got {event!r}")


@dataclass
class MemoryClient:
    """The client end of one in-memory connection served like the Server would."""

    stream: trio.abc.HalfCloseableStream
    reader: Reader
    conn: Connection
    finished: trio.Event

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(self, data: bytes) -> RawResponse:
        await self.send(data)
        return await self.reader.read_response()

    async def get(self, path: str, headers: str = "", method: str = "GET") -> RawResponse:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n"
        return await self.request(head.encode())

    async def assert_closed(self) -> None:
        """The server closed the connection without sending anything more."""
        assert await self.reader.at_eof(), f"unexpected bytes {bytes(self.reader.buffer)!r}"
        await self.finished.wait()

    async def send_frame(self, opcode: int, payload: bytes) -> None:
        await self.send(frame(opcode, payload))


@asynccontextmanager
async def open_memory_connection(
    app: Handler,
    config: HTTPConfig | None = None,
    *,
    shutdown: Shutdown | None = None,
) -> AsyncIterator[MemoryClient]:
    """Serve *app* on one in-memory connection as :class:`trio_upgrade.core.Server`
    would: a per-connection nursery, the stream closed when the HTTP loop returns."""
    async with serve_in_memory(app, config, shutdown=shutdown) as (stream, conn, finished):
        yield MemoryClient(stream, Reader(stream), conn, finished)


async def open_ws(client: MemoryClient, path: str = "/ws", headers: str = "") -> RawResponse:
    """Send a handshake and check that the answer is a valid 101."""
    response = await client.request(handshake(path, headers=headers))
    assert response.status == 101, response
    assert response.headers["sec-websocket-accept"] == accept_key(KEY)
    return response


@asynccontextmanager
async def serving(
    app: Handler, *, grace_period: float = 10.0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    """*app* served on an ephemeral loopback port for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            functools.partial(
                serve, app, "127.0.0.1:0", grace_period=grace_period, ssl_context=ssl_context
            )
        )
        try:
            yield server
        finally:
            await server.aclose()


def port_of(server: Server) -> int:
    address = server.addresses[0]
    assert isinstance(address, tuple)
    return address[1]


async def raw_socket(port: int) -> trio.SocketStream:
    """A plain TCP connection to the loopback port (no client library in the way)."""
    return await trio.open_tcp_stream("127.0.0.1", port)


def free_port() -> int:
    """A port that was free a moment ago (for a subprocess that binds it itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ws_connect(url: str, **options: Any) -> websockets_connect:
    """The websockets Trio client, never through a proxy (only loopback traffic in tests)."""
    return websockets_connect(url, proxy=None, **options)
