"""AppClient and open_live_server with ASGI apps: in memory, lifespan included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

from trio_upgrade.testing import AppClient, WebSocketRejected, open_live_server

events: list[str] = []


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    events.append("startup")
    yield {"prefix": "item"}
    events.append("shutdown")


api = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str


@api.post("/items", status_code=201)
async def create(item: Item) -> dict[str, str]:
    return {"name": item.name}


@api.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())
    except WebSocketDisconnect:
        pass


@api.websocket("/closed")
async def closed(websocket: WebSocket) -> None:
    await websocket.close()


async def test_app_client_drives_a_fastapi_app_in_memory() -> None:
    events.clear()
    async with AppClient(api) as client:
        assert events == ["startup"]
        created = await client.post("/items", json={"name": "pen"})
        invalid = await client.post("/items", json={"title": "pen"})
        assert (created.status_code, created.json()) == (201, {"name": "pen"})
        assert invalid.status_code == 422
        assert (await client.get("/openapi.json")).json()["paths"]["/items"]
        async with client.websocket("/ws") as ws:
            await ws.send("hi")
            assert await ws.receive() == "echo hi"
        with pytest.raises(WebSocketRejected) as rejected:
            async with client.websocket("/closed"):
                pass
        assert rejected.value.status == 403
    assert events == ["startup", "shutdown"]


async def test_live_server_serves_an_asgi_app_with_its_lifespan() -> None:
    events.clear()
    async with open_live_server(api) as live, httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.post("/items", json={"name": "cup"})).status_code == 201
    assert events == ["startup", "shutdown"]


def test_the_fixtures_take_an_asgi_app(pytester: pytest.Pytester) -> None:
    """A project whose `app` fixture is a Starlette app uses app_client and app_server as is."""
    pytester.makeini("[pytest]\ntrio_mode = true\nfilterwarnings = error\n")
    pytester.makeconftest(
        """
        import pytest
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def index(request):
            return PlainTextResponse("starlette here")

        @pytest.fixture
        def app():
            return Starlette(routes=[Route("/", index)])
        """
    )
    pytester.makepyfile(
        test_asgi_fixtures="""
        import httpx

        async def test_in_memory(app_client):
            assert (await app_client.get("/")).text == "starlette here"

        async def test_live(app_server):
            async with httpx.AsyncClient(base_url=app_server.url) as client:
                assert (await client.get("/")).text == "starlette here"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)


async def test_an_asgi_apps_exception_is_raised_again_in_the_test() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        raise LookupError("the app's own bug")

    async with AppClient(broken) as client:
        with pytest.raises(LookupError, match="the app's own bug"):
            await client.get("/")
    async with AppClient(broken, raise_server_exceptions=False) as client:
        assert (await client.get("/")).status_code == 500
