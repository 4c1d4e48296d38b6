"""Test doubles for the WebSocket tests: session pairs over memory streams and a raw peer."""

from __future__ import annotations

import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Event

from trio_upgrade.ws import WebSocket, WebSocketConfig, websocket_session

QUIET = WebSocketConfig(ping_interval=None, compression=None)
"""A config without keepalive or compression, so tests see only their own frames."""


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


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """One raw frame (RFC 6455 §5.2), masked as a client sends it."""
    head = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


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
