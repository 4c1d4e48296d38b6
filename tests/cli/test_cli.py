"""The trio-upgrade command: loading an app, serving it, proxying to it, stopping on a signal."""

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

from trio_upgrade._cli import resolve
from trio_upgrade.cli import load_app, main

APP_MODULE = textwrap.dedent(
    """
    from trio_upgrade import Response, Router

    app = Router()

    @app.route("/")
    async def index(request):
        return Response.text("hello from the cli")

    def create_app():
        return app
    """
)


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cli_demo_app.py").write_text(APP_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_load_app_takes_module_colon_attribute_and_factories(app_dir: Path) -> None:
    app = load_app("cli_demo_app:app")
    assert load_app("cli_demo_app:create_app", factory=True) is app


@pytest.mark.parametrize("spec", ["cli_demo_app", "cli_demo_app:", ":app"])
def test_load_app_rejects_malformed_specs(app_dir: Path, spec: str) -> None:
    with pytest.raises(ValueError, match="module:attribute"):
        load_app(spec)


def test_serve_reports_an_app_it_cannot_load(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "cli_demo_app:missing"]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("trio-upgrade ")


@contextmanager
def running(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python -m trio_upgrade ARGS``; yield it and the first URL it prints."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_upgrade", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
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


def test_serve_runs_the_app_until_sigterm(app_dir: Path) -> None:
    with running(["serve", "cli_demo_app:app", "--bind", "127.0.0.1:0"], app_dir) as (proc, url):
        response = httpx.get(url, timeout=10)
        assert response.text == "hello from the cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_proxy_forwards_to_a_served_app_over_a_unix_socket(app_dir: Path) -> None:
    sock = app_dir / "app.sock"
    backend = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_upgrade",
            "serve",
            "cli_demo_app:app",
            "--bind",
            f"unix:{sock}",
        ],
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert backend.stdout is not None
        assert "unix:" in backend.stdout.readline()
        args = ["proxy", "--bind", "127.0.0.1:0", "--route", f"/app=unix:{sock}"]
        with running(args, app_dir) as (proxy, url):
            assert httpx.get(url + "app/", timeout=10).text == "hello from the cli"
            assert httpx.get(url + "elsewhere", timeout=10).status_code == 404
            proxy.send_signal(signal.SIGINT)
            assert proxy.wait(timeout=20) == 0
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(timeout=20)
        if backend.stdout is not None:
            backend.stdout.close()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], ("websocket",)), (["--upgrade", "websocket", "--upgrade", "H2C"], ("websocket", "h2c"))],
)
def test_proxy_tunnels_only_the_upgrades_named(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], expected: tuple[str, ...]
) -> None:
    """`--upgrade` (repeatable) reaches the Proxy; without it only WebSocket is tunnelled."""
    import trio_upgrade.cli as cli

    made: list[dict[str, object]] = []

    class Recorder:
        def __init__(self, routes: object, **options: object) -> None:
            made.append(options)

    monkeypatch.setattr(cli, "Proxy", Recorder)
    args = cli._parser().parse_args(["proxy", "--route", "/=http://127.0.0.1:9", *extra])
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "version", "config")}
    flags.pop("print_config")
    cli._make_proxy(resolve("proxy", flags, {}))
    assert made[0]["upgrades"] == expected


def test_max_connections_defaults_to_the_fd_derived_limit() -> None:
    assert resolve("serve", {}, {}).max_connections is None
