"""Sessions that were idle first: what an idle session leaves out must appear when needed.

An idle session has no receive channel (it is made with the first message),
its application task waits outside any channel, and a plain TCP stream is
read through its socket; each of these must behave like the general case.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import struct
from dataclasses import replace

import pytest
import trio
import trio.testing

from trio_upgrade._wire import RequestParser
from trio_upgrade.ws import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    WebSocket,
    WebSocketConfig,
    serve_websocket,
    websocket_session,
)

from ._helpers import QUIET, session_pair


async def test_a_receive_waiting_before_the_first_message_gets_it() -> None:
    async with session_pair() as (server, client), trio.open_nursery() as nursery:
        got: list[str | bytes] = []

        async def receiver() -> None:
            got.append(await server.receive())

        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await client.send("first")
        await client.send(b"second")
    assert got == ["first"]
    # The second message stayed queued for the next receive.
    assert await server.receive() == b"second"


async def test_a_close_wakes_the_application_waiting_on_an_idle_session() -> None:
    async with session_pair() as (server, client), trio.open_nursery() as nursery:
        ended: list[object] = []

        async def receiver() -> None:
            ended.extend([m async for m in server])
            ended.append("ended")

        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose(1000, "bye")
    assert ended == ["ended"]
    assert (server.close_code, server.close_reason) == (1000, "bye")


async def test_an_abnormal_close_raises_in_a_receive_waiting_on_an_idle_session() -> None:
    async with session_pair() as (server, client), trio.open_nursery() as nursery:
        errors: list[ConnectionClosed] = []

        async def receiver() -> None:
            try:
                await server.receive()
            except ConnectionClosed as exc:
                errors.append(exc)

        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await client.aclose(4000, "app says no")
    assert [(type(e), e.code) for e in errors] == [(ConnectionClosedError, 4000)]


async def test_our_own_close_wakes_another_task_waiting_on_an_idle_session() -> None:
    async with session_pair() as (server, _client), trio.open_nursery() as nursery:
        errors: list[ConnectionClosed] = []

        async def receiver() -> None:
            try:
                await server.receive()
            except ConnectionClosed as exc:
                errors.append(exc)

        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await server.aclose(1001)
    assert [(type(e), e.code) for e in errors] == [(ConnectionClosedOK, 1001)]


async def test_two_tasks_waiting_on_an_idle_session_each_get_a_message() -> None:
    async with session_pair() as (server, client), trio.open_nursery() as nursery:
        got: list[str | bytes] = []

        async def receiver() -> None:
            got.append(await server.receive())

        nursery.start_soon(receiver)
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        await client.send("a")
        await client.send("b")
    assert sorted(got) == ["a", "b"]


async def test_cancelling_one_of_two_waiting_tasks_loses_nothing() -> None:
    async with session_pair() as (server, client), trio.open_nursery() as nursery:
        got: list[str | bytes] = []
        first = trio.CancelScope()

        async def cancelled() -> None:
            with first:
                await server.receive()

        async def receiver() -> None:
            got.append(await server.receive())

        nursery.start_soon(cancelled)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        first.cancel()
        await trio.testing.wait_all_tasks_blocked()
        await client.send("kept")
    assert got == ["kept"]


async def test_backpressure_on_a_session_whose_application_waited_first() -> None:
    """The reader fills the channel it has just made, then stops reading."""
    server_config = replace(QUIET, receive_queue=2, min_read_size=64, max_read_size=64)
    client_config = replace(QUIET, send_buffer=256)
    sent = 0
    first: list[str | bytes] = []

    async def sender(client: WebSocket) -> None:
        nonlocal sent
        for i in range(60):
            await client.send(b"%03d" % i * 20)
            sent += 1

    async def receive_first(server: WebSocket) -> None:
        first.append(await server.receive())

    async with (
        session_pair(server_config, client_config, lockstep=True) as (server, client),
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(receive_first, server)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(sender, client)
        await trio.testing.wait_all_tasks_blocked()
        # One message taken, two queued, the reader blocked on the next one;
        # lockstep streams buffer nothing and the client waits above 256 bytes.
        assert len(first) == 1
        assert sent < 10
        rest = [await server.receive() for _ in range(59)]
    assert first + rest == [b"%03d" % i * 20 for i in range(60)]


# -- over TCP, where the reader reads the socket itself -------------------------


async def _serve(nursery: trio.Nursery, handler: object) -> int:
    server = await nursery.start(
        lambda task_status: serve_websocket(
            handler,  # type: ignore[arg-type]
            "127.0.0.1:0",
            config=WebSocketConfig(ping_interval=None, compression=None),
            task_status=task_status,
        )
    )
    port: int = server.addresses[0][1]
    return port


async def _handshake(port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    await stream.send_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += await stream.receive_some(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert head.endswith(b"\r\n\r\n")  # nothing after the head: the session is idle
    return stream


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + body


async def test_an_idle_tcp_session_echoes_when_the_peer_speaks() -> None:
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, echo)
        stream = await _handshake(port)
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(_masked(0x2, b"after a while"))
        with trio.fail_after(5):
            reply = await stream.receive_some(4096)
        assert reply == b"\x82\x0dafter a while"
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_reset_on_an_idle_tcp_session_is_1006_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    codes: list[int] = []
    ended = trio.Semaphore(0)

    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            codes.append(exc.code)
        finally:
            ended.release()

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, handler)
        stream = await _handshake(port)
        await trio.testing.wait_all_tasks_blocked()
        # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        with trio.fail_after(5):
            await ended.acquire()
        # A second connection is served as usual.
        second = await _handshake(port)
        await second.send_all(_masked(0x8, struct.pack("!H", 1000)))
        with trio.fail_after(5):
            await ended.acquire()
        await second.aclose()
        nursery.cancel_scope.cancel()
    assert codes == [1006, 1000]
    # A reset is the peer's business: nothing is logged as a server error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- websocket_session(..., nursery=...): no nursery of its own ------------------


async def test_a_session_in_the_callers_nursery_runs_there_and_closes_with_1000() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with (
        trio.open_nursery() as nursery,
        websocket_session(right, config=QUIET, client=True) as client,
    ):
        async with websocket_session(left, config=QUIET, nursery=nursery) as server:
            assert len(nursery.child_tasks) == 1  # the reader; the writer comes later
            await client.send("hi")
            assert await server.receive() == "hi"
            await server.send("back")
        assert [m async for m in client] == ["back"]
        assert (client.close_code, server.close_code) == (1000, 1000)


async def test_an_exception_in_a_block_with_a_nursery_closes_with_1011_and_propagates() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with (
        trio.open_nursery() as nursery,
        websocket_session(right, config=QUIET, client=True) as client,
    ):
        with pytest.raises(KeyError):
            async with websocket_session(left, config=QUIET, nursery=nursery):
                raise KeyError("app bug")
        with pytest.raises(ConnectionClosedError) as info:
            await client.receive()
        assert info.value.code == 1011


async def test_a_cancelled_block_with_a_nursery_drops_the_connection_and_its_tasks_end() -> None:
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                async with websocket_session(left, config=QUIET, nursery=nursery) as server:
                    scope.cancel()
                    await trio.sleep_forever()
            assert server.close_code == 1006
            # The peer sees the stream closed; the session's tasks end by themselves.
            assert await right.receive_some() == b""


# -- a quiet session lets go of its writer and receive channel --------------------

TICKING = replace(QUIET, ping_interval=10, ping_timeout=5)


def _task_names(nursery: trio.Nursery) -> list[str]:
    return sorted(task.name.rpartition("_")[2] for task in nursery.child_tasks)


async def test_a_quiet_session_lets_its_writer_go_and_works_as_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    async with (
        trio.open_nursery() as nursery,
        websocket_session(right, config=TICKING, client=True) as client,
    ):
        async with websocket_session(left, config=TICKING, nursery=nursery) as server:
            await client.send("one")
            assert await server.receive() == "one"
            await server.send("two")
            assert await client.receive() == "two"
            # The reader and the writer; the shared keeper runs in this nursery too.
            assert _task_names(nursery) == ["reader", "upgrade.ws keepalive", "writer"]
            # Two keepalive ticks without a send or a receive; the pings go out
            # through writers that end once they have written them.
            await trio.sleep(35)
            assert _task_names(nursery) == ["reader", "upgrade.ws keepalive"]
            await client.send("three")
            assert await server.receive() == "three"
            await server.send("four")
            assert await client.receive() == "four"
        assert [m async for m in client] == []
        assert (client.close_code, server.close_code) == (1000, 1000)


async def test_an_application_waiting_through_quiet_ticks_gets_the_next_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with session_pair(TICKING, TICKING) as (server, client), trio.open_nursery() as nursery:
        got: list[str | bytes] = []

        async def receiver() -> None:
            async for message in server:
                got.append(message)

        nursery.start_soon(receiver)
        await client.send("before")
        await trio.sleep(35)
        await client.send("after")
        await trio.sleep(35)
        await client.aclose()
    assert got == ["before", "after"]


async def test_a_quiet_session_still_fails_a_peer_that_stops_answering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    async with websocket_session(left, config=TICKING) as server:
        # Some traffic first, then the peer goes silent: it never answers a ping.
        await right.send_all(_masked(0x1, b"hello"))
        assert await server.receive() == "hello"
        await server.send("hi")
        with pytest.raises(ConnectionClosedError) as info:
            await server.receive()
        assert info.value.code == 1011
        await right.aclose()


async def test_backpressure_after_the_session_let_its_channel_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server_config = replace(TICKING, receive_queue=2, min_read_size=64, max_read_size=64)
    client_config = replace(TICKING, send_buffer=256)
    sent = 0

    async def sender(client: WebSocket) -> None:
        nonlocal sent
        for i in range(60):
            await client.send(b"%03d" % i * 20)
            sent += 1

    async with session_pair(server_config, client_config, lockstep=True) as (server, client):
        await client.send("first")
        assert await server.receive() == "first"
        await trio.sleep(35)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, client)
            await trio.testing.wait_all_tasks_blocked()
            assert sent < 10
            received = [await server.receive() for _ in range(60)]
        assert received == [b"%03d" % i * 20 for i in range(60)]


def test_common_handshake_fields_are_shared_between_requests() -> None:
    """A session keeps its request's headers: common names and values are not copied per request."""
    head = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    head += b"X-Thing:  Odd \r\n\r\n"
    first, second = RequestParser().feed(head), RequestParser().feed(head)
    assert first is not None and second is not None
    one, two = first.fields, second.fields
    assert one == [
        (b"host", b"a"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"x-thing", b"Odd"),
    ]
    assert all(a is b for a, b in zip(one[1] + one[2], two[1] + two[2], strict=True))
