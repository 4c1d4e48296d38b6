"""Test doubles for the WebSocket tests: session pairs over memory streams and a raw peer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

# One copy of each, in tests/_wire.py; re-exported for this directory's tests.
from _wire import QUIET, frame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Event

from trio_upgrade.ws import WebSocket, WebSocketConfig, websocket_session

__all__ = ["QUIET", "RawPeer", "frame", "server_and_raw_peer", "session_pair"]


@asynccontextmanager
async def session_pair(
    server_config: WebSocketConfig = QUIET,
    client_config: WebSocketConfig = QUIET,
    *,
    lockstep: bool = False,
) -> AsyncIterator[tuple[WebSocket, WebSocket]]:
    """A server session and a client session joined by in-memory streams."""
    if lockstep:
        left, right = trio.testing.lockstep_stream_pair()
    else:
        left, right = trio.testing.memory_stream_pair()
    async with (
        websocket_session(left, config=server_config) as server,
        websocket_session(right, config=client_config, client=True) as client,
    ):
        yield server, client


class RawPeer:
    """The client end of a stream, driven frame by frame, parsing what the server sends."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.conn = Connection(ConnectionType.CLIENT)

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.conn.send(event))

    async def events_until_eof(self) -> list[Event]:
        """Every event the server sends until it closes the stream."""
        events: list[Event] = []
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                return events
            self.conn.receive_data(data)
            events.extend(self.conn.events())

    async def next_event(self) -> Event:
        while True:
            for event in self.conn.events():
                return event
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.conn.receive_data(data)


@asynccontextmanager
async def server_and_raw_peer(
    config: WebSocketConfig = QUIET,
) -> AsyncIterator[tuple[WebSocket, RawPeer]]:
    """A server session whose peer is a :class:`RawPeer` (for protocol violations)."""
    left, right = trio.testing.memory_stream_pair()
    async with websocket_session(left, config=config) as server:
        try:
            yield server, RawPeer(right)
        finally:
            # A raw peer never answers Close: hang up rather than wait close_timeout.
            await right.aclose()
