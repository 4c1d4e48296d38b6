"""Compressed WebSocket load generator: websockets' asyncio client with permessage-deflate.

The same protocol as ``_ws_client.py`` (JSON lines on stdout, ``go`` on
stdin), for the compressed workloads of ``ws_echo.py``: picows does not
implement permessage-deflate, websockets' client does and offers it by
default, as browsers do. Every connection must negotiate permessage-deflate
(else the run fails: an uncompressed echo would measure something else).

1. it opens ``--connections`` connections and prints ``{"event": "connected", ...}``;
2. it waits for ``go`` on stdin;
3. every connection sends ``--messages`` text messages of ``--size`` bytes
   (chat-like JSON text, compressible about 2.5:1, stamped with the connection
   and sequence number), at most ``--inflight`` unanswered, checks each echo
   against what it sent, in order, and prints ``{"event": "done", ...}``.

Only loopback URLs are accepted, and the whole run is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

_VOCABULARY = (
    "the a to and of in is it you that he was for on are with as his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come "
    "did number sound no most people my over know water than call first who may down side "
    "been now find any new work part take get place made live where after back little only"
)
WORDS = _VOCABULARY.split()


class BenchError(Exception):
    pass


def messages_for(index: int, count: int, size: int) -> list[str]:
    """*count* distinct ASCII texts of exactly *size* bytes for connection *index*."""
    rng = random.Random(index)
    out = []
    for seq in range(count):
        text = f'{{"c":{index},"n":{seq},"text":"'
        while len(text) < size:
            text += rng.choice(WORDS) + " "
        out.append(text[:size])
    return out


async def echo(ws: ClientConnection, plan: list[str], inflight: int) -> None:
    window = asyncio.Semaphore(inflight)

    async def sender() -> None:
        for message in plan:
            await window.acquire()
            await ws.send(message)

    task = asyncio.create_task(sender())
    try:
        for i, expected in enumerate(plan):
            reply = await ws.recv()
            if reply != expected:
                raise BenchError(f"reply {i} differs from the message sent")
            window.release()
    finally:
        task.cancel()


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    plans = [messages_for(i, args.messages, args.size) for i in range(args.connections)]
    started = time.perf_counter()
    gate = asyncio.Semaphore(100)

    async def one(index: int) -> ClientConnection:
        async with gate:
            # Default compression (permessage-deflate), no keepalive pings, no size limit.
            return await connect(args.url, max_size=None, ping_interval=None)

    conns = await asyncio.gather(*(one(i) for i in range(args.connections)))
    for ws in conns:
        answer = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if not answer.startswith("permessage-deflate"):
            raise BenchError(f"permessage-deflate not negotiated (got {answer!r})")
    emit(
        "connected",
        seconds=time.perf_counter() - started,
        connections=len(conns),
        extensions=conns[0].response.headers.get("Sec-WebSocket-Extensions", ""),
    )
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise BenchError(f"expected 'go' on stdin, got {line!r}")
    started = time.perf_counter()
    pairs = zip(conns, plans, strict=True)
    await asyncio.gather(*(echo(ws, plan, args.inflight) for ws, plan in pairs))
    seconds = time.perf_counter() - started
    messages = args.connections * args.messages
    emit("done", seconds=seconds, messages=messages, bytes=messages * args.size)
    await asyncio.gather(*(ws.close() for ws in conns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--inflight", type=int, default=8)
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
