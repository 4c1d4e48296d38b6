"""Limits, timeouts, headers, TLS client certificates and --proxy-headers, as
flags reaching a served app."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from _cli_procs import running

from trio_upgrade import HTTPConfig, WebSocketConfig
from trio_upgrade._cli import Resolved, resolve
from trio_upgrade.cli import _http_config, _parser, _websocket_config


def _settings(command: str, *argv: str, env: dict[str, str] | None = None) -> Resolved:
    args = _parser().parse_args([command, *argv])
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "version", "config", "print_config")
    }
    return resolve(command, flags, env or {}, args.config)


def test_every_http_limit_has_a_flag() -> None:
    s = _settings(
        "serve",
        "m:app",
        *("--max-header-size", "8k", "--max-body-size", "none", "--header-timeout", "3"),
        *("--keepalive-timeout", "1.5", "--body-timeout", "7", "--min-body-rate", "100"),
        *("--write-timeout", "9", "--max-drain-size", "1M", "--max-requests-per-connection", "5"),
        *("--server-header", "edge", "--no-date-header", "--access-log"),
    )
    assert _http_config(s) == HTTPConfig(
        max_header_size=8192,
        max_body_size=None,
        header_timeout=3.0,
        keepalive_timeout=1.5,
        body_timeout=7.0,
        min_body_rate=100.0,
        write_timeout=9.0,
        max_drain_size=1024 * 1024,
        max_requests_per_connection=5,
        server_header="edge",
        date_header=False,
        access_log=True,
    )


def test_every_websocket_limit_has_a_flag() -> None:
    s = _settings(
        "serve",
        "m:app",
        *("--ws-max-size", "64k", "--ws-max-queue", "4", "--ws-send-buffer", "8k"),
        *("--ws-ping-interval", "none", "--ws-ping-timeout", "5", "--ws-close-timeout", "2"),
        "--no-ws-per-message-deflate",
    )
    assert _websocket_config(s) == WebSocketConfig(
        max_message_size=64 * 1024,
        receive_queue=4,
        send_buffer=8 * 1024,
        ping_interval=None,
        ping_timeout=5.0,
        close_timeout=2.0,
        compression=None,
    )
    assert _websocket_config(_settings("serve", "m:app")) == WebSocketConfig()


def test_body_and_header_limits_are_enforced(demo_dir: Path) -> None:
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "--max-body-size", "1k"]
    with running([*args, "--max-header-size", "1024"], demo_dir) as server:
        upload = server.url + "upload"
        assert httpx.post(upload, content=b"x" * 1000, timeout=10).text == "1000"
        assert httpx.post(upload, content=b"x" * 1025, timeout=10).status_code == 413
        big = {"x-big": "y" * 2000}
        assert httpx.get(server.url, headers=big, timeout=10).status_code == 431


def test_server_and_date_headers(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0"], demo_dir) as server:
        response = httpx.get(server.url, timeout=10)
        assert "server" not in response.headers
        assert "date" in response.headers
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "--server-header", "--no-date-header"]
    with running(args, demo_dir) as server:
        response = httpx.get(server.url, timeout=10)
        assert response.headers["server"] == "trio-upgrade"
        assert "date" not in response.headers


def test_max_connections_per_client(demo_dir: Path) -> None:
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "--max-connections-per-client", "1"]
    with running(args, demo_dir) as server:
        host, port = server.url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as first:
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert first.recv(100).startswith(b"HTTP/1.1 200")
            response = httpx.get(server.url, timeout=10)
            assert response.status_code == 503


@pytest.mark.parametrize("app", ["demo:app", "demo_asgi:app"])
def test_proxy_headers_are_believed_from_trusted_proxies_only(demo_dir: Path, app: str) -> None:
    forwarded = {"x-forwarded-for": "198.51.100.9, 203.0.113.7", "x-forwarded-proto": "https"}
    path = "who" if app == "demo:app" else ""
    with running(["serve", app, "-b", "127.0.0.1:0", "--proxy-headers"], demo_dir) as server:
        # 127.0.0.1 is trusted by default: the nearest untrusted hop is the client.
        assert httpx.get(server.url + path, headers=forwarded, timeout=10).text == (
            "203.0.113.7 https"
        )
        assert httpx.get(server.url + path, timeout=10).text == "127.0.0.1 http"
    args = ["serve", app, "-b", "127.0.0.1:0", "--proxy-headers"]
    with running([*args, "--forwarded-allow-ips", "10.0.0.0/8"], demo_dir) as server:
        assert httpx.get(server.url + path, headers=forwarded, timeout=10).text == (
            "127.0.0.1 http"
        )
    with running(["serve", app, "-b", "127.0.0.1:0"], demo_dir) as server:
        assert httpx.get(server.url + path, headers=forwarded, timeout=10).text == (
            "127.0.0.1 http"
        )


def test_client_certificates_required_with_ssl_ca_certs(demo_dir: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client@example.org")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(demo_dir / "server.pem"))
    ca.cert_pem.write_to_path(str(demo_dir / "ca.pem"))
    args = [
        *("serve", "demo:app", "-b", "127.0.0.1:0", "--ssl-certfile", "server.pem"),
        *("--ssl-ca-certs", "ca.pem", "--ssl-cert-reqs", "required"),
    ]
    with running(args, demo_dir) as server:
        assert server.url.startswith("https://")
        anonymous = ssl.create_default_context()
        ca.configure_trust(anonymous)
        with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
            httpx.get(server.url, verify=anonymous, timeout=10)
        known = ssl.create_default_context()
        ca.configure_trust(known)
        client_cert.configure_cert(known)
        assert httpx.get(server.url, verify=known, timeout=10).status_code == 200


def test_the_http_flag_chooses_the_parser() -> None:
    assert _http_config(_settings("serve", "m:app", "--http", "h11")).parser == "h11"
    assert _http_config(_settings("serve", "m:app", "--http-parser", "httptools")).parser == (
        "httptools"
    )
    env = {"TRIO_UPGRADE_HTTP_PARSER": "h11"}
    assert _http_config(_settings("serve", "m:app", env=env)).parser == "h11"


@pytest.mark.parametrize(("parser", "status"), [("h11", b"405"), ("httptools", b"400")])
def test_the_chosen_parser_reads_the_wire(demo_dir: Path, parser: str, status: bytes) -> None:
    """The parsers differ on a lower-case method (docs/http.md, "Parsers"): h11
    reads `get` as a method the route does not allow (405), llhttp refuses the
    request line (400), so the answer shows which one the server got."""
    args = ["serve", "demo:app", "--bind", "127.0.0.1:0", "--http", parser]
    with running(args, demo_dir) as server:
        host, port = server.url.split("//")[1].rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"get / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    assert answer.split(b" ", 2)[1] == status
