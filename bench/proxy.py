"""Reverse proxy: WebSocket echo and HTTP hello world through ``trio_upgrade.proxy`` vs direct.

Three server processes on 127.0.0.1: an HTTP backend (the minimal trio + h11
hello loop, ``bench/servers/min_h11.py``), a WebSocket echo backend
(websockets' asyncio server, the cheapest echo in ``ws_echo``, so the backend
takes as little of the 2 cores as possible), and our proxy in front of both
(``bench/servers/ours_proxy.py``: ``/ws`` to the echo backend, the rest to the
hello backend). The same load runs straight at each backend ("direct") and
through the proxy, in the same run:

- WebSocket echo (``small``: 50 connections x 1000 messages x 32 B, 8 in
  flight; ``large``: 4 x 50 x 1 MiB, 2 in flight), picows client checking
  every echo: messages per second, proxy CPU per message, backend CPU;
- HTTP hello world with ``wrk -t1 -c50 -d5s``: requests per second, proxy CPU
  per request, backend CPU.

Through the proxy, three processes share 2 cores instead of two, so some loss
is expected; the proxy's CPU per message or request is its own cost.
Target (from the reverse proxy issue): tunnelled echo >= 0.7x the direct
throughput.

Usage (from the repository root; ``bench/setup`` installs wrk and the peers)::

    .venv/bin/python bench/proxy.py
    .venv/bin/python bench/proxy.py --workloads ws-small,http --repeat 3 --json proxy.json

``--scale`` multiplies the WebSocket message counts; ``--profile DIR`` runs
the proxy (only) under cProfile.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

from _harness import (
    PROFILE_HELP,
    Column,
    LineProcess,
    RunLog,
    ServerFailed,
    ServerProcess,
    ServerUnavailable,
    format_table,
    machine_description,
    median,
    parse_csv_list,
    profile_path,
    raise_nofile_limit,
    ratio,
    run_wrk,
    write_json,
)
from http_hello import VerifyError, verify
from ws_echo import MIB, WARMUP, Workload, client_cmd, describe

WS_WORKLOADS = {
    "ws-small": Workload("ws-small", connections=50, messages=1000, size=32, inflight=8),
    "ws-large": Workload("ws-large", connections=4, messages=50, size=MIB, inflight=2),
}
WORKLOADS = [*WS_WORKLOADS, "http"]
TARGET = 0.7  # tunnelled echo throughput / direct, small messages


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run, direct or through the proxy."""

    units: int  # messages echoed or requests answered
    seconds: float
    proxy_cpu_seconds: float | None  # None when direct
    backend_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.units / self.seconds


def echo_once(
    url: str, w: Workload, proxy: ServerProcess | None, backend: ServerProcess, timeout: float
) -> Sample:
    with LineProcess(client_cmd(url, w, timeout)) as client:
        client.event(timeout)  # connected: handshakes are not measured
        proxy_before = proxy.cpu() if proxy else None
        backend_before = backend.cpu()
        client.send("go")
        done = client.event(timeout)
        proxy_cpu = proxy.cpu() - proxy_before if proxy and proxy_before is not None else None
        backend_cpu = backend.cpu() - backend_before
    expected = w.connections * w.messages
    if done["messages"] != expected:
        raise RuntimeError(f"{done['messages']} echoes, expected {expected}")
    return Sample(done["messages"], done["seconds"], proxy_cpu, backend_cpu)


def http_once(
    url: str, args: argparse.Namespace, proxy: ServerProcess | None, backend: ServerProcess
) -> Sample:
    if args.warmup > 0:
        run_wrk(url, connections=args.connections, duration=args.warmup)
    proxy_before = proxy.cpu() if proxy else None
    backend_before = backend.cpu()
    result = run_wrk(url, connections=args.connections, duration=args.duration)
    proxy_cpu = proxy.cpu() - proxy_before if proxy and proxy_before is not None else None
    backend_cpu = backend.cpu() - backend_before
    if result.socket_errors or result.bad_responses:
        raise RuntimeError(
            f"wrk saw {result.socket_errors} socket errors, {result.bad_responses} bad responses"
        )
    return Sample(result.requests, result.seconds, proxy_cpu, backend_cpu)


def spread(runs: list[Sample], unit: str) -> str:
    """The range of the rate over several rounds, so the noise is visible."""
    if len(runs) < 2:
        return ""
    return f"{unit}/s {min(s.rate for s in runs):,.0f}-{max(s.rate for s in runs):,.0f}"


def table(
    name: str, title: str, unit: str, samples: dict[str, list[Sample]], status: dict[str, str]
) -> tuple[str, float | None]:
    rows: list[list[object]] = []
    rate = {k: median(s.rate for s in v) for k, v in samples.items() if v}
    for path in ("direct", "proxy"):
        runs = samples[path]
        if not runs:
            rows.append([path, *([None] * 5), status.get(path, "")])
            continue
        proxy_cpu = [s.proxy_cpu_seconds for s in runs if s.proxy_cpu_seconds is not None]
        proxy_per_unit = [
            s.proxy_cpu_seconds / s.units * 1e6 for s in runs if s.proxy_cpu_seconds is not None
        ]
        rows.append(
            [
                path,
                rate[path],
                ratio(rate[path], rate.get("direct")),
                median(proxy_cpu) if proxy_cpu else None,
                median(proxy_per_unit) if proxy_per_unit else None,
                median(s.backend_cpu_seconds / s.units * 1e6 for s in runs),
                spread(runs, unit),
            ]
        )
    columns = [
        Column("path", left=True),
        Column(f"{unit}/s", "{:,.0f}"),
        Column("x direct", "{:.2f}"),
        Column("proxy CPU s", "{:.2f}"),
        Column(f"proxy CPU us/{unit}", "{:.1f}"),
        Column(f"backend CPU us/{unit}", "{:.1f}"),
        Column("note", left=True),
    ]
    got = ratio(rate.get("proxy"), rate.get("direct"))
    notes = []
    if name == "ws-small":
        if got is None:
            notes.append(f"Target tunnelled echo >= {TARGET}x direct: not evaluated.")
        else:
            verdict = "met" if got >= TARGET else "MISSED"
            notes.append(
                f"Target tunnelled echo >= {TARGET}x direct msgs/s: {got:.2f}x, {verdict}."
            )
    return format_table(title, columns, rows, notes), got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="all", help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply WebSocket messages")
    parser.add_argument("--duration", type=int, default=5, help="wrk -d seconds (5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured wrk seconds (1)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians reported (1)")
    parser.add_argument("--timeout", type=float, default=300.0, help="per client phase, s")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON (- = stdout)")
    parser.add_argument("--profile", metavar="DIR", help=PROFILE_HELP)
    args = parser.parse_args(argv)
    chosen = parse_csv_list(args.workloads, WORKLOADS, "workloads")
    log = RunLog()
    out = sys.stderr if args.json == "-" else sys.stdout
    raise_nofile_limit()
    machine = machine_description()
    results: dict[str, object] = {}

    with (
        ServerProcess("http-backend", "min_h11.py") as http_backend,
        ServerProcess("ws-backend", "websockets_asyncio_echo.py") as ws_backend,
    ):
        proxy_args = [
            "--http-backend",
            f"http://127.0.0.1:{http_backend.port}",
            "--ws-backend",
            f"http://127.0.0.1:{ws_backend.port}",
        ]
        for name in chosen:
            w = WS_WORKLOADS.get(name)
            if w is not None:
                w = replace(w, messages=max(1, round(w.messages * args.scale)))
            title = (
                f"WebSocket echo via proxy, {describe(w)}"
                if w
                else f"HTTP hello world via proxy, wrk -t1 -c{args.connections} -d{args.duration}s"
            )
            log(title)
            samples: dict[str, list[Sample]] = {"direct": [], "proxy": []}
            status: dict[str, str] = {}
            for _ in range(args.repeat):
                for path in ("direct", "proxy"):
                    if path in status:
                        continue
                    try:
                        sample = run_one(path, name, w, args, http_backend, ws_backend, proxy_args)
                    except ServerUnavailable as exc:
                        status[path] = str(exc)
                        log(f"  {path}: {exc}")
                        continue
                    except (ServerFailed, VerifyError, RuntimeError, OSError, ValueError) as exc:
                        status[path] = f"failed: {exc}"
                        log(f"  {path}: FAILED: {exc}")
                        continue
                    samples[path].append(sample)
                    log(f"  {path}: {sample.rate:,.0f}/s")
            text, got = table(name, title, "msg" if w else "req", samples, status)
            print(text, file=out, flush=True)
            results[name] = {"samples": samples, "status": status, "proxy_vs_direct": got}
    print(
        f"{machine['cores']} cores ({machine['cpu']}), load average before "
        f"{machine['loadavg_before'][0]:.2f}; median of {args.repeat} round(s); "
        f"code {machine['code']}.",
        file=out,
    )
    if args.json:
        write_json(
            args.json,
            {"benchmark": "proxy", "machine": machine, "settings": vars(args), "results": results},
        )
    return 0


def run_one(
    path: str,
    name: str,
    w: Workload | None,
    args: argparse.Namespace,
    http_backend: ServerProcess,
    ws_backend: ServerProcess,
    proxy_args: list[str],
) -> Sample:
    backend = ws_backend if w else http_backend
    if path == "direct":
        if w:
            echo_once(backend.url("ws"), WARMUP, None, backend, args.timeout)
            return echo_once(backend.url("ws"), w, None, backend, args.timeout)
        verify(backend.port)
        return http_once(backend.url(), args, None, backend)
    # A fresh proxy per measurement, so one run's pool or tunnels do not carry over.
    profile = profile_path(args.profile, "proxy", name)
    with ServerProcess("proxy", "ours_proxy.py", args=proxy_args, profile=profile) as proxy:
        if w:
            echo_once(proxy.url("ws", "/ws"), WARMUP, proxy, backend, args.timeout)
            return echo_once(proxy.url("ws", "/ws"), w, proxy, backend, args.timeout)
        verify(proxy.port)
        return http_once(proxy.url(), args, proxy, backend)


if __name__ == "__main__":
    sys.exit(main())
