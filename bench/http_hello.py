"""HTTP hello-world: ours against a minimal trio + h11 loop, hypercorn, uvicorn and granian.

Each server runs in its own process on 127.0.0.1 and answers ``GET /`` with
"Hello, world!"; ``wrk`` drives it from another process. The server's CPU
time comes from ``/proc/<pid>/stat`` around the measured run, so CPU per
request is the server's alone. Servers:

- ``ours``: ``trio_upgrade.http`` with a ``Router``, one route and one
  pass-through middleware in the path (``bench/servers/ours_http.py``), the
  request parser ``auto`` (httptools when installed, which the output says);
- ``ours-h11``: the same with the pure-Python parser (``parser="h11"``);
- ``minimal``: a bare trio + h11 keep-alive loop, the reference (everything
  through h11, nothing else)
  (``bench/servers/min_h11.py``);
- ``floor``: a raw Trio keep-alive loop answering a fixed response with no
  parser at all (``bench/servers/raw_trio.py``): what Trio's own receive and
  send cost per request, the floor of any Trio server;
- ``hypercorn``: hypercorn's Trio worker serving a tiny ASGI app;
- ``uvicorn``: uvicorn with default settings serving the same ASGI app
  (httptools/uvloop if installed, as ``uvicorn[standard]`` installs them;
  the output says which);
- ``granian``: granian (HTTP in Rust, the app on a Python event loop) serving
  the same ASGI app with one worker, one Rust runtime thread and one Python
  thread (``bench/servers/granian_http.py`` says why), its event loop uvloop
  when installed (the output says which). Its worker is a child process; the
  CPU and RSS figures count the whole process tree.

None of them writes an access log. Before measuring, each server is checked:
two keep-alive requests to ``/`` must answer 200 "Hello, world!" and ``/nope``
must answer 404, so a broken server cannot look fast.

Usage (from the repository root; ``bench/setup`` installs wrk and the peers)::

    .venv/bin/python bench/http_hello.py                      # all servers, wrk -t1 -c50 -d5s
    .venv/bin/python bench/http_hello.py --servers ours,minimal --duration 3
    .venv/bin/python bench/http_hello.py --repeat 3 --json results.json

``--profile DIR`` runs the servers under cProfile and leaves one
``<server>-http_hello.prof`` per server in DIR (read it with ``python -m pstats``);
profiled figures are slower and only good for finding where the time goes.
``--repeat N`` runs the servers round-robin N times and reports medians. The
targets: ours >= 0.85x the minimal loop's req/s (the HTTP issue) and at most
1.3x uvicorn[standard]'s CPU per request, i.e. >= 1/1.3 = 0.77x its req/s
(the parser issue), with routing and one middleware in the path.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import sys
from dataclasses import dataclass

from _harness import (
    HOST,
    PROFILE_HELP,
    Column,
    RunLog,
    ServerFailed,
    ServerProcess,
    ServerUnavailable,
    format_table,
    machine_description,
    median,
    parse_csv_list,
    pin_cpus,
    profile_path,
    raise_nofile_limit,
    ratio,
    run_wrk,
    write_json,
)

# name -> (script in bench/servers, description)
SERVERS: dict[str, tuple[str, str]] = {
    "ours": ("ours_http.py", "trio_upgrade.http (Router + 1 middleware)"),
    "ours-h11": ("ours_http.py", "trio_upgrade.http (Router + 1 middleware)"),
    "minimal": ("min_h11.py", "minimal trio + h11 loop"),
    "floor": ("raw_trio.py", "raw Trio loop, no parser (the floor)"),
    "hypercorn": ("hypercorn_trio.py", "hypercorn, Trio worker"),
    "uvicorn": ("uvicorn_http.py", "uvicorn"),
    "granian": ("granian_http.py", "granian, 1 worker, 1 runtime thread"),
}
# The request parser each of our rows runs with (HTTPConfig's default reads it).
PARSERS = {"ours": "auto", "ours-h11": "h11"}
BASELINES = ("minimal", "uvicorn")
TARGETS = {"minimal": 0.85, "uvicorn": 1 / 1.3}
# The parser issue's other bound: at most this many times the floor's CPU per request.
FLOOR_TARGET = 2.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured wrk run against one server."""

    requests: int
    seconds: float
    requests_per_second: float
    server_cpu_seconds: float
    rss_kib: int
    socket_errors: int
    bad_responses: int

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_seconds / max(self.requests, 1) * 1e6


class VerifyError(Exception):
    """The server answered something other than the expected hello world."""


def verify(port: int) -> None:
    """Two keep-alive requests to ``/`` and one to ``/nope`` on one connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or body != b"Hello, world!":
                raise VerifyError(f"GET / answered {response.status} {body[:80]!r}")
            if response.will_close:
                raise VerifyError("GET / did not keep the connection alive")
        conn.request("GET", "/nope")
        response = conn.getresponse()
        response.read()
        if response.status != 404:
            raise VerifyError(f"GET /nope answered {response.status}, expected 404")
    finally:
        conn.close()


def measure(name: str, args: argparse.Namespace, log: RunLog) -> Sample:
    script, _ = SERVERS[name]
    profile = profile_path(args.profile, name, "http_hello")
    if name in PARSERS:
        # The server process inherits it.
        os.environ["TRIO_UPGRADE_HTTP_PARSER"] = PARSERS[name]
    pins = pin_cpus(args.pin)
    server_cpus, load_cpus = pins if pins else (None, None)
    with ServerProcess(name, script, profile=profile, cpus=server_cpus) as server:
        verify(server.port)
        url = server.url()
        load = {
            "threads": args.threads,
            "connections": args.connections,
            "cpus": load_cpus,
        }
        if args.warmup > 0:
            run_wrk(url, duration=args.warmup, **load)
        cpu_before = server.cpu()
        result = run_wrk(url, duration=args.duration, **load)
        cpu = server.cpu() - cpu_before
        sample = Sample(
            requests=result.requests,
            seconds=result.seconds,
            requests_per_second=result.requests_per_second,
            server_cpu_seconds=cpu,
            rss_kib=server.rss(),
            socket_errors=result.socket_errors,
            bad_responses=result.bad_responses,
        )
        verify(server.port)  # still healthy after the load
    log(
        f"  {name}: {sample.requests_per_second:,.0f} req/s, "
        f"{sample.cpu_us_per_request:.1f} us CPU/req"
        + (f", {sample.socket_errors} socket errors" if sample.socket_errors else "")
        + (f", {sample.bad_responses} bad responses" if sample.bad_responses else "")
    )
    return sample


def spread(runs: list[Sample]) -> str:
    """The range over several rounds, so the noise is visible; empty for one round."""
    if len(runs) < 2:
        return ""
    rates = [s.requests_per_second for s in runs]
    cpus = [s.cpu_us_per_request for s in runs]
    return f"req/s {min(rates):,.0f}-{max(rates):,.0f}, CPU us/req {min(cpus):.1f}-{max(cpus):.1f}"


def parser_label(name: str) -> str:
    """Which request parser one of our rows ran with."""
    wanted = PARSERS[name]
    if wanted == "auto":
        return "parser auto: " + ("httptools" if importlib.util.find_spec("httptools") else "h11")
    return f"parser {wanted}"


def uvicorn_flavour() -> str:
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http} + {loop}"


def granian_loop() -> str:
    """The event loop granian's ``auto`` picks (rloop, then uvloop, then asyncio)."""
    for loop in ("rloop", "uvloop"):
        if importlib.util.find_spec(loop):
            return loop
    return "asyncio"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="all", help=f"comma list of {', '.join(SERVERS)}")
    parser.add_argument("--duration", type=int, default=5, help="wrk -d seconds (5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="unmeasured wrk seconds, 0 = none (1)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians reported (1)")
    parser.add_argument("--json", metavar="PATH", help="also write results as JSON (- = stdout)")
    parser.add_argument("--profile", metavar="DIR", help=PROFILE_HELP)
    parser.add_argument(
        "--pin",
        metavar="SERVER:LOAD",
        help="keep the server and wrk on separate CPUs, e.g. 0:1 (default: the OS places them)",
    )
    args = parser.parse_args(argv)
    names = parse_csv_list(args.servers, list(SERVERS), "servers")
    log = RunLog()
    # With --json - the JSON owns stdout; the tables go to stderr with the progress.
    out = sys.stderr if args.json == "-" else sys.stdout
    raise_nofile_limit()
    machine = machine_description()
    log(
        f"http_hello: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
        f"{args.repeat} round(s), servers: {', '.join(names)}"
    )

    samples: dict[str, list[Sample]] = {name: [] for name in names}
    status: dict[str, str] = {}
    for round_no in range(args.repeat):
        log(f"round {round_no + 1}/{args.repeat}")
        for name in names:
            if name in status:
                continue  # unavailable or failed once: do not retry every round
            try:
                samples[name].append(measure(name, args, log))
            except ServerUnavailable as exc:
                status[name] = str(exc)
                log(f"  {name}: {exc}")
            except (ServerFailed, VerifyError, OSError, RuntimeError, ValueError) as exc:
                status[name] = f"failed: {exc}"
                log(f"  {name}: FAILED: {exc}")

    rps = {n: median(s.requests_per_second for s in v) for n, v in samples.items() if v}
    cpu_req = {n: median(s.cpu_us_per_request for s in v) for n, v in samples.items() if v}
    rows: list[list[object]] = []
    for name in names:
        label = SERVERS[name][1]
        if name == "uvicorn":
            label += f" ({uvicorn_flavour()})"
        elif name == "granian":
            label += f" ({granian_loop()})"
        elif name in PARSERS:
            label += f" ({parser_label(name)})"
        runs = samples[name]
        if not runs:
            rows.append(
                [name, label, None, None, None, None, None, None, None, status.get(name, "")]
            )
            continue
        errors = sum(s.socket_errors + s.bad_responses for s in runs)
        rows.append(
            [
                name,
                label,
                rps[name],
                ratio(rps[name], rps.get("minimal")),
                ratio(rps[name], rps.get("uvicorn")),
                cpu_req[name],
                ratio(cpu_req[name], cpu_req.get("minimal")),
                ratio(cpu_req[name], cpu_req.get("floor")),
                max(s.rss_kib for s in runs) / 1024,
                "; ".join(filter(None, [f"{errors} errors" if errors else "", spread(runs)])),
            ]
        )
    columns = [
        Column("server", left=True),
        Column("what", left=True),
        Column("req/s", "{:,.0f}"),
        Column("x minimal", "{:.2f}"),
        Column("x uvicorn", "{:.2f}"),
        Column("CPU us/req", "{:.1f}"),
        Column("CPU/req x minimal", "{:.2f}"),
        Column("CPU/req x floor", "{:.2f}"),
        Column("RSS MiB", "{:.1f}"),
        Column("note", left=True),
    ]
    notes = [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, "
        f"median of {args.repeat} round(s)"
        + (f", server:wrk pinned to CPUs {args.pin}" if args.pin else "")
        + f"; {machine['cores']} cores ({machine['cpu']}), "
        f"load average before {machine['loadavg_before'][0]:.2f}; code {machine['code']}.",
    ]
    verdicts = target_verdicts(rps, cpu_req) + round_ratios(samples)
    notes += verdicts
    print(format_table("HTTP hello world", columns, rows, notes), file=out)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "http_hello",
                "machine": machine,
                "settings": vars(args),
                "samples": {n: list(v) for n, v in samples.items()},
                "status": status,
                "median_requests_per_second": rps,
                "median_cpu_us_per_request": cpu_req,
                "targets": verdicts,
            },
        )
    return 0


def target_verdicts(rps: dict[str, float], cpu_req: dict[str, float]) -> list[str]:
    """The targets judged on req/s, and again on CPU per request.

    A CPU-bound server's req/s is the inverse of its CPU per request, so
    ">= 0.85x the req/s" is "<= 1/0.85 = 1.18x the CPU per request". On a busy
    shared machine req/s swings with other load while CPU per request does not,
    so both verdicts are printed.
    """
    if "ours" not in rps:
        return ["Target not evaluated: ours did not run."]
    out = []
    for baseline, wanted in TARGETS.items():
        got = ratio(rps["ours"], rps.get(baseline))
        if got is None:
            out.append(f"Target ours >= {wanted}x {baseline}: not evaluated ({baseline} missing).")
            continue
        verdict = "met" if got >= wanted - 1e-9 else "MISSED"
        cpu = ratio(cpu_req["ours"], cpu_req.get(baseline))
        assert cpu is not None
        cpu_verdict = "met" if cpu <= 1 / wanted else "MISSED"
        out.append(
            f"Target ours >= {wanted:.2f}x {baseline} req/s: {got:.2f}x, {verdict}; "
            f"by CPU per request (<= {1 / wanted:.2f}x): {cpu:.2f}x, {cpu_verdict}."
        )
    floor = ratio(cpu_req["ours"], cpu_req.get("floor"))
    if floor is not None:
        verdict = "met" if floor <= FLOOR_TARGET else "MISSED"
        out.append(
            f"Target ours <= {FLOOR_TARGET:.1f}x the floor's CPU per request: "
            f"{floor:.2f}x, {verdict}."
        )
    return out


def round_ratios(samples: dict[str, list[Sample]]) -> list[str]:
    """Ours against each baseline round by round (CPU per request), and their median.

    The rounds run the servers one after another, so a ratio within a round
    compares servers measured a few seconds apart: steadier than the ratio of
    medians taken over the whole run when the machine's speed drifts.
    """
    ours = samples.get("ours", [])
    out = []
    for baseline in ("uvicorn", "floor", "granian"):
        theirs = samples.get(baseline, [])
        rounds = [
            a.cpu_us_per_request / b.cpu_us_per_request
            for a, b in zip(ours, theirs, strict=False)
            if b.requests and a.requests
        ]
        if len(rounds) > 1:
            out.append(
                f"ours / {baseline} CPU per request by round: "
                + ", ".join(f"{r:.2f}" for r in rounds)
                + f"; median {median(rounds):.2f}x."
            )
    return out


if __name__ == "__main__":
    sys.exit(main())
