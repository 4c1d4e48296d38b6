"""The plugin's fixtures in use, and the live server driven by httpx and the websockets client."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trio
import trustme
from _wire import has_ipv6_loopback
from websockets.trio.client import connect

from trio_upgrade.bridge import App, ServerWebSocket
from trio_upgrade.http import Request, Response
from trio_upgrade.testing import AppClient, LiveServer, open_live_server


def build_app() -> App:
    app = App()

    @app.get("/")
    async def index(request: Request) -> Response:
        return Response.json({"client_host": request.client[0] if request.client else None})

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.read(), content_type="application/octet-stream")

    @app.websocket("/ws")
    async def ws(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


@pytest.fixture
def app() -> App:
    """The app the plugin's app_client and app_server fixtures serve."""
    return build_app()


async def test_app_client_fixture_drives_the_app_fixture(app_client: AppClient) -> None:
    assert isinstance(app_client, AppClient)
    assert (await app_client.get("/")).json() == {"client_host": "127.0.0.1"}
    async with app_client.websocket("/ws") as ws:
        await ws.send("ping")
        assert await ws.receive() == "ping"


async def test_app_server_fixture_serves_httpx_on_loopback(app_server: LiveServer) -> None:
    assert app_server.host == "127.0.0.1"
    assert app_server.port > 0
    assert app_server.url == f"http://127.0.0.1:{app_server.port}"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{app_server.url}/")
        assert response.status_code == 200
        assert response.json() == {"client_host": "127.0.0.1"}
        response = await http.post(f"{app_server.url}/echo", content=b"x" * 100_000)
        assert response.content == b"x" * 100_000


async def test_app_server_fixture_serves_the_websockets_client(app_server: LiveServer) -> None:
    assert app_server.ws_url == f"ws://127.0.0.1:{app_server.port}"
    async with connect(f"{app_server.ws_url}/ws") as ws:
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"


async def test_the_live_server_stops_when_the_block_ends() -> None:
    async with open_live_server(build_app()) as server:
        port = server.port
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_an_error_in_the_block_stops_the_server_and_propagates() -> None:
    with pytest.raises(KeyError):
        async with open_live_server(build_app()):
            raise KeyError("from the test")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_live_server_on_ipv6_loopback_brackets_its_urls() -> None:
    async with open_live_server(build_app(), host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}"
        assert server.ws_url == f"ws://[::1]:{server.port}"
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.url}/")
        assert response.json() == {"client_host": "::1"}


async def test_live_server_with_tls_gives_https_and_wss_urls() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with open_live_server(build_app(), ssl_context=server_context) as server:
        assert server.url.startswith("https://")
        assert server.ws_url.startswith("wss://")
        async with httpx.AsyncClient(verify=client_context) as http:
            response = await http.get(f"{server.url}/")
        assert response.status_code == 200
        async with connect(f"{server.ws_url}/ws", ssl=client_context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"
        assert "LiveServer https://" in repr(server)
