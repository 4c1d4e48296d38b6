"""A Quart-trio app (Quart on Trio) on our server: routes, JSON, streaming, WebSocket."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, serving
from websockets.sync.client import connect

quart_trio = pytest.importorskip("quart_trio")
quart = pytest.importorskip("quart")

app = quart_trio.QuartTrio(__name__)
started: list[str] = []


@app.before_serving
async def startup() -> None:
    started.append("up")


@app.route("/hello/<name>")
async def hello(name: str) -> str:
    return f"hello {name} {quart.request.args.get('q', '')}"


@app.route("/echo", methods=["POST"])
async def echo() -> Any:
    data = await quart.request.get_json()
    return {"got": data, "started": started}


@app.route("/stream")
async def stream() -> Any:
    async def lines() -> Any:
        for i in range(3):
            yield f"line {i}\n".encode()

    return lines(), 200, {"content-type": "text/plain"}


@app.websocket("/ws")
async def ws() -> None:
    while True:
        message = await quart.websocket.receive()
        await quart.websocket.send(f"quart {message}")


@pytest.fixture
async def server() -> Any:
    async with serving(app) as server:
        yield server


async def test_quart_trio_routes_json_and_streaming(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        hello = await client.get("/hello/trio", params={"q": "x"})
        echoed = await client.post("/echo", json={"a": [1, 2]})
        streamed = await client.get("/stream")
    assert hello.status_code == 200 and hello.text == "hello trio x"
    assert echoed.json() == {"got": {"a": [1, 2]}, "started": ["up"]}
    assert streamed.text == "line 0\nline 1\nline 2\n"


def _talk(url: str) -> list[str]:
    with connect(url) as ws:
        replies = []
        for word in ("a", "b"):
            ws.send(word)
            replies.append(str(ws.recv()))
    return replies


async def test_quart_trio_websocket(server: Any) -> None:
    replies = await trio.to_thread.run_sync(_talk, base_url(server, "ws") + "/ws")
    assert replies == ["quart a", "quart b"]
