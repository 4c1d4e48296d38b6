"""The App's helpers for people who come from Starlette and FastAPI: lifespan,
JSON on WebSockets, url_for, and mistakes that are refused at once with a hint."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from _bridge_helpers import port_of, serving, ws_connect

import trio_upgrade
from trio_upgrade.bridge import App, ServerWebSocket, WebSocketRouter
from trio_upgrade.http import CORSMiddleware, Request, Response, Router
from trio_upgrade.testing import AppClient

# Lifespan ------------------------------------------------------------------------


def lifespan_app(events: list[str]) -> App:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        app.state["direct"] = "set by the lifespan"  # Starlette habit: fill app.state
        yield {"db": "the-db"}
        await trio.lowlevel.checkpoint()  # shutdown code may await
        events.append("shutdown")

    app = App(lifespan=lifespan)

    @app.route("/")
    async def index(request: Request) -> Response:
        events.append("request")
        assert request.state["direct"] == "set by the lifespan"
        request.state["mine"] = True  # a request's own copy: the app's state is untouched
        return Response.text(request.state["db"])

    @app.websocket("/ws")
    async def ws(ws: ServerWebSocket) -> None:
        await ws.send(ws.request.state["db"])

    return app


async def test_lifespan_runs_around_serve_and_its_state_reaches_requests() -> None:
    events: list[str] = []
    app = lifespan_app(events)
    async with serving(app) as server:
        assert events == ["startup"]  # before the first connection
        port = port_of(server)
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(f"http://127.0.0.1:{port}/")
        assert response.text == "the-db"
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert await ws.recv() == "the-db"
        assert events == ["startup", "request"]
    assert events == ["startup", "request", "shutdown"]
    assert app.state == {"direct": "set by the lifespan", "db": "the-db"}


async def test_lifespan_through_the_top_level_serve() -> None:
    events: list[str] = []
    app = lifespan_app(events)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_upgrade.serve, app, "127.0.0.1:0")
        assert events == ["startup"]
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(f"http://127.0.0.1:{port_of(server)}/")
        assert response.text == "the-db"
        await server.aclose()
    assert events[-1] == "shutdown"


async def test_lifespan_shutdown_still_runs_when_the_server_is_cancelled() -> None:
    events: list[str] = []
    app = lifespan_app(events)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio_upgrade.serve, app, "127.0.0.1:0")
        nursery.cancel_scope.cancel()
    assert events == ["startup", "shutdown"]


async def test_a_failing_startup_serves_nothing_and_raises_the_apps_error() -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    app = App(lifespan=lifespan)
    with pytest.raises(RuntimeError, match="no database"):
        await trio_upgrade.serve(app, "127.0.0.1:0")


async def test_a_bare_async_generator_is_accepted_as_a_lifespan() -> None:
    events: list[str] = []

    async def lifespan(app: App) -> AsyncIterator[None]:
        events.append("up")
        yield
        events.append("down")

    app = App(lifespan=lifespan)  # type: ignore[arg-type]
    async with AppClient(app):
        assert events == ["up"]
    assert events == ["up", "down"]


async def test_a_lifespan_that_is_not_a_context_manager_is_refused_with_a_hint() -> None:
    async def lifespan(app: App) -> None:
        await trio.lowlevel.checkpoint()

    app = App(lifespan=lifespan)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="asynccontextmanager"):
        async with app.lifespan_context():
            pass  # pragma: no cover


async def test_the_app_client_runs_an_apps_lifespan() -> None:
    events: list[str] = []
    app = lifespan_app(events)
    async with AppClient(app) as client:
        assert (await client.get("/")).text == "the-db"
    assert events == ["startup", "request", "shutdown"]


RUN_SCRIPT = textwrap.dedent(
    """
    import sys
    from contextlib import asynccontextmanager

    import trio_upgrade
    from trio_upgrade import App, Response

    @asynccontextmanager
    async def lifespan(app):
        print("startup", flush=True, file=sys.stderr)
        yield {"greeting": "hello from the lifespan"}
        print("shutdown", flush=True, file=sys.stderr)

    app = App(lifespan=lifespan)

    @app.get("/")
    async def index(request):
        return Response.text(request.state["greeting"])

    trio_upgrade.run(app, sys.argv[1])
    """
)


async def test_run_starts_and_stops_the_lifespan_around_serving(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(RUN_SCRIPT)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), "127.0.0.1:0"], stderr=subprocess.PIPE
    )
    assert process.stderr is not None
    text = ""
    try:
        while "serving on" not in text:
            data = await process.stderr.receive_some()
            assert data, text
            text += data.decode()
        assert text.index("startup") < text.index("serving on")
        port = int(text.split("serving on http://127.0.0.1:")[1].split("/")[0])
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(f"http://127.0.0.1:{port}/")
        assert response.text == "hello from the lifespan"
        process.send_signal(signal.SIGINT)
        while data := await process.stderr.receive_some():
            text += data.decode()
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert text.index("stopped") < text.index("shutdown")


# JSON over WebSocket ------------------------------------------------------------


async def test_send_json_and_receive_json_on_both_ends() -> None:
    app = App()

    @app.websocket("/ws")
    async def echo(ws: ServerWebSocket) -> None:
        data = await ws.receive_json()
        await ws.send_json({"got": data, "text": "é"})
        await ws.session.send_json([1, 2], binary=True)

    async with serving(app) as server, ws_connect(f"ws://127.0.0.1:{port_of(server)}/ws") as ws:
        await ws.send(json.dumps({"n": 1}))
        first = await ws.recv()
        assert first == '{"got":{"n":1},"text":"é"}'
        assert await ws.recv() == b"[1,2]"

    async with AppClient(app) as client, client.websocket("/ws") as ws:
        await ws.send_json({"n": 2})
        assert await ws.receive_json() == {"got": {"n": 2}, "text": "é"}
        assert await ws.receive_json() == [1, 2]


async def test_receive_json_of_malformed_json_raises_value_error_and_keeps_the_session() -> None:
    app = App()
    seen: list[str] = []

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        with pytest.raises(ValueError):
            await ws.receive_json()
        seen.append("bad")
        await ws.send_json(await ws.receive_json())

    async with AppClient(app) as client, client.websocket("/ws") as ws:
        await ws.send("{not json")
        await ws.send("[3]")
        assert await ws.receive_json() == [3]
    assert seen == ["bad"]


# url_for --------------------------------------------------------------------------


def test_url_for_fills_and_encodes_parameters_of_http_and_websocket_routes() -> None:
    app = App()

    @app.get("/users/{id:int}")
    async def user(request: Request) -> Response:
        return Response.text("")  # pragma: no cover

    @app.get("/files/{path:path}", name="file")
    async def files(request: Request) -> Response:
        return Response.text("")  # pragma: no cover

    @app.websocket("/rooms/{room}")
    async def room(ws: ServerWebSocket) -> None:
        pass  # pragma: no cover

    api = Router()

    @api.get("/items/{name}", name="item")
    async def item(request: Request) -> Response:
        return Response.text("")  # pragma: no cover

    app.mount("/api", api)
    live = WebSocketRouter()

    @live.route("/feed", name="feed")
    async def feed(ws: ServerWebSocket) -> None:
        pass  # pragma: no cover

    app.mount("/live", live)

    assert app.url_for("user", id=3) == "/users/3"
    assert app.url_for("file", path="a b/c.txt") == "/files/a%20b/c.txt"
    assert app.url_for("room", room="x/y?") == "/rooms/x%2Fy%3F"
    assert app.url_for("item", name="n") == "/api/items/n"
    assert app.url_for("feed") == "/live/feed"
    with pytest.raises(KeyError, match="'id'"):
        app.url_for("user")
    with pytest.raises(LookupError, match="nope"):
        app.url_for("nope")


# Friendlier mistakes --------------------------------------------------------------


async def test_fastapi_style_middleware_decorator_works() -> None:
    app = App()

    @app.middleware("http")
    async def add_header(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-seen"] = "yes"
        return response

    @app.get("/")
    async def index(request: Request) -> Response:
        return Response.text("hi")

    async with AppClient(app) as client:
        response = await client.get("/")
    assert response.headers["x-seen"] == "yes"


def test_middleware_mistakes_are_refused_at_once_with_what_to_write() -> None:
    app = App()
    with pytest.raises(ValueError, match="'http'"):
        app.middleware("https")
    with pytest.raises(TypeError, match=r"@app.middleware\('http'\)"):
        app.add_middleware("http")

    def not_async(request: Request, call_next: Any) -> Any:
        return call_next(request)  # pragma: no cover

    with pytest.raises(TypeError, match="async def not_async"):
        app.add_middleware(not_async)

    class StarletteLike:
        __module__ = "starlette.middleware.cors"

    with pytest.raises(TypeError, match=r"trio_upgrade\.http\.CORSMiddleware"):
        app.add_middleware(StarletteLike)
    with pytest.raises(TypeError, match="middleware class"):
        app.add_middleware(CORSMiddleware(), allow_origins=["*"])


async def test_add_middleware_takes_a_class_and_its_options_as_fastapi_does() -> None:
    app = App()
    app.add_middleware(CORSMiddleware, allow_origins=["https://a.example"])

    @app.get("/")
    async def index(request: Request) -> Response:
        return Response.text("hi")

    async with AppClient(app) as client:
        response = await client.get("/", headers={"origin": "https://a.example"})
    assert response.headers["access-control-allow-origin"] == "https://a.example"


def test_a_plain_def_handler_is_refused_at_registration() -> None:
    app = App()
    with pytest.raises(TypeError, match="async def index"):

        @app.get("/")
        def index(request: Request) -> Response:  # type: ignore[type-var]
            return Response.text("hi")  # pragma: no cover

    with pytest.raises(TypeError, match="async def ws"):

        @app.websocket("/ws")
        def ws(ws: ServerWebSocket) -> None:  # type: ignore[type-var]
            pass  # pragma: no cover


async def test_a_handler_returning_a_dict_gets_500_and_a_log_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    seen: list[int] = []

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        seen.append(response.status)  # middleware gets a Response, not the dict
        return response

    @app.get("/items")
    async def list_items(request: Request) -> Response:
        return {"items": []}  # type: ignore[return-value]

    caplog.set_level(logging.ERROR, "trio_upgrade")
    async with AppClient(app, raise_server_exceptions=False) as client:
        response = await client.get("/items")
    assert response.status == 500
    assert seen == [500]
    (record,) = [r for r in caplog.records if "list_items" in r.getMessage()]
    message = record.getMessage()
    assert "returned dict, not a Response" in message
    assert "Response.json(" in message
    assert "GET /items" in message


def docs_block(marker: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "bridge.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL) if marker in b]
    return block


async def test_the_lifespan_example_in_the_docs_runs() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(docs_block("App(lifespan=lifespan)"), namespace)
    async with AppClient(namespace["app"]) as client:
        assert (await client.get("/pool")).json() == {"connections": 4}
        assert namespace["app"].url_for("pool_size") == "/pool"


async def test_a_hanging_lifespan_shutdown_is_cut_after_its_timeout_and_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        yield
        await trio.sleep_forever()

    app = App(lifespan=lifespan)
    started = trio.current_time()
    async with AppClient(app):
        pass
    assert trio.current_time() - started >= 30  # the mock clock's time, not a wall-clock figure
    assert any("lifespan shutdown timed out" in r.getMessage() for r in caplog.records)


async def test_cors_middleware_never_sees_a_websocket_handshake() -> None:
    app = App(middleware=[CORSMiddleware(allow_origins=["https://a.example"])])

    @app.websocket("/ws")
    async def ws(ws: ServerWebSocket) -> None:
        await ws.send_json({"origin": ws.request.headers.get("origin")})

    async with serving(app) as server:
        url = f"ws://127.0.0.1:{port_of(server)}/ws"
        async with ws_connect(url, origin="https://other.example") as client:
            assert json.loads(await client.recv()) == {"origin": "https://other.example"}


async def test_a_handler_that_forgets_to_return_gets_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()

    @app.post("/save")
    async def save(request: Request) -> Response:
        await request.read()  # ... and no return
        return None  # type: ignore[return-value]

    caplog.set_level(logging.ERROR, "trio_upgrade")
    async with AppClient(app, raise_server_exceptions=False) as client:
        response = await client.post("/save", content=b"x")
    assert response.status == 500
    assert any(
        "save" in r.getMessage() and "a missing return?" in r.getMessage() for r in caplog.records
    )


# request.state: attributes and keys ----------------------------------------------


def state_app() -> App:
    """Middleware sets request.state.user (Starlette's spelling); handlers read it
    both ways, and the lifespan's state arrives as attributes too."""

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[dict[str, Any]]:
        app.state.pool = "the-pool"  # app.state is a State as well
        yield {"db": "the-db"}

    async def who(request: Request, call_next: Any) -> Any:
        request.state.user = request.headers.get("x-user", "ann")
        return await call_next(request)

    app = App(lifespan=lifespan, middleware=[who], websocket_middleware=[who])

    @app.route("/")
    async def index(request: Request) -> Response:
        state = request.state
        return Response.text(f"{state.user} {state['user']} {state.db} {state['pool']}")

    @app.websocket("/ws")
    async def ws(ws: ServerWebSocket) -> None:
        await ws.send(f"{ws.request.state.user} {ws.request.state.db}")

    return app


async def test_request_state_takes_attributes_over_a_real_server() -> None:
    async with serving(state_app()) as server:
        port = port_of(server)
        async with httpx.AsyncClient(trust_env=False) as http:
            response = await http.get(f"http://127.0.0.1:{port}/", headers={"x-user": "bo"})
        assert response.text == "bo bo the-db the-pool"
        async with ws_connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert await ws.recv() == "ann the-db"


async def test_request_state_takes_attributes_through_the_app_client() -> None:
    async with AppClient(state_app()) as client:
        response = await client.get("/", headers={"x-user": "cy"})
        assert response.text == "cy cy the-db the-pool"
        async with client.websocket("/ws") as ws:
            assert await ws.receive() == "ann the-db"


def test_state_is_a_namespace_and_a_mapping() -> None:
    from trio_upgrade.http import State

    state = State({"a": 1})
    state.b = 2
    state["c"] = 3
    assert (state.a, state["b"], state.c) == (1, 2, 3)
    assert state == {"a": 1, "b": 2, "c": 3} and len(state) == 3 and "b" in state
    assert state.get("zz") is None and dict(state.items()) == {"a": 1, "b": 2, "c": 3}
    del state.a
    assert state.pop("b") == 2 and list(state) == ["c"]
    with pytest.raises(AttributeError, match="state has no 'missing'"):
        _ = state.missing
    with pytest.raises(KeyError):
        _ = state["missing"]
    request = Request("GET", "/")
    assert request.state == {}
    request.state = {"x": 1}  # a plain dict assigned is wrapped
    assert request.state.x == 1
