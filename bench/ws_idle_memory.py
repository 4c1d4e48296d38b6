"""Where an idle WebSocket connection's memory goes, measured in-process.

The server (``ours``: ``serve_websocket``; ``ours-app``: an App route behind
the HTTP server) runs in this process under ``tracemalloc``; a client
subprocess with plain blocking sockets opens ``--connections`` connections,
does the handshake and leaves them idle. Between a snapshot taken after a
warm-up and one taken with every connection open it reports, per connection:

- RSS (what ``ws_echo.py``'s idle workload measures, allocator slack included);
- bytes traced by ``tracemalloc``, grouped by the line that allocated them
  (``--group lineno``) or by the whole call stack (``--group traceback``);
- the objects gc tracks, by type, with their ``sys.getsizeof`` (coroutines
  include their frames);
- the blocked call chain of every task of one connection, frame by frame.

``--echoes N`` has every connection exchange N small messages before it goes
idle, and ``--ping-interval S`` measures after two keepalive pings went out
(the ``ws_echo.py`` idle workload measures connections idle since their
handshake, before the first ping at the default 20 s).

Usage (from the repository root)::

    .venv/bin/python bench/ws_idle_memory.py --server ours --connections 2000
    .venv/bin/python bench/ws_idle_memory.py --server ours-app --group traceback

Figures are deterministic to a few bytes for a given code version, so they
decide between two variants where the RSS workload needs several runs.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import sys
import textwrap
import tracemalloc
from typing import Any

import trio
import trio.testing

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "servers"))

CLIENT = textwrap.dedent(
    """
    import base64, os, socket, sys
    port, n, echoes = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    mask = b"\\x01\\x02\\x03\\x04"
    frame = b"\\x82\\x84" + mask + bytes(b ^ m for b, m in zip(b"ping", mask))
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
                  b"Connection: Upgrade\\r\\nSec-WebSocket-Version: 13\\r\\n"
                  b"Sec-WebSocket-Key: " + key + b"\\r\\n\\r\\n")
        buf = b""
        while b"\\r\\n\\r\\n" not in buf:
            buf += s.recv(4096)
        assert buf.startswith(b"HTTP/1.1 101"), buf
        for _ in range(echoes):
            s.sendall(frame)
            got = b""
            while len(got) < 6:
                got += s.recv(64)
        socks.append(s)
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def start_server(kind: str, nursery: trio.Nursery, ping_interval: float | None) -> Any:
    from trio_upgrade.ws import WebSocketConfig

    config = WebSocketConfig()
    if ping_interval is not None:
        # The client never answers: a long ping_timeout keeps the sessions open.
        config = WebSocketConfig(ping_interval=ping_interval, ping_timeout=1000)
    if kind == "ours":
        from trio_upgrade.ws import serve_websocket

        return await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                "127.0.0.1:0",
                config=config,
                max_connections=100_000,
                task_status=task_status,
            )
        )
    from trio_upgrade.bridge import App
    from trio_upgrade.http import serve

    app = App(websocket_config=config)
    app.websocket("/")(echo)
    return await nursery.start(
        lambda task_status: serve(
            app, "127.0.0.1:0", max_connections=100_000, task_status=task_status
        )
    )


async def open_clients(port: int, n: int, echoes: int = 0) -> trio.Process:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", CLIENT, str(port), str(n), str(echoes)],
        stdin=-1,  # subprocess.PIPE
        stdout=-1,
    )
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(100)
        if not chunk:
            raise RuntimeError("client died")
        line += chunk
    return proc


async def close_clients(proc: trio.Process) -> None:
    assert proc.stdin is not None
    await proc.stdin.send_all(b"\n")
    await proc.wait()


async def settle(server: Any, expected: int) -> None:
    for _ in range(500):
        if server.connection_count == expected:
            break
        await trio.sleep(0.01)
    await trio.sleep(0.3)
    # On a loaded machine the count can be right while connections are still
    # being set up or torn down: wait until every task of ours is blocked.
    await trio.testing.wait_all_tasks_blocked(cushion=0.1)
    gc.collect()


def type_census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        # A class may shadow __module__/__qualname__ with a descriptor.
        module = kind.__dict__.get("__module__", None) or getattr(kind, "__module__", "?")
        name = f"{module if isinstance(module, str) else '?'}.{kind.__name__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def describe_tasks() -> None:
    """The blocked call chain of one connection's tasks (the newest connection)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks: list[trio.lowlevel.Task] = []

    def walk(task: trio.lowlevel.Task) -> None:
        tasks.append(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(root)
    by_name: dict[str, list[trio.lowlevel.Task]] = collections.defaultdict(list)
    for task in tasks:
        by_name[task.name].append(task)
    print("\nTasks by name (count): one of each, its blocked chain (frame sizes)")
    for name, group in sorted(by_name.items(), key=lambda kv: -len(kv[1])):
        task = group[-1]
        chain = []
        coro: Any = task.coro
        total = 0
        while coro is not None:
            size = sys.getsizeof(coro)
            total += size
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            where = f"{frame.f_code.co_name}:{frame.f_lineno}" if frame else type(coro).__name__
            chain.append(f"{where} ({size} B)")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        print(f"  {len(group):6d} x {name}: coroutines {total} B")
        for link in chain:
            print(f"           {link}")


async def main(args: argparse.Namespace) -> None:
    n = args.connections
    async with trio.open_nursery() as nursery:
        server = await start_server(args.server, nursery, args.ping_interval)
        port = server.addresses[0][1]
        # Warm-up: first-use allocations (caches, keeper tasks) are not charged.
        warm = await open_clients(port, 50)
        await settle(server, 50)
        await close_clients(warm)
        await settle(server, 0)

        tracemalloc.start(args.frames)
        gc.collect()
        rss0 = rss_kib()
        counts0, sizes0 = type_census()
        snap0 = tracemalloc.take_snapshot()
        traced0 = tracemalloc.get_traced_memory()[0]

        clients = await open_clients(port, n, args.echoes)
        await settle(server, n)
        if args.ping_interval is not None:
            await trio.sleep(2 * args.ping_interval + 0.5)
            gc.collect()
        rss1 = rss_kib()
        snap1 = tracemalloc.take_snapshot()
        traced1 = tracemalloc.get_traced_memory()[0]
        counts1, sizes1 = type_census()

        print(
            f"server {args.server}, {n} idle connections "
            f"({args.echoes} echoes each first, keepalive ping interval "
            f"{args.ping_interval}), Python {sys.version.split()[0]}"
        )
        print(f"RSS per connection (tracemalloc on): {(rss1 - rss0) * 1024 / n:8.0f} B")
        print(f"traced per connection:               {(traced1 - traced0) / n:8.0f} B")

        print(f"\ntracemalloc by {args.group}, bytes per connection (top {args.top}):")
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = snap1.filter_traces(filters).compare_to(snap0.filter_traces(filters), args.group)
        shown = 0
        for stat in stats:
            if abs(stat.size_diff) < n * 8:
                continue
            per = stat.size_diff / n
            cnt = stat.count_diff / n
            if args.group == "traceback":
                print(f"{per:8.0f} B  {cnt:5.1f} blocks")
                for line in stat.traceback.format(limit=args.frames, most_recent_first=True)[
                    : 2 * args.depth
                ]:
                    print("          " + line)
            else:
                frame = stat.traceback[0]
                name = frame.filename.replace(sys.prefix, "<venv>")
                print(f"{per:8.0f} B  {cnt:5.1f} blocks  {name}:{frame.lineno}")
            shown += 1
            if shown >= args.top:
                break

        print("\ngc-tracked objects per connection by type (count, getsizeof bytes):")
        rows = []
        for name in set(counts1) | set(counts0):
            dc = counts1[name] - counts0[name]
            ds = sizes1[name] - sizes0[name]
            if abs(dc) >= n // 2:
                rows.append((ds / n, dc / n, name))
        for ds, dc, name in sorted(rows, reverse=True):
            print(f"{ds:8.0f} B  {dc:5.2f}  {name}")
        print(f"{sum(r[0] for r in rows):8.0f} B  total of the rows above")

        describe_tasks()
        await close_clients(clients)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", choices=["ours", "ours-app"], default="ours")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument(
        "--echoes", type=int, default=0, help="messages echoed per connection before idling (0)"
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        help="keepalive ping interval (s); measure after two pings went out",
    )
    parser.add_argument("--group", choices=["lineno", "traceback", "filename"], default="lineno")
    parser.add_argument("--frames", type=int, default=12, help="frames kept per trace (12)")
    parser.add_argument("--depth", type=int, default=6, help="frames shown per traceback (6)")
    parser.add_argument("--top", type=int, default=40)
    trio.run(main, parser.parse_args())
