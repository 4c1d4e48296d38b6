"""The App: an HTTP router and a WebSocket router on one port."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, final, overload

import trio

from ..http import (
    DirectResponse,
    Handler,
    Middleware,
    Request,
    Response,
    Router,
    State,
    Takeover,
)
from ..http._router import check_handler, error_response
from ..ws import WebSocketConfig
from ._router import WebSocketHandler, WebSocketRouter

__all__ = ["App"]

H = TypeVar("H", bound=Handler)
W = TypeVar("W", bound=WebSocketHandler)
M = TypeVar("M", bound=Middleware)

logger = logging.getLogger("trio_upgrade.bridge")

LifespanFactory = Callable[["App"], AbstractAsyncContextManager[Mapping[str, Any] | None]]
"""``lifespan(app)`` → an async context manager, optionally yielding a state mapping."""

# How long a lifespan's shutdown may run once the server has stopped (it is
# shielded from the cancellation that stopped the server, so it needs a bound).
LIFESPAN_SHUTDOWN_TIMEOUT = 30.0

# Middleware kinds that @app.middleware(...) accepts, as FastAPI spells them.
_MIDDLEWARE_KINDS = ("http", "websocket")


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

    *lifespan*, as in Starlette: a function taking the app and returning an
    async context manager (``@contextlib.asynccontextmanager``; a bare async
    generator function is wrapped for you). :func:`trio_upgrade.run`,
    :func:`~trio_upgrade.serve`, ``trio-upgrade serve`` and the test client
    enter it before the first connection and leave it after the drain (see
    :meth:`lifespan_context`). The mapping it yields, if any, is added to
    :attr:`state`, which is copied (shallowly) into every request's
    ``request.state`` — WebSocket handlers see it as ``ws.request.state``.
    """

    def __init__(
        self,
        *,
        middleware: Iterable[Middleware] = (),
        websocket_middleware: Iterable[Middleware] = (),
        websocket_config: WebSocketConfig | None = None,
        lifespan: LifespanFactory | None = None,
    ) -> None:
        self.router = Router(middleware=middleware, not_found=self._not_found)
        self.ws_router = WebSocketRouter(middleware=websocket_middleware, config=websocket_config)
        if lifespan is not None:
            if inspect.isasyncgenfunction(lifespan):
                lifespan = asynccontextmanager(lifespan)
            elif not callable(lifespan):
                raise TypeError(f"lifespan must be a function of the app, not {lifespan!r}")
        self.lifespan = lifespan
        # Copied into each request's state: what the lifespan yielded, and
        # anything put here directly.
        # A State, as request.state: app.state.db = ... or app.state["db"] = ...
        self.state = State()
        self._lifespan_running = False

    # Lifespan ----------------------------------------------------------------

    @asynccontextmanager
    async def lifespan_context(self) -> AsyncIterator[State]:
        """Run the app's lifespan: startup on entering, shutdown on leaving.

        Yields :attr:`state`. A server stopped by cancellation is stopped
        like any other: the lifespan's code after ``yield`` runs (shielded
        from that cancellation, for at most ``LIFESPAN_SHUTDOWN_TIMEOUT``
        seconds). Another exception is thrown in at the ``yield``, as in any
        context manager. An exception from the startup propagates and
        nothing is served. Not re-entrant.
        """
        factory = self.lifespan
        if factory is None:
            await trio.lowlevel.checkpoint()
            yield self.state
            return
        if self._lifespan_running:
            raise RuntimeError("this App's lifespan is already running")
        self._lifespan_running = True
        try:
            manager = factory(self)
            if not hasattr(manager, "__aenter__"):
                if inspect.iscoroutine(manager):
                    manager.close()  # never awaited: say so here, not in a warning
                raise TypeError(
                    f"lifespan {getattr(factory, '__qualname__', factory)!r} returned "
                    f"{manager!r}, not an async context manager: decorate it with "
                    "@contextlib.asynccontextmanager"
                )
            state = await manager.__aenter__()
            if state is not None and not isinstance(state, Mapping):
                await self._leave(manager, None)
                raise TypeError(
                    f"a lifespan yields a mapping (its state) or nothing, not {state!r}"
                )
            if state:
                # Added to the same dict: what the lifespan (or anyone) put in
                # app.state directly stays.
                self.state.update(state)
            try:
                yield self.state
            except BaseException as exc:
                if _only_cancelled(exc):
                    # Cancelling serve() is a normal way to stop a server: the
                    # lifespan shuts down as after any other stop, then the
                    # cancellation goes on.
                    await self._leave(manager, None)
                    raise
                if not await self._leave(manager, exc):
                    raise
            else:
                await self._leave(manager, None)
        finally:
            self._lifespan_running = False

    @staticmethod
    async def _leave(manager: AbstractAsyncContextManager[Any], exc: BaseException | None) -> bool:
        suppress = False
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + LIFESPAN_SHUTDOWN_TIMEOUT
            suppress = bool(
                await manager.__aexit__(
                    None if exc is None else type(exc),
                    exc,
                    None if exc is None else exc.__traceback__,
                )
            )
        if scope.cancelled_caught:
            logger.error(
                "the App's lifespan shutdown timed out after %.0f s", LIFESPAN_SHUTDOWN_TIMEOUT
            )
        return suppress

    # HTTP --------------------------------------------------------------------

    def route(
        self, pattern: str, *, methods: Iterable[str] = ("GET",), name: str | None = None
    ) -> Callable[[H], H]:
        """Register an HTTP handler (see :meth:`trio_upgrade.http.Router.route`).

        *name* (for :meth:`url_for`) defaults to the handler's ``__name__``.
        """

        def decorate(handler: H) -> H:
            route_name = name if name is not None else getattr(handler, "__name__", None)
            self.router.add_route(pattern, handler, methods=methods, name=route_name)
            return handler

        return decorate

    def get(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.route(pattern, methods=("GET",), name=name)

    def post(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.route(pattern, methods=("POST",), name=name)

    def put(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.route(pattern, methods=("PUT",), name=name)

    def patch(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.route(pattern, methods=("PATCH",), name=name)

    def delete(self, pattern: str, *, name: str | None = None) -> Callable[[H], H]:
        return self.route(pattern, methods=("DELETE",), name=name)

    def add_middleware(self, middleware: Any, /, **options: Any) -> None:
        """HTTP middleware: runs around plain requests only (404s and 405s included).

        *middleware* is ``async def mw(request, call_next)`` or an object
        called like it (``CORSMiddleware(...)``); a class with *options*,
        FastAPI's spelling, is instantiated with them:
        ``app.add_middleware(CORSMiddleware, allow_origins=["*"])``.
        """
        self.router.add_middleware(_middleware(middleware, options))

    @overload
    def middleware(self, middleware: str) -> Callable[[M], M]: ...
    @overload
    def middleware(self, middleware: M) -> M: ...
    def middleware(self, middleware: Any) -> Any:
        """Decorator form of :meth:`add_middleware`: ``@app.middleware`` or, as
        FastAPI spells it, ``@app.middleware("http")`` (``"websocket"`` for
        :meth:`websocket_middleware`)."""
        if isinstance(middleware, str):
            if middleware not in _MIDDLEWARE_KINDS:
                raise ValueError(
                    f"@app.middleware({middleware!r}): the kinds are 'http' (plain "
                    "requests) and 'websocket' (handshakes)"
                )
            kind = middleware

            def decorate(function: M) -> M:
                if kind == "http":
                    self.add_middleware(function)
                else:
                    self.add_websocket_middleware(function)
                return function

            return decorate
        self.add_middleware(middleware)
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
        """Register a WebSocket handler, with its own middleware and limits.

        *name* (for :meth:`url_for`) defaults to the handler's ``__name__``.
        """

        def decorate(handler: W) -> W:
            self.ws_router.add_route(
                pattern,
                handler,
                middleware=middleware,
                config=config,
                subprotocols=subprotocols,
                name=name if name is not None else getattr(handler, "__name__", None),
            )
            return handler

        return decorate

    def add_websocket_middleware(self, middleware: Any, /, **options: Any) -> None:
        """WebSocket middleware: runs before every handshake's 101, never for plain requests."""
        self.ws_router.add_middleware(_middleware(middleware, options))

    def websocket_middleware(self, middleware: M) -> M:
        """Decorator form of :meth:`add_websocket_middleware`."""
        self.add_websocket_middleware(middleware)
        return middleware

    # URLs --------------------------------------------------------------------

    def url_for(self, name: str, /, **params: Any) -> str:
        """The path of the HTTP or WebSocket route called *name*, parameters filled
        in and percent-encoded: ``app.url_for("user", id=3)`` → ``"/users/3"``.

        ``LookupError`` if no route has that name, ``KeyError`` naming a missing
        parameter. Routes of mounted apps and routers come with their prefix.
        """
        try:
            return self.router.url_path_for(name, **params)
        except KeyError:
            raise
        except LookupError:
            pass
        return self.ws_router.url_path_for(name, **params)

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
        if self.state:
            request.state.update(self.state)
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


def _only_cancelled(exc: BaseException) -> bool:
    """Whether *exc* is a cancellation (alone, or in groups of nothing else)."""
    if isinstance(exc, trio.Cancelled):
        return True
    # An exception group, looked at without naming it (a builtin only from 3.11).
    inner = getattr(exc, "exceptions", None)
    return isinstance(inner, tuple) and bool(inner) and all(map(_only_cancelled, inner))


def _middleware(middleware: Any, options: dict[str, Any]) -> Middleware:
    """*middleware* as the routers take it, refusing at once what would fail per request."""
    if isinstance(middleware, str):
        raise TypeError(
            f"add_middleware({middleware!r}): give the middleware itself; "
            f"the decorator spelling is @app.middleware({middleware!r})"
        )
    if isinstance(middleware, type):
        module = middleware.__module__.partition(".")[0]
        if module in ("starlette", "fastapi"):
            raise TypeError(
                f"{middleware.__module__}.{middleware.__qualname__} is ASGI middleware; "
                "for an App use trio_upgrade.http.CORSMiddleware or GZipMiddleware, "
                "or an `async def mw(request, call_next)`"
            )
        middleware = middleware(**options)
    elif options:
        raise TypeError("options are for a middleware class, not for a middleware object")
    check_handler(middleware, "middleware")
    return middleware  # type: ignore[no-any-return]
