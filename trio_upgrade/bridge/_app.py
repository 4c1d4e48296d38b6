"""The App: an HTTP router and a WebSocket router on one port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar, final

import trio

from ..http import (
    DirectResponse,
    Handler,
    Middleware,
    Request,
    Response,
    Router,
    Takeover,
    error_response,
)
from ..ws import WebSocketConfig
from ._router import WebSocketHandler, WebSocketRouter

__all__ = ["App"]

H = TypeVar("H", bound=Handler)
W = TypeVar("W", bound=WebSocketHandler)


@final
class App:
    """HTTP routes and WebSocket routes served together; an HTTP handler itself.

    A request with ``Upgrade: websocket`` goes to :attr:`ws_router` only;
    every other request (other upgrades included) to :attr:`router` only. So
    HTTP middleware never sees a handshake and WebSocket middleware never sees
    a plain request. Serve it like any handler::

        app = App()

        @app.route("/")
        async def index(request):
            return Response.html("<h1>hi</h1>")

        @app.websocket("/ws")
        async def echo(ws):
            async for message in ws:
                await ws.send(message)

        trio_upgrade.run(app, "127.0.0.1:8000")

    Fallbacks: an upgrade no WebSocket route matches gets 404 (and the
    connection closes); a plain request to a path that only a WebSocket route
    has gets 426 with ``Upgrade: websocket``; a malformed handshake gets 400
    (a wrong version: 426 with ``Sec-WebSocket-Version: 13``).
    """

    def __init__(
        self,
        *,
        middleware: Iterable[Middleware] = (),
        websocket_middleware: Iterable[Middleware] = (),
        websocket_config: WebSocketConfig | None = None,
    ) -> None:
        self.router = Router(middleware=middleware, not_found=self._not_found)
        self.ws_router = WebSocketRouter(middleware=websocket_middleware, config=websocket_config)

    # HTTP --------------------------------------------------------------------

    def route(
        self, pattern: str, *, methods: Iterable[str] = ("GET",), name: str | None = None
    ) -> Callable[[H], H]:
        """Register an HTTP handler (see :meth:`trio_upgrade.http.Router.route`)."""
        return self.router.route(pattern, methods=methods, name=name)

    def get(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.router.get(pattern, name=name)

    def post(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.router.post(pattern, name=name)

    def put(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.router.put(pattern, name=name)

    def patch(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.router.patch(pattern, name=name)

    def delete(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.router.delete(pattern, name=name)

    def add_middleware(self, middleware: Middleware) -> None:
        """HTTP middleware: runs around plain requests only (404s and 405s included)."""
        self.router.add_middleware(middleware)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Decorator form of :meth:`add_middleware`."""
        self.router.add_middleware(middleware)
        return middleware

    # WebSocket ---------------------------------------------------------------

    def websocket(
        self,
        pattern: str,
        *,
        middleware: Sequence[Middleware] = (),
        config: WebSocketConfig | None = None,
        subprotocols: Sequence[str] = (),
        name: str | None = None,
    ) -> Callable[[W], W]:
        """Register a WebSocket handler, with its own middleware and limits."""
        return self.ws_router.route(
            pattern, middleware=middleware, config=config, subprotocols=subprotocols, name=name
        )

    def add_websocket_middleware(self, middleware: Middleware) -> None:
        """WebSocket middleware: runs before every handshake's 101, never for plain requests."""
        self.ws_router.add_middleware(middleware)

    def websocket_middleware(self, middleware: Middleware) -> Middleware:
        """Decorator form of :meth:`add_websocket_middleware`."""
        self.ws_router.add_middleware(middleware)
        return middleware

    # Composition -------------------------------------------------------------

    def mount(self, prefix: str, app: App | Router | WebSocketRouter | Handler) -> None:
        """Serve everything under *prefix* with *app*.

        An :class:`App` brings both its routers; a :class:`Router` gets plain
        requests, a :class:`WebSocketRouter` upgrades; any other handler (a
        reverse proxy, say) gets both plain requests and upgrades.
        """
        if isinstance(app, App):
            self.router.mount(prefix, app.router)
            self.ws_router.mount(prefix, app.ws_router)
        elif isinstance(app, Router):
            self.router.mount(prefix, app)
        elif isinstance(app, WebSocketRouter):
            self.ws_router.mount(prefix, app)
        else:
            self.router.mount(prefix, app)
            self.ws_router.mount(prefix, app)

    def __call__(self, request: Request) -> Awaitable[Response | DirectResponse | Takeover]:
        # Hands back the chosen router's awaitable (one frame less per request).
        upgrade = request.upgrade
        if upgrade is not None and "websocket" in upgrade.split(", "):
            return self.ws_router(request)
        return self.router(request)

    async def _not_found(self, request: Request) -> Response | DirectResponse | Takeover:
        path = request.path
        if request.root_path:
            path = path[len(request.root_path) :] or "/"
        await trio.lowlevel.checkpoint()
        if self.ws_router.handles(path):
            response = error_response(426, "426 Upgrade Required: this is a WebSocket endpoint")
            response.headers.set("upgrade", "websocket")
            response.headers.set("connection", "Upgrade")
            return response
        return error_response(404, None)
