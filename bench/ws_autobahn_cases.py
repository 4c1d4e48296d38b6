"""Autobahn cases timed against our server and websockets.trio, in one run.

The heavy permessage-deflate cases of the Autobahn TestSuite (1000 messages of
up to 128 KiB, compressed, many split into small frames) are where a slow
compressed path shows. This runs ``kosoku -m fuzzingclient`` (the Autobahn
driver, in its own process) on the same cases against each server in turn,
each server in its own process with its default permessage-deflate settings
(keepalive pings off: a ping in the middle of a case fails it),
and reports per case: kosoku's case duration (wall time, which includes the
driver's own work), and the server's CPU seconds over the case. Every case
must end OK (or INFORMATIONAL), or the row says what it got.

Usage (from the repository root)::

    .venv/bin/python bench/ws_autobahn_cases.py                      # the four heavy cases
    .venv/bin/python bench/ws_autobahn_cases.py --cases 12.1.10,13.3.15 --repeat 3
    .venv/bin/python bench/ws_autobahn_cases.py --servers ours,websockets-trio,websockets-asyncio

Cases run one at a time (``-p 1``), so a case's duration is not shared with
another; the servers alternate case by case, so both see the same machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import (
    Column,
    RunLog,
    ServerProcess,
    format_table,
    machine_description,
    median,
    parse_csv_list,
    ratio,
)

SERVERS: dict[str, tuple[str, str]] = {
    "ours": ("ours_ws.py", "trio_upgrade.ws"),
    "websockets-trio": ("websockets_trio_echo.py", "websockets.trio"),
    "websockets-asyncio": ("websockets_asyncio_echo.py", "websockets asyncio (reference)"),
}
HEAVY = ["12.1.10", "12.2.15", "12.3.17", "13.3.15"]
ALLOWED = {"OK", "INFORMATIONAL"}


def kosoku() -> str:
    script = Path(sys.executable).with_name("kosoku")
    if script.exists():
        return str(script)
    found = shutil.which("kosoku")
    if found is None:
        raise SystemExit("kosoku is not installed (pip install kosoku)")
    return found


def run_case(server: ServerProcess, case: str, timeout: float) -> tuple[float, float, str]:
    """(kosoku's duration s, server CPU s, verdict) of one case against *server*."""
    with tempfile.TemporaryDirectory(prefix="bench-autobahn-") as outdir:
        before = server.cpu()
        subprocess.run(
            [
                kosoku(),
                "-m",
                "fuzzingclient",
                "-p",
                "1",
                "-o",
                outdir,
                "-i",
                case,
                f"ws://127.0.0.1:{server.port}",
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        cpu = server.cpu() - before
        index = Path(outdir, "index.json")
        if not index.exists():
            return 0.0, cpu, "no report"
        (results,) = json.loads(index.read_text()).values()
        result = results[case]
    verdict = result["behavior"]
    if result["behaviorClose"] not in ALLOWED:
        verdict += f"/close {result['behaviorClose']}"
    return result["duration"] / 1000, cpu, verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--servers", default="ours,websockets-trio", help=f"comma list of {', '.join(SERVERS)}"
    )
    parser.add_argument("--cases", default=",".join(HEAVY), help="comma list of case ids")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians reported (1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per case, s")
    args = parser.parse_args(argv)
    names = parse_csv_list(args.servers, list(SERVERS), "servers")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    log = RunLog()
    machine = machine_description()
    durations: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    verdicts: dict[tuple[str, str], set[str]] = {}
    # Keepalive off: a ping in the middle of a case fails it.
    servers = {n: ServerProcess(n, SERVERS[n][0], args=["--no-keepalive"]) for n in names}
    for server in servers.values():
        server.start()
    try:
        for round_no in range(args.repeat):
            for case in cases:
                for name, server in servers.items():
                    seconds, cpu, verdict = run_case(server, case, args.timeout)
                    durations.setdefault((name, case), []).append(seconds)
                    cpus.setdefault((name, case), []).append(cpu)
                    verdicts.setdefault((name, case), set()).add(verdict)
                    log(
                        f"  round {round_no + 1} {case} {name}: {seconds:.2f} s, "
                        f"server CPU {cpu:.2f} s, {verdict}"
                    )
            for server in servers.values():
                server.check_alive()
    finally:
        for server in servers.values():
            server.stop()
    rows: list[list[object]] = []
    total: dict[str, float] = {}
    for case in cases:
        for name in names:
            d = median(durations[name, case])
            c = median(cpus[name, case])
            total[name] = total.get(name, 0.0) + d
            bad = sorted(verdicts[name, case] - ALLOWED)
            rows.append(
                [
                    case,
                    name,
                    d,
                    ratio(
                        d,
                        median(durations.get(("websockets-trio", case), [0]))
                        if ("websockets-trio", case) in durations
                        else None,
                    ),
                    c,
                    ratio(
                        c,
                        median(cpus[("websockets-trio", case)])
                        if ("websockets-trio", case) in cpus
                        else None,
                    ),
                    " ".join(bad) or "OK",
                ]
            )
    columns = [
        Column("case", left=True),
        Column("server", left=True),
        Column("case s", "{:.2f}"),
        Column("x websockets.trio", "{:.2f}"),
        Column("server CPU s", "{:.2f}"),
        Column("CPU x websockets.trio", "{:.2f}"),
        Column("verdict", left=True),
    ]
    notes = [
        "case s: kosoku's duration of the case (wall time, the driver's work included); "
        "server CPU s: the server process's CPU over the case. Cases run one at a time, "
        "alternating between the servers.",
        "Total case time: " + ", ".join(f"{n} {t:.1f} s" for n, t in total.items()) + ".",
    ]
    print(format_table(f"Autobahn cases {', '.join(cases)}", columns, rows, notes))
    print(
        f"{machine['cores']} cores ({machine['cpu']}), load average before "
        f"{machine['loadavg_before'][0]:.2f}; median of {args.repeat} round(s); "
        f"code {machine['code']}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
