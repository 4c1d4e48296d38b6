"""A Starlette app on our server, driven by httpx and the websockets client over loopback."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

events: list[str] = []


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    events.append("startup")
    yield {"greeting": "hello from lifespan"}
    events.append("shutdown")


async def item(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "id": request.path_params["item_id"],
            "q": request.query_params.getlist("q"),
            "path": request.url.path,
            "root_path": request.scope["root_path"],
            "raw_path": request.scope["raw_path"].decode(),
            "greeting": request.state.greeting,
        }
    )


async def count(request: Request) -> StreamingResponse:
    async def numbers() -> AsyncIterator[str]:
        for i in range(1000):
            yield f"{i}\n"

    return StreamingResponse(numbers(), media_type="text/plain")


async def upload(request: Request) -> JSONResponse:
    digest = hashlib.sha256()
    size = chunks = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        chunks += 1
    return JSONResponse({"sha256": digest.hexdigest(), "size": size, "chunks": chunks})


async def echo(ws: WebSocket) -> None:
    await ws.accept(subprotocol="echo.v1", headers=[(b"x-served-by", b"starlette")])
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close please":
                await ws.close(4000, "as you wish")
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


async def refuse(ws: WebSocket) -> None:
    await ws.close()


async def deny(ws: WebSocket) -> None:
    await ws.send_denial_response(
        PlainTextResponse("no entry", status_code=401, headers={"www-authenticate": "Basic"})
    )


app = Starlette(
    routes=[
        Route("/items/{item_id:int}", item),
        Route("/count", count),
        Route("/upload", upload, methods=["POST"]),
        WebSocketRoute("/ws", echo),
        WebSocketRoute("/refuse", refuse),
        WebSocketRoute("/deny", deny),
    ],
    lifespan=lifespan,
)


@pytest.fixture
async def server() -> AsyncIterator[Any]:
    async with serving(app) as server:
        yield server


async def test_path_and_query_parameters_and_lifespan_state(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.get("/items/42?q=a&q=b%20c")
    assert response.status_code == 200
    assert response.json() == {
        "id": 42,
        "q": ["a", "b c"],
        "path": "/items/42",
        "root_path": "",
        "raw_path": "/items/42",
        "greeting": "hello from lifespan",
    }


async def test_unknown_path_is_starlettes_404(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.get("/nothing")
    assert response.status_code == 404


async def test_streaming_response_arrives_chunked_and_whole(server: Any) -> None:
    async with (
        httpx.AsyncClient(base_url=base_url(server)) as client,
        client.stream("GET", "/count") as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"
        text = "".join([chunk async for chunk in response.aiter_text()])
    assert text == "".join(f"{i}\n" for i in range(1000))


async def test_head_of_a_streamed_response_has_no_body_and_keeps_the_connection(
    server: Any,
) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        head = await client.head("/count")
        after = await client.get("/items/1")
    assert head.status_code == 200 and head.content == b""
    assert after.status_code == 200


def _upload(url: str, payload: bytes) -> httpx.Response:
    def pieces() -> Any:
        for start in range(0, len(payload), 256 * 1024):
            yield payload[start : start + 256 * 1024]

    with httpx.Client(base_url=url) as client:
        return client.post("/upload", content=pieces())  # chunked request body


async def test_large_streamed_upload_arrives_intact_in_pieces(server: Any) -> None:
    payload = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB, under the default 10 MiB limit
    response = await trio.to_thread.run_sync(_upload, base_url(server), payload)
    assert response.status_code == 200
    body = response.json()
    assert body["sha256"] == hashlib.sha256(payload).hexdigest()
    assert body["size"] == len(payload)
    # Streamed to the app as it arrived, never collected whole first.
    assert body["chunks"] > 1


def _websocket_echo(url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with connect(url + "/ws", subprotocols=["echo.v1"]) as ws:  # type: ignore[list-item]
        seen["subprotocol"] = ws.subprotocol
        seen["header"] = ws.response.headers.get("x-served-by")
        ws.send("hello")
        seen["text"] = ws.recv()
        ws.send(b"\x00\x01binary")
        seen["bytes"] = ws.recv()
        ws.send("close please")
        with suppress(ConnectionClosed):
            ws.recv()
        seen["close"] = (ws.close_code, ws.close_reason)
    return seen


async def test_websocket_echo_with_subprotocol_headers_and_close_code(server: Any) -> None:
    url = base_url(server, "ws")
    seen = await trio.to_thread.run_sync(_websocket_echo, url)
    assert seen == {
        "subprotocol": "echo.v1",
        "header": "starlette",
        "text": "hello",
        "bytes": b"\x00\x01binary",
        "close": (4000, "as you wish"),
    }


def _rejected(url: str) -> tuple[int, bytes, str | None]:
    try:
        connect(url).close()
    except InvalidStatus as exc:
        response = exc.response
        return (
            response.status_code,
            bytes(response.body or b""),
            response.headers.get("www-authenticate"),
        )
    raise AssertionError("the handshake was accepted")


async def test_close_before_accept_answers_403(server: Any) -> None:
    status, _, _ = await trio.to_thread.run_sync(_rejected, base_url(server, "ws") + "/refuse")
    assert status == 403


async def test_denial_response_extension_sends_the_apps_answer(server: Any) -> None:
    status, body, auth = await trio.to_thread.run_sync(_rejected, base_url(server, "ws") + "/deny")
    assert (status, body, auth) == (401, b"no entry", "Basic")


async def test_lifespan_startup_before_serving_and_shutdown_after() -> None:
    events.clear()
    async with serving(app) as server:
        assert events == ["startup"]
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/items/1")).status_code == 200
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def test_percent_encoded_query_values_arrive_decoded(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.get("/items/7", params={"q": "ü"})
    assert json.loads(response.content)["q"] == ["ü"]
