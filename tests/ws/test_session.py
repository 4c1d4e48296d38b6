"""The WebSocket session over in-memory streams: messages, fragments, ping, close, limits."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import trio
import trio.testing
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from trio_upgrade.ws import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeRequest,
    WebSocket,
    websocket_session,
)

from ._helpers import QUIET, frame, server_and_raw_peer, session_pair

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


async def test_text_and_binary_messages_keep_their_type() -> None:
    async with session_pair() as (server, client):
        await client.send("héllo")
        await client.send(b"\x00\x01")
        await client.send(bytearray(b"ba"))
        await client.send(memoryview(b"mv"))
        assert await server.receive() == "héllo"
        assert await server.receive() == b"\x00\x01"
        assert await server.receive() == b"ba"
        assert await server.receive() == b"mv"
        await server.send("back")
        assert await client.receive() == "back"


async def test_send_rejects_non_message_types() -> None:
    async with session_pair() as (server, client):
        with pytest.raises(TypeError):
            await client.send(42)  # type: ignore[arg-type]
        # Refused before anything was queued: no writer task was started for
        # it, and the session still works.
        assert client._send_in is None
        await client.send("after")
        assert await server.receive() == "after"


async def test_async_for_ends_on_normal_close_and_records_code() -> None:
    async with session_pair() as (server, client):
        await client.send("one")
        await client.send("two")
        await client.aclose(1000, "done")
        assert [m async for m in server] == ["one", "two"]
        assert (server.close_code, server.close_reason) == (1000, "done")
        assert client.close_code == 1000


async def test_async_for_raises_on_abnormal_close() -> None:
    async with session_pair() as (server, client):
        await client.aclose(4001, "custom")
        with pytest.raises(ConnectionClosedError) as info:
            async for _ in server:
                pass
        assert (info.value.code, info.value.reason) == (4001, "custom")


async def test_server_initiated_close_reaches_the_client() -> None:
    async with session_pair() as (server, client):
        await server.aclose(1001, "going away")
        with pytest.raises(ConnectionClosedOK) as info:
            await client.receive()
        assert info.value.code == 1001
        assert server.closed and client.closed


async def test_send_after_close_raises_connection_closed() -> None:
    async with session_pair() as (server, client):
        await client.aclose()
        with pytest.raises(ConnectionClosed):
            await client.send("late")
        with pytest.raises(ConnectionClosed):
            await client.ping()
        with pytest.raises(ConnectionClosed):
            await server.receive()


async def test_aclose_is_idempotent() -> None:
    async with session_pair() as (_, client):
        await client.aclose()
        await client.aclose(4000)
        assert client.close_code == 1000


async def test_send_fragments_from_sync_and_async_iterables() -> None:
    async def chunks() -> AsyncIterator[str]:
        for part in ["a", "b", "c"]:
            yield part

    async with session_pair() as (server, client):
        await client.send_fragments([b"x", b"y"])
        await client.send_fragments(chunks())
        await client.send_fragments([])
        await client.send("after")
        assert await server.receive() == b"xy"
        assert await server.receive() == "abc"
        assert await server.receive() == "after"


async def test_send_fragments_puts_one_frame_per_chunk_on_the_wire() -> None:
    async with server_and_raw_peer() as (server, peer):
        await server.send_fragments(["ab", "cd", "ef"])
        frames = []
        while len(frames) < 3:
            event = await peer.next_event()
            assert isinstance(event, TextMessage)
            frames.append((event.data, event.message_finished))
        assert frames == [("ab", False), ("cd", False), ("ef", True)]


async def test_send_fragments_refuses_mixed_chunk_types() -> None:
    async with session_pair() as (_, client):
        with pytest.raises(TypeError):
            await client.send_fragments(["a", b"b"])  # type: ignore[list-item]
        # The first chunk was still unsent, so the session is intact.
        assert not client.closed


async def test_interrupted_fragmented_send_closes_with_1011() -> None:
    def broken() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise RuntimeError("source failed")

    async with session_pair() as (server, client):
        with pytest.raises(RuntimeError):
            await client.send_fragments(broken())
        assert client.close_code == 1011
        with pytest.raises(ConnectionClosedError):
            await server.receive()


async def test_receive_chunks_streams_a_big_message_in_pieces() -> None:
    config = replace(QUIET, max_message_size=8 << 20)
    payload = bytes(range(256)) * 8192  # 2 MiB
    async with session_pair(config, config) as (server, client):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send, payload)
            chunks = [chunk async for chunk in server.receive_chunks()]
        assert len(chunks) > 1
        assert b"".join(chunks) == payload  # type: ignore[arg-type]


async def test_receive_chunks_yields_a_small_message_whole() -> None:
    async with session_pair() as (server, client):
        await client.send("small")
        assert [c async for c in server.receive_chunks()] == ["small"]


async def test_abandoned_chunked_message_is_skipped_by_the_next_receive() -> None:
    config = replace(QUIET, max_message_size=8 << 20)
    async with session_pair(config, config) as (server, client), trio.open_nursery() as nursery:
        nursery.start_soon(client.send, b"z" * (1 << 20))
        async for chunk in server.receive_chunks():
            assert chunk
            break
        await client.send("next")
        assert await server.receive() == "next"


async def test_fragmented_message_from_peer_is_joined() -> None:
    async with server_and_raw_peer() as (server, peer):
        await peer.send_raw(frame(TEXT, b"he", fin=False) + frame(PING, b"p"))
        await peer.send_raw(frame(0x0, b"llo"))
        assert await server.receive() == "hello"
        pong = await peer.next_event()
        assert isinstance(pong, Pong) and pong.payload == b"p"


async def test_ping_returns_the_round_trip_time() -> None:
    async with session_pair() as (server, client):
        rtt = await client.ping()
        assert rtt >= 0
        assert await server.ping(b"custom") >= 0
        with pytest.raises(ValueError):
            await client.ping(b"x" * 126)


async def test_peer_pings_are_answered_without_the_application() -> None:
    async with server_and_raw_peer() as (_, peer):
        await peer.send(Ping(payload=b"are you there"))
        event = await peer.next_event()
        assert isinstance(event, Pong)
        assert event.payload == b"are you there"


async def test_a_pong_answers_every_earlier_ping() -> None:
    async with server_and_raw_peer() as (server, peer):
        results: list[float] = []

        async def ping(payload: bytes) -> None:
            results.append(await server.ping(payload))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping, b"1")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ping, b"2")
            await trio.testing.wait_all_tasks_blocked()
            await peer.send(Pong(payload=b"2"))
        assert len(results) == 2


async def test_pending_ping_raises_when_the_session_closes() -> None:
    errors: list[BaseException] = []

    async def ping(ws: WebSocket) -> None:
        try:
            await ws.ping()
        except ConnectionClosed as exc:
            errors.append(exc)

    async with server_and_raw_peer() as (server, peer), trio.open_nursery() as nursery:
        nursery.start_soon(ping, server)
        await trio.testing.wait_all_tasks_blocked()
        await peer.stream.aclose()
    assert [type(e) for e in errors] == [ConnectionClosedError]


async def _server_close_code(*chunks: bytes, config: object = QUIET) -> tuple[int, int | None]:
    """Feed raw bytes to a server; return the code it sent and the code the app sees."""
    async with server_and_raw_peer(config) as (server, peer):  # type: ignore[arg-type]
        for chunk in chunks:
            await peer.send_raw(chunk)
        events = await peer.events_until_eof()
        with pytest.raises(ConnectionClosedError):
            while True:
                await server.receive()
    closes = [e for e in events if isinstance(e, CloseConnection)]
    return closes[0].code, server.close_code


@pytest.mark.parametrize(
    "data",
    [
        frame(TEXT, b"x", mask=False),  # clients must mask
        frame(0x3, b""),  # reserved opcode
        frame(TEXT, b"x", rsv=0b100),  # RSV1 without an extension
        frame(PING, b"x", fin=False),  # fragmented control frame
        frame(0x0, b"x"),  # continuation without a message
        frame(CLOSE, b"\x03"),  # one-byte close payload
        frame(CLOSE, struct.pack("!H", 999)),  # invalid close code
    ],
)
async def test_protocol_violations_fail_the_connection_with_1002(data: bytes) -> None:
    assert await _server_close_code(data) == (1002, 1002)


async def test_invalid_utf8_fails_with_1007() -> None:
    assert await _server_close_code(frame(TEXT, b"\xff\xfe")) == (1007, 1007)


async def test_invalid_utf8_split_across_fragments_fails_with_1007() -> None:
    data = frame(TEXT, b"ok\xe2", fin=False) + frame(0x0, b"\x28")
    assert await _server_close_code(data) == (1007, 1007)


async def test_message_over_the_limit_fails_with_1009() -> None:
    config = replace(QUIET, max_message_size=1000)
    assert await _server_close_code(frame(BINARY, b"x" * 1001), config=config) == (1009, 1009)


async def test_fragmented_message_over_the_limit_fails_with_1009() -> None:
    config = replace(QUIET, max_message_size=1000)
    data = frame(BINARY, b"x" * 600, fin=False) + frame(0x0, b"x" * 600)
    assert await _server_close_code(data, config=config) == (1009, 1009)


async def test_huge_declared_length_fails_before_buffering_it() -> None:
    """A header announcing 2**62 bytes fails once the limit is passed, not after."""
    config = replace(QUIET, max_message_size=1000)
    head = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 62) + b"\0\0\0\0"
    assert await _server_close_code(head + b"x" * 2000, config=config) == (1009, 1009)


async def test_abrupt_disconnect_is_connection_closed_1006() -> None:
    async with server_and_raw_peer() as (server, peer):
        await peer.send_raw(frame(TEXT, b"last words"))
        await peer.stream.aclose()
        assert await server.receive() == "last words"
        with pytest.raises(ConnectionClosedError) as info:
            await server.receive()
        assert info.value.code == 1006
        with pytest.raises(ConnectionClosedError):
            await server.send("anyone?")


async def test_close_without_status_is_1005_and_ends_async_for() -> None:
    async with server_and_raw_peer() as (server, peer):
        await peer.send_raw(frame(CLOSE, b""))
        assert [m async for m in server] == []
        assert server.close_code == 1005
        events = await peer.events_until_eof()
        assert isinstance(events[-1], CloseConnection)


async def test_peer_close_is_echoed_and_the_server_closes_the_stream() -> None:
    async with server_and_raw_peer() as (server, peer):
        await peer.send(CloseConnection(code=4321, reason="bye"))
        events = await peer.events_until_eof()
        assert [(e.code, e.reason) for e in events if isinstance(e, CloseConnection)] == [
            (4321, "bye")
        ]
        assert server.close_code == 4321


async def test_close_timeout_bounds_waiting_for_a_silent_peer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = replace(QUIET, close_timeout=5)
    async with server_and_raw_peer(config) as (server, peer):
        start = trio.current_time()
        await server.aclose()
        assert trio.current_time() - start == pytest.approx(5)
        events = await peer.events_until_eof()
        assert isinstance(events[-1], CloseConnection)


async def test_keepalive_fails_a_peer_that_stops_answering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = replace(QUIET, ping_interval=10, ping_timeout=5, close_timeout=1)
    async with server_and_raw_peer(config) as (server, peer):
        with pytest.raises(ConnectionClosedError) as info:
            await server.receive()
        assert info.value.code == 1011
        assert trio.current_time() == pytest.approx(15, abs=1.5)
        events = await peer.events_until_eof()
        assert isinstance(events[0], Ping)
        assert isinstance(events[-1], CloseConnection) and events[-1].code == 1011


async def test_keepalive_keeps_an_answering_peer(autojump_clock: trio.testing.MockClock) -> None:
    config = replace(QUIET, ping_interval=10, ping_timeout=5)
    async with session_pair(config, config) as (server, client):
        await trio.sleep(100)
        await client.send("still here")
        assert await server.receive() == "still here"


async def test_slow_application_stops_the_reader_and_slow_peer_blocks_send() -> None:
    """Backpressure both ways: nothing piles up beyond the configured limits."""
    server_config = replace(QUIET, receive_queue=2, min_read_size=64, max_read_size=64)
    client_config = replace(QUIET, send_buffer=256)
    sent = 0

    async def sender(client: WebSocket) -> None:
        nonlocal sent
        for i in range(100):
            await client.send(b"%03d" % i * 20)
            sent += 1

    async with session_pair(server_config, client_config, lockstep=True) as (server, client):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, client)
            await trio.testing.wait_all_tasks_blocked()
            # The server holds 2 messages, its reader is blocked, lockstep
            # streams buffer nothing, and the client waits above 256 bytes.
            assert sent < 10
            received = [await server.receive() for _ in range(100)]
        assert received == [b"%03d" % i * 20 for i in range(100)]


async def test_cancelled_receive_loses_nothing() -> None:
    async with session_pair() as (server, client):
        with trio.move_on_after(0.01):
            await server.receive()
        await client.send("kept")
        assert await server.receive() == "kept"


async def test_receive_is_a_cancel_point_even_with_a_message_queued() -> None:
    async with session_pair() as (server, client):
        await client.send("queued")
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await server.receive()
        assert scope.cancelled_caught
        assert await server.receive() == "queued"


async def test_fast_path_still_yields_to_other_tasks() -> None:
    """Sending in a tight loop lets other tasks run (a schedule point every 64 calls)."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    roomy = replace(QUIET, receive_queue=1000)
    async with session_pair(roomy) as (_, client), trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.lowlevel.checkpoint()
        before = ticks
        for _ in range(640):
            await client.send(b"x")
        assert ticks - before >= 5
        nursery.cancel_scope.cancel()


async def test_prefetched_bytes_are_the_first_frames() -> None:
    """Bytes read past the handshake come first, even when a frame straddles them."""
    left, right = trio.testing.memory_stream_pair()
    second = frame(BINARY, b"\x01\x02")
    prefetched = frame(TEXT, b"early") + second[:3]
    async with websocket_session(left, prefetched=prefetched, config=QUIET) as server:
        assert await server.receive() == "early"
        await right.send_all(second[3:])
        assert await server.receive() == b"\x01\x02"
        await right.aclose()


async def test_session_exposes_request_subprotocol_and_extensions() -> None:
    left, right = trio.testing.memory_stream_pair()
    request = HandshakeRequest(
        "/chat?room=1", ((b"origin", b"https://a.example"), (b"X-Multi", b"1")), ("1.2.3.4", 5)
    )
    async with websocket_session(left, request=request, subprotocol="chat", config=QUIET) as ws:
        assert ws.request.path == "/chat?room=1"
        assert ws.request.query == "room=1"
        assert ws.request.get("Origin") == "https://a.example"
        assert ws.request.client == ("1.2.3.4", 5)
        assert ws.subprotocol == "chat"
        assert ws.extensions == ()
        assert "server" in repr(ws)
        await right.aclose()


async def test_exception_in_the_block_closes_with_1011_and_propagates_unchanged() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with websocket_session(right, config=QUIET, client=True) as client:
        with pytest.raises(KeyError):
            async with websocket_session(left, config=QUIET):
                raise KeyError("app bug")
        with pytest.raises(ConnectionClosedError) as info:
            await client.receive()
        assert info.value.code == 1011


async def test_leaving_the_block_closes_with_1000() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with websocket_session(right, config=QUIET, client=True) as client:
        async with websocket_session(left, config=QUIET) as server:
            await server.send("bye")
        assert [m async for m in client] == ["bye"]
        assert client.close_code == 1000
