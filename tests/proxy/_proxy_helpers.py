"""Test doubles for the proxy tests: a small h11 client, raw backends, data patterns.

This directory has no ``__init__.py`` (like tests/http): its modules are
imported by their own names.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import h11
import trio

from trio_upgrade.core import Server
from trio_upgrade.http import Handler, HTTPConfig, serve

Address = tuple[str, int] | str


def url_of(server: Server) -> str:
    """The backend URL of a server's first address."""
    address = server.addresses[0]
    if isinstance(address, str):
        return f"unix:{address}"
    return f"http://{address[0]}:{address[1]}"


async def start_http(
    nursery: trio.Nursery, app: Handler, bind: str, config: HTTPConfig | None = None
) -> Server:
    server: Server = await nursery.start(
        functools.partial(serve, app, bind, config=config, grace_period=0.5)
    )
    return server


async def open_stream(address: Address) -> trio.SocketStream:
    if isinstance(address, str):
        return await trio.open_unix_socket(address)
    return await trio.open_tcp_stream(*address)


async def start_raw(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]], path: str
) -> str:
    """A raw backend on a Unix socket: *handler* gets each accepted stream
    (closed for it afterwards). Returns the backend URL."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await handler(stream)

    nursery.start_soon(functools.partial(trio.serve_listeners, handle, [listener]))
    await trio.lowlevel.checkpoint()
    return f"unix:{path}"


async def read_request_head(stream: trio.abc.ReceiveStream) -> tuple[bytes, bytes]:
    """Read one request head off *stream*: (head, bytes after it)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"EOF in request head: {buffer!r}")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def pattern(offset: int, size: int) -> bytes:
    """*size* bytes of a repeating, position-dependent pattern starting at *offset*."""
    block = bytes(range(251))  # a prime length: chunk borders never line up with it
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (block * reps)[start : start + size]


def pattern_digest(size: int, chunk: int = 65536) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, chunk):
        digest.update(pattern(offset, min(chunk, size - offset)))
    return digest.hexdigest()


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        found = [v for n, v in self.headers if n == name]
        assert len(found) <= 1, f"{name!r} appears {len(found)} times"
        return found[0] if found else None


class Client:
    """An HTTP/1.1 client on one connection, on h11, for driving the proxy."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, address: Address) -> Client:
        return cls(await open_stream(address))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send_request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | AsyncIterable[bytes] = b"",
    ) -> None:
        h = self.h11
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
        all_headers = list(headers)
        if not any(k.lower() == "host" for k, _ in all_headers):
            all_headers.insert(0, ("host", "proxy.test"))
        framed = any(k.lower() in ("content-length", "transfer-encoding") for k, _ in all_headers)
        if isinstance(body, bytes):
            if body and not framed:
                all_headers.append(("content-length", str(len(body))))
            data = h.send(h11.Request(method=method, target=target, headers=all_headers))
            assert data is not None
            if body:
                data += h.send(h11.Data(data=body)) or b""
            await self.stream.send_all(data + (h.send(h11.EndOfMessage()) or b""))
            return
        if not framed:
            all_headers.append(("transfer-encoding", "chunked"))
        data = h.send(h11.Request(method=method, target=target, headers=all_headers))
        assert data is not None
        await self.stream.send_all(data)
        chunks = aiter(body)
        try:
            async for chunk in chunks:
                await self.stream.send_all(h.send(h11.Data(data=chunk)) or b"")
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        await self.stream.send_all(h.send(h11.EndOfMessage()) or b"")

    async def _next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        h = self.h11
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                h.receive_data(await self.stream.receive_some(65536))
                continue
            return event

    async def read_head(self) -> h11.Response:
        while True:
            event = await self._next()
            if isinstance(event, h11.Response):
                return event
            assert isinstance(event, h11.InformationalResponse), event

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The current response's body, as it arrives (h11 raises on a short body)."""
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def read_response(self) -> Reply:
        head = await self.read_head()
        chunks = self.body_chunks()
        body = b"".join([chunk async for chunk in chunks])
        return Reply(head.status_code, list(head.headers), body)

    async def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | AsyncIterable[bytes] = b"",
    ) -> Reply:
        await self.send_request(method, target, headers, body)
        return await self.read_response()


async def fetch(
    address: Address,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | AsyncIterable[bytes] = b"",
) -> Reply:
    """One request on a new connection."""
    client = await Client.open(address)
    try:
        return await client.request(method, target, headers, body)
    finally:
        await client.aclose()
