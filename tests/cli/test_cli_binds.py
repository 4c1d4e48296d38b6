"""Where the command listens: repeated binds, IPv6, Unix sockets, inherited fds,
uvicorn's --host/--port/--uds/--fd, and systemd socket activation."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest
from _cli_procs import running


def _listening_socket(family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_bind_is_repeatable_across_tcp_ipv6_and_unix(demo_dir: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    path = demo_dir / "web.sock"
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "--bind", "[::1]:0", "-b", f"unix:{path}"]
    with running(args, demo_dir, lines=3) as server:
        v4, v6, unix = (line.split()[-1] for line in server.lines)
        assert v4.startswith("http://127.0.0.1:")
        assert v6.startswith("http://[::1]:")
        assert unix == f"unix:{path}"
        pid = str(server.proc.pid)
        assert httpx.get(v4, timeout=10).text == pid
        assert httpx.get(v6, timeout=10).text == pid
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport) as client:
            assert client.get("http://localhost/", timeout=10).text == pid


def test_host_port_and_uds_as_uvicorn_spells_them(demo_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = demo_dir / "u.sock"
    args = ["serve", "demo:app", "--host", "127.0.0.1", "--port", str(port), "--uds", str(path)]
    with running(args, demo_dir, lines=2) as server:
        assert server.lines[0].split()[-1] == f"http://127.0.0.1:{port}/"
        assert server.lines[1].split()[-1] == f"unix:{path}"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text == str(server.proc.pid)


@pytest.mark.parametrize("spelling", ["bind", "fd"])
def test_an_inherited_listening_socket_is_served(demo_dir: Path, spelling: str) -> None:
    """fd://N (or --fd N): a socket someone else bound, passed by descriptor."""
    with _listening_socket() as sock:
        fd = sock.fileno()
        option = ["-b", f"fd://{fd}"] if spelling == "bind" else ["--fd", str(fd)]
        with running(["serve", "demo:app", *option], demo_dir, pass_fds=[fd]) as server:
            port = sock.getsockname()[1]
            assert server.url == f"http://127.0.0.1:{port}/"
            assert httpx.get(server.url, timeout=10).text == str(server.proc.pid)


def test_systemd_socket_activation(demo_dir: Path) -> None:
    """LISTEN_FDS sockets start at fd 3 and are served when LISTEN_PID is ours."""
    with _listening_socket() as sock:
        fd = sock.fileno()
        # A launcher moves the socket to fd 3 and sets LISTEN_PID to its own
        # pid, which exec hands to the command, as systemd does.
        launcher = (
            f"import os, sys; os.dup2({fd}, 3); os.environ['LISTEN_FDS'] = '1';"
            " os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[1], sys.argv[1:])"
        )
        prefix = [sys.executable, "-c", launcher]
        with running(["serve", "demo:app"], demo_dir, pass_fds=[fd], prefix=prefix) as server:
            port = sock.getsockname()[1]
            assert server.url == f"http://127.0.0.1:{port}/"
            # No default bind besides it: one line only, and the socket answers.
            assert httpx.get(server.url, timeout=10).text == str(server.proc.pid)
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=20) == 0
            assert "8000" not in server.stderr()


def test_listen_fds_meant_for_another_process_are_ignored(demo_dir: Path) -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
    with running(["serve", "demo:app", "-b", "127.0.0.1:0"], demo_dir, env=env) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert httpx.get(server.url, timeout=10).status_code == 200
