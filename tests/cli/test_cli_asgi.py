"""``trio-upgrade serve`` with ASGI apps: detection, --app-dir, lifespan, exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ASGI_MODULE = textwrap.dedent(
    """
    import os
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    @asynccontextmanager
    async def lifespan(app):
        if os.environ.get("FAIL_STARTUP"):
            raise RuntimeError("the database is not there")
        yield {"mood": "ready"}
        with open(os.environ["SHUTDOWN_MARK"], "w") as f:
            f.write("shut down")

    async def index(request):
        return PlainTextResponse(f"{request.state.mood} {request.scope['root_path']}")

    app = Starlette(routes=[Route("/", index)], lifespan=lifespan)

    async def raw(scope, receive, send, *extra):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"forced asgi"})
    """
)


@pytest.fixture
def asgi_dir(tmp_path: Path) -> Path:
    (tmp_path / "cli_asgi_demo.py").write_text(ASGI_MODULE)
    return tmp_path


@contextmanager
def running(
    args: list[str], cwd: Path, env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m trio_upgrade ARGS`` in *cwd*; yields it and the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_upgrade", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        assert match, f"no URL in {line!r}"
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_detects_a_starlette_app_and_runs_its_lifespan(asgi_dir: Path) -> None:
    mark = asgi_dir / "shutdown.txt"
    args = ["serve", "cli_asgi_demo:app", "--bind", "127.0.0.1:0", "--root-path", "/pre"]
    with running(args, asgi_dir, {"SHUTDOWN_MARK": str(mark)}) as (proc, url):
        # A proxy in front removed /pre: requests arrive without it.
        assert httpx.get(url, timeout=10).text == "ready /pre"
        assert not mark.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert mark.read_text() == "shut down"


def test_app_dir_imports_from_another_directory(
    asgi_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    args = ["serve", "cli_asgi_demo:app", "--app-dir", str(asgi_dir), "--bind", "127.0.0.1:0"]
    env = {"SHUTDOWN_MARK": str(elsewhere / "mark")}
    with running(args, elsewhere, env) as (proc, url):
        assert httpx.get(url, timeout=10).text == "ready "
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0


def test_interface_asgi_forces_an_app_detection_would_not_take(asgi_dir: Path) -> None:
    args = ["serve", "cli_asgi_demo:raw", "--interface", "asgi", "--bind", "127.0.0.1:0"]
    with running(args, asgi_dir, {"SHUTDOWN_MARK": "unused"}) as (proc, url):
        assert httpx.get(url, timeout=10).text == "forced asgi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_a_failed_startup_exits_3_with_the_apps_message(asgi_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_upgrade",
            "serve",
            "cli_asgi_demo:app",
            "--bind",
            "127.0.0.1:0",
        ],
        cwd=asgi_dir,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FAIL_STARTUP": "1", "SHUTDOWN_MARK": "unused"},
    )
    assert result.returncode == 3
    assert "the database is not there" in result.stderr
    assert "serving on" not in result.stdout
