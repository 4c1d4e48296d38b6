"""Memory a compression bomb can pin per connection when the application does not read.

The server (``serve_websocket``, default configuration: permessage-deflate on)
runs in this process with a handler that never reads. A client subprocess
(``open_websocket``) opens ``--connections`` connections; each sends
``--messages`` binary messages of ``--size`` zero bytes, which compress to
about 1/1000 of that. The server inflates what it reads until its
per-session bound (``WebSocketConfig.max_queued_bytes`` plus one message)
stops the reader; the kernel's buffers and TCP flow control hold the rest.

Reported: the server's RSS growth per connection (``VmRSS`` from
``/proc/self/status``) once it stopped growing, and the bytes every session
holds for its application when the session tells (``_queued``).

Usage (from the repository root)::

    .venv/bin/python bench/ws_deflate_memory.py
    .venv/bin/python bench/ws_deflate_memory.py --connections 20 --messages 40
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Any

import trio

CLIENT = """
import sys, trio
from trio_upgrade.ws import open_websocket

async def one(url, messages, size, opened):
    async with open_websocket(url) as ws:
        assert ws.extensions == ("permessage-deflate",), ws.extensions
        opened()
        payload = bytes(size)
        for _ in range(messages):
            await ws.send(payload)
        await trio.sleep_forever()

async def main(url, n, messages, size):
    count = 0
    def opened():
        nonlocal count
        count += 1
        if count == n:
            print("sent", flush=True)
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one, url, messages, size, opened)
        # Until the parent closes our stdin.
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()

trio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
"""


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def main(args: argparse.Namespace) -> None:
    from trio_upgrade.ws import WebSocket, serve_websocket

    sessions: list[WebSocket] = []

    async def hoard(ws: WebSocket) -> None:
        sessions.append(ws)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server: Any = await nursery.start(
            lambda task_status: serve_websocket(hoard, "127.0.0.1:0", task_status=task_status)
        )
        host, port = server.addresses[0]
        gc.collect()
        rss0 = rss_kib()
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-c",
                CLIENT,
                f"ws://{host}:{port}/",
                str(args.connections),
                str(args.messages),
                str(args.size),
            ],
            stdin=-1,  # subprocess.PIPE
            stdout=-1,
        )
        assert proc.stdout is not None and proc.stdin is not None
        line = b""
        while not line.endswith(b"\n"):
            chunk = await proc.stdout.receive_some()
            if not chunk:
                raise RuntimeError("the client process ended early")
            line += chunk
        assert line == b"sent\n", line
        # Wait until the server's memory stops growing (the readers stopped).
        last, stable = -1, 0
        while stable < 10:
            await trio.sleep(0.2)
            now = rss_kib()
            stable = stable + 1 if now == last else 0
            last = now
        gc.collect()
        rss1 = rss_kib()
        queued = [getattr(ws, "_queued", None) for ws in sessions]
        n = args.connections
        print(
            f"{n} connections x {args.messages} messages of {args.size} B "
            f"(compressed about {args.size // 1000} B each), application not reading"
        )
        print(f"RSS growth per connection: {(rss1 - rss0) / n / 1024:.2f} MiB")
        if all(q is not None for q in queued):
            most = max(q for q in queued if q is not None)
            print(f"held for the application: at most {most / 2**20:.2f} MiB per session")
        await proc.stdin.aclose()
        await proc.wait()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--size", type=int, default=1 << 20)
    trio.run(main, parser.parse_args())
