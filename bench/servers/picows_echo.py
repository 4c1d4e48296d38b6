"""picows' server (C-accelerated, asyncio callbacks) echoing every message: a speed reference.

Written on picows' own listener API (``ws_create_server`` and a
``WSListener`` per connection): every frame arrives in a callback, no
coroutine per message. It runs on uvloop when uvloop is importable, on the
standard asyncio loop otherwise (the benchmark prints which). Binary messages
come back binary, text messages text; fragmented messages are reassembled and
echoed whole, up to the 16 MiB message limit the other servers use (a larger
one is closed with 1009). Pings are answered by picows; with keepalive on it
pings a connection idle for 20 s, like the others' 20 s ping interval. A close
frame is answered with the same code (1000 if it had none) and the connection
dropped. picows has no permessage-deflate, so this row only runs the
uncompressed workloads.
"""

from __future__ import annotations

import asyncio
import signal

from _common import HOST, MAX_MESSAGE, keepalive, parse_port, unavailable

try:
    from picows import (
        WSCloseCode,
        WSFrame,
        WSListener,
        WSMsgType,
        WSTransport,
        WSUpgradeRequest,
        ws_create_server,
    )
except ImportError as exc:
    unavailable(f"picows is not installed ({exc}); run bench/setup")

try:
    import uvloop
except ImportError:
    uvloop = None

_DATA = (WSMsgType.BINARY, WSMsgType.TEXT)


class Echo(WSListener):
    """One connection: each complete message goes straight back."""

    def __init__(self) -> None:
        self.kind = WSMsgType.BINARY  # of the fragmented message in progress
        self.parts: list[bytes] = []
        self.size = 0

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            code = frame.get_close_code()
            # A close without a code gets 1000: picows would put NO_INFO (0) on the wire.
            reply = WSCloseCode.OK if code == WSCloseCode.NO_INFO else code
            transport.send_close(reply, frame.get_close_message())
            transport.disconnect()
            return
        if kind not in _DATA and kind != WSMsgType.CONTINUATION:
            return  # ping/pong: picows answers pings itself
        if frame.fin and not self.parts:
            # The common case, one frame per message: the payload is only valid
            # during this call, and send() copies it out before returning.
            transport.send(kind, frame.get_payload_as_memoryview())
            return
        if kind in _DATA:
            self.kind = kind
        payload = frame.get_payload_as_bytes()
        self.size += len(payload)
        if self.size > MAX_MESSAGE:
            transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
            transport.disconnect()
            return
        self.parts.append(payload)
        if frame.fin:
            transport.send(self.kind, b"".join(self.parts))
            self.parts.clear()
            self.size = 0


def listener_for(request: WSUpgradeRequest) -> Echo:
    return Echo()  # any path, like the other echo servers


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await ws_create_server(
        listener_for,
        HOST,
        port,
        max_frame_size=MAX_MESSAGE,
        enable_auto_ping=keepalive(),
        auto_ping_idle_timeout=20,
    )
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.run(main(parse_port()))
    else:
        asyncio.run(main(parse_port()))
