"""One peer's flood of tiny frames or compressed messages stays that peer's problem.

Raw frames over in-memory streams: a message of endless empty fragments ends
(1008, or 1009 once frame headers add up), the reader gives other tasks turns
while it works through one read full of frames, a ping flood cannot grow what
we owe the peer beyond ``send_buffer``, and compressed messages are held for
the application up to ``max_queued_bytes`` of inflated bytes, not 16 messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import trio
import trio.testing
from wsproto.events import CloseConnection, Pong

from trio_upgrade.ws import Deflate, WebSocket, WebSocketConfig, websocket_session
from trio_upgrade.ws._deflate import client_finalize, client_offer, negotiate_server

from ._helpers import QUIET, RawPeer, frame, server_and_raw_peer

TEXT, CONTINUATION, PING = 0x1, 0x0, 0x9
KiB = 1024
MiB = 1024 * KiB

# One read takes a whole burst.
BIG_READS = replace(QUIET, min_read_size=256 * KiB, max_read_size=256 * KiB)


def empty_fragments(total: int) -> bytes:
    """A text message opened with an empty frame, then empty continuations: *total* bytes."""
    first = frame(TEXT, fin=False)
    more = frame(CONTINUATION, fin=False)
    return first + more * ((total - len(first)) // len(more))


async def close_code_after(config: WebSocketConfig, burst: bytes) -> int | None:
    # A guard, not a timing: without the bound such a message never ends.
    with trio.fail_after(60):
        async with server_and_raw_peer(config) as (server, peer):
            await peer.send_raw(burst)
            events = await peer.events_until_eof()
    closes = [e for e in events if isinstance(e, CloseConnection)]
    assert server.close_code is not None
    return closes[0].code if closes else None


async def test_a_burst_of_empty_continuation_frames_closes_with_1009() -> None:
    # Every frame but a message's last counts at least 64 bytes against
    # max_message_size (1 MiB): the message ends after 16,384 empty frames.
    burst = empty_fragments(256 * KiB)
    assert await close_code_after(BIG_READS, burst) == 1009


async def test_max_fragments_closes_a_message_of_too_many_frames_with_1008() -> None:
    config = replace(BIG_READS, max_fragments=1000)
    assert await close_code_after(config, empty_fragments(256 * KiB)) == 1008


async def test_max_fragments_counts_frames_the_decoder_joined() -> None:
    """Whole 100-byte fragments of one read arrive as one chunk, and still count one each."""
    config = replace(BIG_READS, max_fragments=100)
    piece = b"x" * 100
    burst = frame(TEXT, piece, fin=False) + frame(CONTINUATION, piece, fin=False) * 500
    assert await close_code_after(config, burst) == 1008


async def test_a_message_of_max_message_size_fits_in_fragments_of_64_bytes() -> None:
    # The Autobahn 9.3/9.4 shape: 64-byte fragments, the last one shorter.
    config = replace(BIG_READS, max_message_size=64 * 1024 + 10)
    async with server_and_raw_peer(config) as (server, peer):
        parts = [frame(TEXT, b"x" * 64, fin=False)]
        parts += [frame(CONTINUATION, b"x" * 64, fin=False) for _ in range(1023)]
        parts.append(frame(CONTINUATION, b"y" * 10))
        await peer.send_raw(b"".join(parts))
        assert await server.receive() == "x" * 64 * 1024 + "y" * 10


async def test_a_message_within_max_fragments_arrives_whole() -> None:
    config = replace(QUIET, max_fragments=100)
    async with server_and_raw_peer(config) as (server, peer):
        parts = [frame(TEXT, b"a", fin=False)]
        parts += [frame(CONTINUATION, b"b", fin=False) for _ in range(98)]
        parts.append(frame(CONTINUATION, b"c"))
        await peer.send_raw(b"".join(parts))
        assert await server.receive() == "a" + "b" * 98 + "c"


class StepCounter(trio.abc.Instrument):
    """Counts the steps of tasks whose name ends with *suffix*."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


async def test_the_reader_yields_while_it_works_through_one_read_of_tiny_frames() -> None:
    ping = frame(PING)
    count = 256 * KiB // len(ping)
    # A send_buffer big enough that waiting for the writer never yields here.
    config = replace(BIG_READS, send_buffer=4 * MiB)
    async with server_and_raw_peer(config) as (_, peer):
        await trio.testing.wait_all_tasks_blocked()
        steps = StepCounter("._reader")
        trio.lowlevel.add_instrument(steps)
        try:
            await peer.send_raw(ping * count)
            pongs = 0
            while pongs < count:
                event = await peer.next_event()
                assert isinstance(event, Pong)
                pongs += 1
        finally:
            trio.lowlevel.remove_instrument(steps)
        # Every pong answered, in steps of a bounded number of frames each.
        assert steps.steps >= count // 64


async def test_a_ping_flood_from_a_peer_that_does_not_read_stays_within_send_buffer() -> None:
    config = replace(BIG_READS, send_buffer=4 * KiB)
    left, right = trio.testing.lockstep_stream_pair()
    peer = RawPeer(right)
    async with trio.open_nursery() as nursery, websocket_session(left, config=config) as server:
        # 1 MiB of pings from a peer that never reads its pongs.
        nursery.start_soon(peer.send_raw, frame(PING, b"p") * (MiB // 7))
        await trio.testing.wait_all_tasks_blocked()
        # The reader stopped reading: at most send_buffer and one pong owed.
        assert server._pending <= config.send_buffer + 127
        assert server._send_out is not None
        assert server._send_out.statistics().current_buffer_used <= 1
        nursery.cancel_scope.cancel()
        await right.aclose()


@asynccontextmanager
async def deflate_pair(
    server_config: WebSocketConfig, client_config: WebSocketConfig
) -> AsyncIterator[tuple[WebSocket, WebSocket]]:
    """A server and a client session that negotiated permessage-deflate."""
    offer = client_offer(Deflate())
    negotiated = negotiate_server([offer], Deflate(), server_config.max_message_size)
    assert negotiated is not None
    answer, server_ext = negotiated
    client_ext = client_finalize(answer, Deflate(), client_config.max_message_size)
    left, right = trio.testing.memory_stream_pair()
    async with (
        websocket_session(left, config=server_config, extensions=[server_ext]) as server,
        websocket_session(
            right, config=client_config, extensions=[client_ext], client=True
        ) as client,
    ):
        yield server, client


async def test_compressed_messages_are_held_up_to_max_queued_bytes_inflated() -> None:
    config = replace(QUIET, compression=Deflate())
    message = bytes(MiB)  # compresses to about 1 KiB
    async with deflate_pair(config, config) as (server, client):
        for _ in range(40):
            await client.send(message)
        await trio.testing.wait_all_tasks_blocked()
        # Not 16 messages (the receive queue): the bound plus one message.
        assert 0 < server._queued <= config.max_queued_bytes + len(message)
        # Backpressure, not loss: every message arrives once the application reads.
        for _ in range(40):
            assert await server.receive() == message
