"""Granian (Rust HTTP server) serving the ASGI hello app (``_asgi.py``).

The settings closest to "one core", the rest left at granian's defaults:

- ``workers=1``: one worker process. Granian always runs its worker in a child
  process of the one started here (``multiprocessing``); the harness counts
  the CPU of the whole process tree (``cpu_seconds`` in ``bench/_harness.py``),
  so the worker's CPU is measured along with the (idle) supervisor's, and
  ``--pin`` affinity is inherited by the child.
- ``runtime_threads=1``: one Rust (tokio) thread doing the socket I/O and the
  HTTP parsing (granian's default).
- ``blocking_threads=1``: one thread in granian's pool of Python-side
  blocking threads; for ASGI granian refuses more than one (the default).
  The app itself runs on the event loop in the worker's main thread.

So the worker keeps three threads busy: under wrk pinned to one CPU,
``top -H`` showed the main (event loop) thread at about 50% of it, the tokio
thread about 25% and another Python thread about 10%. Unpinned it can use more than one core, and on
a CPU shared with other work it gets a bigger share than a one-thread server:
its CPU per request, not its req/s, is the figure to compare (``--pin`` puts
all its threads on one CPU).

The event loop is granian's ``auto`` choice (uvloop when installed, asyncio
otherwise; the benchmark prints which). HTTP/1.1 only (``http="1"``), like
every other server compared, instead of the default that also sniffs for
HTTP/2 prior knowledge. The ASGI interface without lifespan (``asginl``), as
uvicorn runs with ``lifespan="off"``; no access log.
"""

from __future__ import annotations

from pathlib import Path

from _common import HOST, parse_port, unavailable

try:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.log import LogLevels
except ImportError as exc:
    unavailable(f"granian is not installed ({exc}); run bench/setup")


def main() -> None:
    server = Granian(
        "_asgi:app",
        address=HOST,
        port=parse_port(),
        interface=Interfaces.ASGINL,
        workers=1,
        runtime_threads=1,
        blocking_threads=1,
        loop=Loops.auto,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        log_access=False,
        working_dir=Path(__file__).resolve().parent,
    )
    # Granian handles SIGTERM/SIGINT itself: it stops the worker and returns.
    server.serve()


if __name__ == "__main__":
    main()
