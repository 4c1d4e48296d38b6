"""A stream that replays bytes already read before reading from the wrapped stream."""

from __future__ import annotations

from typing import final

import trio

__all__ = ["PrefixedStream"]


@final
class PrefixedStream(trio.abc.HalfCloseableStream):
    """Wrap *stream* so that :meth:`receive_some` first returns *prefix*.

    This is how a protocol hand-off keeps every byte: the HTTP parser may have
    read past the request head, and whoever takes the connection over sees
    those bytes first, exactly once, then the rest of the wire.

    Sending goes straight to the wrapped stream. ``send_eof`` is passed on when
    the wrapped stream supports half-close (otherwise it raises
    :class:`trio.BrokenResourceError`).

    :meth:`receive_some` returns prefix bytes and wire bytes in separate calls,
    never mixed. Cancelled before it returns, it consumes nothing. Like every
    trio stream, it raises :class:`trio.BusyResourceError` when two tasks
    receive at once.
    """

    __slots__ = ("_prefix", "_receiving", "stream")

    def __init__(self, stream: trio.abc.Stream, prefix: bytes | bytearray = b"") -> None:
        self.stream = stream
        # Bytes still to be replayed; emptied as receive_some hands them out.
        self._prefix = memoryview(bytes(prefix))
        # A second concurrent receiver would find the prefix emptied by the
        # first one after its checkpoint and return b"", a false EOF.
        self._receiving = False

    @property
    def pending(self) -> bytes:
        """Prefetched bytes not yet returned by :meth:`receive_some`."""
        return bytes(self._prefix)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            if self._prefix:
                await trio.lowlevel.checkpoint()
                if max_bytes is None or max_bytes >= len(self._prefix):
                    data = bytes(self._prefix)
                    self._prefix = memoryview(b"")
                else:
                    if max_bytes < 1:
                        raise ValueError("max_bytes must be >= 1")
                    data = bytes(self._prefix[:max_bytes])
                    self._prefix = self._prefix[max_bytes:]
                return data
            return bytes(await self.stream.receive_some(max_bytes))
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()
        else:
            await trio.lowlevel.checkpoint()
            raise trio.BrokenResourceError(f"{type(self.stream).__name__} cannot half-close")

    async def aclose(self) -> None:
        self._prefix = memoryview(b"")
        await self.stream.aclose()
