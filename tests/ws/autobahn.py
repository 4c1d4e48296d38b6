"""Run the Autobahn TestSuite (through the ``kosoku`` package) against any WebSocket peer.

Reusable by other layers' tests::

    from ws.autobahn import run_fuzzingclient   # tests/ is on sys.path under pytest

    report = await run_fuzzingclient("ws://127.0.0.1:PORT/echo", outdir=tmp_path)
    assert report.passed, report.summary()

:func:`run_fuzzingclient` drives a *server* under test (it must echo every
message); :func:`run_fuzzingserver` serves the cases to a *client* under test,
which the caller drives with the URL the callback receives. kosoku runs in a
subprocess, so its CPU does not compete with the trio loop under test for the
GIL; its JSON reports land in *outdir*.

The verdict is an allow-list: a run passes only if every case of the
selection ran (the count comes from the suite's own layout, :data:`SUITE`)
and every case's verdict and closing-handshake verdict is OK or
INFORMATIONAL. A run cut short, a case missing from the report, NON-STRICT,
UNIMPLEMENTED or any verdict kosoku may add later all fail it.
"""

from __future__ import annotations

import fnmatch
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

__all__ = [
    "ALLOWED",
    "SUITE",
    "AutobahnReport",
    "expected_count",
    "run_fuzzingclient",
    "run_fuzzingserver",
]

#: The verdicts a case may end with, for its messages and for its closing
#: handshake. INFORMATIONAL marks the cases with no right answer (7.1.6,
#: 7.13.1, 7.13.2: what a peer does around a close).
ALLOWED = frozenset({"OK", "INFORMATIONAL"})

#: Cases per top-level group of the Autobahn TestSuite (517 in all).
SUITE = {1: 16, 2: 11, 3: 7, 4: 10, 5: 20, 6: 145, 7: 37, 9: 54, 10: 1, 12: 90, 13: 126}
# 12.* and 13.* are variants (5 and 7 deflate offers) x the same 18 loads.
_DEFLATE_LOADS = 18


def _pattern_count(pattern: str) -> int:
    """How many cases of the suite a selection element (``6.*``, ``13.2.*``, ``12.1.3``) names."""
    parts = pattern.split(".")
    if parts[-1] != "*":
        return 1  # one case id
    if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in SUITE:
        return SUITE[int(parts[0])]
    if len(parts) == 3 and parts[0] in ("12", "13") and parts[1].isdigit():
        return _DEFLATE_LOADS
    raise ValueError(f"cannot count the cases of selection {pattern!r}")


def expected_count(cases: Sequence[str] = (), exclude: Sequence[str] = ()) -> int:
    """The number of cases a run of *cases* (all when empty) minus exact ids in *exclude* makes.

    Elements are case ids or the globs the tests use (``N.*``, ``12.V.*``,
    ``13.V.*``); they must not overlap. Excluded ids count only where the
    selection covers them.
    """
    total = sum(_pattern_count(p) for p in cases) if cases else sum(SUITE.values())
    for case in exclude:
        if "*" in case:
            raise ValueError(f"cannot count an excluded glob {case!r}")
        if not cases or any(fnmatch.fnmatchcase(case, p) for p in cases):
            total -= 1
    return total


@dataclass
class AutobahnReport:
    """Per-case verdicts of one run, read from kosoku's ``index.json``."""

    behavior: dict[str, str] = field(default_factory=dict)
    """Case id → message-exchange verdict (OK, NON-STRICT, INFORMATIONAL, FAILED ...)."""
    behavior_close: dict[str, str] = field(default_factory=dict)
    """Case id → closing-handshake verdict (OK, INFORMATIONAL, UNCLEAN ...)."""
    output: str = ""
    """kosoku's console output, for failure messages."""
    expected: int | None = None
    """How many cases the selection holds (see :func:`expected_count`); None: not checked."""
    selection: tuple[str, ...] = ()
    """The case ids and globs the run selected (empty: the whole suite)."""

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.behavior.values())

    @property
    def failed(self) -> list[str]:
        """Cases whose verdict, or closing-handshake verdict, is not in :data:`ALLOWED`."""
        return sorted(
            (
                case
                for case, verdict in self.behavior.items()
                if verdict not in ALLOWED or self.behavior_close.get(case) not in ALLOWED
            ),
            key=_case_key,
        )

    @property
    def unexpected(self) -> list[str]:
        """Cases in the report that the selection does not name."""
        if not self.selection:
            return []
        return sorted(
            (
                c
                for c in self.behavior
                if not any(fnmatch.fnmatchcase(c, p) for p in self.selection)
            ),
            key=_case_key,
        )

    @property
    def complete(self) -> bool:
        """Every case of the selection is in the report, and no other."""
        return (
            self.expected is not None
            and len(self.behavior) == self.expected
            and not self.unexpected
        )

    @property
    def passed(self) -> bool:
        """The run's verdict: complete, and every case allowed."""
        return self.complete and not self.failed

    def summary(self) -> str:
        counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(self.counts.items()))
        text = f"{len(self.behavior)} of {self.expected} cases: {counts}"
        if self.failed:
            text += "\nnot allowed: " + " ".join(
                f"{c}={self.behavior[c]}/{self.behavior_close.get(c)}" for c in self.failed
            )
        if not self.passed:
            text += f"\n{self.output[-3000:]}"
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


def _read_report(
    outdir: Path, output: str, cases: Sequence[str], exclude: Sequence[str]
) -> AutobahnReport:
    report = AutobahnReport(
        output=output, expected=expected_count(cases, exclude), selection=tuple(cases)
    )
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
    return _read_report(outdir, output, cases, exclude)


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
    return _read_report(outdir, (out + err).decode(errors="replace"), cases, exclude)
