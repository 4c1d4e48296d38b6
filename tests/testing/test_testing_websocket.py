"""AppClient.websocket: echo, subprotocols, close codes, rejection, keepalive and drain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from trio_upgrade._wire import accept_key
from trio_upgrade.bridge import App, ServerWebSocket, check_origin
from trio_upgrade.http import Request, Response, Takeover
from trio_upgrade.testing import AppClient, ServerDisconnected, WebSocketRejected
from trio_upgrade.ws import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    HandshakeRejected,
    WebSocketConfig,
)


def make_app(closes: list[tuple[int | None, str]], flood_over: trio.Event) -> App:
    """An app whose handlers record how each session ended in *closes*."""
    app = App()

    @app.websocket("/echo")
    async def echo(ws: ServerWebSocket) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            closes.append((ws.close_code, ws.close_reason))

    @app.websocket("/hello/{name}", subprotocols=["chat.v2", "chat.v1"])
    async def hello(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.send(f"hello {ws.path_params['name']} via {ws.subprotocol}")
        await ws.send(ws.request.headers.get("x-token", "no token"))
        await ws.send(ws.request.query.get("q") or "no query")
        await ws.receive()

    @app.websocket("/goodbye")
    async def goodbye(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.aclose(4001, "we are done")

    @app.websocket("/guarded", middleware=[check_origin(allow_missing=False)])
    async def guarded(ws: ServerWebSocket) -> None:
        await ws.send("welcome")

    @app.websocket("/refuse")
    async def refuse(ws: ServerWebSocket) -> None:
        await ws.reject(Response.text("come back later", status=503, headers={"retry-after": "7"}))

    @app.websocket("/crash")
    async def crash(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.receive()
        raise RuntimeError("handler bug")

    @app.websocket("/flood")
    async def flood(ws: ServerWebSocket) -> None:
        # A server with keepalive pings whose client stops reading.
        await ws.accept(config=WebSocketConfig(ping_interval=5, ping_timeout=3, receive_queue=1))
        try:
            for i in range(1000):
                await ws.send(f"message {i}")
            await ws.receive()
        except ConnectionClosed:
            pass
        finally:
            closes.append((ws.close_code, ws.close_reason))
            flood_over.set()

    return app


@pytest.fixture
def closes() -> list[tuple[int | None, str]]:
    return []


@pytest.fixture
def flood_over() -> trio.Event:
    return trio.Event()


@pytest.fixture
async def client(
    closes: list[tuple[int | None, str]], flood_over: trio.Event
) -> AsyncIterator[AppClient]:
    async with AppClient(make_app(closes, flood_over)) as client:
        yield client


async def test_echo_text_and_bytes(client: AppClient) -> None:
    async with client.websocket("/echo") as ws:
        await ws.send("héllo")
        assert await ws.receive() == "héllo"
        await ws.send(b"\x00\xff")
        assert await ws.receive() == b"\x00\xff"
        await ws.send(b"")
        assert await ws.receive() == b""


async def test_leaving_the_block_closes_with_1000_on_both_sides(
    client: AppClient, closes: list[tuple[int | None, str]]
) -> None:
    async with client.websocket("/echo") as ws:
        await ws.send("x")
        await ws.receive()
    assert ws.close_code == 1000
    assert closes == [(1000, "")]


async def test_the_client_closes_with_its_code_and_reason(
    client: AppClient, closes: list[tuple[int | None, str]]
) -> None:
    async with client.websocket("/echo") as ws:
        await ws.aclose(4321, "test over")
    assert ws.close_code == 4321
    assert closes == [(4321, "test over")]


async def test_the_client_sees_the_server_close_code_and_reason(client: AppClient) -> None:
    async with client.websocket("/goodbye") as ws:
        with pytest.raises(ConnectionClosedError) as caught:
            await ws.receive()
    assert caught.value.code == 4001
    assert caught.value.reason == "we are done"
    assert ws.close_code == 4001
    assert ws.close_reason == "we are done"


async def test_subprotocols_headers_query_and_path_params_reach_the_handler(
    client: AppClient,
) -> None:
    async with client.websocket(
        "/hello/ana?q=1", subprotocols=["chat.v1", "chat.v2"], headers={"X-Token": "t0k"}
    ) as ws:
        assert ws.subprotocol == "chat.v2"  # the route's preference wins
        assert await ws.receive() == "hello ana via chat.v2"
        assert await ws.receive() == "t0k"
        assert await ws.receive() == "1"
        assert ws.request.path == "/hello/ana?q=1"


async def test_compression_is_offered_unless_disabled(client: AppClient) -> None:
    async with client.websocket("/echo") as ws:
        assert ws.extensions == ("permessage-deflate",)
        await ws.send("a" * 10_000)
        assert await ws.receive() == "a" * 10_000
    async with client.websocket("/echo", config=WebSocketConfig(compression=None)) as ws:
        assert ws.extensions == ()


async def test_middleware_rejection_carries_the_http_response(client: AppClient) -> None:
    with pytest.raises(WebSocketRejected) as caught:
        async with client.websocket("/guarded", headers={"origin": "https://evil.test"}):
            pytest.fail("the handshake should have been refused")
    rejected = caught.value
    assert isinstance(rejected, HandshakeRejected)
    assert rejected.status == rejected.response.status_code == 403
    assert rejected.response.headers["connection"] == "close"
    assert rejected.body == rejected.response.content
    assert rejected.response.text


async def test_same_origin_passes_the_middleware(client: AppClient) -> None:
    async with client.websocket("/guarded", headers={"origin": "http://testserver"}) as ws:
        assert await ws.receive() == "welcome"


async def test_a_handler_rejection_keeps_status_headers_and_body(client: AppClient) -> None:
    with pytest.raises(WebSocketRejected) as caught:
        async with client.websocket("/refuse"):
            pass
    response = caught.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.text == "come back later"


async def test_unknown_websocket_path_is_a_404_rejection(client: AppClient) -> None:
    with pytest.raises(WebSocketRejected) as caught:
        async with client.websocket("/nowhere"):
            pass
    assert caught.value.status == 404


async def test_plain_get_to_a_websocket_route_is_426(client: AppClient) -> None:
    response = await client.get("/echo")
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"


async def test_an_error_in_the_block_closes_with_1011_and_propagates(
    client: AppClient, closes: list[tuple[int | None, str]]
) -> None:
    with pytest.raises(ZeroDivisionError):
        async with client.websocket("/echo") as ws:
            await ws.send("x")
            await ws.receive()
            1 / 0  # noqa: B018
    assert closes == [(1011, "internal error")]


async def test_a_crashing_handler_closes_with_1011(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL, "trio_upgrade"):
        async with client.websocket("/crash") as ws:
            await ws.send("go")
            with pytest.raises(ConnectionClosedError) as caught:
                await ws.receive()
    assert caught.value.code == 1011


async def test_graceful_shutdown_closes_sessions_with_1001(
    client: AppClient, closes: list[tuple[int | None, str]]
) -> None:
    async with client.websocket("/echo") as ws:
        await ws.send("before")
        assert await ws.receive() == "before"
        client.begin_shutdown()
        with pytest.raises(ConnectionClosedOK) as caught:
            await ws.receive()
        assert caught.value.code == 1001
    assert ws.close_code == 1001
    with pytest.raises(ConnectionRefusedError):
        async with client.websocket("/echo"):
            pass


async def test_a_client_that_stops_reading_is_closed_by_the_keepalive(
    client: AppClient,
    closes: list[tuple[int | None, str]],
    flood_over: trio.Event,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server's pings go unanswered while the client's queue is full: 1011 after the timeout."""
    async with client.websocket("/flood", config=WebSocketConfig(receive_queue=1)):
        await flood_over.wait()
        assert closes == [(1011, "keepalive ping timeout")]
        # ping_interval 5 + ping_timeout 3, then at most close_timeout (10) to wind down.
        assert 8 <= trio.current_time() <= 18


async def test_the_client_keepalive_times_out_a_silent_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A takeover that never answers pings: the client session fails with 1011."""

    class Silent:
        async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, req: Request) -> None:
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_for(req).encode()
                + b"\r\n\r\n"
            )
            await trio.sleep_forever()

    async def app(request: Request) -> Response | Takeover:
        return Silent()

    config = WebSocketConfig(ping_interval=10, ping_timeout=4, close_timeout=1)
    async with AppClient(app) as client, client.websocket("/", config=config) as ws:
        with pytest.raises(ConnectionClosedError):
            await ws.receive()
        assert ws.close_code == 1011
        assert trio.current_time() >= 14


async def test_a_bad_101_is_a_handshake_error() -> None:
    async def app(request: Request) -> Response | Takeover:
        return BadAccept()

    class BadAccept:
        async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, req: Request) -> None:
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n"
            )
            await stream.receive_some()

    async with AppClient(app) as client:
        with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
            async with client.websocket("/"):
                pass


async def test_a_server_closing_during_the_handshake_is_a_disconnect() -> None:
    class Hangup:
        async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, req: Request) -> None:
            await trio.lowlevel.checkpoint()

    async def app(request: Request) -> Response | Takeover:
        return Hangup()

    async with AppClient(app) as client:
        with pytest.raises(ServerDisconnected):
            async with client.websocket("/"):
                pass


async def test_an_upgrade_to_another_protocol_hands_over_the_raw_stream() -> None:
    """A custom Takeover: after the 101 the test talks the new protocol on the same connection."""

    class Shout:
        async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, req: Request) -> None:
            await stream.send_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n"
                b"\r\nready"
            )
            data = prefetched or await stream.receive_some()
            await stream.send_all(data.upper())

    async def app(request: Request) -> Response | Takeover:
        return Shout()

    async with AppClient(app) as client, client.connect() as conn:
        response = await conn.get("/", headers={"upgrade": "shout", "connection": "upgrade"})
        assert response.status_code == 101
        stream = conn.upgraded_stream()
        assert await stream.receive_some() == b"ready"
        await stream.send_all(b"hello")
        assert await stream.receive_some() == b"HELLO"


def accept_for(request: Request) -> str:
    return accept_key(request.headers["sec-websocket-key"])
