"""Test doubles shared by the test directories, one copy each: an app served on
one in-memory connection, a response reader that does not use h11, a client's
WebSocket frame, reading a stream to EOF or a child's output to a pattern, the
quiet WebSocket config, and whether ``::1`` can be bound.

``tests`` is on pytest's ``pythonpath``, so this module is imported as ``_wire``.
A directory's own helper module re-exports what it uses from here.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
import trio.testing

from trio_upgrade.core import Connection, Shutdown
from trio_upgrade.http import Handler, Headers, HTTPConfig, serve_http_connection
from trio_upgrade.ws import WebSocketConfig

CLIENT = ("127.0.0.1", 40000)
SERVER = ("127.0.0.1", 8000)


@dataclass
class RawResponse:
    """One response as read off the wire."""

    http_version: bytes
    status: int
    reason: bytes
    headers: Headers
    body: bytes
    # Raw head, for asserting exact framing.
    head: bytes = b""
    # Whether the body was framed with chunked transfer coding.
    chunked: bool = False
    trailers: list[bytes] = field(default_factory=list)


class ResponseReader:
    """Parses responses from a byte stream, keeping leftover bytes between them.

    Independent of h11 on purpose: the tests check what the server put on the
    wire, so the parser must not share h11's assumptions.
    """

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.eof = False

    async def _fill(self) -> bool:
        if self.eof:
            return False
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def read_until(self, marker: bytes) -> bytes:
        while (index := self.buffer.find(marker)) < 0:
            if not await self._fill():
                raise EOFError(f"EOF before {marker!r}; have {bytes(self.buffer)!r}")
        data = bytes(self.buffer[: index + len(marker)])
        del self.buffer[: index + len(marker)]
        return data

    async def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._fill():
                raise EOFError(f"EOF after {len(self.buffer)} of {size} bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def read_to_eof(self) -> bytes:
        while await self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    async def at_eof(self) -> bool:
        """True if the peer closed with nothing more to read."""
        if self.buffer:
            return False
        return not await self._fill()

    async def read_head(self) -> RawResponse:
        head = await self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, status, reason = [*lines[0].split(b" ", 2), b""][:3]
        pairs: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            pairs.append((name.strip(), value.strip()))
        headers = Headers(pairs)
        return RawResponse(version, int(status), reason, headers, b"", head)

    async def read_response(self, *, head_request: bool = False) -> RawResponse:
        """The next final response (1xx responses are returned separately, as themselves)."""
        response = await self.read_head()
        headers = response.headers
        if head_request or 100 <= response.status < 200 or response.status in (204, 304):
            return response
        if "chunked" in headers.get_tokens("transfer-encoding"):
            response.chunked = True
            body = bytearray()
            while True:
                size_line = await self.read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (line := await self.read_until(b"\r\n")) != b"\r\n":
                        response.trailers.append(line)
                    break
                body += await self.read_exactly(size)
                assert await self.read_exactly(2) == b"\r\n"
            response.body = bytes(body)
        elif "content-length" in headers:
            response.body = await self.read_exactly(int(headers["content-length"]))
        else:
            response.body = await self.read_to_eof()
        return response


@dataclass
class MemoryClient:
    """The client end of an in-memory connection served by :func:`serve_http_connection`."""

    stream: trio.abc.HalfCloseableStream
    reader: ResponseReader
    conn: Connection
    # Set when serve_http_connection has returned (and the server closed its end).
    finished: trio.Event

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def request(
        self, method: str = "GET", target: str = "/", headers: str = "", body: bytes = b""
    ) -> RawResponse:
        """Send one HTTP/1.1 request (with Host and, when there is a body, Content-Length)."""
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        head = f"{method} {target} HTTP/1.1\r\nHost: test\r\n{length}{headers}\r\n"
        await self.send(head.encode() + body)
        return await self.reader.read_response(head_request=method == "HEAD")

    async def read_response(self, *, head_request: bool = False) -> RawResponse:
        return await self.reader.read_response(head_request=head_request)

    async def assert_closed(self) -> None:
        """The server closed the connection without sending anything more."""
        assert await self.reader.at_eof(), f"unexpected bytes {bytes(self.reader.buffer)!r}"
        await self.finished.wait()


@asynccontextmanager
async def open_memory_connection(
    app: Handler,
    config: HTTPConfig | None = None,
    *,
    shutdown: Shutdown | None = None,
    tls: bool = False,
    lockstep: bool = False,
    wrap: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None,
) -> AsyncIterator[MemoryClient]:
    """Serve *app* on one in-memory connection, as :class:`trio_upgrade.core.Server`
    would: a per-connection nursery, the stream closed when the loop returns.

    *wrap* replaces the server's end of the stream (to inject failures)."""
    async with serve_in_memory(
        app, config, shutdown=shutdown, tls=tls, lockstep=lockstep, wrap=wrap
    ) as (stream, conn, finished):
        yield MemoryClient(stream, ResponseReader(stream), conn, finished)


@asynccontextmanager
async def serve_in_memory(
    app: Handler,
    config: HTTPConfig | None = None,
    *,
    shutdown: Shutdown | None = None,
    tls: bool = False,
    lockstep: bool = False,
    wrap: Callable[[trio.abc.Stream], trio.abc.Stream] | None = None,
) -> AsyncIterator[tuple[trio.abc.HalfCloseableStream, Connection, trio.Event]]:
    """The machinery of :func:`open_memory_connection`: the client's stream, the
    server's :class:`Connection`, and an event set once the HTTP loop has returned."""
    client_stream: trio.abc.HalfCloseableStream
    server_stream: trio.abc.HalfCloseableStream
    if lockstep:
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
    else:
        client_stream, server_stream = trio.testing.memory_stream_pair()
    finished = trio.Event()

    async def serve(task_status: trio.TaskStatus[Connection]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                conn = Connection(
                    server_stream if wrap is None else wrap(server_stream),
                    nursery,
                    client=CLIENT,
                    server=SERVER,
                    tls=tls,
                    shutdown=shutdown,
                )
                task_status.started(conn)
                await serve_http_connection(conn, app, config)
        finally:
            await trio.aclose_forcefully(server_stream)
            finished.set()

    async with trio.open_nursery() as nursery:
        conn: Connection = await nursery.start(serve)
        try:
            yield client_stream, conn, finished
        finally:
            await trio.aclose_forcefully(client_stream)


class FailingSendStream(trio.abc.Stream):
    """Passes everything through, except that send number *fail_at* (1-based) raises
    :class:`trio.BrokenResourceError`. Every send attempt is recorded."""

    def __init__(self, stream: trio.abc.Stream, fail_at: int) -> None:
        self.stream = stream
        self.fail_at = fail_at
        self.sends: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))
        if len(self.sends) == self.fail_at:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError("injected failure")
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def receive_until_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Everything *stream* delivers until the peer closes it."""
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def read_output_until(
    stream: trio.abc.ReceiveStream, pattern: str, seen: list[str]
) -> re.Match[str]:
    """Read a child process's output into *seen* until *pattern* matches the whole
    of it; fail at EOF, showing what was read."""
    with trio.fail_after(30):  # hang guard: the children start in well under a second
        while (found := re.search(pattern, "".join(seen))) is None:
            data = await stream.receive_some()
            if not data:
                raise AssertionError(f"EOF before {pattern!r}; output:\n{''.join(seen)}")
            seen.append(data.decode())
    return found


QUIET = WebSocketConfig(ping_interval=None, compression=None)
"""No keepalive pings and no compression: a test sees only its own frames, as
sent. (A test that wants compression on says so with its own config.)"""


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """One raw WebSocket frame (RFC 6455 §5.2), masked with a fresh key as a client
    sends it (``mask=False`` for a server's frame, or a client breaking the rule)."""
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ``::1`` (containers often cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
