"""WebSocket load generator for the benchmarks: picows (C-accelerated, asyncio) in its own process.

Driven by the benchmark over stdin/stdout, one JSON object per line, so the
server's CPU can be read between phases:

1. it opens ``--connections`` connections to ``--url`` (at most
   ``--concurrency`` handshakes at once) and prints
   ``{"event": "connected", "seconds": ...}``;
2. it waits for a ``go`` line on stdin;
3. ``--mode echo``: every connection sends ``--messages`` binary messages of
   ``--size`` bytes with ``--inflight`` unanswered at most, checks that each
   reply is exactly the message it sent (in order), and prints
   ``{"event": "done", "seconds": ..., "messages": ...}``.
   ``--mode idle``: it closes every connection (close handshake) and prints
   ``done``;
4. it exits. Any failure prints ``{"event": "error", "error": ...}`` and exits 1.

Only loopback URLs are accepted, and the whole run is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import deque
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

# Every message carries its connection and sequence number in its first bytes,
# so a server that reorders, mixes up or truncates replies fails the check.
STAMP = 12


class BenchError(Exception):
    pass


class EchoClient(WSListener):
    """One connection: sends its plan, checks each echo against what it sent."""

    def __init__(self, index: int, args: argparse.Namespace, filler: bytes) -> None:
        self.index = index
        self.total = args.messages
        self.inflight = args.inflight
        self.size = args.size
        self.filler = filler
        self.sent = 0
        self.received = 0
        self.expected: deque[bytes] = deque()
        self.parts: list[bytes] = []
        self.transport: WSTransport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished = False  # our own close started: a disconnect is expected

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def message(self, seq: int) -> bytes:
        stamp = self.index.to_bytes(4, "big") + seq.to_bytes(8, "big")
        return (stamp + self.filler)[: self.size]

    def send_next(self) -> None:
        assert self.transport is not None
        payload = self.message(self.sent)
        self.sent += 1
        self.expected.append(payload)
        self.transport.send(WSMsgType.BINARY, payload)

    def start(self) -> None:
        if self.total == 0:
            self.done.set_result(None)
            return
        for _ in range(min(self.inflight, self.total)):
            self.send_next()

    def fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(BenchError(f"connection {self.index}: {message}"))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            if not self.finished:
                self.fail(f"server closed the connection ({frame.get_close_code()})")
            return
        if kind not in (WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.TEXT):
            return  # ping/pong: picows answers pings itself
        if kind == WSMsgType.TEXT:
            self.fail("binary message echoed as text")
            return
        if not frame.fin or self.parts:
            self.parts.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self.parts)
            self.parts.clear()
        else:
            payload = frame.get_payload_as_bytes()
        if not self.expected:
            self.fail("reply to a message that was never sent")
            return
        if payload != self.expected.popleft():
            self.fail(f"reply {self.received} differs from the message sent")
            return
        self.received += 1
        if self.sent < self.total:
            self.send_next()
        elif self.received == self.total and not self.done.done():
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.finished:
            self.fail("disconnected")


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def open_all(args: argparse.Namespace, filler: bytes) -> list[EchoClient]:
    gate = asyncio.Semaphore(args.concurrency)
    clients: list[EchoClient] = []

    async def one(index: int) -> None:
        async with gate:
            _, listener = await ws_connect(
                lambda: EchoClient(index, args, filler),
                args.url,
                websocket_handshake_timeout=30,
                max_frame_size=64 * 1024 * 1024,
            )
            assert isinstance(listener, EchoClient)
            clients.append(listener)

    await asyncio.gather(*(one(i) for i in range(args.connections)))
    return clients


async def close_all(clients: list[EchoClient]) -> None:
    for client in clients:
        client.finished = True
        if client.transport is not None:
            client.transport.send_close()
    for client in clients:
        if client.transport is not None:
            client.transport.disconnect()
    await asyncio.gather(
        *(c.transport.wait_disconnected() for c in clients if c.transport is not None)
    )


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    filler = os.urandom(max(args.size, STAMP))[STAMP:]
    started = time.perf_counter()
    clients = await open_all(args, filler)
    emit("connected", seconds=time.perf_counter() - started, connections=len(clients))

    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise BenchError(f"expected 'go' on stdin, got {line!r}")
    started = time.perf_counter()
    if args.mode == "echo":
        for client in clients:
            client.start()
        await asyncio.gather(*(c.done for c in clients))
        seconds = time.perf_counter() - started
        messages = sum(c.received for c in clients)
        # Reported before closing, so the server's CPU read on "done" is the workload's.
        emit("done", seconds=seconds, messages=messages, bytes=messages * args.size)
        await close_all(clients)
    else:
        await close_all(clients)
        emit("done", seconds=time.perf_counter() - started, messages=0, bytes=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("echo", "idle"), default="echo")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--inflight", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes at once")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if not args.url.startswith(("ws://127.0.0.1:", "ws://[::1]:", "ws://localhost:")):
        parser.error("only loopback URLs")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.connections + 256
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    try:
        asyncio.run(asyncio.wait_for(run(args), args.timeout))
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        # A thread may still be blocked reading stdin: leave without joining it.
        os._exit(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
