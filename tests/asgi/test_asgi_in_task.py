"""The app runs in the connection's own task and writes through a ResponseWriter:
no task per request, and every guarantee of the task-per-request design kept."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, raw_exchange, serving

OK_START = {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]}


async def test_every_request_of_a_connection_runs_in_the_connections_task() -> None:
    tasks: list[trio.lowlevel.Task] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        tasks.append(trio.lowlevel.current_task())
        await send(OK_START)
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        for _ in range(3):
            assert (await client.get("/")).text == "ok"
    assert len(tasks) == 3 and len(set(map(id, tasks))) == 1


async def test_a_header_the_server_refuses_is_a_500_before_anything_is_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        if scope["path"] == "/bad":
            await send({**OK_START, "headers": [(b"x-a", b"line\r\nbreak")]})
        else:
            await send(OK_START)
        await send({"type": "http.response.body", "body": b"ok"})

    async with serving(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        assert (await client.get("/bad")).status_code == 500
        assert (await client.get("/")).text == "ok"  # same connection, still served
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_a_streamed_response_with_a_declared_length_is_not_chunked() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send({**OK_START, "headers": [(b"content-length", b"6")]})
        for part in (b"ab", b"cd", b"ef"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as server:
        received = await raw_exchange(
            server, b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        )
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"abcdef"


async def test_head_requests_discard_a_streamed_body() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send(OK_START)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await send({"type": "http.response.body", "body": b"rest"})

    async with serving(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.head("/")
        assert response.status_code == 200 and response.content == b""
        assert (await client.get("/")).text == "partrest"
