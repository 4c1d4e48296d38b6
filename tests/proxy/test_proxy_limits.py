"""The proxy's limits and timeouts, each shown to fire, and what it drops
from responses (the backend's Date, trailers).

Timeouts run on the ``manual_clock`` fixture: each test waits until the proxy
is blocked where the limit applies, then jumps past it. No test measures time.
"""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from _proxy_env import start_proxy
from _proxy_helpers import (
    Client,
    RecordingBackend,
    fetch,
    fields_of,
    read_request_head,
    response,
    start_http,
    start_raw,
)

from trio_upgrade.proxy import Proxy, ProxyConfig

LONG = 600.0  # every limit under test: far beyond any real wait in these tests


def past_the_jump() -> trio.CancelScope:
    """A hang guard for a wait that spans a jump (which moves every deadline
    of the run, guards included)."""
    return trio.fail_after(LONG + 30)


async def jump_when_blocked(clock: trio.testing.MockClock, seconds: float) -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    clock.jump(seconds)


async def talk(address: tuple[str, int], data: bytes) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    received = b""
    async with stream:
        await stream.send_all(data)
        with trio.fail_after(30):  # a hang guard, not a timing assertion
            while chunk := await stream.receive_some(65536):
                received += chunk
    return received


async def test_a_backend_that_does_not_accept_is_504_after_connect_timeout(
    manual_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # A listener with a full accept queue: the kernel drops further SYNs, so a
    # connection attempt hangs (on loopback, without sending anything elsewhere).
    listener = socket.socket()
    filler = socket.socket()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        port = listener.getsockname()[1]
        proxy = Proxy(f"http://127.0.0.1:{port}", config=ProxyConfig(connect_timeout=LONG))
        async with proxy:
            address = await start_proxy(nursery, proxy)
            nursery.start_soon(jump_when_blocked, manual_clock, LONG + 1)
            reply = await fetch(address, "GET", "/")
    finally:
        filler.close()
        listener.close()
    assert (reply.status, reply.body) == (504, b"504 Gateway Timeout\n")


@pytest.mark.parametrize("size", [4000, 200_000])
async def test_a_response_head_over_max_response_head_size_is_502(
    nursery: trio.Nursery, size: int
) -> None:
    """Whether the head arrives whole in one read (h11 would not check it) or
    over many; a limit above the head lets it through."""
    big = b"x-big: " + b"a" * size + b"\r\n"
    backend = RecordingBackend(lambda *_: response(200, b"ok", big))
    url = await backend.start(nursery)
    async with Proxy(url, config=ProxyConfig(max_response_head_size=2048)) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
        # The client and the front server have their own head limits: only
        # the small head goes all the way through.
        roomy = Proxy(url, config=ProxyConfig(max_response_head_size=size + 1024))
        async with roomy:
            fits = (
                await fetch(await start_proxy(nursery, roomy), "GET", "/") if size < 8000 else None
            )
    assert reply.status == 502
    if fits is not None:
        assert (fits.status, fits.body) == (200, b"ok")


async def test_a_stalled_body_is_cut_after_read_timeout(
    manual_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    backend = RecordingBackend(
        lambda *_: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10
    )
    url = await backend.start(nursery)
    async with Proxy(url, config=ProxyConfig(read_timeout=LONG)) as proxy:
        address = await start_proxy(nursery, proxy)
        client = await Client.open(address)
        try:
            await client.send_request("GET", "/")
            head = await client.read_head()
            received = b""
            chunks = client.body_chunks()
            received += await chunks.__anext__()
            assert received == b"x" * 10
            nursery.start_soon(jump_when_blocked, manual_clock, LONG + 1)
            with past_the_jump(), pytest.raises(Exception, match="complete message body"):
                async for chunk in chunks:
                    received += chunk
        finally:
            await client.aclose()
    assert head.status_code == 200
    assert received == b"x" * 10
    with past_the_jump():
        await backend.connections[0].closed.wait()


async def test_the_backend_date_is_replaced(nursery: trio.Nursery) -> None:
    old = b"Sun, 06 Nov 1994 08:49:37 GMT"
    backend = RecordingBackend(lambda *_: response(200, b"ok", b"date: " + old + b"\r\n"))
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
    date = reply.header(b"date")
    assert date is not None and date != old
    assert b"1994" not in date


async def test_trailers_are_dropped(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(
        lambda *_: (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-secret\r\n\r\n"
            b"5\r\nhello\r\n0\r\nx-secret: s3cr3t\r\n\r\n"
        )
    )
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await talk(address, b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"s3cr3t" not in answer
    assert b"trailer" not in [n for n, _ in fields_of(head)]
    assert b"hello" in body


# Tunnels --------------------------------------------------------------------------

UPGRADE = b"GET /raw HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\n"
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\n"


async def read_head_of(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        data += chunk
    return data


async def test_a_half_closed_tunnel_ends_after_half_close_timeout(
    manual_clock: trio.testing.MockClock, nursery: trio.Nursery, sock_dir: str
) -> None:
    backend_saw_eof = trio.Event()

    async def never_closes(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(SWITCH)
        while await stream.receive_some(65536):
            pass
        backend_saw_eof.set()
        await trio.sleep_forever()

    url = await start_raw(nursery, never_closes, f"{sock_dir}/half.sock")
    config = ProxyConfig(half_close_timeout=LONG)
    async with Proxy(url, config=config, upgrades=("x-raw",)) as proxy:
        address = await start_proxy(nursery, proxy)
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            assert (await read_head_of(stream)).startswith(b"HTTP/1.1 101 ")
            await stream.send_eof()
            with trio.fail_after(30):
                await backend_saw_eof.wait()
            assert proxy.statistics().open_tunnels == 1
            nursery.start_soon(jump_when_blocked, manual_clock, LONG + 1)
            with past_the_jump():
                assert await stream.receive_some(65536) == b""
        with past_the_jump():
            while proxy.statistics().open_tunnels:
                await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_a_tunnel_is_cancelled_at_the_end_of_the_grace_period(
    manual_clock: trio.testing.MockClock, nursery: trio.Nursery, sock_dir: str
) -> None:
    backend_ended = trio.Event()

    async def echo(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(SWITCH)
        try:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)
        finally:
            backend_ended.set()

    url = await start_raw(nursery, echo, f"{sock_dir}/grace.sock")
    async with Proxy(url, upgrades=("x-raw",)) as proxy:
        server = await start_http(nursery, proxy, "127.0.0.1:0")
        server.grace_period = LONG
        address = server.addresses[0]
        assert isinstance(address, tuple)
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            assert (await read_head_of(stream)).startswith(b"HTTP/1.1 101 ")
            async with trio.open_nursery() as inner:
                inner.start_soon(server.aclose)
                # Draining: the tunnel still carries bytes during the grace period.
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                await stream.send_all(b"still here")
                echoed = b""
                while len(echoed) < len(b"still here"):
                    echoed += await stream.receive_some(65536)
                assert echoed == b"still here"
                inner.start_soon(jump_when_blocked, manual_clock, LONG + 1)
                with past_the_jump():
                    assert await stream.receive_some(65536) == b""
            with past_the_jump():
                await backend_ended.wait()
        assert proxy.statistics().open_tunnels == 0
