"""Test doubles for the proxy tests: a small h11 client, raw backends, data patterns.

This directory has no ``__init__.py`` (like tests/http): its modules are
imported by their own names.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

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


# A raw recording backend --------------------------------------------------------

Script = Callable[[int, int, bytes], bytes | None]
"""What a :class:`RecordingBackend` answers: ``script(connection, request, head)``
gives the bytes to send for request number *request* (0-based) on connection
number *connection*, or ``None`` to close that connection without answering."""


@dataclass
class Recorded:
    """One connection a :class:`RecordingBackend` accepted."""

    data: bytearray = field(default_factory=bytearray)
    """Every byte received on it, exactly."""
    heads: list[bytes] = field(default_factory=list)
    """The request heads found in :attr:`data`, in order."""
    leftover: bytes = b""
    """Bytes at the end that did not make a complete request."""
    closed: trio.Event = field(default_factory=trio.Event)
    """Set when the connection ended (either side)."""


def _split_request(buffer: bytes) -> tuple[bytes, int] | None:
    """``(head, size of the whole request)`` of the request at the start of
    *buffer*, or ``None`` while it is incomplete. Framing as a backend that
    prefers Content-Length would read it: only well-framed requests give the
    same answer in every reading, and those are all a backend may receive."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buffer[: end + 4]
    start = end + 4
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            chunked = True
    if length or not chunked:
        return (head, start + length) if len(buffer) >= start + length else None
    terminator = buffer.find(b"\r\n0\r\n\r\n", start - 2)
    if terminator < 0:
        return None
    return head, terminator + len(b"\r\n0\r\n\r\n")


class RecordingBackend:
    """A trio TCP server on loopback that records exactly the bytes it receives
    and answers each request with the bytes its script gives."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections: list[Recorded] = []
        self.url = ""
        # Set each time a request head is complete (replaced after each wait).
        self.request_seen = trio.Event()

    @property
    def heads(self) -> list[bytes]:
        return [head for conn in self.connections for head in conn.heads]

    async def start(self, nursery: trio.Nursery) -> str:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        host, port = listeners[0].socket.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        nursery.start_soon(functools.partial(trio.serve_listeners, self._handle, listeners))
        await trio.lowlevel.checkpoint()
        return self.url

    async def _handle(self, stream: trio.SocketStream) -> None:
        index = len(self.connections)
        conn = Recorded()
        self.connections.append(conn)
        buffer = b""
        try:
            async with stream:
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        return
                    if not data:
                        return
                    conn.data += data
                    buffer += data
                    while (found := _split_request(buffer)) is not None:
                        head, size = found
                        buffer = buffer[size:]
                        conn.heads.append(head)
                        self.request_seen.set()
                        self.request_seen = trio.Event()
                        answer = self.script(index, len(conn.heads) - 1, head)
                        if answer is None:
                            return
                        try:
                            await stream.send_all(answer)
                        except trio.BrokenResourceError:
                            return
                    conn.leftover = buffer
        finally:
            conn.leftover = buffer
            conn.closed.set()


def fields_of(head: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of a raw head, names lower-cased, values stripped."""
    fields = []
    for line in head.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            fields.append((name.lower(), value.strip()))
    return fields


def assert_one_framing(backend: RecordingBackend) -> None:
    """Every request the backend received is framed one way, beyond doubt, and
    it received nothing that is not a complete request."""
    for conn in backend.connections:
        for head in conn.heads:
            fields = fields_of(head)
            lengths = [v for n, v in fields if n == b"content-length"]
            codings = [v for n, v in fields if n == b"transfer-encoding"]
            assert not (lengths and codings), head
            assert len(lengths) <= 1 and len(codings) <= 1, head
            assert all(v.isdigit() and (v == b"0" or not v.startswith(b"0")) for v in lengths)
            assert all(v == b"chunked" for v in codings), head
            assert b"\r" not in head.replace(b"\r\n", b""), head
            for line in head.split(b"\r\n")[1:]:
                assert b" :" not in line.partition(b":")[0] + b":", head


def response(status: int, body: bytes = b"", fields: bytes = b"") -> bytes:
    """A raw response with a Content-Length."""
    return b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n%s" % (status, len(body), fields, body)
