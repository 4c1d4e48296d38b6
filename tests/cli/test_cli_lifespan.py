"""`trio-upgrade serve` runs a native App's lifespan as `run()` does."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from _cli_procs import run_cli, running

LIFESPAN_APP = """
import contextlib, sys
from trio_upgrade import App, Response

@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan"}
    print("lifespan shutdown ran", file=sys.stderr, flush=True)

app = App(lifespan=lifespan)

@app.route("/")
async def index(request):
    return Response.text(request.state["greeting"])
"""

FAILING_APP = """
import contextlib
from trio_upgrade import App

@contextlib.asynccontextmanager
async def lifespan(app):
    raise RuntimeError("the database is not there")
    yield

app = App(lifespan=lifespan)
"""


def test_a_native_apps_lifespan_runs_around_the_server(tmp_path: Path) -> None:
    (tmp_path / "withlife.py").write_text(LIFESPAN_APP)
    with running(["serve", "withlife:app", "--bind", "127.0.0.1:0"], tmp_path) as server:
        assert httpx.get(server.url, timeout=10).text == "hello from the lifespan"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        assert "lifespan shutdown ran" in server.stderr()


def test_a_failed_native_startup_exits_3_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(FAILING_APP)
    result = run_cli(["serve", "failing:app", "--bind", "127.0.0.1:0"], tmp_path)
    assert result.returncode == 3, result
    assert "the database is not there" in result.stderr
    assert "Traceback" not in result.stderr
