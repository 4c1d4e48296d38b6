"""An App on real loopback sockets: the websockets client, raw sockets, limits, shutdown."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trio
import trustme
from _bridge_helpers import (
    KEY,
    Reader,
    handshake,
    port_of,
    raw_socket,
    serving,
    ws_connect,
)
from _wire import QUIET, frame, receive_until_eof
from websockets.exceptions import ConnectionClosed as TheirConnectionClosed
from websockets.exceptions import InvalidStatus

from trio_upgrade._wire import accept_key
from trio_upgrade.bridge import App, ServerWebSocket, check_origin
from trio_upgrade.http import Request, Response
from trio_upgrade.ws import Deflate, WebSocketConfig


def make_app(config: WebSocketConfig | None = QUIET) -> tuple[App, list[str]]:
    """An app with a page, an echo route and a log of WebSocket handler calls."""
    calls: list[str] = []
    app = App(websocket_config=config)

    @app.route("/")
    async def index(request: Request) -> Response:
        return Response.html("<h1>hello</h1>")

    @app.websocket("/ws")
    async def echo(ws: ServerWebSocket) -> None:
        calls.append(ws.request.target)
        async for message in ws:
            await ws.send(message)

    return app, calls


async def test_one_port_serves_a_page_and_a_websocket() -> None:
    app, _ = make_app()
    async with serving(app) as server:
        port = port_of(server)
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(f"http://127.0.0.1:{port}/")
        assert (page.status_code, page.text) == (200, "<h1>hello</h1>")
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send("text")
            assert await ws.recv() == "text"
            await ws.send(b"\x00bytes")
            assert await ws.recv() == b"\x00bytes"
            big = "x" * 300_000
            await ws.send(big)
            assert await ws.recv() == big


async def test_plain_get_on_the_websocket_path_is_426_for_a_real_http_client() -> None:
    app, calls = make_app()
    async with serving(app) as server, httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(f"http://127.0.0.1:{port_of(server)}/ws")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert calls == []


async def test_unmatched_upgrade_is_404_for_a_real_client() -> None:
    app, _ = make_app()
    async with serving(app) as server:
        with pytest.raises(InvalidStatus) as info:
            async with ws_connect(f"ws://127.0.0.1:{port_of(server)}/elsewhere"):
                pass
    assert info.value.response.status_code == 404


MALFORMED = {
    "missing key": (handshake(key=None), 400),
    "key not 16 bytes": (handshake(key="c2hvcnQ="), 400),
    "key not base64": (handshake(key="!!!!!!!!!!!!!!!!!!!!!!!!"), 400),
    "two keys": (handshake(headers=f"Sec-WebSocket-Key: {KEY}\r\n"), 400),
    "version 8": (handshake(version="8"), 426),
    "no version": (handshake(version=None), 426),
    "two versions": (handshake(headers="Sec-WebSocket-Version: 8\r\n"), 426),
    "POST": (handshake(method="POST", headers="Content-Length: 0\r\n"), 400),
    "HEAD": (handshake(method="HEAD"), 400),
    "HTTP/1.0": (handshake(http_version="1.0"), 400),
    "no Connection: upgrade": (handshake(connection="keep-alive"), 400),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_handshake_is_refused_and_the_connection_closes(case: str) -> None:
    """400 for a bad handshake, 426 + ``Sec-WebSocket-Version: 13`` for a wrong version;
    the handler never runs and the server closes the connection."""
    request, status = MALFORMED[case]
    app, calls = make_app()
    async with serving(app) as server:
        sock = await raw_socket(port_of(server))
        async with sock:
            await sock.send_all(request)
            reader = Reader(sock)
            response = await reader.read_response(head_request=case == "HEAD")
            assert response.status == status, response
            assert response.headers.get_tokens("connection") == ["close"]
            if status == 426:
                assert response.headers["sec-websocket-version"] == "13"
                assert response.headers.get_tokens("upgrade") == ["websocket"]
            assert await receive_until_eof(sock) == bytes(reader.buffer)
    assert calls == []


async def test_handshake_and_first_frame_in_one_write_reach_the_session() -> None:
    """Raw socket: the request head and a masked frame in ONE send; the frame is echoed."""
    app, _ = make_app()
    async with serving(app) as server:
        sock = await raw_socket(port_of(server))
        async with sock:
            await sock.send_all(
                handshake(host="127.0.0.1") + frame(0x1, b"first") + frame(0x2, b"\x01second")
            )
            reader = Reader(sock)
            response = await reader.read_response()
            assert response.status == 101
            assert response.headers["sec-websocket-accept"] == accept_key(KEY)
            with trio.fail_after(10):
                assert await reader.next_message() == "first"
                assert await reader.next_message() == b"\x01second"


async def test_app_config_limits_messages_and_a_route_config_overrides_it() -> None:
    app = App(websocket_config=WebSocketConfig(max_message_size=100, ping_interval=None))

    @app.websocket("/small")
    async def small(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket("/large", config=WebSocketConfig(max_message_size=10_000, ping_interval=None))
    async def large(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with serving(app) as server:
        base = f"ws://127.0.0.1:{port_of(server)}"
        async with ws_connect(f"{base}/large") as ws:
            await ws.send("y" * 5000)
            assert await ws.recv() == "y" * 5000
        async with ws_connect(f"{base}/small") as ws:
            await ws.send("x" * 100)
            assert await ws.recv() == "x" * 100
            await ws.send("x" * 101)
            with pytest.raises(TheirConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1009


async def test_compression_is_negotiated_per_app_and_per_route() -> None:
    app = App(websocket_config=WebSocketConfig(compression=None, ping_interval=None))

    @app.websocket("/plain")
    async def plain(ws: ServerWebSocket) -> None:
        await ws.send(ws.request.headers.get("sec-websocket-extensions") or "")

    @app.websocket("/deflate", config=WebSocketConfig(compression=Deflate(), ping_interval=None))
    async def deflate(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.send(",".join(ws.extensions))
        async for message in ws:
            await ws.send(message)

    async with serving(app) as server:
        base = f"ws://127.0.0.1:{port_of(server)}"
        async with ws_connect(f"{base}/plain") as ws:
            # the client offered permessage-deflate; this app said no
            assert "permessage-deflate" in await ws.recv()
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
        async with ws_connect(f"{base}/deflate") as ws:
            assert ws.response is not None
            assert await ws.recv() == "permessage-deflate"
            answer = ws.response.headers["Sec-WebSocket-Extensions"]
            assert answer.startswith("permessage-deflate; server_max_window_bits=12")
            text = "compressible " * 1000
            await ws.send(text)
            assert await ws.recv() == text


async def test_accept_config_replaces_the_route_limits() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def tight(ws: ServerWebSocket) -> None:
        await ws.accept(config=WebSocketConfig(max_message_size=8, ping_interval=None))
        async for message in ws:
            await ws.send(message)

    async with serving(app) as server, ws_connect(f"ws://127.0.0.1:{port_of(server)}/ws") as ws:
        await ws.send("12345678")
        assert await ws.recv() == "12345678"
        await ws.send("123456789")
        with pytest.raises(TheirConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


async def test_graceful_shutdown_closes_open_sessions_with_1001() -> None:
    app, _ = make_app()
    got: list[int | None] = []
    async with (
        serving(app, grace_period=5) as server,
        ws_connect(f"ws://127.0.0.1:{port_of(server)}/ws") as ws,
    ):
        await ws.send("still here")
        assert await ws.recv() == "still here"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.aclose)
            with pytest.raises(TheirConnectionClosed) as info:
                await ws.recv()
            got.append(info.value.rcvd.code if info.value.rcvd else None)
    assert got == [1001]


async def test_peer_vanishing_mid_session_ends_the_handler_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that drops the TCP connection is not a server error (no traceback logged)."""
    ended = trio.Event()
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def reader(ws: ServerWebSocket) -> None:
        try:
            while True:
                await ws.receive()
        finally:
            ended.set()

    async with serving(app) as server:
        sock = await raw_socket(port_of(server))
        await sock.send_all(handshake(host="127.0.0.1"))
        assert (await Reader(sock).read_response()).status == 101
        await sock.aclose()
        with trio.fail_after(10):
            await ended.wait()
    assert "Traceback" not in caplog.text


async def test_wss_through_an_app_sees_https_and_checks_https_origins() -> None:
    """wss end to end: the handshake request's scheme is https and the origin check
    compares the https page's host and port with the TLS connection's."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = App(websocket_config=QUIET)

    @app.websocket("/ws", middleware=[check_origin(allow_missing=False)])
    async def scheme(ws: ServerWebSocket) -> None:
        await ws.send(ws.request.scheme)

    async with serving(app, ssl_context=server_context) as server:
        port = port_of(server)
        url = f"wss://127.0.0.1:{port}/ws"
        async with ws_connect(url, ssl=client_context, origin=f"https://127.0.0.1:{port}") as ws:
            assert await ws.recv() == "https"
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(url, ssl=client_context, origin=f"https://evil.example:{port}"):
                pass
        assert refused.value.response.status_code == 403
