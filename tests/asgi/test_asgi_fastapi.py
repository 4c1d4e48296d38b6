"""A FastAPI app on our server, alone and mounted beside native routes of one App."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, serving
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi import Request as FastAPIRequest
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from trio_upgrade.asgi import ASGIHandler
from trio_upgrade.bridge import App, ServerWebSocket
from trio_upgrade.http import Request, Response, serve


class Item(BaseModel):
    name: str
    price: float


api = FastAPI(title="shop")
created: list[Item] = []


@api.post("/items", status_code=201)
async def create_item(item: Item) -> Item:
    created.append(item)
    return item


@api.get("/items/{item_id}")
async def read_item(item_id: int, detail: bool = False) -> dict[str, Any]:
    return {"item_id": item_id, "detail": detail}


@api.get("/where")
async def where(request: FastAPIRequest) -> dict[str, str]:
    return {"path": request.url.path, "root_path": request.scope["root_path"]}


@api.websocket("/ws/{room}")
async def chat(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"room": room, "echo": text})
    except WebSocketDisconnect:
        pass


@pytest.fixture
async def server() -> Any:
    async with serving(api) as server:
        yield server


async def test_pydantic_validation_gives_201_and_422(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        good = await client.post("/items", json={"name": "tea", "price": 2.5})
        bad = await client.post("/items", json={"name": "tea", "price": "free"})
        typed = await client.get("/items/3", params={"detail": "true"})
    assert good.status_code == 201 and good.json() == {"name": "tea", "price": 2.5}
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "price"]
    assert typed.json() == {"item_id": 3, "detail": True}


async def test_openapi_schema_and_docs_page(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        schema = await client.get("/openapi.json")
        docs = await client.get("/docs")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "shop"
    assert "/items" in schema.json()["paths"]
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
    assert "/openapi.json" in docs.text


def _chat(url: str) -> list[str]:
    with connect(url) as ws:
        ws.send("hi")
        first = ws.recv()
        ws.send("again")
        second = ws.recv()
    return [str(first), str(second)]


async def test_fastapi_websocket_with_path_parameter(server: Any) -> None:
    replies = await trio.to_thread.run_sync(_chat, base_url(server, "ws") + "/ws/lobby")
    assert replies == [
        '{"room":"lobby","echo":"hi"}',
        '{"room":"lobby","echo":"again"}',
    ]


def _native_ws(url: str) -> str:
    with connect(url) as ws:
        ws.send("ping")
        reply = str(ws.recv())
        with suppress(ConnectionClosed):
            ws.close()
    return reply


async def test_mounted_beside_native_http_and_websocket_routes() -> None:
    app = App()

    @app.get("/")
    async def index(request: Request) -> Response:
        return Response.text("native")

    @app.websocket("/native-ws")
    async def native_ws(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(f"native {message}")

    app.mount("/api", ASGIHandler(api))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", task_status=task_status)
        )
        url = base_url(server)
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).text == "native"
            assert (await client.get("/api/items/5")).json() == {"item_id": 5, "detail": False}
            assert (await client.get("/api/where")).json() == {
                "path": "/api/where",
                "root_path": "/api",
            }
            created = await client.post("/api/items", json={"name": "cup", "price": 1})
            assert created.status_code == 201
            # FastAPI's docs page points at its schema under the mount.
            docs = await client.get("/api/docs")
            assert "/api/openapi.json" in docs.text
            assert (await client.get("/api/openapi.json")).status_code == 200
            assert (await client.get("/elsewhere")).status_code == 404
        ws_url = base_url(server, "ws")
        assert await trio.to_thread.run_sync(_native_ws, ws_url + "/native-ws") == "native ping"
        replies = await trio.to_thread.run_sync(_chat, ws_url + "/api/ws/mounted")
        assert replies[0] == '{"room":"mounted","echo":"hi"}'
        await server.aclose()
