"""Running ``python -m trio_upgrade`` in a subprocess, for tests/cli."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

# A native app that tells who served the request and what it saw.
DEMO_APP = textwrap.dedent(
    """
    import os
    from trio_upgrade import Response, Router

    app = Router()

    @app.route("/")
    async def index(request):
        return Response.text(str(os.getpid()))

    @app.route("/who")
    async def who(request):
        host = request.client[0] if isinstance(request.client, tuple) else request.client
        return Response.text(f"{host} {request.scheme}")

    @app.route("/upload", methods=["POST"])
    async def upload(request):
        return Response.text(str(len(await request.read())))

    @app.route("/slow")
    async def slow(request):
        import trio

        await trio.sleep(float(request.query_string or "1"))
        return Response.text(str(os.getpid()))

    not_an_app = 42
    """
)

DEMO_ASGI_APP = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        client = scope["client"][0] if scope["client"] else ""
        body = f"{client} {scope['scheme']}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    """
)


class Running:
    """A running command: its process, the URLs it printed, its stderr file."""

    def __init__(self, proc: subprocess.Popen[str], lines: list[str], log: Path) -> None:
        self.proc = proc
        self.lines = lines
        self.log = log

    @property
    def url(self) -> str:
        for line in self.lines:
            match = re.search(r"(https?://\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no URL in {self.lines!r}")

    def stderr(self) -> str:
        return self.log.read_text()

    def wait_for_log(self, pattern: str, *, count: int = 1, timeout: float = 20.0) -> list[str]:
        """The matches of *pattern* in stderr once there are *count* of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.stderr())
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} x{count} not in log:\n{self.stderr()}")
            time.sleep(0.05)


@contextmanager
def running(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    lines: int = 1,
    pass_fds: Sequence[int] = (),
    prefix: Sequence[str] = (),
) -> Iterator[Running]:
    """Start ``python -m trio_upgrade ARGS`` and read its first *lines* stdout lines."""
    log = cwd / f"stderr-{len(list(cwd.glob('stderr-*')))}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "trio_upgrade", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=full_env,
            pass_fds=pass_fds,
        )
    try:
        assert proc.stdout is not None
        printed = [proc.stdout.readline() for _ in range(lines)]
        if not all(printed):
            raise AssertionError(f"exited early: {printed!r}\n{log.read_text()}")
        yield Running(proc, printed, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def run_cli(
    args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (it must not start serving)."""
    return subprocess.run(
        [sys.executable, "-m", "trio_upgrade", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
