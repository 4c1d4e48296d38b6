"""Test doubles for the core tests: an in-memory listener and small stream helpers."""

from __future__ import annotations

import math
from typing import final

import trio
import trio.testing

# One copy of each, in tests/_wire.py; re-exported for this directory's tests.
from _wire import has_ipv6_loopback as has_ipv6_loopback
from _wire import receive_until_eof as receive_until_eof


@final
class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose connections are made in-process with :meth:`connect`.

    *failures* are raised by the first calls to :meth:`accept`, one each, to
    rehearse accept(2) errors.
    """

    def __init__(self, failures: list[BaseException] | None = None) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)
        self._failures = list(failures or [])
        self.closed = False
        self.accepted = 0

    async def connect(
        self,
    ) -> trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]:
        """Open a connection; raises :class:`trio.BrokenResourceError` once closed."""
        client, server = trio.testing.memory_stream_pair()
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        if self._failures:
            await trio.lowlevel.checkpoint()
            raise self._failures.pop(0)
        stream = await self._receive.receive()
        self.accepted += 1
        return stream

    async def aclose(self) -> None:
        self.closed = True
        self._receive.close()
        await trio.lowlevel.checkpoint()


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    """Read exactly *size* bytes; fail on EOF."""
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"EOF after {bytes(data)!r}"
        data += chunk
    return bytes(data)


def tcp(address: tuple[str, int] | str) -> tuple[str, int]:
    """Narrow a listener/server address to TCP ``(host, port)``, failing for Unix paths."""
    assert isinstance(address, tuple), f"expected a TCP address, got {address!r}"
    return address
