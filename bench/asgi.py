"""ASGI apps on our server against hypercorn's Trio worker and uvicorn: CPU per request or message.

Each server runs in its own process on 127.0.0.1; the load comes from another
process (``wrk`` for HTTP, the picows client of ``bench/_ws_client.py`` for
WebSocket); the server's CPU comes from ``/proc/<pid>/stat`` around the
measured run only. One run, every row measured in it, so the ratios compare
like with like on a shared machine. Workloads and servers:

- ``raw``: the raw ASGI hello of ``bench/servers/_asgi.py`` (``GET /``);
- ``starlette``: a Starlette hello (``bench/servers/_starlette_app.py``);
- ``ws``: WebSocket echo through the raw ASGI app, 50 connections x 2000
  messages x 32 B, 8 in flight (ws_echo.py's ``small``).

  ``ours``: ``trio_upgrade.asgi.serve``; ``hypercorn``: its Trio worker;
  ``uvicorn-h11``: uvicorn on h11 + asyncio (pure Python, as ours);
  ``uvicorn``: uvicorn's defaults (httptools + uvloop when installed, a
  reference); ``native``: our own server with a native handler
  (``ours_http.py``: a Router, one middleware) or, for ``ws``, a native
  WebSocket route of an App (``ours_app_ws.py``) — the baselines of the
  "ASGI costs at most 1.25x (HTTP) / 1.3x (WebSocket)" targets.

Every HTTP server is checked before and after its run (two keep-alive
``GET /`` answer "Hello, world!", ``/nope`` answers 404); the WebSocket
client checks every echo byte for byte.

Usage (from the repository root; ``bench/setup`` installs wrk and the peers)::

    .venv/bin/python bench/asgi.py                              # everything
    .venv/bin/python bench/asgi.py --workloads starlette --duration 3
    .venv/bin/python bench/asgi.py --servers ours,native --json asgi.json
    .venv/bin/python bench/asgi.py --in-process 20000       # the loop alone, see in_process

Targets (from the ASGI issue): Starlette hello <= 0.2x hypercorn-trio's CPU per
request and <= 0.8x uvicorn-h11's; raw ASGI hello <= 1.25x our native hello;
WebSocket echo through ASGI <= 1.3x our native route's CPU per message and
>= 3x ahead of hypercorn-trio.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from _harness import (
    BENCH_DIR,
    Column,
    LineProcess,
    RunLog,
    ServerFailed,
    ServerProcess,
    ServerUnavailable,
    format_table,
    machine_description,
    parse_csv_list,
    raise_nofile_limit,
    ratio,
    run_wrk,
    write_json,
)
from http_hello import VerifyError, uvicorn_flavour, verify

# name -> (script, extra args for the http workloads given the app, description)
HTTP_SERVERS = ("ours", "native", "hypercorn", "uvicorn-h11", "uvicorn")
WS_SERVERS = ("ours", "native", "hypercorn", "uvicorn-h11")
WORKLOADS = ("raw", "starlette", "ws")
CLIENT = BENCH_DIR / "_ws_client.py"
DESCRIPTIONS = {
    "ours": "trio_upgrade.asgi",
    "native": "trio_upgrade native handler / App route",
    "hypercorn": "hypercorn, Trio worker",
    "uvicorn-h11": "uvicorn, h11 + asyncio",
    "uvicorn": "uvicorn defaults",
}


def server_for(name: str, workload: str) -> tuple[str, list[str]] | None:
    """The script and arguments of server *name* for *workload* (None: not applicable)."""
    app = "starlette" if workload == "starlette" else "raw"
    if name == "ours":
        return "ours_asgi.py", ["--app", app]
    if name == "native":
        if workload == "starlette":
            return None  # the native baseline is the raw hello's
        return ("ours_app_ws.py", []) if workload == "ws" else ("ours_http.py", [])
    if name == "uvicorn" and workload == "ws":
        return None
    return "asgi_peers.py", ["--peer", name, "--app", app]


@dataclass(frozen=True, slots=True)
class Sample:
    count: int  # requests or messages
    seconds: float
    server_cpu_seconds: float
    errors: int = 0

    @property
    def cpu_us(self) -> float:
        return self.server_cpu_seconds / max(self.count, 1) * 1e6

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def measure_http(server: ServerProcess, args: argparse.Namespace) -> Sample:
    verify(server.port)
    url = server.url()
    run_wrk(url, connections=args.connections, duration=1)  # warm-up
    before = server.cpu()
    result = run_wrk(url, connections=args.connections, duration=args.duration)
    cpu = server.cpu() - before
    verify(server.port)
    errors = result.socket_errors + result.bad_responses
    return Sample(result.requests, result.seconds, cpu, errors)


def _ws_client(
    url: str, connections: int, messages: int, inflight: int, timeout: float
) -> list[str]:
    return [
        sys.executable,
        str(CLIENT),
        "--url",
        url,
        "--mode",
        "echo",
        "--connections",
        str(connections),
        "--messages",
        str(messages),
        "--size",
        "32",
        "--inflight",
        str(inflight),
        "--timeout",
        str(timeout),
    ]


def measure_ws(server: ServerProcess, args: argparse.Namespace) -> Sample:
    url = server.url("ws")
    for connections, messages, inflight in ((4, 50, 4), (50, args.messages, 8)):
        with LineProcess(_ws_client(url, connections, messages, inflight, args.timeout)) as client:
            client.event(args.timeout)  # connected: handshakes not measured
            before = server.cpu()
            client.send("go")
            done = client.event(args.timeout)
            cpu = server.cpu() - before
        expected = connections * messages
        if done["messages"] != expected:
            raise RuntimeError(f"{done['messages']} echoes, expected {expected}")
    server.check_alive()
    return Sample(done["messages"], done["seconds"], cpu)


def run(args: argparse.Namespace, log: RunLog) -> dict[str, dict[str, Sample | str]]:
    results: dict[str, dict[str, Sample | str]] = {}
    for workload in args.workloads:
        results[workload] = {}
        log(f"{workload}:")
        names = WS_SERVERS if workload == "ws" else HTTP_SERVERS
        for name in names:
            if name not in args.servers:
                continue
            found = server_for(name, workload)
            if found is None:
                continue
            script, extra = found
            try:
                with ServerProcess(name, script, args=extra) as server:
                    if workload == "ws":
                        sample = measure_ws(server, args)
                    else:
                        sample = measure_http(server, args)
            except ServerUnavailable as exc:
                results[workload][name] = f"unavailable: {exc}"
                log(f"  {name}: unavailable: {exc}")
                continue
            except (ServerFailed, VerifyError, OSError, RuntimeError, ValueError) as exc:
                results[workload][name] = f"failed: {exc}"
                log(f"  {name}: FAILED: {exc}")
                continue
            results[workload][name] = sample
            unit = "msg" if workload == "ws" else "req"
            log(f"  {name}: {sample.rate:,.0f} {unit}/s, {sample.cpu_us:.1f} us CPU/{unit}")
    return results


def cpu_of(results: dict[str, dict[str, Sample | str]], workload: str, name: str) -> float | None:
    sample = results.get(workload, {}).get(name)
    return sample.cpu_us if isinstance(sample, Sample) else None


def verdicts(results: dict[str, dict[str, Sample | str]]) -> list[str]:
    checks = [
        ("starlette", "ours", "hypercorn", 0.2, "<="),
        ("starlette", "ours", "uvicorn-h11", 0.8, "<="),
        ("raw", "ours", "native", 1.25, "<="),
        ("ws", "ours", "native", 1.3, "<="),
        ("ws", "ours", "hypercorn", 1 / 3, "<="),
    ]
    out = []
    for workload, ours, peer, bound, _ in checks:
        got = ratio(cpu_of(results, workload, ours), cpu_of(results, workload, peer))
        if got is None:
            out.append(f"Target {workload}: ours <= {bound:.2f}x {peer}: not evaluated.")
            continue
        verdict = "met" if got <= bound else "MISSED"
        out.append(f"Target {workload}: ours CPU <= {bound:.2f}x {peer}'s: {got:.2f}x, {verdict}.")
    return out


# In-process measurement ------------------------------------------------------------

_IN_PROCESS_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

_IN_PROCESS_CLIENT = r"""
import socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
count = int(sys.argv[2])
request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
sock.recv(1)  # go
for _ in range(count):
    sock.sendall(request)
    data = b""
    while not data.endswith(b"Hello, world!"):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("server closed")
        data += chunk
sock.close()
"""


def in_process(requests: int, rounds: int) -> dict[str, float]:
    """Server CPU per request with our connection loop in this process.

    One keep-alive connection over a socket pair, one request in flight, the
    client a separate (blocking, minimal) process: ``time.process_time`` of
    this process around the run is the server's CPU alone — the connection
    loop, the handler and the app, without listeners, accept or another
    process's scheduler. Best of *rounds* per app, apps interleaved.
    """
    import socket
    import subprocess
    import time

    import trio

    sys.path.insert(0, str(BENCH_DIR / "servers"))
    from _asgi import app as raw_app  # type: ignore[import-not-found]
    from ours_http import make_router  # type: ignore[import-not-found]

    from trio_upgrade.asgi import ASGIHandler
    from trio_upgrade.core import Connection
    from trio_upgrade.http import serve_http_connection

    handlers: dict[str, object] = {"native": make_router(), "raw": ASGIHandler(raw_app)}
    try:
        from _starlette_app import app as starlette_app  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        handlers["starlette"] = ASGIHandler(starlette_app)

    def start_client(count: int) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair()
        client = subprocess.Popen(
            [sys.executable, "-c", _IN_PROCESS_CLIENT, str(theirs.fileno()), str(count)],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        return ours, client

    async def serve_one(handler: object, count: int) -> float:
        ours, client = start_client(count)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        async with trio.open_nursery() as nursery:
            conn = Connection(stream, nursery, client=("127.0.0.1", 1), server=("127.0.0.1", 2))
            started = time.process_time()
            await stream.send_all(b"g")
            await serve_http_connection(conn, handler)  # type: ignore[arg-type]
            cpu = time.process_time() - started
        await stream.aclose()
        if client.wait() != 0:
            raise RuntimeError("in-process client failed")
        return cpu / count

    async def main() -> dict[str, float]:
        best: dict[str, float] = {}
        for handler in handlers.values():
            await serve_one(handler, min(requests, 2000))  # warm-up
        for _ in range(rounds):
            for name, handler in handlers.items():
                cpu = await serve_one(handler, requests)
                best[name] = min(best.get(name, cpu), cpu)
        return best

    return trio.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="all", help=f"comma list of {', '.join(HTTP_SERVERS)}")
    parser.add_argument("--workloads", default="all", help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--duration", type=int, default=5, help="wrk -d seconds (5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    parser.add_argument("--messages", type=int, default=2000, help="ws messages per connection")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON (- = stdout)")
    parser.add_argument(
        "--in-process",
        type=int,
        metavar="N",
        help="instead: our loop in this process, N requests on one connection per run",
    )
    parser.add_argument("--rounds", type=int, default=5, help="--in-process runs per app (5)")
    args = parser.parse_args(argv)
    if args.in_process:
        best = in_process(args.in_process, args.rounds)
        native = best["native"]
        for name, cpu in best.items():
            print(f"{name:>10}: {cpu * 1e6:6.1f} us server CPU/req, {cpu / native:.2f}x native")
        return 0
    args.servers = parse_csv_list(args.servers, list(HTTP_SERVERS), "servers")
    args.workloads = parse_csv_list(args.workloads, list(WORKLOADS), "workloads")
    raise_nofile_limit()
    log = RunLog()
    machine = machine_description()
    out = sys.stderr if args.json == "-" else sys.stdout
    results = run(args, log)

    rows: list[list[object]] = []
    for workload, by_server in results.items():
        unit = "msg" if workload == "ws" else "req"
        for name, sample in by_server.items():
            label = DESCRIPTIONS[name]
            if name == "uvicorn":
                label += f" ({uvicorn_flavour()})"
            if not isinstance(sample, Sample):
                rows.append([workload, name, label, None, None, None, None, None, sample])
                continue
            rows.append(
                [
                    workload,
                    name,
                    label,
                    f"{sample.rate:,.0f} {unit}/s",
                    sample.cpu_us,
                    ratio(sample.cpu_us, cpu_of(results, workload, "ours")),
                    ratio(cpu_of(results, workload, "ours"), sample.cpu_us),
                    ratio(sample.cpu_us, cpu_of(results, "raw", "native"))
                    if workload != "ws"
                    else ratio(sample.cpu_us, cpu_of(results, "ws", "native")),
                    f"{sample.errors} errors" if sample.errors else "",
                ]
            )
    columns = [
        Column("workload", left=True),
        Column("server", left=True),
        Column("what", left=True),
        Column("rate", left=False),
        Column("CPU us/unit", "{:.1f}"),
        Column("CPU x ours", "{:.2f}"),
        Column("ours CPU x this", "{:.2f}"),
        Column("CPU x native", "{:.2f}"),
        Column("note", left=True),
    ]
    notes = [
        f"HTTP: wrk -t1 -c{args.connections} -d{args.duration}s after a 1 s warm-up; "
        f"ws: 50 connections x {args.messages} x 32 B, 8 in flight. "
        f"{machine['cores']} cores ({machine['cpu']}), load average before "
        f"{machine['loadavg_before'][0]:.2f}; code {machine['code']}.",
        *verdicts(results),
    ]
    print(
        format_table("ASGI apps: server CPU per request / message", columns, rows, notes), file=out
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "asgi",
                "machine": machine,
                "settings": {k: v for k, v in vars(args).items()},
                "results": {
                    w: {n: (vars_of(s) if isinstance(s, Sample) else s) for n, s in r.items()}
                    for w, r in results.items()
                },
                "targets": verdicts(results),
            },
        )
    return 0


def vars_of(sample: Sample) -> dict[str, float]:
    return {
        "count": sample.count,
        "seconds": sample.seconds,
        "server_cpu_seconds": sample.server_cpu_seconds,
        "cpu_us": sample.cpu_us,
        "errors": sample.errors,
    }


if __name__ == "__main__":
    sys.exit(main())
