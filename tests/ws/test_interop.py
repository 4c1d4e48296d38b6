"""Interoperability with the websockets library: its client against our server, ours against its."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from websockets.exceptions import ConnectionClosedError as TheirClosedError
from websockets.exceptions import ConnectionClosedOK as TheirClosedOK
from websockets.trio.client import connect
from websockets.trio.server import ServerConnection, serve

from trio_upgrade.ws import (
    ConnectionClosedOK,
    HandshakeRejected,
    WebSocket,
    WebSocketConfig,
    open_websocket,
    serve_websocket,
)

BIG = WebSocketConfig(ping_interval=None, max_message_size=4 << 20)
PAYLOADS: list[str | bytes] = ["hello", "ünïcödé ✓", b"\x00\xff" * 10, b"", "x" * 200_000]


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def our_server(handler: Any = echo, **kwargs: Any) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1:0", config=BIG, task_status=task_status, **kwargs
            )
        )
        host, port = server.addresses[0]
        yield f"ws://{host}:{port}"
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def their_server(handler: Any, **kwargs: Any) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(
                handler, 0, host="127.0.0.1", task_status=task_status, **kwargs
            )
        )
        port = server.listeners[0].socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_their_client_against_our_server(compression: str | None) -> None:
    async with (
        our_server() as url,
        connect(url + "/", compression=compression, proxy=None, max_size=4 << 20) as client,
    ):
        for payload in PAYLOADS:
            await client.send(payload)
            assert await client.recv() == payload
        await client.send(["frag", "mented"])  # websockets sends a list as fragments
        assert await client.recv() == "fragmented"
        pong = await client.ping()
        await pong.wait()  # our session answered without the handler's help


async def test_their_client_sees_our_close_code() -> None:
    async def closer(ws: WebSocket) -> None:
        await ws.aclose(4004, "not found")

    async with our_server(closer) as url, connect(url + "/", proxy=None) as client:
        with pytest.raises(TheirClosedError) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4004, "not found")


async def test_their_client_closing_ends_our_handler_normally() -> None:
    ended: list[int | None] = []

    async def handler(ws: WebSocket) -> None:
        async for _ in ws:
            pass
        ended.append(ws.close_code)

    async with our_server(handler) as url:
        async with connect(url + "/", proxy=None) as client:
            await client.send("bye")
        await trio.testing.wait_all_tasks_blocked()
    assert ended == [1000]


@pytest.mark.parametrize("compression", [True, False])
async def test_our_client_against_their_server(compression: bool) -> None:
    async def their_echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    config = BIG if compression else WebSocketConfig(ping_interval=None, compression=None)
    async with (
        their_server(their_echo, max_size=4 << 20) as url,
        open_websocket(url + "/path", config=config) as ws,
    ):
        assert ws.extensions == (("permessage-deflate",) if compression else ())
        for payload in PAYLOADS:
            await ws.send(payload)
            assert await ws.receive() == payload
        await ws.send_fragments([b"a", b"b", b"c"])
        assert await ws.receive() == b"abc"
        assert await ws.ping() >= 0


async def test_our_client_negotiates_their_subprotocol_and_close() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(ws.subprotocol or "-")
        await ws.aclose(1001, "bye")

    async with (
        their_server(handler, subprotocols=["b"]) as url,
        open_websocket(url, subprotocols=["a", "b"]) as ws,
    ):
        assert ws.subprotocol == "b"
        assert await ws.receive() == "b"
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.receive()
        assert (info.value.code, info.value.reason) == (1001, "bye")


async def test_our_client_sees_their_rejection() -> None:
    async def process_request(connection: Any, request: Any) -> Any:
        return connection.respond(403, "forbidden by policy\n")

    async def handler(ws: ServerConnection) -> None:  # pragma: no cover
        await ws.aclose()

    async with their_server(handler, process_request=process_request) as url:
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket(url):
                pass  # pragma: no cover
    assert info.value.status == 403
    assert info.value.body == b"forbidden by policy\n"


async def test_their_client_ok_close_is_clean() -> None:
    async with our_server() as url, connect(url + "/", proxy=None) as client:
        await client.aclose()
        assert client.close_code == 1000
        with pytest.raises(TheirClosedOK):
            await client.recv()
