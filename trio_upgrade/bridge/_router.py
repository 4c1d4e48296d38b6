"""Routing of WebSocket upgrade requests: patterns, per-route middleware, limits.

A :class:`WebSocketRouter` sees only upgrade requests (``Upgrade: websocket``);
the :class:`~trio_upgrade.http.Router` beside it in an App sees everything
else. For a matching route it checks the handshake (400, or 426 for a wrong
version), runs the route's middleware — which may answer with any HTTP
response before the 101 — and returns a Takeover that completes the handshake
and runs the handler with a :class:`ServerWebSocket`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, final

import trio

from ..http import (
    DirectResponse,
    Handler,
    HTTPError,
    Middleware,
    Request,
    Response,
    Takeover,
    TakeoverOutcome,
)
from ..http._router import (
    chain_middleware,
    check_handler,
    compile_pattern,
    error_response,
    fill_pattern,
    match_pattern,
    strip_prefix,
)
from ..ws import ClientOffer, ConnectionClosed, Rejection, WebSocketConfig, validate_request
from ._websocket import ServerWebSocket

__all__ = ["WebSocketHandler", "WebSocketRoute", "WebSocketRouter"]

logger = logging.getLogger("trio_upgrade.bridge")

WebSocketHandler = Callable[[ServerWebSocket], Awaitable[None]]
"""``async def handler(ws: ServerWebSocket) -> None``."""
W = TypeVar("W", bound=WebSocketHandler)

_DEFAULT_CONFIG = WebSocketConfig()


@dataclass(frozen=True, slots=True)
class WebSocketRoute:
    """A path pattern, its middleware chain and its handler."""

    pattern: str
    handler: WebSocketHandler
    middleware: tuple[Middleware, ...] = ()
    config: WebSocketConfig | None = None
    """Limits, keepalive and compression for this route (``None``: the router's)."""
    subprotocols: tuple[str, ...] = ()
    """Subprotocols the route speaks, in order of preference: the first one the
    client offered is chosen unless the handler picks another."""
    name: str | None = None
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    converters: dict[str, Callable[[str], Any]] = field(default_factory=dict, compare=False)

    def match_path(self, path: str) -> dict[str, Any] | None:
        """The converted parameters if *path* matches, else ``None``."""
        return match_pattern(self.pattern, self.regex, self.converters, path)


def _close(response: Response) -> Response:
    # A refused upgrade ends the connection: the client asked to leave HTTP and
    # may already have sent bytes of the other protocol.
    response.headers.set("connection", "close")
    return response


def rejection_to_response(rejection: Rejection) -> Response:
    """The HTTP response for an invalid handshake (400, or 426 + ``Sec-WebSocket-Version``)."""
    response = Response.text(rejection.reason + "\n", status=rejection.status)
    for name, value in rejection.headers:
        response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
    if rejection.status == 426:
        response.headers.set("upgrade", "websocket")
    return _close(response)


@final
class _Upgrade:
    """The Takeover returned for an accepted route: finishes the handshake, runs the handler."""

    __slots__ = ("config", "offer", "route")

    def __init__(self, route: WebSocketRoute, offer: ClientOffer, config: WebSocketConfig) -> None:
        self.route = route
        self.offer = offer
        self.config = config

    async def take_over(
        self, stream: trio.abc.Stream, prefetched: bytes, request: Request
    ) -> TakeoverOutcome | None:
        # One frame for the whole session (no helper coroutine): this frame
        # lives as long as the connection, and every frame costs an idle one.
        route = self.route
        connection = request.connection
        ws = ServerWebSocket(
            stream,
            prefetched,
            request,
            self.offer,
            config=self.config,
            subprotocols=route.subprotocols,
            observer=connection.observer if connection is not None else None,
        )
        # No AsyncExitStack (its deque alone is 0.7 KiB, held as long as an idle
        # session lives): the session is left below, as a ``with`` would leave it.
        try:
            # What to answer if the handshake is still pending at the end
            # (None: nothing, the peer has gone).
            refusal: Response | int | None = 403
            try:
                await route.handler(ws)
            except ConnectionClosed:
                refusal = None  # the peer went away: nothing to report
            except HTTPError as exc:
                if ws.state != "pending":
                    raise
                # Raised before deciding: answer with it, like an HTTP handler would.
                refusal = error_response(exc.status, exc.detail, exc.headers)
            except Exception:
                if ws.state != "pending":
                    raise  # the session (left below) closes with 1011
                logger.exception("WebSocket handler for %s failed before accepting", request.path)
                refusal = error_response(500, None)
            if refusal is not None and ws.state == "pending":
                # Neither accepted nor rejected: refuse rather than leave the client
                # hanging (403 when the handler just returned).
                with contextlib.suppress(ConnectionClosed):
                    await ws.reject(refusal)
        except BaseException as exc:
            if not await ws._leave(exc):
                if not isinstance(exc, Exception):
                    raise
                # Raised after accepting: the session closed with 1011. Logged
                # here, not raised, so that the access log still gets the
                # session's line.
                logger.exception("WebSocket handler for %s failed", request.path)
        else:
            await ws._leave(None)
        # The session has ended: its close code is final.
        return ws._finish()


@final
class WebSocketRouter:
    """Routes WebSocket upgrade requests; an HTTP handler itself (returns a Takeover).

    Middleware added here runs around every upgrade this router handles
    (including its 404s); each route adds its own chain inside that. Both have
    the HTTP middleware shape, ``async def mw(request, call_next)``: returning
    a Response instead of calling ``call_next`` rejects the handshake with it.
    """

    def __init__(
        self,
        *,
        middleware: Iterable[Middleware] = (),
        config: WebSocketConfig | None = None,
    ) -> None:
        self.config = config
        self._routes: list[WebSocketRoute] = []
        # (prefix, WebSocketRouter or any HTTP handler) in registration order.
        self._mounts: list[tuple[str, Handler]] = []
        self._middleware: list[Middleware] = list(middleware)
        self._entry: Handler | None = None
        # Per-route middleware chains, built on first use.
        self._chains: dict[int, Callable[[Request, ClientOffer], Awaitable[Any]]] = {}

    # Registration ------------------------------------------------------------

    def add_route(
        self,
        pattern: str,
        handler: WebSocketHandler,
        *,
        middleware: Sequence[Middleware] = (),
        config: WebSocketConfig | None = None,
        subprotocols: Sequence[str] = (),
        name: str | None = None,
    ) -> WebSocketRoute:
        check_handler(handler)
        regex, converters = compile_pattern(pattern)
        route = WebSocketRoute(
            pattern,
            handler,
            tuple(middleware),
            config,
            tuple(subprotocols),
            name,
            regex if "{" in pattern else None,
            converters,
        )
        self._routes.append(route)
        return route

    def route(
        self,
        pattern: str,
        *,
        middleware: Sequence[Middleware] = (),
        config: WebSocketConfig | None = None,
        subprotocols: Sequence[str] = (),
        name: str | None = None,
    ) -> Callable[[W], W]:
        """Decorator: ``@ws_router.route("/chat/{room}", middleware=[check_origin(...)])``."""

        def decorate(handler: W) -> W:
            self.add_route(
                pattern,
                handler,
                middleware=middleware,
                config=config,
                subprotocols=subprotocols,
                name=name,
            )
            return handler

        return decorate

    def add_middleware(self, middleware: Middleware) -> None:
        """Run *middleware* around every upgrade this router handles (inside earlier ones)."""
        self._middleware.append(middleware)
        self._entry = None

    def mount(self, prefix: str, app: Handler) -> None:
        """Send upgrades under *prefix* to *app*: a WebSocketRouter, or any HTTP
        handler that answers upgrades itself (a reverse proxy, say)."""
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("a mount prefix starts with '/' and does not end with one")
        self._mounts.append((prefix, app))

    @property
    def routes(self) -> list[WebSocketRoute]:
        return list(self._routes)

    def url_path_for(self, name: str, /, **params: Any) -> str:
        """The path of the route called *name* (mounted WebSocketRouters' included,
        with their prefix), *params* filled in and percent-encoded."""
        for route in self._routes:
            if route.name == name:
                try:
                    return fill_pattern(route.pattern, params)
                except KeyError as exc:
                    raise KeyError(f"route {name!r} needs parameter {exc.args[0]!r}") from None
        for prefix, app in self._mounts:
            if isinstance(app, WebSocketRouter):
                try:
                    return prefix + app.url_path_for(name, **params)
                except KeyError:
                    raise
                except LookupError:
                    continue
        raise LookupError(f"no route named {name!r}")

    # Matching (pure) ---------------------------------------------------------

    def match(self, path: str) -> tuple[WebSocketRoute, dict[str, Any]] | None:
        """The route for *path* and its parameters (mounted routers included)."""
        for route in self._routes:
            params = route.match_path(path)
            if params is not None:
                return route, params
        for prefix, app in self._mounts:
            rest = strip_prefix(path, prefix)
            if rest is not None and isinstance(app, WebSocketRouter):
                return app.match(rest)
        return None

    def handles(self, path: str) -> bool:
        """Whether an upgrade to *path* would reach a route or a mounted handler."""
        if self.match(path) is not None:
            return True
        return any(
            strip_prefix(path, prefix) is not None and not isinstance(app, WebSocketRouter)
            for prefix, app in self._mounts
        )

    # Dispatch ----------------------------------------------------------------

    async def __call__(self, request: Request) -> Response | DirectResponse | Takeover:
        entry = self._entry
        if entry is None:
            entry = self._entry = chain_middleware(self._middleware, self._dispatch)
        try:
            result = await entry(request)
        except HTTPError as exc:
            # As the HTTP Router does for its handlers: middleware may refuse by raising.
            result = error_response(exc.status, exc.detail, exc.headers)
        if isinstance(result, Response):
            # Whoever answered (router middleware included), a refused upgrade
            # ends the connection: see _close.
            return _close(result)
        return result

    async def _dispatch(self, request: Request) -> Response | DirectResponse | Takeover:
        path = request.path
        if request.root_path:
            path = path[len(request.root_path) :] or "/"
        for route in self._routes:
            params = route.match_path(path)
            if params is not None:
                if params:
                    request.path_params.update(params)
                return await self._handshake(route, request)
        for prefix, app in self._mounts:
            if strip_prefix(path, prefix) is not None:
                request.root_path += prefix
                return await app(request)
        return _close(error_response(404, None))

    async def _handshake(
        self, route: WebSocketRoute, request: Request
    ) -> Response | DirectResponse | Takeover:
        found = validate_request(
            request.method, request.headers.raw, http_version=request.http_version
        )
        if isinstance(found, Rejection):
            await trio.lowlevel.checkpoint()
            return rejection_to_response(found)
        offer = found
        config = route.config or self.config or _DEFAULT_CONFIG

        async def upgrade(req: Request) -> Response | DirectResponse | Takeover:
            await trio.lowlevel.checkpoint()
            return _Upgrade(route, offer, config)

        result = await chain_middleware(route.middleware, upgrade)(request)
        if isinstance(result, Response):
            return _close(result)
        return result
