"""Graceful shutdown loses no request already sent: what reached the server before
the drain is answered (with ``Connection: close``), and a connection with
nothing pending closes at once."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing
from _http_helpers import ResponseReader, open_memory_connection

from trio_upgrade.core import Server, Shutdown
from trio_upgrade.http import HTTPConfig, Request, Response, Router, serve

MockClock = trio.testing.MockClock
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def make_app(handled: list[int] | None = None) -> Router:
    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        if handled is not None:
            handled.append(1)
        return Response.text("hello")

    return router


async def start_loopback(
    nursery: trio.Nursery, handled: list[int]
) -> tuple[Server, tuple[str, int]]:
    """``make_app(handled)`` served on a loopback port in *nursery* (30 s grace period)."""
    server: Server = await nursery.start(
        lambda task_status: serve(
            make_app(handled), "127.0.0.1:0", grace_period=30, task_status=task_status
        )
    )
    address = server.addresses[0]
    assert isinstance(address, tuple)
    return server, address


async def test_drain_closes_a_connection_with_nothing_pending_before_its_keepalive_timeout(
    autojump_clock: MockClock,
) -> None:
    """With a keep-alive timeout of 1000 s, only the drain can end the
    connection before the clock reaches it."""
    shutdown = Shutdown()
    config = HTTPConfig(keepalive_timeout=1000, header_timeout=1000)
    async with open_memory_connection(make_app(), config, shutdown=shutdown) as client:
        await client.request("GET", "/")
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin()
        await client.assert_closed()
        assert trio.current_time() < 1000


@pytest.mark.parametrize("drain_first", [True, False], ids=["drain first", "bytes first"])
async def test_drain_answers_a_request_that_arrived_as_it_began(drain_first: bool) -> None:
    """The request's bytes reach the server's buffer just after the drain
    cancelled its idle wait (or just before, waking the read that the drain
    then cancels): either way the request is answered, with ``Connection:
    close``, and then the connection closes."""
    shutdown = Shutdown()
    server_side: list[trio.StapledStream[trio.abc.SendStream, trio.abc.ReceiveStream]] = []

    def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        assert isinstance(stream, trio.StapledStream)
        server_side.append(stream)
        return stream

    async with open_memory_connection(make_app(), shutdown=shutdown, wrap=wrap) as client:
        await client.request("GET", "/")
        await trio.testing.wait_all_tasks_blocked()
        # Both in one step, with no checkpoint between: the drain wins the race
        # against the wake-up the bytes would give the idle read.
        receive = server_side[0].receive_stream
        assert isinstance(receive, trio.testing.MemoryReceiveStream)
        if drain_first:
            shutdown.begin()
            receive.put_data(REQUEST)
        else:
            receive.put_data(REQUEST)
            shutdown.begin()
        response = await client.read_response()
        assert response.status == 200 and response.body == b"hello"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_drain_answers_pipelined_requests_already_buffered_one_then_closes() -> None:
    """Two requests in one write, the drain begun while the first is handled:
    the first is answered with close, the second never runs."""
    shutdown = Shutdown()
    handled: list[int] = []
    release = trio.Event()
    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        handled.append(1)
        await release.wait()
        return Response.text("hello")

    async with open_memory_connection(router, shutdown=shutdown) as client:
        await client.send(REQUEST + REQUEST)
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin()
        release.set()
        response = await client.read_response()
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
    assert handled == [1]


async def test_tight_keep_alive_loops_lose_no_request_when_the_server_shuts_down() -> None:
    """N clients send requests back to back over loopback; the server shuts down
    mid-way. Every request the server handled reached its client whole; every
    client ends either on a response saying ``Connection: close`` or on a clean
    end of stream before any byte of a response to a request the server never
    saw (RFC 9112 §9.3.1: safe to retry). Never a reset, never a cut response."""
    handled: list[int] = []
    clients = 20
    outcomes: Counter[str] = Counter()
    received = 0
    warmed = trio.Event()

    async def loop(host: str, port: int) -> None:
        nonlocal received
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            reader = ResponseReader(stream)
            while True:
                try:
                    await stream.send_all(REQUEST)
                except trio.BrokenResourceError:
                    outcomes["closed before the request was sent"] += 1
                    return
                try:
                    if await reader.at_eof():
                        outcomes["closed before the request was read"] += 1
                        return
                    response = await reader.read_response()
                except (trio.BrokenResourceError, EOFError) as exc:
                    outcomes[f"lost: {exc!r}"] += 1
                    return
                assert response.status == 200 and response.body == b"hello"
                received += 1
                if received >= clients * 20:
                    warmed.set()
                if response.headers.get_tokens("connection") == ["close"]:
                    outcomes["Connection: close"] += 1
                    assert await reader.at_eof()
                    return

    async with trio.open_nursery() as nursery:
        server, address = await start_loopback(nursery, handled)
        async with trio.open_nursery() as loops:
            for _ in range(clients):
                loops.start_soon(loop, *address)
            await warmed.wait()
            await server.aclose()
    assert sum(outcomes.values()) == clients
    assert not [o for o in outcomes if o.startswith("lost")], outcomes
    assert received == len(handled), outcomes


# A drain that keeps idle connections (a rolling restart: another process
# accepts on the same sockets) ------------------------------------------------


@pytest.mark.parametrize("first", [True, False], ids=["new connection", "keep-alive"])
async def test_a_drain_keeping_idle_connections_answers_their_next_request_with_close(
    autojump_clock: MockClock, first: bool
) -> None:
    """However long after the drain the request comes (within the connection's
    timeout), it is answered, with ``Connection: close``: the client never
    meets a close racing the request it is sending."""
    shutdown = Shutdown()
    config = HTTPConfig(keepalive_timeout=30, header_timeout=30)
    async with open_memory_connection(make_app(), config, shutdown=shutdown) as client:
        if not first:
            response = await client.request("GET", "/")
            assert response.headers.get_tokens("connection") == []
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin(close_idle=False)
        await trio.sleep(10)  # far past the 50 ms a closing drain waits
        response = await client.request("GET", "/")
        assert response.status == 200 and response.body == b"hello"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_a_drain_keeping_idle_connections_still_ends_one_at_its_keepalive_timeout(
    autojump_clock: MockClock,
) -> None:
    shutdown = Shutdown()
    config = HTTPConfig(keepalive_timeout=30, header_timeout=1000)
    async with open_memory_connection(make_app(), config, shutdown=shutdown) as client:
        await client.request("GET", "/")
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin(close_idle=False)
        await client.assert_closed()
        assert trio.current_time() >= 30


async def test_a_drain_keeping_idle_connections_closes_them_when_told_to_after_all(
    autojump_clock: MockClock,
) -> None:
    """``begin()`` after ``begin(close_idle=False)`` (SIGTERM while a replaced
    worker drains) closes the idle connection before its keep-alive timeout."""
    shutdown = Shutdown()
    config = HTTPConfig(keepalive_timeout=1000, header_timeout=1000)
    async with open_memory_connection(make_app(), config, shutdown=shutdown) as client:
        await client.request("GET", "/")
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin(close_idle=False)
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin()
        await client.assert_closed()
        assert trio.current_time() < 1000


async def test_loopback_clients_that_pause_lose_no_request_to_a_drain_keeping_idle_ones() -> None:
    """Over real sockets (the loop's own socket path): each client sends its
    next request only once the drain has begun, and well after it; every one
    of them gets its answer, with ``Connection: close``, and then the end of
    the stream. A closing drain would have closed them all first."""
    clients = 5
    handled: list[int] = []
    outcomes: Counter[str] = Counter()
    ready = 0
    all_ready = trio.Event()

    async def client(host: str, port: int, server: Server) -> None:
        nonlocal ready
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            reader = ResponseReader(stream)
            await stream.send_all(REQUEST)
            first = await reader.read_response()
            assert first.headers.get_tokens("connection") == []
            ready += 1
            if ready == clients:
                all_ready.set()
            await server.shutdown.wait()
            await trio.sleep(0.2)  # past the probe a closing drain would make
            await stream.send_all(REQUEST)
            response = await reader.read_response()
            assert response.status == 200 and response.body == b"hello"
            outcomes["|".join(response.headers.get_tokens("connection"))] += 1
            assert await reader.at_eof()

    async with trio.open_nursery() as nursery:
        server, address = await start_loopback(nursery, handled)
        async with trio.open_nursery() as loops:
            for _ in range(clients):
                loops.start_soon(client, *address, server)
            await all_ready.wait()
            await server.aclose(close_idle=False)
    assert outcomes == {"close": clients}
    assert len(handled) == 2 * clients
