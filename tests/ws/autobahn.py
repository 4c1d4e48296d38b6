"""Run the Autobahn TestSuite (through the ``kosoku`` package) against any WebSocket peer.

Reusable by other layers' tests::

    from ws.autobahn import run_fuzzingclient   # tests/ is on sys.path under pytest

    report = await run_fuzzingclient("ws://127.0.0.1:PORT/echo", outdir=tmp_path)
    assert report.failed == [], report.summary()

:func:`run_fuzzingclient` drives a *server* under test (it must echo every
message); :func:`run_fuzzingserver` serves the cases to a *client* under test,
which the caller drives with the URL the callback receives. kosoku runs in a
subprocess, so its CPU does not compete with the trio loop under test for the
GIL; its JSON reports land in *outdir*.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

__all__ = ["AutobahnReport", "run_fuzzingclient", "run_fuzzingserver"]

# Close verdicts that mean the closing handshake went wrong (Autobahn's labels).
_BAD_CLOSE = {"FAILED", "FAILED BY CLIENT", "UNCLEAN", "WRONG CODE"}


@dataclass
class AutobahnReport:
    """Per-case verdicts of one run, read from kosoku's ``index.json``."""

    behavior: dict[str, str] = field(default_factory=dict)
    """Case id → message-exchange verdict (OK, NON-STRICT, INFORMATIONAL, FAILED ...)."""
    behavior_close: dict[str, str] = field(default_factory=dict)
    """Case id → closing-handshake verdict (OK, INFORMATIONAL, UNCLEAN ...)."""
    output: str = ""
    """kosoku's console output, for failure messages."""

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.behavior.values())

    @property
    def failed(self) -> list[str]:
        """Cases with a FAILED (or ERROR/UNIMPLEMENTED) verdict or a bad closing handshake."""
        return sorted(
            (
                case
                for case, verdict in self.behavior.items()
                if verdict in ("FAILED", "ERROR", "UNIMPLEMENTED")
                or self.behavior_close.get(case) in _BAD_CLOSE
            ),
            key=_case_key,
        )

    def summary(self) -> str:
        counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(self.counts.items()))
        text = f"{len(self.behavior)} cases: {counts}"
        if self.failed:
            text += f"\nfailed: {' '.join(self.failed)}\n{self.output[-3000:]}"
        return text


def _case_key(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def _kosoku() -> list[str]:
    script = Path(sys.executable).with_name("kosoku")
    if script.exists():
        return [str(script)]
    found = shutil.which("kosoku")
    if found is None:
        raise RuntimeError("the kosoku package is not installed (pip install kosoku)")
    return [found]


def _read_report(outdir: Path, output: str) -> AutobahnReport:
    report = AutobahnReport(output=output)
    index = outdir / "index.json"
    if not index.exists():
        return report
    for cases in json.loads(index.read_text()).values():
        for case, result in cases.items():
            report.behavior[case] = result["behavior"]
            report.behavior_close[case] = result["behaviorClose"]
    return report


def _selection(cases: Sequence[str], exclude: Sequence[str]) -> list[str]:
    args: list[str] = []
    for case in cases:
        args += ["-i", case]
    for case in exclude:
        args += ["-x", case]
    return args


async def run_fuzzingclient(
    url: str,
    *,
    outdir: Path,
    cases: Sequence[str] = (),
    exclude: Sequence[str] = (),
    parallelism: int = 2,
) -> AutobahnReport:
    """Run the cases (all by default) against the echo server at *url* (``ws://host:port/path``)."""
    command = [
        *_kosoku(),
        "-m",
        "fuzzingclient",
        "-p",
        str(parallelism),
        "-o",
        str(outdir),
        *_selection(cases, exclude),
        url,
    ]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    output = (result.stdout + result.stderr).decode(errors="replace")
    return _read_report(outdir, output)


async def run_fuzzingserver(
    drive_client: Callable[[str], Awaitable[None]],
    *,
    outdir: Path,
    cases: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> AutobahnReport:
    """Serve the cases; ``await drive_client("ws://127.0.0.1:PORT")`` must run the client.

    The client follows the Autobahn protocol: ``/getCaseCount``, then
    ``/runCase?case=N&agent=NAME`` for N in 1..count (echoing every message),
    then ``/updateReports?agent=NAME``.
    """
    command = [
        *_kosoku(),
        "-m",
        "fuzzingserver",
        "-o",
        str(outdir),
        *_selection(cases, exclude),
        "127.0.0.1:0",
    ]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            functools.partial(
                trio.run_process,
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        assert process.stderr is not None and process.stdout is not None
        err = bytearray()
        while (match := re.search(rb"ws://(\S+):(\d+)", err)) is None:
            chunk = await process.stderr.receive_some(4096)
            if not chunk:
                raise RuntimeError(f"kosoku fuzzingserver did not start: {err.decode()}")
            err += chunk
        url = f"ws://{match.group(1).decode()}:{match.group(2).decode()}"

        async def collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
            while chunk := await stream.receive_some(65536):
                into += chunk

        out = bytearray()
        nursery.start_soon(collect, process.stderr, err)
        nursery.start_soon(collect, process.stdout, out)
        await drive_client(url)
        with trio.move_on_after(60):
            await process.wait()
        if process.returncode is None:
            process.kill()
    return _read_report(outdir, (out + err).decode(errors="replace"))
