"""Requests lost when the server gets SIGTERM under load.

One run per round: ``bench/servers/<server>.py`` in its own process, ``wrk``
(keep-alive, ``--connections`` connections) in another for ``--duration``
seconds, and SIGTERM to the server half-way through. A graceful server answers
every request it has read (with ``Connection: close``) and closes idle
keep-alive connections cleanly, so wrk sees no socket error: a request lost at
shutdown shows up as a read error (EOF or reset where a response was due).
Once the server is gone, wrk keeps reconnecting: its failed reconnects show
as connect or write errors (a non-blocking connect fails at the first write).
Those are not losses and are listed apart.

    .venv/bin/python bench/http_sigterm.py
    .venv/bin/python bench/http_sigterm.py --server ours_http --rounds 5
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def _round(server: str, connections: int, duration: float) -> dict[str, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / f"{server}.py"), "--port", str(port)],
        cwd=HERE / "servers",
    )
    try:
        _wait_listening(port, proc)
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(duration / 2)
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=60)
        out, _ = wrk.communicate(timeout=duration + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    found = {"requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    match = re.search(r"(\d+) requests in", out)
    if match:
        found["requests"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        found.update(
            zip(("connect", "read", "write", "timeout"), map(int, match.groups()), strict=True)
        )
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match:
        found["non2xx"] = int(match.group(1))
    found["exit"] = exit_code
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="ours_http", help="a script in bench/servers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (bench/setup installs it)")
    print(f"server {args.server}, wrk -c{args.connections}, SIGTERM after {args.duration / 2:g} s")
    print(
        f"{'round':>5} {'requests':>9} {'read err':>8} {'write err':>9} {'timeouts':>8}"
        f" {'non-2xx':>7} {'connect err':>11} {'exit':>4}"
    )
    for n in range(1, args.rounds + 1):
        r = _round(args.server, args.connections, args.duration)
        print(
            f"{n:5d} {r['requests']:9d} {r['read']:8d} {r['write']:9d} {r['timeout']:8d}"
            f" {r['non2xx']:7d} {r['connect']:11d} {r['exit']:4d}",
            flush=True,
        )


if __name__ == "__main__":
    main()
