"""The websocket scope with raw ASGI apps: the messages as the spec words them, and the
answers a misbehaving app gets. Driven by the websockets client over loopback."""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

import pytest
import trio
from _asgi_helpers import base_url, serving
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from trio_upgrade.asgi import Disconnected

seen: list[Any] = []
# Set when the /disconnect app has recorded its three observations.
disconnect_done: list[trio.Event] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")
    path = scope["path"]
    assert (await receive()) == {"type": "websocket.connect"}
    if path == "/scope":
        seen.append(scope)
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
    elif path == "/disconnect":
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except Disconnected as exc:
            seen.append(exc)
        disconnect_done[0].set()
    elif path == "/fail-before":
        raise ValueError("failed before accepting")
    elif path == "/return-before":
        return
    elif path == "/fail-after":
        await send({"type": "websocket.accept"})
        raise ValueError("failed after accepting")
    elif path == "/wrong":
        await send({"type": "websocket.send", "text": "not accepted"})
    elif path == "/bytes-and-text":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "t", "bytes": b"b"})


@pytest.fixture
async def server() -> Any:
    seen.clear()
    disconnect_done[:] = [trio.Event()]
    async with serving(app) as server:
        yield server


def _status(url: str) -> int:
    try:
        connect(url).close()
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


async def test_scope_carries_the_handshake(server: Any) -> None:
    def run(url: str) -> None:
        with (
            connect(url + "/scope?x=1", subprotocols=["a", "b"]) as ws,  # type: ignore[list-item]
            suppress(ConnectionClosed),
        ):
            ws.recv()

    await trio.to_thread.run_sync(run, base_url(server, "ws"))
    scope = seen[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and scope["raw_path"] == b"/scope"
    assert scope["query_string"] == b"x=1"
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert "websocket.http.response" in scope["extensions"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == tuple(server.addresses[0])
    assert (b"sec-websocket-protocol", b"a, b") in scope["headers"]


async def test_disconnect_carries_the_peers_code_and_send_then_raises(server: Any) -> None:
    def run(url: str) -> None:
        with connect(url + "/disconnect") as ws:
            ws.send("one")
            ws.close(4321, "client done")

    await trio.to_thread.run_sync(run, base_url(server, "ws"))
    with trio.fail_after(10):
        await disconnect_done[0].wait()
    assert seen[0] == {"type": "websocket.receive", "text": "one"}
    assert seen[1] == {"type": "websocket.disconnect", "code": 4321, "reason": "client done"}
    assert isinstance(seen[2], Disconnected) and isinstance(seen[2], OSError)


@pytest.mark.parametrize(
    ("path", "status", "logged"),
    [
        ("/fail-before", 500, "failed before accepting"),
        ("/return-before", 500, "returned without accepting or closing"),
        ("/wrong", 500, "the app sent 'websocket.send'"),
    ],
)
async def test_failure_before_accepting_is_a_500_and_logged(
    server: Any, caplog: pytest.LogCaptureFixture, path: str, status: int, logged: str
) -> None:
    got = await trio.to_thread.run_sync(_status, base_url(server, "ws") + path)
    assert got == status
    text = "\n".join(
        r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "")
        for r in caplog.records
        if r.levelno >= logging.ERROR
    )
    assert logged in text


@pytest.mark.parametrize("path", ["/fail-after", "/bytes-and-text"])
async def test_failure_after_accepting_closes_with_1011(
    server: Any, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    def run(url: str) -> int | None:
        with connect(url + path) as ws:
            with suppress(ConnectionClosed):
                ws.recv()
            return ws.close_code

    assert await trio.to_thread.run_sync(run, base_url(server, "ws")) == 1011
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_an_invalid_handshake_is_refused_before_the_app(server: Any) -> None:
    host, port = server.addresses[0]
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(
            b"GET /scope HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        answer = await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13" in answer.lower()
    assert seen == []


async def test_a_graceful_shutdown_closes_sessions_with_1001_and_tells_the_app() -> None:
    from trio_upgrade.testing import AppClient
    from trio_upgrade.ws import ConnectionClosed as SessionClosed

    told: list[Any] = []

    async def waiting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        await receive()
        await send({"type": "websocket.accept"})
        told.append(await receive())

    async with AppClient(waiting) as client, client.websocket("/") as ws:
        client.begin_shutdown()
        with pytest.raises(SessionClosed) as closed:
            await ws.receive()
        assert closed.value.code == 1001
    assert told == [{"type": "websocket.disconnect", "code": 1001, "reason": told[0]["reason"]}]
