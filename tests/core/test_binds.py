"""Bind strings (pure) and the listeners they open (real loopback and Unix sockets)."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
import sys
from pathlib import Path

import pytest
import trio

from trio_upgrade.core import (
    Bind,
    BindError,
    listener_address,
    open_listeners,
    open_unix_listener,
    parse_bind,
)

from ._helpers import MemoryListener, has_ipv6_loopback, receive_exactly, tcp

# ---------------------------------------------------------------- parse_bind


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:8000", Bind(host="127.0.0.1", port=8000)),
        ("localhost:8000", Bind(host="localhost", port=8000)),
        ("0.0.0.0:0", Bind(host="0.0.0.0", port=0)),
        ("127.0.0.1:65535", Bind(host="127.0.0.1", port=65535)),
        ("*:80", Bind(host="*", port=80)),
        ("[::1]:8000", Bind(host="::1", port=8000)),
        ("[::]:0", Bind(host="::", port=0)),
        ("[fe80::1%eth0]:443", Bind(host="fe80::1%eth0", port=443)),
        ("unix:/path/to.sock", Bind(path="/path/to.sock")),
        ("unix:relative.sock", Bind(path="relative.sock")),
        ("unix:/with:colon.sock", Bind(path="/with:colon.sock")),
    ],
)
def test_parse_bind_accepts_every_documented_form(spec: str, expected: Bind) -> None:
    assert parse_bind(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "8000",  # missing host
        ":8000",  # empty host
        "127.0.0.1",  # missing port
        "127.0.0.1:",  # empty port
        "localhost:http",  # service names are not ports
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:8_000",
        "127.0.0.1:٨٠",  # non-ASCII digits
        "::1:8000",  # unbracketed IPv6
        "::1",
        "[::1]",  # bracketed, no port
        "[::1]:",
        "[::1]8000",
        "[::1",
        "[]:80",  # empty bracketed host
        "unix:",  # empty path
    ],
)
def test_parse_bind_rejects_malformed_input_with_bind_error(spec: str) -> None:
    with pytest.raises(BindError):
        parse_bind(spec)


def test_bind_error_is_a_value_error() -> None:
    """Callers validating config may catch ValueError for every bad bind."""
    assert issubclass(BindError, ValueError)


@pytest.mark.parametrize("spec", ["127.0.0.1:8000", "[::1]:0", "unix:/tmp/x.sock", "localhost:1"])
def test_str_of_a_bind_parses_back_to_the_same_bind(spec: str) -> None:
    bind = parse_bind(spec)
    assert str(bind) == spec
    assert parse_bind(str(bind)) == bind


def test_bind_is_unix_only_for_paths() -> None:
    assert parse_bind("unix:/a.sock").is_unix
    assert not parse_bind("127.0.0.1:1").is_unix


# ------------------------------------------------------------ open_listeners


async def _echo_once(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    """Accept one connection and echo until EOF."""
    async with await listener.accept() as stream:
        while data := await stream.receive_some():
            await stream.send_all(data)


async def _check_echo(
    listener: trio.abc.Listener[trio.abc.Stream], client: trio.abc.Stream
) -> None:
    # Guard against a hang turning into a 120 s test timeout; not a duration check.
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo_once, listener)
            async with client:
                await client.send_all(b"ping")
                assert await receive_exactly(client, 4) == b"ping"


async def test_tcp_ipv4_port_zero_gets_a_real_port_and_echoes() -> None:
    (listener,) = await open_listeners("127.0.0.1:0")
    async with listener:
        host, port = tcp(listener_address(listener))
        assert host == "127.0.0.1"
        assert port > 0
        await _check_echo(listener, await trio.open_tcp_stream("127.0.0.1", port))


async def test_open_listeners_takes_bind_objects_too() -> None:
    (listener,) = await open_listeners(Bind(host="127.0.0.1", port=0))
    async with listener:
        address = listener_address(listener)
        assert isinstance(address, tuple)
        assert address[0] == "127.0.0.1"


async def test_several_binds_give_one_listener_each(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    listeners = await open_listeners("127.0.0.1:0", f"unix:{path}")
    try:
        addresses = [listener_address(listener) for listener in listeners]
        assert addresses[1] == path
        assert isinstance(addresses[0], tuple)
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_wildcard_host_reports_the_wildcard_address() -> None:
    (listener,) = await open_listeners("0.0.0.0:0")
    async with listener:
        host, port = tcp(listener_address(listener))
        assert (host, port > 0) == ("0.0.0.0", True)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_tcp_ipv6_loopback_port_zero_echoes() -> None:
    (listener,) = await open_listeners("[::1]:0")
    async with listener:
        host, port = tcp(listener_address(listener))
        assert host == "::1"
        assert port > 0
        await _check_echo(listener, await trio.open_tcp_stream("::1", port))


async def test_unix_listener_echoes_and_reports_its_path(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    (listener,) = await open_listeners(f"unix:{path}")
    async with listener:
        assert listener_address(listener) == path
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        await _check_echo(listener, await trio.open_unix_socket(path))


async def test_unix_listener_removes_a_stale_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    # A previous process bound here and died without unlinking its socket file.
    old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old.bind(path)
    old.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)

    listener = await open_unix_listener(path)
    async with listener:
        await _check_echo(listener, await trio.open_unix_socket(path))


async def test_unix_listener_refuses_to_replace_a_live_socket(tmp_path: Path) -> None:
    """A socket file some server still listens on is in use, not stale."""
    path = str(tmp_path / "live.sock")
    first = await open_unix_listener(path)
    async with first:
        with pytest.raises(OSError) as info:
            await open_unix_listener(path)
        assert info.value.errno == errno.EADDRINUSE
        # The liveness probe was a real (empty) connection: the server sees it
        # as a client that closed at once.
        async with await first.accept() as probe:
            assert await probe.receive_some() == b""
        # The first server still owns the path and gets the clients.
        await _check_echo(first, await trio.open_unix_socket(path))


async def test_unix_listener_never_deletes_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        await open_listeners(f"unix:{path}")
    assert path.read_text() == "keep me"


@pytest.mark.parametrize("mode", [0o660, 0o600, 0o666])
async def test_unix_mode_is_applied_to_the_socket_file(tmp_path: Path, mode: int) -> None:
    path = str(tmp_path / "mode.sock")
    (listener,) = await open_listeners(f"unix:{path}", unix_mode=mode)
    async with listener:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode


async def test_unix_bind_failure_closes_the_socket(tmp_path: Path) -> None:
    """A path too long for sun_path fails cleanly (OSError), leaving nothing behind."""
    path = str(tmp_path / ("x" * 200))
    with pytest.raises(OSError):
        await open_unix_listener(path)
    assert not await trio.Path(path).exists()


async def test_listeners_opened_so_far_are_closed_when_a_later_bind_fails(
    tmp_path: Path,
) -> None:
    good = str(tmp_path / "good.sock")
    blocker = tmp_path / "not-a-socket"
    blocker.write_text("")
    with pytest.raises(FileExistsError):
        await open_listeners(f"unix:{good}", f"unix:{blocker}")
    # The first listener was bound, then closed: nobody answers on it any more.
    with pytest.raises(ConnectionRefusedError):
        await trio.open_unix_socket(good)


async def test_tcp_listener_closed_when_a_later_bind_fails(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    blocker = tmp_path / "not-a-socket"
    blocker.write_text("")
    with pytest.raises(FileExistsError):
        await open_listeners(f"127.0.0.1:{port}", f"unix:{blocker}")
    # Were the TCP listener still open, binding its port again would fail.
    (again,) = await open_listeners(f"127.0.0.1:{port}")
    await again.aclose()


async def test_malformed_bind_string_raises_before_listening() -> None:
    with pytest.raises(BindError):
        await open_listeners("127.0.0.1")


# ----------------------------------------------------------------------- TLS


async def _check_tls_echo(
    listener: trio.abc.Listener[trio.abc.Stream],
    transport: trio.abc.Stream,
    client_ssl_context: ssl.SSLContext,
) -> None:
    client = trio.SSLStream(transport, client_ssl_context, server_hostname="localhost")
    with trio.fail_after(30):  # hang guard, not a duration check
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_echo_once, listener)
            async with client:
                await client.do_handshake()
                await client.send_all(b"secret")
                assert await receive_exactly(client, 6) == b"secret"


async def test_tls_over_tcp_handshakes_and_echoes(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    (listener,) = await open_listeners("127.0.0.1:0", ssl_context=server_ssl_context)
    async with listener:
        assert isinstance(listener, trio.SSLListener)
        host, port = tcp(listener_address(listener))
        assert host == "127.0.0.1"
        transport = await trio.open_tcp_stream(host, port)
        await _check_tls_echo(listener, transport, client_ssl_context)


async def test_tls_over_unix_socket_handshakes_and_echoes(
    tmp_path: Path, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    path = str(tmp_path / "tls.sock")
    (listener,) = await open_listeners(f"unix:{path}", ssl_context=server_ssl_context)
    async with listener:
        assert listener_address(listener) == path
        transport = await trio.open_unix_socket(path)
        await _check_tls_echo(listener, transport, client_ssl_context)


async def test_tls_peer_closing_without_close_notify_reads_as_eof(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """https_compatible: an abrupt TCP close after the handshake is a normal EOF."""
    (listener,) = await open_listeners("127.0.0.1:0", ssl_context=server_ssl_context)
    async with listener:
        host, port = tcp(listener_address(listener))
        transport = await trio.open_tcp_stream(host, port)
        client = trio.SSLStream(transport, client_ssl_context, server_hostname="localhost")
        with trio.fail_after(30):  # hang guard, not a duration check
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.do_handshake)
                server_side = await listener.accept()
                assert isinstance(server_side, trio.SSLStream)
                await server_side.do_handshake()
            await transport.aclose()  # no close_notify
            async with server_side:
                assert await server_side.receive_some() == b""


# ---------------------------------------------------------- listener_address


async def test_listener_address_rejects_listeners_without_a_socket() -> None:
    with pytest.raises(TypeError):
        listener_address(MemoryListener())


async def test_star_host_listens_on_every_interface() -> None:
    listeners = await open_listeners("*:0")
    try:
        assert listeners
        for listener in listeners:
            host, port = tcp(listener_address(listener))
            assert host in ("0.0.0.0", "::")
            assert port > 0
    finally:
        for listener in listeners:
            await listener.aclose()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
async def test_listener_address_of_an_abstract_unix_socket_is_a_str() -> None:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(b"\0trio-upgrade-test-%d" % os.getpid())
    sock.listen()
    async with trio.SocketListener(sock) as listener:
        address = listener_address(listener)
        assert address == f"\0trio-upgrade-test-{os.getpid()}"
