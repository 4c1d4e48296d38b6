"""WebSocket echo: our server against a minimal trio + wsproto loop and the Trio peers.

Each server runs in its own process on 127.0.0.1 and echoes every message;
a picows client (C-accelerated, asyncio) in another process drives it and
checks every reply byte for byte, so a broken server cannot look fast. The
compressed workloads are driven by websockets' asyncio client instead
(``_ws_deflate_client.py``; picows has no permessage-deflate), each server
with its default deflate settings; servers without permessage-deflate are
left out of them. The
server's CPU comes from ``/proc/<pid>/stat`` around the measured phase only
(handshakes excluded for the message workloads). Servers:

- ``ours``: ``trio_upgrade.ws.serve_websocket`` (``bench/servers/ours_ws.py``);
- ``ours-app``: the same echo as a WebSocket route of a ``trio_upgrade.bridge.App``
  served by the HTTP server (handshake through HTTP routing and a takeover);
- ``minimal``: a bare trio + wsproto loop, the ceiling (``min_wsproto.py``);
- ``trio-websocket``, ``websockets-trio`` (``websockets.trio``, >= 17),
  ``hypercorn`` (Trio worker, ASGI echo app);
- ``websockets-asyncio``: websockets' asyncio server, a reference row;
- ``picows``: an echo written on picows' server API (C-accelerated frame
  callbacks, ``picows_echo.py``) on uvloop when installed, asyncio otherwise
  (the output says which): the fastest Python WebSocket server we know of, a
  reference row; no permessage-deflate, so uncompressed workloads only.

Workloads (binary messages):

- ``small``: 50 connections x 2000 messages x 32 B, 8 in flight per connection;
- ``large``: 4 connections x 50 messages x 1 MiB, 2 in flight;
- ``deflate-small``: 50 connections x 1000 text messages x 32 B, 8 in flight,
  permessage-deflate negotiated (what every browser offers);
- ``deflate-4k``: 20 connections x 500 text messages x 4 KiB (chat-like JSON,
  compressible about 2.5:1), 4 in flight, permessage-deflate negotiated;
- ``idle``: 3000 idle connections: server RSS per connection (RSS after
  opening them minus RSS before, after a warm-up), handshakes per second
  while opening them (100 at a time) and server CPU per handshake.

Usage (from the repository root; ``bench/setup`` installs the peers)::

    .venv/bin/python bench/ws_echo.py                                   # everything
    .venv/bin/python bench/ws_echo.py --servers ours,minimal --workloads small
    .venv/bin/python bench/ws_echo.py --servers ours,minimal --scale 0.2  # 5x shorter
    .venv/bin/python bench/ws_echo.py --repeat 3 --json ws.json

``--scale`` multiplies the message counts (``small``, ``large``) for quick
iteration; ``--idle-connections`` changes the 3000. ``--profile DIR`` runs the
servers under cProfile and leaves ``<server>-<workload>.prof`` files in DIR
(``python -m pstats``; profiled figures are only good for finding hot spots).
``--repeat N`` runs the servers round-robin N times per workload and reports
medians. ``--pin SERVER:LOAD`` (e.g. ``0:1``) keeps the server on one CPU and
the client on another. Targets (from the
WebSocket issue): small messages <= 1.15x the minimal loop's CPU; large
messages at or below websockets.trio's CPU; <= 12 KiB per idle connection;
compressed messages at or below websockets.trio's CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, replace

from _harness import (
    BENCH_DIR,
    PROFILE_HELP,
    Column,
    LineProcess,
    RunLog,
    ServerFailed,
    ServerProcess,
    ServerUnavailable,
    cpu_seconds,
    format_table,
    machine_description,
    median,
    parse_csv_list,
    pin_cpus,
    profile_path,
    raise_nofile_limit,
    ratio,
    write_json,
)

# name -> (script in bench/servers, description)
SERVERS: dict[str, tuple[str, str]] = {
    "ours": ("ours_ws.py", "trio_upgrade.ws"),
    "ours-app": ("ours_app_ws.py", "trio_upgrade App (HTTP + takeover)"),
    "minimal": ("min_wsproto.py", "minimal trio + wsproto loop"),
    "trio-websocket": ("trio_websocket_echo.py", "trio-websocket"),
    "websockets-trio": ("websockets_trio_echo.py", "websockets.trio"),
    "hypercorn": ("hypercorn_trio.py", "hypercorn, Trio worker (ASGI)"),
    "websockets-asyncio": ("websockets_asyncio_echo.py", "websockets asyncio (reference)"),
    "picows": ("picows_echo.py", "picows server API, reference"),
}
CLIENT = BENCH_DIR / "_ws_client.py"
DEFLATE_CLIENT = BENCH_DIR / "_ws_deflate_client.py"
# Servers that negotiate permessage-deflate by default (the others would echo
# the compressed workloads uncompressed).
DEFLATE_SERVERS = ("ours", "ours-app", "websockets-trio", "websockets-asyncio")
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    connections: int
    messages: int  # per connection
    size: int
    inflight: int
    idle: bool = False
    # Text messages over permessage-deflate, driven by _ws_deflate_client.py.
    deflate: bool = False


WORKLOADS: dict[str, Workload] = {
    "small": Workload("small", connections=50, messages=2000, size=32, inflight=8),
    "large": Workload("large", connections=4, messages=50, size=MIB, inflight=2),
    "idle": Workload("idle", connections=3000, messages=0, size=0, inflight=0, idle=True),
    "deflate-small": Workload(
        "deflate-small", connections=50, messages=1000, size=32, inflight=8, deflate=True
    ),
    "deflate-4k": Workload(
        "deflate-4k", connections=20, messages=500, size=4096, inflight=4, deflate=True
    ),
}
# A few echoes on a fresh server before anything is measured, so lazy imports
# and first-use allocations are not charged to the workload (or the idle RSS).
WARMUP = Workload("warmup", connections=4, messages=50, size=32, inflight=4)


@dataclass(frozen=True, slots=True)
class EchoSample:
    server_cpu_seconds: float
    seconds: float
    messages: int
    bytes: int
    # The load generator's own CPU: near 100% of the wall time means msgs/s
    # was limited by the client, not the server (server CPU stays valid).
    client_cpu_seconds: float = 0.0

    @property
    def client_busy(self) -> float:
        return self.client_cpu_seconds / self.seconds


@dataclass(frozen=True, slots=True)
class IdleSample:
    connections: int
    rss_before_kib: int
    rss_after_kib: int
    handshake_seconds: float
    handshake_cpu_seconds: float

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.connections

    @property
    def handshakes_per_second(self) -> float:
        return self.connections / self.handshake_seconds


def client_cmd(url: str, w: Workload, timeout: float) -> list[str]:
    """The client process for workload ``w`` against ``url`` (ws://127.0.0.1:...)."""
    if w.deflate:
        return [
            sys.executable,
            str(DEFLATE_CLIENT),
            "--url",
            url,
            "--connections",
            str(w.connections),
            "--messages",
            str(w.messages),
            "--size",
            str(w.size),
            "--inflight",
            str(w.inflight),
            "--timeout",
            str(timeout),
        ]
    return [
        sys.executable,
        str(CLIENT),
        "--url",
        url,
        "--mode",
        "idle" if w.idle else "echo",
        "--connections",
        str(w.connections),
        "--messages",
        str(w.messages),
        "--size",
        str(w.size),
        "--inflight",
        str(w.inflight),
        "--timeout",
        str(timeout),
    ]


def run_echo(
    server: ServerProcess, w: Workload, timeout: float, cpus: set[int] | None = None
) -> EchoSample:
    with LineProcess(client_cmd(server.url("ws"), w, timeout), cpus=cpus) as client:
        client.event(timeout)  # connected: handshakes are not part of this workload
        cpu_before = server.cpu()
        client_before = cpu_seconds(client.pid)
        client.send("go")
        done = client.event(timeout)
        cpu = server.cpu() - cpu_before
        client_cpu = cpu_seconds(client.pid) - client_before
    expected = w.connections * w.messages
    if done["messages"] != expected:
        raise RuntimeError(f"{done['messages']} echoes, expected {expected}")
    return EchoSample(cpu, done["seconds"], done["messages"], done["bytes"], client_cpu)


def run_idle(
    server: ServerProcess, w: Workload, timeout: float, cpus: set[int] | None = None
) -> IdleSample:
    time.sleep(0.3)  # let the warm-up connections' memory settle
    rss_before = server.rss()
    cpu_before = server.cpu()
    with LineProcess(client_cmd(server.url("ws"), w, timeout), cpus=cpus) as client:
        opened = client.event(timeout)
        cpu = server.cpu() - cpu_before
        time.sleep(0.5)  # work the server does just after the handshakes
        rss_after = server.rss()
        client.send("go")  # close them all
        client.event(timeout)
    return IdleSample(w.connections, rss_before, rss_after, opened["seconds"], cpu)


def measure(
    name: str, w: Workload, args: argparse.Namespace, log: RunLog
) -> EchoSample | IdleSample:
    script, _ = SERVERS[name]
    profile = profile_path(args.profile, name, w.name)
    pins = pin_cpus(args.pin)
    server_cpus, load_cpus = pins if pins else (None, None)
    with ServerProcess(name, script, profile=profile, cpus=server_cpus) as server:
        run_echo(server, replace(WARMUP, deflate=w.deflate), args.timeout, load_cpus)
        run = run_idle if w.idle else run_echo
        sample = run(server, w, args.timeout, load_cpus)
        server.check_alive()
    if isinstance(sample, IdleSample):
        log(
            f"  {name}: {sample.kib_per_connection:.1f} KiB/conn, "
            f"{sample.handshakes_per_second:,.0f} handshakes/s"
        )
    else:
        log(
            f"  {name}: {sample.server_cpu_seconds:.2f} s server CPU, "
            f"{sample.messages / sample.seconds:,.0f} msgs/s"
        )
    return sample


def scaled(w: Workload, args: argparse.Namespace) -> Workload:
    if w.idle:
        return replace(w, connections=args.idle_connections)
    return replace(w, messages=max(1, round(w.messages * args.scale)))


def describe(w: Workload) -> str:
    if w.idle:
        return f"{w.connections} idle connections"
    size = f"{w.size // MIB} MiB" if w.size >= MIB else f"{w.size} B"
    kind = "text messages (permessage-deflate)" if w.deflate else "messages"
    return (
        f"{w.connections} connections x {w.messages} {kind} x {size}, "
        f"{w.inflight} in flight per connection"
    )


def label(name: str) -> str:
    """A row's description; picows' says which event loop it ran on."""
    what = SERVERS[name][1]
    if name == "picows":
        what += " (uvloop)" if importlib.util.find_spec("uvloop") else " (asyncio)"
    return what


def echo_table(
    w: Workload, names: list[str], samples: dict[str, list[EchoSample]], status: dict[str, str]
) -> tuple[str, dict[str, float], list[str]]:
    cpu = {n: median(s.server_cpu_seconds for s in v) for n, v in samples.items() if v}
    rate = {n: median(s.messages / s.seconds for s in v) for n, v in samples.items() if v}
    mib_s = {n: median(s.bytes / s.seconds / MIB for s in v) for n, v in samples.items() if v}
    rows: list[list[object]] = []
    for name in names:
        if name not in cpu:
            rows.append([name, label(name), *([None] * 8), status.get(name, "")])
            continue
        runs = samples[name]
        n_msgs = runs[0].messages
        rows.append(
            [
                name,
                label(name),
                cpu[name],
                ratio(cpu[name], cpu.get("minimal")),
                ratio(cpu[name], cpu.get("websockets-trio")),
                ratio(cpu[name], cpu.get("trio-websocket")),
                cpu[name] / n_msgs * 1e6,
                rate[name],
                mib_s[name],
                median(s.client_busy for s in runs) * 100,
                spread([s.server_cpu_seconds for s in runs], "CPU s", "{:.2f}"),
            ]
        )
    columns = [
        Column("server", left=True),
        Column("what", left=True),
        Column("server CPU s", "{:.2f}"),
        Column("x minimal", "{:.2f}"),
        Column("x websockets.trio", "{:.2f}"),
        Column("x trio-websocket", "{:.2f}"),
        Column("CPU us/msg", "{:.1f}"),
        Column("msgs/s", "{:,.0f}"),
        Column("MiB/s", "{:,.1f}"),
        Column("client busy %", "{:.0f}"),
        Column("note", left=True),
    ]
    verdicts: list[str] = []
    if "ours" in cpu:
        if w.name == "small":
            verdicts.append(
                _verdict("ours CPU <= 1.15x minimal", cpu["ours"], cpu.get("minimal"), 1.15)
            )
        elif w.name == "large" or w.deflate:
            verdicts.append(
                _verdict(
                    "ours CPU <= 1.0x websockets.trio", cpu["ours"], cpu.get("websockets-trio"), 1.0
                )
            )
    title = f"WebSocket echo, {w.name}: {describe(w)}"
    notes = [
        "Ratios are of server CPU seconds (lower is better). Client busy % is the load "
        "generator's CPU over the wall time: near 100 means msgs/s was capped by the client.",
        *verdicts,
    ]
    return format_table(title, columns, rows, notes), cpu, verdicts


def spread(values: list[float], what: str, fmt: str) -> str:
    """``"CPU s 1.61-1.72"`` over several rounds, so the noise is visible; empty for one."""
    if len(values) < 2:
        return ""
    return f"{what} {fmt.format(min(values))}-{fmt.format(max(values))}"


def _verdict(label: str, value: float, baseline: float | None, limit: float) -> str:
    got = ratio(value, baseline)
    if got is None:
        return f"Target {label}: not evaluated (baseline missing)."
    return f"Target {label}: {got:.2f}x, {'met' if got <= limit else 'MISSED'}."


def idle_table(
    w: Workload, names: list[str], samples: dict[str, list[IdleSample]], status: dict[str, str]
) -> tuple[str, dict[str, float], list[str]]:
    per_conn = {n: median(s.kib_per_connection for s in v) for n, v in samples.items() if v}
    rows: list[list[object]] = []
    for name in names:
        runs = samples[name]
        if not runs:
            rows.append([name, label(name), *([None] * 6), status.get(name, "")])
            continue
        rows.append(
            [
                name,
                label(name),
                per_conn[name],
                ratio(per_conn[name], per_conn.get("minimal")),
                median(s.handshakes_per_second for s in runs),
                median(s.handshake_cpu_seconds / s.connections * 1e6 for s in runs),
                median(s.rss_before_kib for s in runs) / 1024,
                median(s.rss_after_kib for s in runs) / 1024,
                spread([s.kib_per_connection for s in runs], "KiB/conn", "{:.1f}"),
            ]
        )
    columns = [
        Column("server", left=True),
        Column("what", left=True),
        Column("KiB/conn", "{:.1f}"),
        Column("x minimal", "{:.2f}"),
        Column("handshakes/s", "{:,.0f}"),
        Column("CPU us/handshake", "{:.0f}"),
        Column("RSS MiB before", "{:.1f}"),
        Column("RSS MiB after", "{:.1f}"),
        Column("note", left=True),
    ]
    verdicts: list[str] = []
    if "ours" in per_conn:
        got = per_conn["ours"]
        verdicts.append(
            f"Target ours <= 12 KiB per idle connection: {got:.1f} KiB, "
            f"{'met' if got <= 12 else 'MISSED'}."
        )
    title = f"WebSocket {describe(w)}"
    notes = [
        "KiB/conn = (server RSS with the connections open - RSS before) / connections; "
        "handshakes opened 100 at a time.",
        *verdicts,
    ]
    return format_table(title, columns, rows, notes), per_conn, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="all", help=f"comma list of {', '.join(SERVERS)}")
    parser.add_argument("--workloads", default="all", help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply message counts (1)")
    parser.add_argument("--idle-connections", type=int, default=3000, help="(3000)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians reported (1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per client phase, s")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON (- = stdout)")
    parser.add_argument("--profile", metavar="DIR", help=PROFILE_HELP)
    parser.add_argument(
        "--pin",
        metavar="SERVER:LOAD",
        help="keep the server and the client on separate CPUs, e.g. 0:1 (default: the OS decides)",
    )
    args = parser.parse_args(argv)
    pin_cpus(args.pin)  # a malformed --pin fails here, before any server starts
    names = parse_csv_list(args.servers, list(SERVERS), "servers")
    workloads = [
        scaled(WORKLOADS[w], args)
        for w in parse_csv_list(args.workloads, list(WORKLOADS), "workloads")
    ]
    log = RunLog()
    # With --json - the JSON owns stdout; the tables go to stderr with the progress.
    out = sys.stderr if args.json == "-" else sys.stdout
    raise_nofile_limit()
    machine = machine_description()
    log(f"ws_echo: servers {', '.join(names)}; workloads {', '.join(w.name for w in workloads)}")

    results: dict[str, object] = {}
    all_verdicts: list[str] = []
    status: dict[str, str] = {}  # servers unavailable: skipped in later workloads
    for w in workloads:
        log(f"{w.name}: {describe(w)}")
        samples: dict[str, list[EchoSample | IdleSample]] = {n: [] for n in names}
        failed: dict[str, str] = {}
        for round_no in range(args.repeat):
            if args.repeat > 1:
                log(f" round {round_no + 1}/{args.repeat}")
            for name in names:
                if name in status or name in failed:
                    continue
                if w.deflate and name not in DEFLATE_SERVERS:
                    failed[name] = "no permessage-deflate by default"
                    continue
                try:
                    samples[name].append(measure(name, w, args, log))
                except ServerUnavailable as exc:
                    status[name] = str(exc)
                    log(f"  {name}: {exc}")
                except (ServerFailed, RuntimeError, OSError, ValueError) as exc:
                    failed[name] = f"failed: {exc}"
                    log(f"  {name}: FAILED: {exc}")
        reasons = {**status, **failed}
        if w.idle:
            idle = {n: [s for s in v if isinstance(s, IdleSample)] for n, v in samples.items()}
            table, summary, verdicts = idle_table(w, names, idle, reasons)
        else:
            echo = {n: [s for s in v if isinstance(s, EchoSample)] for n, v in samples.items()}
            table, summary, verdicts = echo_table(w, names, echo, reasons)
        print(table, file=out, flush=True)
        all_verdicts += verdicts
        results[w.name] = {
            "workload": w,
            "samples": samples,
            "status": reasons,
            "summary": summary,
            "targets": verdicts,
        }
    print(
        f"{machine['cores']} cores ({machine['cpu']}), load average before "
        f"{machine['loadavg_before'][0]:.2f}; median of {args.repeat} round(s)"
        + (f", server:client pinned to CPUs {args.pin}" if args.pin else "")
        + f"; code {machine['code']}.",
        file=out,
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "ws_echo",
                "machine": machine,
                "settings": vars(args),
                "results": results,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
