"""Bad input gets one clear line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _cli_procs import run_cli


def _refused(result: object, *needles: str) -> None:
    assert result.returncode == 2, result  # type: ignore[attr-defined]
    err: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("bind", "needle"),
    [
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:http", "not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("::1:80", "brackets"),
        ("unix:", "empty Unix socket path"),
        ("fd://x", "fd://N"),
        ("fd://987", "fd://987: not a socket"),
    ],
)
def test_a_malformed_bind(demo_dir: Path, bind: str, needle: str) -> None:
    _refused(run_cli(["serve", "demo:app", "--bind", bind], demo_dir), needle)


def test_a_port_in_use(demo_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli(["serve", "demo:app", "-b", f"127.0.0.1:{port}"], demo_dir)
        _refused(result, f"cannot listen on 127.0.0.1:{port}", "in use")
        result = run_cli(["serve", "demo:app", "-b", f"127.0.0.1:{port}", "-w", "2"], demo_dir)
        _refused(result, f"cannot listen on 127.0.0.1:{port}")


def test_a_file_where_a_unix_socket_should_be(demo_dir: Path) -> None:
    (demo_dir / "plain").write_text("keep me")
    _refused(run_cli(["serve", "demo:app", "-b", "unix:plain"], demo_dir), "cannot listen on")
    assert (demo_dir / "plain").read_text() == "keep me"


@pytest.mark.parametrize(
    ("app", "needle"),
    [
        ("no_such_module:app", "No module named 'no_such_module'"),
        ("demo:missing", "has no attribute 'missing'"),
        ("demo:not_an_app", "is not an app"),
        ("demo", "expected 'module:attribute'"),
    ],
)
def test_an_app_that_cannot_be_loaded(demo_dir: Path, app: str, needle: str) -> None:
    _refused(run_cli(["serve", app, "-w", "2"], demo_dir), "cannot load", needle)


def test_no_app_at_all(demo_dir: Path) -> None:
    _refused(run_cli(["serve"], demo_dir), "serve needs an app")


def test_a_bad_config_file(demo_dir: Path) -> None:
    (demo_dir / "bad.toml").write_text("workers = [")
    _refused(run_cli(["serve", "demo:app", "--config", "bad.toml"], demo_dir), "not valid TOML")
    _refused(run_cli(["serve", "demo:app", "--config", "absent.toml"], demo_dir), "absent.toml")
    (demo_dir / "typo.toml").write_text("max_body_sise = 10\n")
    _refused(run_cli(["serve", "demo:app", "--config", "typo.toml"], demo_dir), "max_body_sise")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-header-size", "100"], "max_header_size must be at least 1024"),
        (["--keyfile", "k.pem"], "need --certfile"),
        (["--certfile", "absent.pem"], "cannot load TLS files"),
        (["--proxy-headers", "--forwarded-allow-ips", "not-an-ip"], "not-an-ip"),
        (["--ws-ping-timeout", "0"], "ping_timeout must be > 0"),
    ],
)
def test_bad_settings(demo_dir: Path, args: list[str], needle: str) -> None:
    _refused(run_cli(["serve", "demo:app", *args], demo_dir), needle)


def test_bad_flag_values_are_argparse_errors(demo_dir: Path) -> None:
    result = run_cli(["serve", "demo:app", "--max-body-size", "lots"], demo_dir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "is not a size" in result.stderr


def test_a_bad_environment_value(demo_dir: Path) -> None:
    env = {"TRIO_UPGRADE_WORKERS": "many"}
    _refused(run_cli(["serve", "demo:app"], demo_dir, env=env), "TRIO_UPGRADE_WORKERS")


def test_proxy_without_routes(demo_dir: Path) -> None:
    _refused(run_cli(["proxy"], demo_dir), "--route")
