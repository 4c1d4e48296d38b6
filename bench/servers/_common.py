"""What every server script in ``bench/servers/`` shares: arguments, limits, stopping.

Each script is run as ``python bench/servers/<name>.py --port N``, binds
127.0.0.1:N only, serves until SIGTERM or SIGINT, then exits 0. A script whose
implementation cannot be imported calls :func:`unavailable`, which exits with
status 3 so the harness reports the row instead of failing the run.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from typing import NoReturn

HOST = "127.0.0.1"
EXIT_UNAVAILABLE = 3  # keep in step with bench/_harness.py
# Large enough for the 1 MiB messages of the ws_echo "large" workload with room
# to spare; peers whose default is exactly 1 MiB would otherwise reject them.
MAX_MESSAGE = 16 * 1024 * 1024
HELLO = b"Hello, world!"


# Set by parse_port() from --no-keepalive: WebSocket servers then send no
# keepalive pings (an Autobahn case fails on a frame it did not expect, and
# the heavy ones run longer than the usual 20 s ping interval).
KEEPALIVE = True


def parse_port() -> int:
    global KEEPALIVE
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-keepalive", action="store_true", help="no WebSocket pings")
    args = parser.parse_args()
    KEEPALIVE = not args.no_keepalive
    raise_nofile_limit()
    port: int = args.port
    return port


def keepalive() -> bool:
    """False when the server was started with ``--no-keepalive``."""
    return KEEPALIVE


def raise_nofile_limit(wanted: int = 65536) -> None:
    """The idle-connections workload opens thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def unavailable(reason: str) -> NoReturn:
    print(f"unavailable: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_UNAVAILABLE)


async def trio_wait_for_signal() -> None:
    """Return at the first SIGTERM or SIGINT (Trio servers)."""
    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return
