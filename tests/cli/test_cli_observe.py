"""What the command tells about its traffic: the --metrics-bind endpoint,
--log-config, WebSocket sessions in the access log, and one log format."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from _cli_procs import run_cli, running
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

# A native App and an ASGI app, each with an HTTP route and a WebSocket echo.
OBSERVED_APPS = textwrap.dedent(
    """
    from trio_upgrade import App, Response

    app = App()

    @app.route("/")
    async def index(request):
        return Response.text("hi")

    @app.websocket("/echo")
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] == "http":
            status = 200 if scope["path"] == "/" else 404
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"hi"})
            return
        await receive()  # websocket.connect
        if scope["path"] != "/echo":
            await send({"type": "websocket.close"})  # refused before accepting: 403
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
    """
)


@pytest.fixture
def apps_dir(tmp_path: Path) -> Path:
    (tmp_path / "observed.py").write_text(OBSERVED_APPS)
    return tmp_path


def _ws_url(http_url: str, path: str) -> str:
    return http_url.replace("http://", "ws://").rstrip("/") + path


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value, from the Prometheus text format."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def _scrape_until(url: str, key: str, value: float) -> dict[str, float]:
    """Scrape until *key* reads *value* (a session is counted once it has ended)."""
    deadline = time.monotonic() + 20
    while True:
        samples = _samples(httpx.get(url, timeout=10).text)
        if samples.get(key) == value or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


@pytest.mark.parametrize("app", ["observed:app", "observed:asgi"])
def test_metrics_endpoint_counts_what_was_served(apps_dir: Path, app: str) -> None:
    args = ["serve", app, "-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0"]
    with running(args, apps_dir, lines=2) as server:
        metrics_url = next(line.split()[-1] for line in server.lines if "metrics on" in line)
        assert metrics_url.endswith("/metrics")
        for _ in range(3):
            assert httpx.get(server.url, timeout=10).status_code == 200
        assert httpx.get(server.url + "missing", timeout=10).status_code == 404
        with connect(_ws_url(server.url, "/echo"), proxy=None) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            ws.send("é!")
            assert ws.recv(timeout=10) == "é!"
            open_now = _samples(httpx.get(metrics_url, timeout=10).text)
            assert open_now["trio_upgrade_websocket_sessions_open"] == 1.0
        with pytest.raises(InvalidStatus), connect(_ws_url(server.url, "/nowhere"), proxy=None):
            pass
        samples = _scrape_until(
            metrics_url, 'trio_upgrade_http_requests_total{method="GET",status="101"}', 1.0
        )
        # Scrapes go to their own listener: they are not counted.
        assert samples['trio_upgrade_http_requests_total{method="GET",status="200"}'] == 3.0
        # The refused handshake is a request too: the App's WebSocket router
        # answers an unknown path with 404, the ASGI app refuses with 403.
        rejected = "404" if app == "observed:app" else "403"
        not_found = 2.0 if app == "observed:app" else 1.0
        assert samples['trio_upgrade_http_requests_total{method="GET",status="404"}'] == not_found
        requests = "trio_upgrade_http_requests_total"
        assert samples[f'{requests}{{method="GET",status="{rejected}"}}'] >= 1
        assert samples[f'{requests}{{method="GET",status="101"}}'] == 1.0
        rejections = "trio_upgrade_websocket_handshake_rejections_total"
        assert samples[f'{rejections}{{status="{rejected}"}}'] == 1.0
        # The histogram holds the plain requests and the refused handshake, not the session.
        assert samples["trio_upgrade_http_request_duration_seconds_count"] == 5.0
        assert samples["trio_upgrade_websocket_sessions_open"] == 0.0
        assert samples['trio_upgrade_websocket_messages_total{direction="in"}'] == 2.0
        assert samples['trio_upgrade_websocket_messages_total{direction="out"}'] == 2.0
        # "hello" and "é!" (é is two bytes in UTF-8).
        assert samples['trio_upgrade_websocket_message_bytes_total{direction="in"}'] == 8.0
        assert samples['trio_upgrade_websocket_message_bytes_total{direction="out"}'] == 8.0
        assert samples["trio_upgrade_connections_open"] == 0.0
        # Anything but /metrics on the metrics listener is 404.
        assert httpx.get(metrics_url.removesuffix("metrics"), timeout=10).status_code == 404


def test_metrics_bind_without_prometheus_client_is_one_line(apps_dir: Path) -> None:
    hidden = apps_dir / "hide"
    (hidden / "prometheus_client").mkdir(parents=True)
    (hidden / "prometheus_client" / "__init__.py").write_text("raise ImportError('hidden')\n")
    done = run_cli(
        ["serve", "observed:app", "--metrics-bind", "127.0.0.1:0"],
        apps_dir,
        env={"PYTHONPATH": str(hidden)},
    )
    assert done.returncode == 2
    assert done.stderr == (
        "trio-upgrade: --metrics-bind needs prometheus-client: "
        "pip install 'trio-upgrade[metrics]'\n"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "cannot be used with --workers above 1 or --reload"),
        (["--reload"], "cannot be used with --workers above 1 or --reload"),
        (["--metrics-bind", "fd://3"], "not fd://"),
        (["--metrics-bind", "nowhere"], "bad --metrics-bind"),
    ],
)
def test_metrics_bind_refusals_are_one_line(apps_dir: Path, extra: list[str], message: str) -> None:
    args = ["serve", "observed:app", "-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0"]
    done = run_cli([*args, *extra], apps_dir)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def test_metrics_bind_is_a_setting_like_the_others(apps_dir: Path) -> None:
    done = run_cli(
        ["serve", "observed:app", "--print-config"],
        apps_dir,
        env={"TRIO_UPGRADE_METRICS_BIND": "127.0.0.1:9100"},
    )
    assert 'metrics_bind = "127.0.0.1:9100"  # env TRIO_UPGRADE_METRICS_BIND' in done.stdout
    assert 'log_config = "none"  # default' in done.stdout


# Access log: WebSocket sessions ---------------------------------------------------


@pytest.mark.parametrize("app", ["observed:app", "observed:asgi"])
def test_websocket_sessions_are_in_the_access_log(apps_dir: Path, app: str) -> None:
    args = ["serve", app, "-b", "127.0.0.1:0", "--access-log"]
    with running(args, apps_dir) as server:
        with connect(_ws_url(server.url, "/echo"), proxy=None) as ws:
            ws.send("x")
            ws.recv(timeout=10)
            ws.close(1001)
        (line,) = server.wait_for_log(r'.*"GET /echo HTTP/1\.1" 101 .*')
    assert re.search(r'127\.0\.0\.1:\d+ "GET /echo HTTP/1\.1" 101 - [\d.]+ms close 1001$', line)


def test_websocket_sessions_in_the_json_access_log(apps_dir: Path) -> None:
    args = ["serve", "observed:app", "-b", "127.0.0.1:0", "--access-log"]
    with running([*args, "--access-log-format", "json"], apps_dir) as server:
        with connect(_ws_url(server.url, "/echo"), proxy=None) as ws:
            ws.send("x")
            ws.recv(timeout=10)
        (line,) = server.wait_for_log(r'\{.*"status": 101.*\}')
    entry = json.loads(line)
    assert entry["target"] == "/echo" and entry["close_code"] == 1000
    assert entry["size"] is None and entry["duration_ms"] >= 0


# --log-config -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "toml", "yaml"])
def test_log_config_takes_effect(apps_dir: Path, kind: str) -> None:
    if kind == "yaml":
        pytest.importorskip("yaml")
    log_file = apps_dir / "access.log"
    config = {
        "version": 1,
        "formatters": {"bare": {"format": "ACCESS %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log_file), "formatter": "bare"}
        },
        "loggers": {"trio_upgrade.access": {"handlers": ["file"], "level": "INFO"}},
    }
    path = apps_dir / f"logging.{kind}"
    if kind == "json":
        path.write_text(json.dumps(config))
    elif kind == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(config))
    else:
        path.write_text(
            textwrap.dedent(
                f"""
                version = 1
                [formatters.bare]
                format = "ACCESS %(message)s"
                [handlers.file]
                class = "logging.FileHandler"
                filename = {json.dumps(str(log_file))}
                formatter = "bare"
                [loggers."trio_upgrade.access"]
                handlers = ["file"]
                level = "INFO"
                """
            )
        )
    args = ["serve", "observed:app", "-b", "127.0.0.1:0", "--access-log"]
    with running([*args, "--log-config", str(path)], apps_dir) as server:
        assert httpx.get(server.url, timeout=10).text == "hi"
        deadline = time.monotonic() + 20
        while "ACCESS" not in (log_file.read_text() if log_file.exists() else ""):
            assert time.monotonic() < deadline, server.stderr()
            time.sleep(0.05)
    assert re.match(r'ACCESS 127\.0\.0\.1:\d+ "GET / HTTP/1\.1" 200 2 ', log_file.read_text())


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("log.json", "{not json", "not valid JSON"),
        ("log.ini", "[loggers]\n", "expected a .json, .yaml, .yml or .toml file"),
        ("log.json", '{"handlers": {"h": {"class": "no.such.Handler"}}}', "--log-config"),
        ("log.json", "[1, 2]", "expected a mapping"),
    ],
)
def test_bad_log_config_is_one_line(apps_dir: Path, name: str, text: str, message: str) -> None:
    (apps_dir / name).write_text(text)
    done = run_cli(["serve", "observed:app", "--log-config", name], apps_dir)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


# One format for run() and the command --------------------------------------------

_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ INFO trio_upgrade\.\w+: ", re.M)


def test_run_and_the_command_log_in_one_format(apps_dir: Path) -> None:
    with running(["serve", "observed:app", "-b", "127.0.0.1:0", "--access-log"], apps_dir) as cli:
        httpx.get(cli.url, timeout=10)
        (cli_line,) = cli.wait_for_log(r".*trio_upgrade\.access: .*GET / .*")
    assert _LINE.match(cli_line)
    script = textwrap.dedent(
        """
        import trio_upgrade
        from trio_upgrade import HTTPConfig
        from observed import app
        trio_upgrade.run(app, "127.0.0.1:0", config=HTTPConfig(access_log=True))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=apps_dir,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert _LINE.match(line), line
    assert "trio_upgrade.http: serving on http://127.0.0.1:" in line


def test_metrics_on_a_unix_socket(apps_dir: Path) -> None:
    sock = apps_dir / "metrics.sock"
    args = ["serve", "observed:app", "-b", "127.0.0.1:0", "--metrics-bind", f"unix:{sock}"]
    with running(args, apps_dir, lines=2) as server:
        assert server.lines[1] == f"metrics on unix:{sock} (GET /metrics)\n"
        assert httpx.get(server.url, timeout=10).text == "hi"
        transport = httpx.HTTPTransport(uds=str(sock))
        with httpx.Client(transport=transport, trust_env=False) as client:
            text = client.get("http://metrics/metrics", timeout=10).text
    assert 'trio_upgrade_http_requests_total{method="GET",status="200"} 1.0' in text


@pytest.mark.parametrize("level", [None, "debug"])
def test_an_explicit_log_level_still_sets_the_package_level(
    apps_dir: Path, level: str | None
) -> None:
    log_file = apps_dir / "all.log"
    config = {
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(log_file)}},
        "root": {"handlers": ["file"], "level": "DEBUG"},
        "loggers": {"trio_upgrade": {"level": "WARNING"}},
    }
    (apps_dir / "log.json").write_text(json.dumps(config))
    args = ["serve", "observed:app", "-b", "127.0.0.1:0", "--log-config", "log.json"]
    with running([*args, *(["--log-level", level] if level else [])], apps_dir) as server:
        # A malformed request: answered 400, and logged at DEBUG.
        host, port = server.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        # The one request that reaches the app after it, to know the first was handled.
        assert httpx.get(server.url, timeout=10).text == "hi"
    logged = log_file.read_text()
    assert ("answering 400" in logged) == (level == "debug"), logged
