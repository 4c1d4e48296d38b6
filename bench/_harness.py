"""Shared harness for the benchmarks in ``bench/``: server processes, /proc readings, tables.

Every server under test runs in its own subprocess
(``python bench/servers/<name>.py --port N``) on 127.0.0.1 only, and every load
generator runs in another process, so the server's CPU time read from
``/proc/<pid>/stat`` is the server's alone. The machine is shared and noisy:
compare the ratios printed from one run rather than absolute numbers across runs.

The pieces:

- :class:`ServerProcess` starts a server script, waits (bounded) until it
  accepts on loopback, reads its CPU seconds (utime + stime of the process and
  its descendants) and RSS (of the same process tree), and stops it with
  SIGTERM (SIGKILL after a bound).
  A script that cannot run because an import is missing exits with
  :data:`EXIT_UNAVAILABLE`; :meth:`ServerProcess.start` then raises
  :class:`ServerUnavailable` and the benchmark reports the row as unavailable.
- :func:`run_wrk` / :func:`parse_wrk` drive ``wrk`` and read its summary.
- :func:`format_table` renders aligned text tables; :func:`write_json` dumps
  the raw results.

Nothing here sends traffic anywhere but 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, final

__all__ = [
    "BENCH_DIR",
    "EXIT_UNAVAILABLE",
    "PROFILE_HELP",
    "Column",
    "HOST",
    "LineProcess",
    "REPO_DIR",
    "SERVERS_DIR",
    "ServerFailed",
    "ServerProcess",
    "ServerUnavailable",
    "WrkResult",
    "code_version",
    "cpu_seconds",
    "descendants",
    "format_table",
    "free_port",
    "median",
    "parse_csv_list",
    "parse_proc_stat_cpu_ticks",
    "parse_wrk",
    "profile_path",
    "raise_nofile_limit",
    "RunLog",
    "machine_description",
    "ratio",
    "rss_kib",
    "tree_rss_kib",
    "run_wrk",
    "write_json",
]

BENCH_DIR = Path(__file__).resolve().parent
SERVERS_DIR = BENCH_DIR / "servers"
REPO_DIR = BENCH_DIR.parent

#: The only address the benchmarks ever use.
HOST = "127.0.0.1"

#: Exit status of a server script whose implementation cannot be imported
#: (not installed yet, or not written yet): the row is reported, not fatal.
EXIT_UNAVAILABLE = 3

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class ServerUnavailable(Exception):
    """The server script exited with :data:`EXIT_UNAVAILABLE`; the message says why."""


class ServerFailed(Exception):
    """The server script died or never accepted connections in time."""


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards ``wanted`` (capped by the hard limit).

    Child processes inherit the limit, so calling this in the benchmark's main
    process covers the servers and clients it starts. Returns the new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def parse_proc_stat_cpu_ticks(stat_line: str) -> tuple[int, int, int]:
    """Return ``(ppid, utime, stime)`` in clock ticks from one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces
    or parentheses, so fields are counted from the last ``)``.
    """
    rest = stat_line[stat_line.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return int(rest[1]), int(rest[11]), int(rest[12])


def _read_stat(pid: int) -> tuple[int, int, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_proc_stat_cpu_ticks(f.read())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """The live descendants of ``pid`` (children, their children, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read_stat(int(entry))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child in found:
            continue
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live descendants.

    All threads of a process are included (``/proc/<pid>/stat`` sums them).
    Resolution is one clock tick (usually 10 ms): measure workloads of seconds.
    Most servers here run in one process; descendants are counted because some
    peers (granian) serve from a worker process they fork, and its CPU is the
    figure that matters. A descendant that exits between two readings takes
    its CPU with it: every server here keeps its workers for its whole run.
    """
    own = _read_stat(pid)
    if own is None:
        raise ServerFailed(f"process {pid} is gone")
    total = own[1] + own[2]
    for child in descendants(pid):
        stat = _read_stat(child)
        if stat is not None:
            total += stat[1] + stat[2]
    return total / _CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from ``VmRSS`` in ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ServerFailed(f"no VmRSS for process {pid}")


def tree_rss_kib(pid: int) -> int:
    """RSS of ``pid`` plus its live descendants' (pages a fork shares count in each)."""
    total = rss_kib(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError, ServerFailed):
            total += rss_kib(child)
    return total


@final
class ServerProcess:
    """One server under test, in its own subprocess, listening on 127.0.0.1:``port``.

    Use as a context manager: entering starts the server and waits until it
    accepts connections (at most ``start_timeout`` seconds); leaving stops it.
    """

    def __init__(
        self,
        name: str,
        script: str,
        *,
        args: Sequence[str] = (),
        profile: str | None = None,
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        cpus: set[int] | None = None,
    ) -> None:
        self.name = name
        # CPUs the server may run on (sched_setaffinity); None = any.
        self.cpus = cpus
        # Path for a cProfile dump of the whole server run (written when it
        # exits on SIGTERM); profiling slows the server, so not for figures.
        self.profile = profile
        self.script = SERVERS_DIR / script
        self.port = free_port()
        self.args = list(args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        # The server's stdout+stderr go to a file, not a pipe: a chatty server
        # must never block on a full pipe in the middle of a measurement.
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def url(self, scheme: str = "http", path: str = "/") -> str:
        return f"{scheme}://{HOST}:{self.port}{path}"

    def start(self) -> None:
        # Closed in stop(): it outlives this method, so no `with` block here.
        self._log = tempfile.TemporaryFile(prefix=f"bench-{self.name}-")  # noqa: SIM115
        profiler = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        cmd = [sys.executable, *profiler, str(self.script), "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_DIR,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin_to(self.cpus),
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                output = self.output()
                self._close_log()
                if code == EXIT_UNAVAILABLE:
                    raise ServerUnavailable(_last_line(output) or "unavailable")
                raise ServerFailed(f"{self.name} exited with {code}: {_tail(output)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerFailed(f"{self.name} did not listen within {self.start_timeout} s")
            time.sleep(0.02)

    def cpu(self) -> float:
        """CPU seconds used by the server so far (see :func:`cpu_seconds`)."""
        self.check_alive()
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        """The server's resident set size in KiB, its worker processes' included
        (see :func:`tree_rss_kib`)."""
        self.check_alive()
        return tree_rss_kib(self.pid)

    def check_alive(self) -> None:
        assert self.proc is not None, "server not started"
        code = self.proc.poll()
        if code is not None:
            raise ServerFailed(f"{self.name} died with {code}: {_tail(self.output())}")

    def output(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(self.stop_timeout)
        self._close_log()
        return proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- wrk -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one ``wrk`` run reports."""

    requests: int
    seconds: float
    requests_per_second: float
    # Socket errors (connect, read, write, timeout) and non-2xx/3xx answers:
    # a run with errors is not a valid measurement.
    socket_errors: int
    bad_responses: int


_WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_WRK_RPS = re.compile(r"^Requests/sec:\s*([\d.]+)", re.MULTILINE)
_WRK_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_WRK_BAD = re.compile(r"Non-2xx or 3xx responses: (\d+)", re.MULTILINE)
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_wrk(output: str) -> WrkResult:
    """Read the summary ``wrk`` prints. Raises ValueError if it is not there."""
    total = _WRK_TOTAL.search(output)
    rps = _WRK_RPS.search(output)
    if total is None or rps is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    socket_errors = _WRK_SOCKET.search(output)
    bad = _WRK_BAD.search(output)
    return WrkResult(
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNIT_SECONDS[total.group(3)],
        requests_per_second=float(rps.group(1)),
        socket_errors=sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
        bad_responses=int(bad.group(1)) if bad else 0,
    )


def _pin_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps the child on ``cpus``; None when not pinning."""
    if not cpus:
        return None
    wanted = set(cpus)

    def pin() -> None:
        os.sched_setaffinity(0, wanted)

    return pin


def pin_cpus(text: str | None) -> tuple[set[int], set[int]] | None:
    """``--pin SERVER:LOAD`` (CPU numbers, e.g. ``0:1``) as two CPU sets; None for no pinning."""
    if not text:
        return None
    try:
        server, load = text.split(":")
        return {int(c) for c in server.split("+")}, {int(c) for c in load.split("+")}
    except ValueError:
        raise SystemExit(f"--pin wants SERVER:LOAD CPU numbers such as 0:1, not {text!r}") from None


def run_wrk(
    url: str,
    *,
    threads: int = 1,
    connections: int = 50,
    duration: float = 5.0,
    cpus: set[int] | None = None,
) -> WrkResult:
    """Run ``wrk`` against ``url`` (loopback only) and return its summary."""
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError(f"benchmarks only target {HOST}: {url}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: run bench/setup")
    # wrk takes whole seconds only.
    seconds = max(1, round(duration))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
        preexec_fn=_pin_to(cpus),
    )
    if done.returncode != 0:
        message = _last_line(done.stderr) or _last_line(done.stdout)
        raise RuntimeError(f"wrk failed ({done.returncode}): {message}")
    return parse_wrk(done.stdout)


# --- reporting -------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def parse_csv_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    """Split ``"a,b"`` into names, keeping ``allowed``'s order; ``"all"`` means all of them."""
    if text.strip() == "all":
        return list(allowed)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [name for name in allowed if name in names]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: a header and how to render one value."""

    header: str
    fmt: str = "{}"
    # Text columns (names, notes) are left-aligned; numbers right-aligned.
    left: bool = False


def _render(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        # One line per row, and a table cell must not break the Markdown table.
        return " ".join(value.split()).replace("|", "/")
    return fmt.format(value)


def format_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str] = (),
) -> str:
    """An aligned plain-text (and Markdown-compatible) table with a title and notes."""
    cells = [[_render(v, c.fmt) for v, c in zip(row, columns, strict=True)] for row in rows]
    widths = [max([len(c.header), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if c.left else v.rjust(w)
            for v, w, c in zip(values, widths, columns, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            (":" + "-" * (w + 1)) if c.left else ("-" * (w + 1) + ":")
            for w, c in zip(widths, columns, strict=True)
        )
        + "|"
    )
    out = [f"### {title}", "", line([c.header for c in columns]), rule]
    out += [line(r) for r in cells]
    if notes:
        out.append("")
        out += list(notes)
    return "\n".join(out) + "\n"


PROFILE_HELP = "run servers under cProfile, writing DIR/<server>-<workload>.prof"


def profile_path(directory: str | None, server: str, workload: str) -> str | None:
    """Where a server's cProfile dump goes, or None when not profiling."""
    if directory is None:
        return None
    Path(directory).mkdir(parents=True, exist_ok=True)
    return str(Path(directory).resolve() / f"{server}-{workload}.prof")


def write_json(path: str, payload: Any) -> None:
    """Write results as JSON to ``path`` (``-`` for stdout)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")


def _json_default(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, core count, Python, date."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "code": code_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg_before": os.getloadavg(),
    }


def code_version() -> str:
    """The commit measured, plus the library files changed since it (the servers
    import the working tree, committed or not): ``"abc1234 + trio_upgrade/ws/_session.py"``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "trio_upgrade"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = sorted(line[3:] for line in dirty if line.strip())
    return " + ".join([head, *changed])


@dataclass(slots=True)
class RunLog:
    """Progress lines go to stderr so that ``--json -`` keeps stdout clean."""

    quiet: bool = False
    lines: list[str] = field(default_factory=list)

    def __call__(self, message: str) -> None:
        self.lines.append(message)
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


# --- load generators that talk in JSON lines -------------------------------------


@final
class LineProcess:
    """A load generator in its own process that prints one JSON object per line.

    :meth:`event` waits (bounded) for the next line; :meth:`send` writes a
    line to its stdin. Its stderr goes to a file, shown if it fails.
    """

    def __init__(self, cmd: Sequence[str], *, cpus: set[int] | None = None) -> None:
        self._stderr = tempfile.TemporaryFile(prefix="bench-client-")  # noqa: SIM115 closed in close()
        self.proc = subprocess.Popen(
            list(cmd),
            cwd=REPO_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            preexec_fn=_pin_to(cpus),  # CPUs it may run on; None = any
        )
        self._buffer = b""

    def event(self, timeout: float) -> dict[str, Any]:
        """The next JSON line; raises RuntimeError on error events, EOF or timeout."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"load generator gave no answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(5)
                raise RuntimeError(
                    f"load generator exited ({self.proc.returncode}): {_tail(self.stderr())}"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        if event.get("event") == "error":
            raise RuntimeError(f"load generator: {event.get('error')}")
        return event

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self, timeout: float = 10.0) -> None:
        """Wait for the process to exit (killing it after ``timeout``)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> LineProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
