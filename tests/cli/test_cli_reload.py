"""--reload restarts the workers when a source file changes; --access-log-format json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from _cli_procs import running

VERSIONED = """
from trio_upgrade import Response, Router

app = Router()

@app.route("/")
async def index(request):
    return Response.text({version!r})
"""


def _touch_later(path: Path, text: str) -> None:
    """Rewrite *path* with a newer modification time (mtime granularity varies)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def _wait_for_text(url: str, want: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(url, headers={"connection": "close"}, timeout=10).text
        if text == want:
            return
        assert time.monotonic() < deadline, f"still {text!r}, want {want!r}"
        time.sleep(0.1)


@pytest.mark.parametrize("watcher", ["watchfiles", "polling"])
def test_reload_serves_the_new_code_and_keeps_the_old_on_a_broken_change(
    tmp_path: Path, watcher: str
) -> None:
    env = {}
    if watcher == "watchfiles":
        pytest.importorskip("watchfiles")
    else:
        # watchfiles hidden: the supervisor falls back to polling.
        hidden = tmp_path / "hide" / "watchfiles"
        hidden.mkdir(parents=True)
        (hidden / "__init__.py").write_text("raise ImportError('hidden')\n")
        env["PYTHONPATH"] = str(hidden.parent)
    module = tmp_path / "versioned.py"
    module.write_text(VERSIONED.format(version="one"))
    args = ["serve", "versioned:app", "-b", "127.0.0.1:0", "--reload"]
    with running(args, tmp_path, env=env) as server:
        server.wait_for_log("1 workers ready")
        server.wait_for_log(f"watching for changes {'with' if watcher == 'watchfiles' else 'by'}")
        assert httpx.get(server.url, timeout=10).text == "one"
        _touch_later(module, VERSIONED.format(version="two"))
        _wait_for_text(server.url, "two")
        failed = server.stderr().count("failed to start: keeping the old ones")
        _touch_later(module, "this is not python\n")
        server.wait_for_log("failed to start: keeping the old ones", count=failed + 1)
        assert httpx.get(server.url, timeout=10).text == "two"


def test_json_access_log(demo_dir: Path) -> None:
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "--access-log"]
    with running([*args, "--access-log-format", "json"], demo_dir) as server:
        assert httpx.get(server.url + "who?x=1", timeout=10).status_code == 200
        line = server.wait_for_log(r"(\{.*\"target\".*\})")[0]
    entry = json.loads(line)
    assert entry["method"] == "GET"
    assert entry["target"] == "/who?x=1"
    assert entry["status"] == 200
    assert entry["http_version"] == "1.1"
    assert entry["client"].startswith("127.0.0.1:")
    assert entry["pid"] == server.proc.pid
    assert isinstance(entry["size"], int) and isinstance(entry["duration_ms"], float)


FAILING_STARTUP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "not yet"})
        return
"""


def test_reload_waits_for_a_fix_when_the_first_start_fails(tmp_path: Path) -> None:
    module = tmp_path / "versioned.py"
    module.write_text(FAILING_STARTUP)
    with running(["serve", "versioned:app", "-b", "127.0.0.1:0", "--reload"], tmp_path) as server:
        server.wait_for_log("failed to start: waiting for a change")
        _touch_later(module, VERSIONED.format(version="fixed"))
        _wait_for_text(server.url, "fixed")
