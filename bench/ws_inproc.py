"""In-process WebSocket echo for instruction counts: one server session over a
socketpair, a raw client in the same trio run sending N pre-built masked frames.

The server is ``ws_echo.py``'s echo (``async for message in ws: await
ws.send(message)``) in a ``websocket_session``, keepalive off; the client sends
``--inflight`` frames at a time and parses the echoes' headers. Workloads match
``ws_echo.py``'s: ``small`` (32 B binary), ``large`` (1 MiB binary, 2 in
flight), ``deflate-small`` and ``deflate-4k`` (text compressed with
permessage-deflate; the client's frames are compressed once, without context
takeover, so one frame serves every message). Run it twice under callgrind and
take the difference, so start-up cancels out::

    for n in 8 2008; do
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            .venv/bin/python bench/ws_inproc.py small $n
    done   # (Collected[2008] - Collected[8]) / 2000 = instructions per message

Instruction counts do not move with the load of a shared machine; the
client's share is in every count alike, so compare two versions of the server
(two worktrees) on the same workload, not workloads with each other.
"""

from __future__ import annotations

import argparse
import socket
import zlib

import trio

from trio_upgrade.ws import Deflate, WebSocket, WebSocketConfig, websocket_session
from trio_upgrade.ws._deflate import PerMessageDeflate

# name -> (payload size, text, deflate, in flight)
WORKLOADS = {
    "small": (32, False, False, 8),
    "large": (1024 * 1024, False, False, 2),
    "deflate-small": (32, True, True, 8),
    "deflate-4k": (4096, True, True, 4),
}
CONFIG = WebSocketConfig(ping_interval=None, compression=None, max_message_size=16 << 20)
KEY = b"\x01\x02\x03\x04"


def client_frame(size: int, text: bool, deflate: bool) -> bytes:
    payload = (b"The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size]
    first = 0x81 if text else 0x82
    if deflate:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = (c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        first |= 0x40
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, 0xFF)) + n.to_bytes(8, "big")
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


async def echo_server(stream: trio.abc.Stream, deflate: bool) -> None:
    extensions = []
    if deflate:
        # What a server negotiates with a client that refuses context takeover.
        extensions.append(
            PerMessageDeflate(
                client=False,
                local_bits=12,
                remote_bits=15,
                local_no_context_takeover=False,
                remote_no_context_takeover=True,
                config=Deflate(),
                max_message_size=CONFIG.max_message_size,
            )
        )
    ws: WebSocket
    async with websocket_session(stream, config=CONFIG, extensions=extensions) as ws:
        async for message in ws:
            await ws.send(message)


async def client(stream: trio.abc.Stream, frame: bytes, messages: int, inflight: int) -> None:
    received = 0
    progress = trio.Event()

    async def receiver() -> None:
        nonlocal received, progress
        buf = bytearray()
        while received < messages:
            buf += await stream.receive_some(1 << 20)
            while len(buf) >= 2:
                n = buf[1] & 0x7F
                at = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, at = int.from_bytes(buf[2:4], "big"), 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, at = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) < at + n:
                    break
                del buf[: at + n]
                received += 1
                progress.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        sent = 0
        while sent < messages:
            batch = min(inflight, messages - sent)
            await stream.send_all(frame * batch)
            sent += batch
            while received < sent:
                progress = trio.Event()
                await progress.wait()


async def main(workload: str, messages: int) -> None:
    size, text, deflate, inflight = WORKLOADS[workload]
    frame = client_frame(size, text, deflate)
    a, b = socket.socketpair()
    server_stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    client_stream = trio.SocketStream(trio.socket.from_stdlib_socket(b))
    async with server_stream, client_stream, trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, server_stream, deflate)
        await client(client_stream, frame, messages, inflight)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("messages", type=int)
    args = parser.parse_args()
    trio.run(main, args.workload, args.messages)
