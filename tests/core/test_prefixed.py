"""PrefixedStream: prefetched bytes first, exactly once, then the wrapped stream."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_upgrade.core import PrefixedStream

from ._helpers import receive_exactly, receive_until_eof


def _pair(prefix: bytes = b"") -> tuple[trio.abc.HalfCloseableStream, PrefixedStream]:
    """(peer, prefixed) over an in-memory stream pair."""
    peer, inner = trio.testing.memory_stream_pair()
    return peer, PrefixedStream(inner, prefix)


async def test_prefix_comes_first_exactly_once_then_the_wrapped_stream() -> None:
    peer, stream = _pair(b"prefetched")
    await peer.send_all(b"wire")
    assert await stream.receive_some() == b"prefetched"
    assert await stream.receive_some() == b"wire"
    await peer.send_eof()
    assert await stream.receive_some() == b""


async def test_prefix_and_wire_bytes_are_never_mixed_in_one_read() -> None:
    peer, stream = _pair(b"abc")
    await peer.send_all(b"def")
    assert await stream.receive_some(100) == b"abc"
    assert await stream.receive_some(100) == b"def"


async def test_max_bytes_splits_the_prefix_across_reads() -> None:
    peer, stream = _pair(b"abcdefg")
    assert await stream.receive_some(3) == b"abc"
    assert stream.pending == b"defg"
    assert await stream.receive_some(3) == b"def"
    assert await stream.receive_some(3) == b"g"
    assert stream.pending == b""
    await peer.send_all(b"hijk")
    assert await stream.receive_some(2) == b"hi"


@pytest.mark.parametrize("max_bytes", [0, -1])
async def test_max_bytes_below_one_is_rejected_and_consumes_nothing(max_bytes: int) -> None:
    _, stream = _pair(b"abc")
    with pytest.raises(ValueError):
        await stream.receive_some(max_bytes)
    assert stream.pending == b"abc"


async def test_empty_prefix_reads_straight_from_the_wrapped_stream() -> None:
    peer, stream = _pair()
    assert stream.pending == b""
    await peer.send_all(b"direct")
    assert await stream.receive_some() == b"direct"


async def test_prefix_is_copied_so_later_changes_to_the_buffer_do_not_leak_in() -> None:
    buffer = bytearray(b"head")
    _peer, inner = trio.testing.memory_stream_pair()
    stream = PrefixedStream(inner, buffer)
    buffer[:] = b"XXXX"
    assert await receive_exactly(stream, 4) == b"head"


async def test_eof_right_after_the_prefix_is_reported_after_it() -> None:
    peer, stream = _pair(b"last words")
    await peer.send_eof()
    assert await receive_until_eof(stream) == b"last words"


async def test_cancelled_receive_consumes_nothing() -> None:
    _, stream = _pair(b"keep")
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.receive_some()
    assert scope.cancelled_caught
    assert stream.pending == b"keep"
    assert await stream.receive_some() == b"keep"


async def test_receive_checkpoints_even_when_the_prefix_answers() -> None:
    _, stream = _pair(b"x")
    with trio.testing.assert_checkpoints():
        await stream.receive_some()


async def test_concurrent_receives_raise_busy_instead_of_a_false_eof() -> None:
    _peer, stream = _pair(b"abc")
    results: list[bytes] = []

    async def receive() -> None:
        results.append(await stream.receive_some())

    with pytest.RaisesGroup(trio.BusyResourceError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            nursery.start_soon(receive)
    assert b"" not in results


async def test_send_side_passes_through_to_the_wrapped_stream() -> None:
    peer, stream = _pair(b"ignored for sending")
    await stream.wait_send_all_might_not_block()
    await stream.send_all(b"out")
    assert await receive_exactly(peer, 3) == b"out"
    await stream.send_eof()
    assert await receive_until_eof(peer) == b""
    # Half-closed: we can still read.
    assert await stream.receive_some() == b"ignored for sending"


async def test_send_eof_on_a_stream_that_cannot_half_close_raises_broken() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    not_half_closeable = trio.StapledStream(send, receive)
    wrapped = PrefixedStream(_OneWayOnly(not_half_closeable))
    with pytest.raises(trio.BrokenResourceError):
        await wrapped.send_eof()


async def test_aclose_closes_the_wrapped_stream_and_drops_pending_bytes() -> None:
    peer, stream = _pair(b"never read")
    await stream.aclose()
    assert stream.pending == b""
    assert await receive_until_eof(peer) == b""
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


async def _wrapped_memory_pair() -> tuple[PrefixedStream, PrefixedStream]:
    left, right = trio.testing.memory_stream_pair()
    return PrefixedStream(left), PrefixedStream(right)


async def _wrapped_lockstep_pair() -> tuple[PrefixedStream, PrefixedStream]:
    left, right = trio.testing.lockstep_stream_pair()
    return PrefixedStream(left), PrefixedStream(right)


async def test_passes_trios_generic_two_way_stream_checks_including_clogged() -> None:
    await trio.testing.check_two_way_stream(_wrapped_memory_pair, _wrapped_lockstep_pair)


async def test_passes_trios_generic_half_closeable_stream_checks() -> None:
    # No clogged maker: trio's own StapledStream pairs fail the clogged
    # "send_all and send_eof at once" check (its send_eof closes the send side).
    await trio.testing.check_half_closeable_stream(_wrapped_memory_pair, None)


class _OneWayOnly(trio.abc.Stream):
    """A full-duplex stream without send_eof (trio's StapledStream always has one)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()
