"""App and WebSocketRouter over in-memory connections: who sees which request, every fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing
from _bridge_helpers import handshake, open_memory_connection, open_ws
from _wire import QUIET, frame
from wsproto.events import CloseConnection, Ping

from trio_upgrade.bridge import App, ServerWebSocket, WebSocketRouter
from trio_upgrade.http import Handler, HTTPError, Request, Response, Router, Takeover
from trio_upgrade.ws import ConnectionClosedError, WebSocketConfig

OPCODE_TEXT = 0x1


def echo_app(**kwargs: object) -> App:
    app = App(websocket_config=QUIET, **kwargs)  # type: ignore[arg-type]

    @app.route("/")
    async def index(request: Request) -> Response:
        return Response.text("index")

    @app.websocket("/ws")
    async def echo(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


async def test_one_connection_serves_a_page_then_upgrades() -> None:
    """GET / answers 200 and keeps the connection; the next request on it becomes a WebSocket."""
    async with open_memory_connection(echo_app()) as client:
        page = await client.get("/")
        assert (page.status, page.body) == (200, b"index")
        await open_ws(client)
        await client.send_frame(OPCODE_TEXT, b"hello")
        assert await client.reader.next_message() == "hello"


async def test_http_middleware_never_sees_a_handshake_and_ws_middleware_never_a_plain_request() -> (
    None
):
    seen_http: list[str] = []
    seen_ws: list[str] = []

    async def http_mw(request: Request, call_next: Handler) -> Response | Takeover:
        seen_http.append(request.path)
        return await call_next(request)

    async def ws_mw(request: Request, call_next: Handler) -> Response | Takeover:
        seen_ws.append(request.path)
        return await call_next(request)

    app = echo_app(middleware=[http_mw], websocket_middleware=[ws_mw])
    async with open_memory_connection(app) as client:
        assert (await client.get("/")).status == 200
        assert (await client.get("/ws")).status == 426
        assert (await client.get("/missing")).status == 404
        await open_ws(client)
    assert seen_http == ["/", "/ws", "/missing"]
    assert seen_ws == ["/ws"]


async def test_added_middleware_is_kept_apart_too() -> None:
    """add_middleware/@app.middleware are HTTP only; add_websocket_middleware and its
    decorator are WebSocket only."""
    order: list[str] = []
    app = echo_app()

    @app.middleware
    async def http_a(request: Request, call_next: Handler) -> Response | Takeover:
        order.append("http_a")
        return await call_next(request)

    async def http_b(request: Request, call_next: Handler) -> Response | Takeover:
        order.append("http_b")
        return await call_next(request)

    app.add_middleware(http_b)

    @app.websocket_middleware
    async def ws_a(request: Request, call_next: Handler) -> Response | Takeover:
        order.append("ws_a")
        return await call_next(request)

    async def ws_b(request: Request, call_next: Handler) -> Response | Takeover:
        order.append("ws_b")
        return await call_next(request)

    app.add_websocket_middleware(ws_b)
    async with open_memory_connection(app) as client:
        assert (await client.get("/")).status == 200
        assert order == ["http_a", "http_b"]
        await open_ws(client)
        assert order == ["http_a", "http_b", "ws_a", "ws_b"]


async def test_upgrade_to_an_http_only_path_gets_404_and_close_without_reaching_the_handler() -> (
    None
):
    calls: list[str] = []
    app = App()

    @app.route("/page")
    async def page(request: Request) -> Response:
        calls.append(request.path)
        return Response.text("page")

    async with open_memory_connection(app) as client:
        response = await client.request(handshake("/page"))
        assert response.status == 404
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
    assert calls == []


async def test_unmatched_upgrade_gets_404_and_the_connection_closes_even_with_frames_sent() -> None:
    """A client that already sent frames after its handshake gets the 404, then EOF: no hang."""
    async with open_memory_connection(echo_app()) as client:
        await client.send(handshake("/nowhere") + frame(OPCODE_TEXT, b"early"))
        response = await client.reader.read_response()
        assert response.status == 404
        assert response.body == b"404 Not Found\n"
        await client.assert_closed()


@pytest.mark.parametrize("path", ["/ws", "/rooms/lobby"])
async def test_plain_get_on_a_websocket_only_path_gets_426_and_the_connection_stays(
    path: str,
) -> None:
    app = echo_app()

    @app.websocket("/rooms/{room}")
    async def room(ws: ServerWebSocket) -> None:
        await ws.accept()

    async with open_memory_connection(app) as client:
        response = await client.get(path)
        assert response.status == 426
        assert response.headers.get_tokens("upgrade") == ["websocket"]
        assert "close" not in response.headers.get_tokens("connection")
        # keep-alive: the connection still serves the next request
        assert (await client.get("/")).status == 200


async def test_a_path_with_both_routes_serves_each_kind_by_its_own_handler() -> None:
    app = App(websocket_config=QUIET)

    @app.route("/live")
    async def live_page(request: Request) -> Response:
        return Response.text("page")

    @app.websocket("/live")
    async def live_socket(ws: ServerWebSocket) -> None:
        await ws.send("socket")

    async with open_memory_connection(app) as client:
        assert (await client.get("/live")).body == b"page"
        await open_ws(client, "/live")
        assert await client.reader.next_message() == "socket"


async def test_other_upgrades_go_to_the_http_router() -> None:
    """Only ``Upgrade: websocket`` is routed by the WebSocket router (h2c is for HTTP handlers)."""
    seen: list[str | None] = []
    app = echo_app()

    @app.route("/h2")
    async def h2(request: Request) -> Response:
        seen.append(request.upgrade)
        return Response.text("no thanks")

    async with open_memory_connection(app) as client:
        response = await client.request(
            b"GET /h2 HTTP/1.1\r\nHost: test\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        )
        assert response.status == 200
    assert seen == ["h2c"]


async def test_upgrade_header_is_matched_case_insensitively_and_in_a_list() -> None:
    async with open_memory_connection(echo_app()) as client:
        response = await client.request(handshake(upgrade="foo/1, WebSocket"))
        assert response.status == 101


async def test_path_parameters_reach_the_handler_and_a_failed_converter_is_404() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/users/{uid:int}/feed/{name}")
    async def feed(ws: ServerWebSocket) -> None:
        await ws.send(
            repr(sorted(ws.path_params.items())) + " " + (ws.request.query.get("x") or "")
        )

    async with open_memory_connection(app) as client:
        await open_ws(client, "/users/42/feed/news?x=1")
        assert await client.reader.next_message() == "[('name', 'news'), ('uid', 42)] 1"
    async with open_memory_connection(app) as client:
        response = await client.request(handshake("/users/abc/feed/news"))
        assert response.status == 404
        await client.assert_closed()


# Middleware ---------------------------------------------------------------------


async def test_ws_middleware_rejection_reaches_the_client_exactly_and_the_handler_never_runs() -> (
    None
):
    ran: list[bool] = []

    async def deny(request: Request, call_next: Handler) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        return Response(
            b'{"error": "go away"}',
            status=418,
            headers=[("content-type", "application/json"), ("x-reason", "teapot")],
        )

    app = App(websocket_config=QUIET)

    @app.websocket("/ws", middleware=[deny])
    async def handler(ws: ServerWebSocket) -> None:
        ran.append(True)
        await ws.accept()

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 418
        assert response.body == b'{"error": "go away"}'
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-reason"] == "teapot"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
    assert ran == []


async def test_app_middleware_wraps_route_middleware_and_passes_state_to_the_handler() -> None:
    order: list[str] = []

    async def outer(request: Request, call_next: Handler) -> Response | Takeover:
        order.append("app")
        request.state["user"] = "ada"
        return await call_next(request)

    async def inner(request: Request, call_next: Handler) -> Response | Takeover:
        order.append(f"route sees {request.state['user']}")
        return await call_next(request)

    app = App(websocket_middleware=[outer], websocket_config=QUIET)

    @app.websocket("/ws", middleware=[inner])
    async def handler(ws: ServerWebSocket) -> None:
        order.append("handler")
        await ws.send(ws.request.state["user"])

    async with open_memory_connection(app) as client:
        await open_ws(client)
        assert await client.reader.next_message() == "ada"
    assert order == ["app", "route sees ada", "handler"]


async def test_app_ws_middleware_runs_for_unmatched_upgrades_and_can_answer_them() -> None:
    async def custom_404(request: Request, call_next: Handler) -> Response | Takeover:
        result = await call_next(request)
        if isinstance(result, Response) and result.status == 404:
            return Response.text("no socket here", status=404)
        return result

    async with open_memory_connection(echo_app(websocket_middleware=[custom_404])) as client:
        response = await client.request(handshake("/nope"))
        assert (response.status, response.body) == (404, b"no socket here")
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_route_middleware_does_not_run_for_a_malformed_handshake() -> None:
    """The handshake is validated first: middleware only sees requests that could become a 101."""
    seen: list[str] = []

    async def mw(request: Request, call_next: Handler) -> Response | Takeover:
        seen.append(request.path)
        return await call_next(request)

    app = App(websocket_config=QUIET)

    @app.websocket("/ws", middleware=[mw])
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept()

    async with open_memory_connection(app) as client:
        assert (await client.request(handshake(key=None))).status == 400
    assert seen == []


async def test_route_middleware_applies_to_its_route_only() -> None:
    async def deny(request: Request, call_next: Handler) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        return Response.text("denied", status=403)

    app = echo_app()

    @app.websocket("/private", middleware=[deny])
    async def private(ws: ServerWebSocket) -> None:
        await ws.send("secret")

    async with open_memory_connection(app) as client:
        assert (await client.request(handshake("/private"))).status == 403
    async with open_memory_connection(app) as client:
        await open_ws(client, "/ws")


# Handler outcomes ---------------------------------------------------------------


async def test_handler_rejects_with_a_response_exactly_as_given() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.reject(
            Response.text("come back later", status=503, headers=[("retry-after", "30")])
        )

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 503
        assert response.body == b"come back later"
        assert response.headers["retry-after"] == "30"
        assert response.headers["content-length"] == str(len(b"come back later"))
        assert response.headers.get_tokens("connection") == ["close"]
        assert len(response.headers.get_all("date")) == 1
        await client.assert_closed()


async def raised(call: Callable[[], Awaitable[object]]) -> type[Exception] | None:
    """The type of the exception *call* raised, None if it returned. Handlers
    record this and the test asserts on it after the request: an assertion
    failing inside a handler would only be logged by the server."""
    try:
        await call()
    except Exception as exc:
        return type(exc)
    return None


async def test_handler_rejects_with_a_status_and_detail_then_cannot_send() -> None:
    app = App(websocket_config=QUIET)
    seen: list[object] = []

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        seen.append(ws.state)
        await ws.reject(409, detail="room is full")
        seen.append(ws.state)
        seen.append(await raised(lambda: ws.send("too late")))

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert (response.status, response.body) == (409, b"room is full\n")
        await client.assert_closed()  # the connection, handler included, is over
    assert seen == ["pending", "rejected", RuntimeError]


async def test_handler_rejects_with_a_streamed_body() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.reject(Response.stream(chunks(), status=400))

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert (response.status, response.body) == (400, b"part one, part two")
        await client.assert_closed()


async def test_handler_chooses_the_subprotocol_and_adds_headers_to_the_101() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        assert ws.offered_subprotocols == ("chat.v1", "chat.v2")
        await ws.accept(subprotocol="chat.v2", headers=[("x-session", "s-1")])
        await ws.send(f"speaking {ws.subprotocol}")

    async with open_memory_connection(app) as client:
        response = await open_ws(client, headers="Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n")
        assert response.headers["sec-websocket-protocol"] == "chat.v2"
        assert response.headers["x-session"] == "s-1"
        assert await client.reader.next_message() == "speaking chat.v2"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("b, a", "a"), ("b, z", "z"), ("a", "a"), ("b", None)],
)
async def test_route_subprotocols_pick_the_servers_first_choice_among_those_offered(
    offered: str, chosen: str | None
) -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws", subprotocols=["a", "z"])
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.send(str(ws.subprotocol))

    async with open_memory_connection(app) as client:
        response = await open_ws(client, headers=f"Sec-WebSocket-Protocol: {offered}\r\n")
        assert response.headers.get("sec-websocket-protocol") == chosen
        assert await client.reader.next_message() == str(chosen)


async def test_accepting_a_subprotocol_the_client_did_not_offer_is_a_500() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept(subprotocol="never-offered")

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 500
        await client.assert_closed()


async def test_handler_raising_before_accepting_gets_500_and_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        raise KeyError("boom")

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 500
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
    assert "failed before accepting" in caplog.text


async def test_handler_raising_after_accepting_closes_with_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.send("about to fail")
        raise KeyError("boom")

    async with open_memory_connection(app) as client:
        await open_ws(client)
        assert await client.reader.next_message() == "about to fail"
        assert await client.reader.close_code() == 1011
    assert "KeyError" in caplog.text


async def test_handler_returning_without_accepting_gets_403() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await trio.lowlevel.checkpoint()

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 403
        await client.assert_closed()


async def test_handler_returning_after_accepting_closes_with_1000() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept()

    async with open_memory_connection(app) as client:
        await open_ws(client)
        assert await client.reader.close_code() == 1000


async def test_first_send_accepts_with_the_defaults_then_reject_is_refused() -> None:
    app = App(websocket_config=QUIET)
    seen: list[object] = []

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        seen.append((ws.state, ws.close_code))
        try:
            ws.session  # noqa: B018 - the property raises before accept
        except RuntimeError:
            seen.append("no session before accept")
        await ws.send("hi")
        seen.append((ws.state, ws.session.subprotocol))
        seen.append(await raised(lambda: ws.reject(403)))

    async with open_memory_connection(app) as client:
        await open_ws(client)
        assert await client.reader.next_message() == "hi"
        # The handler returned normally (1000), after recording everything.
        assert await client.reader.close_code() == 1000
    assert seen == [
        ("pending", None),
        "no session before accept",
        ("accepted", None),
        RuntimeError,
    ]


async def test_aclose_before_accepting_rejects_with_403() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.aclose()

    async with open_memory_connection(app) as client:
        assert (await client.request(handshake())).status == 403
        await client.assert_closed()


async def test_aclose_after_accepting_sends_the_code_and_reason() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept()
        await ws.aclose(4000, "bye now")

    async with open_memory_connection(app) as client:
        await open_ws(client)
        event = await client.reader.next_event()
        assert isinstance(event, CloseConnection)
        assert (event.code, event.reason) == (4000, "bye now")


async def test_peer_closing_ends_the_iteration_and_the_handler_normally() -> None:
    done = trio.Event()
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        async for _ in ws:
            pass
        assert ws.close_code == 1000
        done.set()

    async with open_memory_connection(app) as client:
        await open_ws(client)
        await client.send(frame(0x8, (1000).to_bytes(2, "big")))
        with trio.fail_after(5):
            await done.wait()


async def test_frames_sent_with_the_handshake_are_the_first_messages() -> None:
    """Bytes in the same write as the request head reach the session, in order."""
    app = echo_app()
    async with open_memory_connection(app) as client:
        await client.send(handshake() + frame(OPCODE_TEXT, b"one") + frame(OPCODE_TEXT, b"two"))
        response = await client.reader.read_response()
        assert response.status == 101
        assert await client.reader.next_message() == "one"
        assert await client.reader.next_message() == "two"


# Mounting -----------------------------------------------------------------------


def chat_app(log: list[str]) -> App:
    sub = App(websocket_config=QUIET)

    async def sub_http_mw(request: Request, call_next: Handler) -> Response | Takeover:
        log.append(f"http {request.root_path} {request.path}")
        return await call_next(request)

    async def sub_ws_mw(request: Request, call_next: Handler) -> Response | Takeover:
        log.append(f"ws {request.root_path} {request.path}")
        return await call_next(request)

    sub.add_middleware(sub_http_mw)
    sub.add_websocket_middleware(sub_ws_mw)

    @sub.route("/")
    async def home(request: Request) -> Response:
        return Response.text("chat home")

    @sub.websocket("/rooms/{room}")
    async def room(ws: ServerWebSocket) -> None:
        await ws.send(f"room {ws.path_params['room']} under {ws.request.root_path}")

    return sub


async def test_a_mounted_app_serves_http_and_websocket_under_its_prefix() -> None:
    log: list[str] = []
    app = echo_app()
    app.mount("/chat", chat_app(log))
    async with open_memory_connection(app) as client:
        assert (await client.get("/chat")).body == b"chat home"
        assert (await client.get("/chat/rooms/1")).status == 426
        assert (await client.get("/ws")).status == 426
        await open_ws(client, "/chat/rooms/1")
        assert await client.reader.next_message() == "room 1 under /chat"
    async with open_memory_connection(app) as client:
        response = await client.request(handshake("/chat/nothing"))
        assert response.status == 404
        await client.assert_closed()
    async with open_memory_connection(app) as client:
        # the prefix ends at a segment boundary
        assert (await client.request(handshake("/chatrooms/1"))).status == 404
    assert log == [
        "http /chat /chat",
        "http /chat /chat/rooms/1",
        "ws /chat /chat/rooms/1",
        "ws /chat /chat/nothing",
    ]


async def test_mounting_a_router_or_a_websocket_router_adds_only_that_kind() -> None:
    http_only = Router()

    @http_only.get("/x")
    async def x(request: Request) -> Response:
        return Response.text("x")

    ws_only = WebSocketRouter(config=QUIET)

    @ws_only.route("/y")
    async def y(ws: ServerWebSocket) -> None:
        await ws.send("y")

    app = App()
    app.mount("/h", http_only)
    app.mount("/w", ws_only)
    async with open_memory_connection(app) as client:
        assert (await client.get("/h/x")).body == b"x"
        assert (await client.get("/w/y")).status == 426
        await open_ws(client, "/w/y")
        assert await client.reader.next_message() == "y"
    async with open_memory_connection(app) as client:
        assert (await client.request(handshake("/h/x"))).status == 404


class RecordingTakeover:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, request: Request) -> None:
        self.log.append(f"takeover {request.path} {prefetched!r}")
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\ntunnel"
        )


async def test_a_mounted_handler_gets_both_plain_requests_and_upgrades() -> None:
    """Like a reverse proxy: one handler for everything under the prefix."""
    log: list[str] = []

    async def proxy(request: Request) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        if request.upgrade:
            return RecordingTakeover(log)
        log.append(f"plain {request.path} {request.root_path}")
        return Response.text("proxied")

    app = echo_app()
    app.mount("/backend", proxy)
    async with open_memory_connection(app) as client:
        assert (await client.get("/backend/page")).body == b"proxied"
        await client.send(handshake("/backend/socket") + b"\x81")
        response = await client.reader.read_response()
        assert (response.status, response.body) == (200, b"tunnel")
        await client.assert_closed()
    assert log == ["plain /backend/page /backend", "takeover /backend/socket b'\\x81'"]


async def test_mount_prefix_must_start_and_not_end_with_a_slash() -> None:
    app = App()
    for bad in ("chat", "/chat/"):
        with pytest.raises(ValueError):
            app.mount(bad, App())
    await trio.lowlevel.checkpoint()


def test_router_matching_is_pure() -> None:
    """match() and handles() need no I/O: mounted routers included, mounted handlers only
    count for handles()."""
    inner = WebSocketRouter()

    @inner.route("/r/{n:int}")
    async def r(ws: ServerWebSocket) -> None:
        await ws.accept()

    async def other(request: Request) -> Response:
        return Response.text("")

    router = WebSocketRouter()
    router.mount("/in", inner)
    router.mount("/any", other)
    found = router.match("/in/r/7")
    assert found is not None
    assert found[0].pattern == "/r/{n:int}"
    assert found[1] == {"n": 7}
    assert router.match("/in/r/x") is None
    assert router.match("/any/thing") is None
    assert router.handles("/any/thing")
    assert not router.handles("/nope")
    assert [route.pattern for route in inner.routes] == ["/r/{n:int}"]


async def test_handler_raising_http_error_before_accepting_answers_with_it() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        raise HTTPError(401, "who are you?", headers=[("www-authenticate", "Bearer")])

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert (response.status, response.body) == (401, b"who are you?\n")
        assert response.headers["www-authenticate"] == "Bearer"
        await client.assert_closed()


@pytest.mark.parametrize("where", ["app", "route"])
async def test_ws_middleware_raising_http_error_answers_with_it_and_closes(where: str) -> None:
    async def deny(request: Request, call_next: Handler) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        raise HTTPError(429, "slow down", headers=[("retry-after", "5")])

    app = App(websocket_config=QUIET, websocket_middleware=[deny] if where == "app" else [])

    @app.websocket("/ws", middleware=[deny] if where == "route" else [])
    async def handler(ws: ServerWebSocket) -> None:
        await ws.accept()

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert (response.status, response.body) == (429, b"slow down\n")
        assert response.headers["retry-after"] == "5"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_closed_tells_whether_the_socket_can_still_be_used() -> None:
    states: list[tuple[str, bool]] = []
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        states.append((ws.state, ws.closed))
        await ws.accept()
        states.append((ws.state, ws.closed))
        await ws.aclose()
        states.append((ws.state, ws.closed))

    @app.websocket("/no")
    async def refuse(ws: ServerWebSocket) -> None:
        await ws.reject(403)
        states.append((ws.state, ws.closed))

    async with open_memory_connection(app) as client:
        await open_ws(client)
        assert await client.reader.close_code() == 1000
    async with open_memory_connection(app) as client:
        assert (await client.request(handshake("/no"))).status == 403
    assert states == [
        ("pending", False),
        ("accepted", False),
        ("accepted", True),
        ("rejected", True),
    ]


async def test_keepalive_pings_follow_the_route_config(autojump_clock: trio.abc.Clock) -> None:
    """The app's config has no keepalive; the route's pings an idle client every 5 s."""
    app = App(websocket_config=QUIET)
    pinged = trio.Event()

    @app.websocket("/ws", config=WebSocketConfig(ping_interval=5, compression=None))
    async def idle(ws: ServerWebSocket) -> None:
        await ws.accept()
        await pinged.wait()

    async with open_memory_connection(app) as client:
        await open_ws(client)
        started = trio.current_time()
        event = await client.reader.next_event()
        assert isinstance(event, Ping)
        assert trio.current_time() - started == pytest.approx(5)
        pinged.set()


async def test_app_method_decorators_register_http_routes() -> None:
    app = App()

    async def handler(request: Request) -> Response:
        return Response.text(request.method)

    for register in (app.get, app.post, app.put, app.patch, app.delete):
        register(f"/{register.__name__}")(handler)
    app.route("/both", methods=["GET", "POST"])(handler)
    async with open_memory_connection(app) as client:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            response = await client.get(f"/{method.lower()}", method=method)
            assert (response.status, response.body) == (200, method.encode())
        assert (await client.get("/both", method="POST")).body == b"POST"
        refused = await client.get("/put", method="GET")
        assert refused.status == 405
        assert refused.headers["allow"] == "PUT"


@pytest.mark.parametrize("decision", ["accept", "reject", "return", "raise"])
async def test_a_client_gone_before_the_answer_is_not_a_server_error(
    decision: str, caplog: pytest.LogCaptureFixture
) -> None:
    """accept()/reject() raise ConnectionClosedError (1006) to the handler; nothing is logged
    as an error when that or the bridge's own fallback answer meets a closed connection."""
    gone = trio.Event()
    seen: list[int] = []
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await gone.wait()
        try:
            if decision == "accept":
                await ws.accept()
            elif decision == "reject":
                await ws.reject(403)
        except ConnectionClosedError as exc:
            seen.append(exc.code)
            raise
        if decision == "raise":
            raise RuntimeError("fails before accepting")

    async with open_memory_connection(app) as client:
        await client.send(handshake())
        await trio.testing.wait_all_tasks_blocked()
        await client.stream.aclose()
        gone.set()
        await client.finished.wait()
    assert seen == ([1006] if decision in ("accept", "reject") else [])
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    # only the handler's own bug is logged
    assert [r.getMessage() for r in errors] == (
        ["WebSocket handler for /ws failed before accepting"] if decision == "raise" else []
    )


async def test_a_rejection_body_too_large_to_collect_becomes_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A streamed rejection body past 1 MiB cannot be sent with Content-Length: 500, not EOF."""

    async def huge() -> AsyncIterator[bytes]:
        for _ in range(65):
            yield b"x" * 16384

    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.reject(Response.stream(huge(), status=400))

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 500
        await client.assert_closed()
    assert "rejection body too large" in caplog.text
