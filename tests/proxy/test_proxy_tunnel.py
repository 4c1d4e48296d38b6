"""Upgrade requests through the proxy: WebSocket (websockets' own server and
client on both ends) and raw tunnels, refusals, failures and half-close."""

from __future__ import annotations

import functools
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from _proxy_env import BackendState, backend_app, start_proxy
from _proxy_helpers import read_request_head, start_http, start_raw
from _wire import receive_until_eof
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.trio.client import connect
from websockets.trio.server import ServerConnection
from websockets.trio.server import serve as ws_serve

from trio_upgrade.http import HTTPConfig, serve
from trio_upgrade.proxy import Proxy, ProxyConfig

BIG_MESSAGE = 4 * 1024 * 1024

UPGRADE = b"GET /raw HTTP/1.1\r\nhost: proxy.test\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\n"


@dataclass
class WSBackend:
    """websockets' Trio server as a third-party WebSocket backend."""

    url: str
    # (close code, reason) seen by each handler when its connection ended.
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    ended: trio.Event = field(default_factory=trio.Event)


async def ws_handler(backend: WSBackend, ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    try:
        if path == "/headers":
            assert ws.request is not None
            await ws.send(json.dumps([[k.lower(), v] for k, v in ws.request.headers.raw_items()]))
        elif path == "/big":
            await ws.send(os.urandom(16) + bytes(BIG_MESSAGE))
        elif path == "/close-first":
            await ws.recv()
            await ws.aclose(4002, "server bye")
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass
    finally:
        backend.closes.append((ws.close_code, ws.close_reason))
        backend.ended.set()


def process_request(ws: ServerConnection, request: WSRequest) -> WSResponse | None:
    if request.path == "/forbidden":
        return ws.respond(403, "no websocket for you\n")
    return None


async def start_ws_backend(nursery: trio.Nursery, kind: str, sock_dir: str) -> WSBackend:
    if kind == "unix":
        path = f"{sock_dir}/ws.sock"
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        url = f"unix:{path}"
    else:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        host, port = listener.socket.getsockname()[:2]
        url = f"http://{host}:{port}"
    backend = WSBackend(url)
    await nursery.start(
        functools.partial(
            ws_serve,
            functools.partial(ws_handler, backend),
            listeners=[listener],
            max_size=None,
            process_request=process_request,
            ping_interval=None,
        )
    )
    return backend


@pytest.fixture(params=["unix", "tcp"])
async def ws_env(
    request: pytest.FixtureRequest, nursery: trio.Nursery, sock_dir: str
) -> AsyncIterator[tuple[WSBackend, Proxy, str]]:
    backend = await start_ws_backend(nursery, request.param, sock_dir)
    async with Proxy({"/ws": backend.url}) as proxy:
        host, port = await start_proxy(nursery, proxy)
        yield backend, proxy, f"ws://{host}:{port}/ws"


def ws_connect(url: str, **kwargs: Any) -> connect:
    # proxy=None: never route test traffic through a proxy from the environment.
    return connect(url, proxy=None, max_size=None, ping_interval=None, **kwargs)


async def settled(proxy: Proxy) -> None:
    """Wait until the tunnel tasks have finished their work."""
    with trio.fail_after(30):  # a hang guard, not a timing assertion
        while proxy.statistics().open_tunnels:
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_websocket_echo_text_binary_and_large_messages_both_ways(
    ws_env: tuple[WSBackend, Proxy, str],
) -> None:
    _backend, proxy, url = ws_env
    payload = os.urandom(BIG_MESSAGE)
    async with ws_connect(url + "/echo") as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x00\x01\x02"
        await ws.send(payload)
        assert await ws.recv() == payload
        for i in range(200):
            await ws.send(f"m{i}")
        assert [await ws.recv() for _ in range(200)] == [f"m{i}" for i in range(200)]
    assert proxy.statistics().connections_opened == 1


async def test_large_message_from_the_backend(ws_env: tuple[WSBackend, Proxy, str]) -> None:
    _, _, url = ws_env
    async with ws_connect(url + "/big") as ws:
        message = await ws.recv()
    assert isinstance(message, bytes)
    assert len(message) == 16 + BIG_MESSAGE
    assert message[16:] == bytes(BIG_MESSAGE)


async def test_ping_pong_passes_through(ws_env: tuple[WSBackend, Proxy, str]) -> None:
    _, _, url = ws_env
    async with ws_connect(url + "/echo") as ws:
        pong = await ws.ping(b"are you there")
        with trio.fail_after(30):  # a hang guard
            await pong.wait()
        await ws.send("still open")
        assert await ws.recv() == "still open"


async def test_client_closing_first_passes_its_close_code(
    ws_env: tuple[WSBackend, Proxy, str],
) -> None:
    backend, proxy, url = ws_env
    async with ws_connect(url + "/echo") as ws:
        await ws.send("x")
        await ws.recv()
        await ws.aclose(4001, "client bye")
    with trio.fail_after(30):
        await backend.ended.wait()
    assert backend.closes == [(4001, "client bye")]
    await settled(proxy)


async def test_backend_closing_first_passes_its_close_code(
    ws_env: tuple[WSBackend, Proxy, str],
) -> None:
    _backend, proxy, url = ws_env
    async with ws_connect(url + "/close-first") as ws:
        await ws.send("go")
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4002, "server bye")
    await settled(proxy)


async def test_handshake_reaches_the_backend_with_upgrade_and_forwarding_headers(
    ws_env: tuple[WSBackend, Proxy, str],
) -> None:
    _, _, url = ws_env
    async with ws_connect(url + "/headers") as ws:
        message = await ws.recv()
    assert isinstance(message, str)
    headers = dict(json.loads(message))
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "upgrade"
    assert "sec-websocket-key" in headers
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-prefix"] == "/ws"


async def test_refused_handshake_is_relayed_as_a_response(
    ws_env: tuple[WSBackend, Proxy, str],
) -> None:
    _, proxy, url = ws_env
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(url + "/forbidden"):
            pass
    response = caught.value.response
    assert response.status_code == 403
    assert response.body == b"no websocket for you\n"
    await settled(proxy)


async def test_websocket_through_a_tls_front(
    nursery: trio.Nursery,
    sock_dir: str,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
) -> None:
    """TLS cannot be half-closed: the tunnel still echoes, and the backend's
    close reaches the client."""
    backend = await start_ws_backend(nursery, "unix", sock_dir)

    async with Proxy({"/ws": backend.url}) as proxy:
        server = await nursery.start(
            functools.partial(serve, proxy, "127.0.0.1:0", ssl_context=server_ssl_context)
        )
        host, port = server.addresses[0]
        url = f"wss://localhost:{port}/ws"
        async with ws_connect(url + "/echo", ssl=client_ssl_context, host=host) as ws:
            await ws.send(b"over tls" * 10000)
            assert await ws.recv() == b"over tls" * 10000
        async with ws_connect(url + "/close-first", ssl=client_ssl_context, host=host) as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 4002
        await settled(proxy)


# Raw tunnels ------------------------------------------------------------------

RawHandler = Callable[[trio.SocketStream], Awaitable[None]]


async def raw_env(nursery: trio.Nursery, sock_dir: str, handler: RawHandler) -> tuple[Proxy, Any]:
    url = await start_raw(nursery, handler, f"{sock_dir}/raw.sock")
    proxy = Proxy(url, upgrades=("websocket", "x-raw"))
    address = await start_proxy(nursery, proxy)
    return proxy, address


async def read_until(stream: trio.abc.ReceiveStream, buffer: bytes, wanted: bytes) -> bytes:
    while wanted not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(f"EOF before {wanted!r}: {buffer!r}")
        buffer += data
    return buffer


async def test_bytes_sent_with_the_head_are_forwarded_both_ways(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    """The client's bytes after its request head (prefetched) reach the backend,
    and the backend's bytes right after its 101 reach the client."""

    async def echo_after_101(stream: trio.SocketStream) -> None:
        head, rest = await read_request_head(stream)
        assert b"upgrade: x-raw" in head.lower()
        await stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x-raw\r\n\r\n"
            b"[from backend]"
        )
        if rest:
            await stream.send_all(rest)
        while data := await stream.receive_some(65536):
            await stream.send_all(data)

    proxy, address = await raw_env(nursery, sock_dir, echo_after_101)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE + b"[early bytes]")
            data = await read_until(stream, b"", b"[early bytes]")
            head, _, after = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"upgrade: x-raw" in head.lower()
            assert after == b"[from backend][early bytes]"
            await stream.send_all(b"[later]")
            assert await read_until(stream, b"", b"[later]") == b"[later]"


async def test_half_close_is_passed_on(nursery: trio.Nursery, sock_dir: str) -> None:
    """The client's EOF reaches the backend, which can still answer after it."""

    async def answer_after_eof(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\n\r\n")
        received = await receive_until_eof(stream)
        await stream.send_all(b"got " + received)

    proxy, address = await raw_env(nursery, sock_dir, answer_after_eof)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            await read_until(stream, b"", b"\r\n\r\n")
            await stream.send_all(b"question")
            await stream.send_eof()
            with trio.fail_after(30):
                assert await receive_until_eof(stream) == b"got question"
        await settled(proxy)


async def test_backend_dying_mid_tunnel_closes_the_client_side(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def die(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\n\r\nbye")
        # Returning closes the socket (start_raw closes it for us).

    proxy, address = await raw_env(nursery, sock_dir, die)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            with trio.fail_after(30):  # a hang guard: EOF must come without client action
                data = await receive_until_eof(stream)
            assert data.endswith(b"\r\n\r\nbye")


async def test_client_leaving_mid_tunnel_closes_the_backend_side(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    ended = trio.Event()

    async def wait_for_eof(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\n\r\n")
        await receive_until_eof(stream)
        ended.set()

    proxy, address = await raw_env(nursery, sock_dir, wait_for_eof)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        await stream.send_all(UPGRADE)
        await read_until(stream, b"", b"\r\n\r\n")
        await stream.aclose()
        with trio.fail_after(30):
            await ended.wait()
        await settled(proxy)


async def test_non_101_answer_from_an_http_backend_is_relayed_and_closed(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    backend = await start_http(nursery, backend_app(BackendState(), "a"), f"unix:{sock_dir}/h.sock")
    address = backend.addresses[0]
    assert isinstance(address, str)
    async with Proxy(f"unix:{address}", upgrades=("x-raw",)) as proxy:
        front = await start_proxy(nursery, proxy)
        stream = await trio.open_tcp_stream(*front)
        async with stream:
            await stream.send_all(
                b"GET /echo HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: x-raw\r\n\r\n"
            )
            with trio.fail_after(30):
                data = await receive_until_eof(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"connection: close" in [line.lower() for line in lines]
    length = [line for line in lines if line.lower().startswith(b"content-length:")]
    assert length == [b"content-length: %d" % len(body)]
    assert json.loads(body)["target"] == "/echo"


async def test_upgrade_to_an_unreachable_backend_is_502(
    nursery: trio.Nursery, sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Proxy(f"unix:{sock_dir}/missing.sock", upgrades=("x-raw",)) as proxy:
        address = await start_proxy(nursery, proxy)
        stream = await trio.open_tcp_stream(*address)
        with caplog.at_level(logging.WARNING, logger="trio_upgrade"):
            async with stream:
                await stream.send_all(UPGRADE)
                data = await receive_until_eof(stream)
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert data.endswith(b"\r\n\r\n502 Bad Gateway\n")
    assert any("upgrade" in r.getMessage() and "502" in r.getMessage() for r in caplog.records)


async def test_upgrade_to_a_silent_backend_is_504(
    manual_clock: trio.testing.MockClock, nursery: trio.Nursery, sock_dir: str
) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await trio.sleep_forever()

    url = await start_raw(nursery, silent, f"{sock_dir}/silent.sock")
    async with Proxy(url, config=ProxyConfig(response_timeout=600.0), upgrades=("x-raw",)) as proxy:
        address = await start_proxy(nursery, proxy)
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            manual_clock.jump(601.0)
            data = await receive_until_eof(stream)
    assert data.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")


async def test_upgrade_request_body_is_forwarded(nursery: trio.Nursery, sock_dir: str) -> None:
    async def show_body(stream: trio.SocketStream) -> None:
        head, rest = await read_request_head(stream)
        assert b"content-length: 5" in head.lower()
        body = await read_until(stream, rest, b"hello")
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-raw\r\n\r\n" + body)

    proxy, address = await raw_env(nursery, sock_dir, show_body)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(
                b"POST /raw HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: x-raw\r\n"
                b"content-length: 5\r\n\r\nhello"
            )
            with trio.fail_after(30):
                data = await receive_until_eof(stream)
    assert data.startswith(b"HTTP/1.1 101 ")
    assert data.endswith(b"\r\n\r\nhello")


async def test_chunked_refusal_is_relayed_delimited_by_close(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def refuse_slowly(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n"
            b"connection: keep-alive\r\n\r\n5\r\nfirst\r\n"
        )
        await trio.testing.wait_all_tasks_blocked(cushion=0.01)
        await stream.send_all(b"7\r\n, then\n\r\n0\r\n\r\n")

    proxy, address = await raw_env(nursery, sock_dir, refuse_slowly)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            with trio.fail_after(30):
                data = await receive_until_eof(stream)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[1:] == [b"connection: close"]
    assert body == b"first, then\n"


async def test_garbage_answer_to_an_upgrade_is_502(nursery: trio.Nursery, sock_dir: str) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"\x00\x01 not http\r\n\r\n")

    proxy, address = await raw_env(nursery, sock_dir, garbage)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(UPGRADE)
            data = await receive_until_eof(stream)
    assert data.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")


async def test_tunnels_and_refusals_reach_the_access_log(
    ws_env: tuple[WSBackend, Proxy, str],
    nursery: trio.Nursery,
    sock_dir: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A front of its own with the access log on (the fixture's has it off).
    _, proxy, _ = ws_env
    front = await start_http(nursery, proxy, "127.0.0.1:0", HTTPConfig(access_log=True))
    host, port = front.addresses[0]  # type: ignore[misc]
    url = f"ws://{host}:{port}/ws"
    with caplog.at_level(logging.INFO, logger="trio_upgrade.access"):
        async with ws_connect(url + "/echo") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        with pytest.raises(InvalidStatus):
            async with ws_connect(url + "/forbidden"):
                pass
        async with Proxy(f"unix:{sock_dir}/missing.sock") as gone:
            dead = await start_http(nursery, gone, "127.0.0.1:0", HTTPConfig(access_log=True))
            dead_host, dead_port = dead.addresses[0]  # type: ignore[misc]
            with pytest.raises(InvalidStatus):
                async with ws_connect(f"ws://{dead_host}:{dead_port}/x"):
                    pass

            def lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "trio_upgrade.access"]

            with trio.fail_after(30):  # a hang guard: each line is written as its tunnel ends
                while len(lines()) < 3:
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
    tunnel, refused, failed = sorted(lines(), key=lambda line: line.split('"')[1])
    # Each: the request line, the status, the body bytes relayed (none for a
    # tunnel: what passes through it is the backend's protocol, not a body).
    assert '"GET /ws/echo HTTP/1.1" 101 0 ' in tunnel
    refusal, bad_gateway = b"no websocket for you\n", b"502 Bad Gateway\n"
    assert f'"GET /ws/forbidden HTTP/1.1" 403 {len(refusal)} ' in refused
    assert f'"GET /x HTTP/1.1" 502 {len(bad_gateway)} ' in failed
