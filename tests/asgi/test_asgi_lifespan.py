"""The lifespan scope: startup before the first connection, shutdown after the drain,
state in every scope, failures reported with the app's message, the three modes."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, serving

from trio_upgrade.asgi import ASGIHandler, Lifespan, LifespanFailure, serve


class Recorder:
    """A raw ASGI app that records lifespan events and echoes its request state."""

    def __init__(self, *, startup: str = "complete", shutdown: str = "complete") -> None:
        self.events: list[str] = []
        self.startup = startup
        self.shutdown = shutdown
        self.release = trio.Event()
        self.slow_started = trio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].split(".")[1]
                self.events.append(kind)
                outcome = getattr(self, kind)
                reply: dict[str, Any] = {"type": f"lifespan.{kind}.{outcome}"}
                if outcome == "failed":
                    reply["message"] = f"{kind} went wrong: no database"
                if kind == "startup":
                    scope["state"]["db"] = "connected"
                await send(reply)
                if kind == "shutdown":
                    return
        if scope["path"] == "/slow":
            self.events.append("slow request")
            self.slow_started.set()
            await self.release.wait()
            self.events.append("slow request done")
        scope["state"]["mutated"] = True  # a copy per request: never seen by the next
        body = repr(sorted(scope["state"].items())).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def test_state_reaches_every_request_as_a_copy() -> None:
    app = Recorder()
    async with serving(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
        first = await client.get("/")
        second = await client.get("/")
    expected = repr([("db", "connected"), ("mutated", True)])
    assert first.text == second.text == expected


async def test_shutdown_runs_after_the_requests_in_flight_drain() -> None:
    app = Recorder()
    async with trio.open_nursery() as nursery, serving(app) as server:
        assert app.events == ["startup"]

        async def slow() -> None:
            async with httpx.AsyncClient(base_url=base_url(server)) as client:
                assert (await client.get("/slow")).status_code == 200

        nursery.start_soon(slow)
        await app.slow_started.wait()
        closing = trio.Event()

        async def close() -> None:
            await server.aclose()
            closing.set()

        nursery.start_soon(close)
        await trio.sleep(0.1)
        assert "shutdown" not in app.events  # still draining
        app.release.set()
    assert app.events == ["startup", "slow request", "slow request done", "shutdown"]


async def test_failed_startup_raises_with_the_apps_message_and_serves_nothing() -> None:
    app = Recorder(startup="failed")
    with pytest.raises(LifespanFailure, match="startup went wrong: no database"):
        await serve(app, "127.0.0.1:0")
    assert app.events == ["startup"]


async def test_failed_shutdown_is_reported() -> None:
    app = Recorder(shutdown="failed")
    with pytest.raises(LifespanFailure, match="shutdown went wrong"):
        async with Lifespan(app):
            pass


async def _no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise ValueError("unsupported scope type lifespan")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body"})


async def test_auto_mode_serves_an_app_without_lifespan(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "trio_upgrade.asgi")
    async with (
        serving(_no_lifespan) as server,
        httpx.AsyncClient(base_url=base_url(server)) as client,
    ):
        assert (await client.get("/")).status_code == 204
    assert "lifespan unsupported" in caplog.text


async def test_on_mode_makes_an_unsupported_lifespan_a_failure() -> None:
    with pytest.raises(LifespanFailure, match="unsupported scope type lifespan"):
        await serve(_no_lifespan, "127.0.0.1:0", lifespan="on")


async def test_off_mode_sends_no_lifespan_events() -> None:
    app = Recorder()
    async with (
        serving(app, lifespan="off") as server,
        httpx.AsyncClient(base_url=base_url(server)) as client,
    ):
        assert (await client.get("/")).text == repr([("mutated", True)])
    assert app.events == []


async def test_lifespan_around_an_asgi_handler_of_ones_own() -> None:
    """Lifespan and ASGIHandler compose with any server (here: mounted in a Router)."""
    from trio_upgrade.http import Router
    from trio_upgrade.http import serve as serve_http

    app = Recorder()
    async with Lifespan(app) as state:
        router = Router()
        router.mount("/app", ASGIHandler(app, state=state))
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve_http(router, "127.0.0.1:0", task_status=task_status)
            )
            async with httpx.AsyncClient(base_url=base_url(server)) as client:
                assert "connected" in (await client.get("/app/x")).text
            await server.aclose()
    assert app.events == ["startup", "shutdown"]


async def test_a_starlette_lifespan_that_raises_fails_the_startup_even_in_auto_mode() -> None:
    """Starlette answers startup.failed and then raises: that is a failure, not 'unsupported'."""
    from contextlib import asynccontextmanager

    from starlette.applications import Starlette

    @asynccontextmanager
    async def broken(app: Starlette) -> Any:
        raise RuntimeError("cannot reach the cache")
        yield  # pragma: no cover

    with pytest.raises(LifespanFailure, match="cannot reach the cache"):
        await serve(Starlette(lifespan=broken), "127.0.0.1:0")
