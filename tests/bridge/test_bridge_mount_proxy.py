"""A reverse proxy mounted in an App: plain requests and WebSocket tunnels, WS middleware first."""

from __future__ import annotations

import httpx
import pytest
from _bridge_helpers import port_of, serving, ws_connect
from _wire import QUIET
from websockets.exceptions import InvalidStatus

from trio_upgrade.bridge import App, ServerWebSocket, check_origin
from trio_upgrade.http import Request, Response
from trio_upgrade.proxy import Proxy


def backend_app() -> App:
    backend = App(websocket_config=QUIET)

    @backend.route("/page")
    async def page(request: Request) -> Response:
        return Response.text(f"backend page, prefix {request.headers.get('x-forwarded-prefix')}")

    @backend.websocket("/socket")
    async def socket(ws: ServerWebSocket) -> None:
        async for message in ws:
            assert isinstance(message, str)
            await ws.send(f"backend got {message}")

    return backend


async def test_mounted_proxy_relays_pages_and_tunnels_websockets_behind_the_origin_check() -> None:
    async with serving(backend_app()) as backend:
        front = App(websocket_config=QUIET)
        # Mounted handlers see upgrades after the App's WebSocket middleware.
        front.add_websocket_middleware(check_origin(allow_missing=False))

        @front.route("/")
        async def index(request: Request) -> Response:
            return Response.text("front page")

        async with (
            Proxy(f"http://127.0.0.1:{port_of(backend)}") as proxy,
            serving(front) as server,
        ):
            front.mount("/svc", proxy)
            port = port_of(server)
            async with httpx.AsyncClient(trust_env=False) as http:
                assert (await http.get(f"http://127.0.0.1:{port}/")).text == "front page"
                relayed = await http.get(f"http://127.0.0.1:{port}/svc/page")
            assert relayed.text == "backend page, prefix /svc"
            url = f"ws://127.0.0.1:{port}/svc/socket"
            origin = f"http://127.0.0.1:{port}"
            async with ws_connect(url, origin=origin) as ws:
                await ws.send("hi")
                assert await ws.recv() == "backend got hi"
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(url, origin="http://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
