"""Attack clients for the security tests, loopback only: slowloris, held requests."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from trio_upgrade.core import Server
from trio_upgrade.http import Handler, serve

# A request head that never ends: the request line and one field, no blank line.
PARTIAL_HEAD = b"GET / HTTP/1.1\r\nHost: test\r\n"


@asynccontextmanager
async def serving(app: Handler, **options: object) -> AsyncIterator[Server]:
    """*app* served on an ephemeral loopback port for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            functools.partial(serve, app, "127.0.0.1:0", **options)  # type: ignore[arg-type]
        )
        try:
            yield server
        finally:
            await server.aclose()


def port_of(server: Server) -> int:
    address = server.addresses[0]
    assert isinstance(address, tuple)
    return address[1]


async def wait_for_connections(server: Server, count: int) -> None:
    """Wait until the server serves *count* connections (a hang guard bounds it)."""
    with trio.fail_after(30):
        while True:  # the server has no event to wait on: poll
            if server.connection_count >= count:
                return
            await trio.sleep(0.005)


async def slowloris(port: int, *, local_address: str | None = None) -> trio.SocketStream:
    """A connection that has sent a request head it never finishes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=local_address)
    await stream.send_all(PARTIAL_HEAD)
    return stream


async def reconnecting_slowloris(port: int, *, interval: float = 0.5) -> None:
    """Forever: connect, start a head, add a field every *interval*; when closed, again."""
    while True:
        try:
            stream = await slowloris(port)
        except OSError:
            await trio.sleep(interval)
            continue
        try:
            async with stream:
                while True:
                    with trio.move_on_after(interval):
                        if not await stream.receive_some():
                            break  # shed (or timed out): reconnect
                    await stream.send_all(b"X-Slow: 1\r\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def read_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    data = bytearray()
    with trio.fail_after(30):  # hang guard, not a measurement
        try:
            while chunk := await stream.receive_some():
                data += chunk
        except trio.BrokenResourceError:
            pass  # a reset after the data: what came before still counts
    return bytes(data)
