"""Routing: path patterns with typed parameters, methods, middleware, mounting.

Matching is pure (:meth:`Router.match` takes a method and a path and returns a
value); dispatching wraps it with the middleware chain.

Patterns: ``/users/{id:int}``, ``/files/{path:path}``, ``/posts/{slug}``.
Converters: ``str`` (default, one segment), ``int``, ``float``, ``uuid``,
``path`` (the rest, slashes included).
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar, final
from urllib.parse import quote

from .._wire import reason_phrase
from ._errors import HTTPError
from ._request import Request
from ._response import DirectResponse, Response
from ._takeover import Takeover

__all__ = [
    "Handler",
    "Match",
    "Middleware",
    "MethodNotAllowed",
    "NotFound",
    "Route",
    "RouteMatch",
    "Router",
    "chain_middleware",
    "check_handler",
    "compile_pattern",
    "fill_pattern",
    "match_pattern",
    "strip_prefix",
]

Result = Response | DirectResponse | Takeover
Handler = Callable[[Request], Awaitable[Result]]
"""An HTTP application: takes a request, returns a Response, a DirectResponse or a Takeover."""
Middleware = Callable[[Request, Handler], Awaitable[Result]]
"""``async def mw(request, call_next) -> Response``: runs around the handlers."""

H = TypeVar("H", bound=Handler)

logger = logging.getLogger("trio_upgrade.http")

_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "float": (r"[0-9]+(?:\.[0-9]+)?", float),
    "uuid": (r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", uuid.UUID),
    "path": (r".*", str),
}
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")


def compile_pattern(pattern: str) -> tuple[re.Pattern[str], dict[str, Callable[[str], Any]]]:
    """Compile a route pattern into a regex and the converter of each parameter."""
    if not pattern.startswith("/"):
        raise ValueError(f"route pattern {pattern!r} must start with '/'")
    regex = "^"
    converters: dict[str, Callable[[str], Any]] = {}
    pos = 0
    for m in _PARAM.finditer(pattern):
        name, kind = m.group(1), m.group(2) or "str"
        if kind not in _CONVERTERS:
            raise ValueError(f"unknown converter {kind!r} in {pattern!r}")
        if name in converters:
            raise ValueError(f"parameter {name!r} appears twice in {pattern!r}")
        regex += re.escape(pattern[pos : m.start()])
        part, convert = _CONVERTERS[kind]
        regex += f"(?P<{name}>{part})"
        converters[name] = convert
        pos = m.end()
    rest = pattern[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"malformed parameter in {pattern!r}")
    regex += re.escape(rest) + "$"
    return re.compile(regex), converters


def fill_pattern(pattern: str, params: Mapping[str, Any]) -> str:
    """*pattern* with its parameters replaced by *params*, percent-encoded
    (a ``path`` parameter keeps its slashes). ``KeyError`` names a missing one."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in params:
            raise KeyError(name)
        return quote(str(params[name]), safe="/" if m.group(2) == "path" else "")

    return _PARAM.sub(fill, pattern)


def _describe(handler: object) -> str:
    module = getattr(handler, "__module__", None)
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}" if module else name


def check_handler(handler: object, kind: str = "handler") -> None:
    """Refuse, at registration, what cannot be a handler: something not callable,
    or a plain ``def`` function (handlers are ``async def``)."""
    if not callable(handler):
        raise TypeError(f"{kind} {handler!r} is not callable")
    if inspect.isfunction(handler) and not inspect.iscoroutinefunction(handler):
        raise TypeError(
            f"{kind} {_describe(handler)} is a plain function: write "
            f"`async def {handler.__name__}(...)` (handlers run on Trio, in the server's task)"
        )


# What handlers return by mistake: a FastAPI habit (dict, list, str) or no return.
_NOT_RESULTS = (dict, list, tuple, str, bytes, int, float, type(None))


def _not_a_response(handler: Handler, request: Request, result: object) -> Response:
    if isinstance(result, (dict, list)):
        hint = " (for JSON, return Response.json(...))"
    elif result is None:
        hint = " (a missing return?)"
    else:
        hint = ""
    logger.error(
        "handler %s for %s %s returned %s, not a Response%s",
        _describe(handler),
        request.method,
        request.target,
        "None" if result is None else type(result).__name__,
        hint,
    )
    return error_response(500, None)


@dataclass(frozen=True, slots=True)
class Route:
    """A path pattern, the methods it answers and its handler."""

    pattern: str
    methods: frozenset[str]
    handler: Handler
    name: str | None = None
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    converters: dict[str, Callable[[str], Any]] = field(default_factory=dict, compare=False)

    def match_path(self, path: str) -> dict[str, Any] | None:
        """The converted parameters if *path* matches, else ``None``."""
        return match_pattern(self.pattern, self.regex, self.converters, path)


def match_pattern(
    pattern: str,
    regex: re.Pattern[str] | None,
    converters: dict[str, Callable[[str], Any]],
    path: str,
) -> dict[str, Any] | None:
    """Match *path* against a pattern compiled by :func:`compile_pattern`
    (*regex* ``None`` for a literal pattern): the converted parameters, or ``None``."""
    if regex is None:
        return {} if path == pattern else None
    m = regex.match(path)
    if m is None:
        return None
    params: dict[str, Any] = {}
    for name, raw in m.groupdict().items():
        try:
            params[name] = converters[name](raw)
        except ValueError:
            return None
    return params


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """The route found, with its parameters and the prefix of any mounts crossed."""

    handler: Handler
    params: Mapping[str, Any]
    route: Route | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """No route has this path: 404."""


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    """Routes have this path but not this method: 405 with ``Allow``."""

    allowed: frozenset[str]


Match = RouteMatch | NotFound | MethodNotAllowed

_NOT_FOUND = NotFound()
# Shared by every match of a literal route: read-only so no caller can change it.
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


@final
class Router:
    """Routes requests to handlers by path and method; an HTTP application itself.

    Every ``GET`` route answers ``HEAD`` too. A path no route has gets 404; a
    path some route has, with another method, gets 405 and ``Allow``.
    Middleware (``async def mw(request, call_next)``) added with
    :meth:`add_middleware` runs around every request this router handles, in the
    order added (the first is outermost), including its 404s and 405s.
    *not_found*, when given, answers instead of the 404 (inside the middleware).
    """

    def __init__(
        self, *, middleware: Iterable[Middleware] = (), not_found: Handler | None = None
    ) -> None:
        # Literal paths: path -> method -> route (a dict look-up, no regex).
        # Literal paths: path -> method -> match, built once (the match of a
        # literal route has no parameters, so one value serves every request).
        self._static: dict[str, dict[str, RouteMatch]] = {}
        # Patterns with parameters, tried in order.
        self._dynamic: list[Route] = []
        # (prefix, app, router if the app is a Router) in registration order.
        self._mounts: list[tuple[str, Handler, Router | None]] = []
        self._middleware: list[Middleware] = list(middleware)
        # Answers paths no route or mount has (inside the middleware); None: 404.
        self.not_found = not_found
        # The middleware chain around _dispatch, rebuilt when middleware changes.
        self._entry: Handler | None = None

    # Registration ------------------------------------------------------------

    def add_route(
        self,
        pattern: str,
        handler: Handler,
        *,
        methods: Iterable[str] = ("GET",),
        name: str | None = None,
    ) -> Route:
        check_handler(handler)
        method_set = {m.upper() for m in methods}
        if "GET" in method_set:
            method_set.add("HEAD")
        if "{" in pattern:
            regex, converters = compile_pattern(pattern)
            route = Route(pattern, frozenset(method_set), handler, name, regex, converters)
            self._dynamic.append(route)
        else:
            compile_pattern(pattern)  # validates
            route = Route(pattern, frozenset(method_set), handler, name)
            by_method = self._static.setdefault(pattern, {})
            found = RouteMatch(handler, _NO_PARAMS, route)
            for method in method_set:
                by_method.setdefault(method, found)
        return route

    def route(
        self, pattern: str, *, methods: Iterable[str] = ("GET",), name: str | None = None
    ) -> Callable[[H], H]:
        """Decorator: ``@router.route("/items/{id:int}", methods=["GET", "PUT"])``."""

        def decorate(handler: H) -> H:
            self.add_route(pattern, handler, methods=methods, name=name)
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

    def add_middleware(self, middleware: Middleware) -> None:
        """Add *middleware* inside those added before it."""
        self._middleware.append(middleware)
        self._entry = None

    def middleware(self, middleware: Middleware) -> Middleware:
        """Decorator form of :meth:`add_middleware`."""
        self.add_middleware(middleware)
        return middleware

    def mount(self, prefix: str, app: Handler) -> None:
        """Serve every path under *prefix* with *app* (a Router or any HTTP handler).

        A mounted :class:`Router` matches the path with the prefix removed
        (``/api/users`` → ``/users``); :attr:`Request.root_path` tells the prefix.
        """
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError("a mount prefix starts with '/' and does not end with one")
        self._mounts.append((prefix, app, app if isinstance(app, Router) else None))

    @property
    def routes(self) -> list[Route]:
        """Every route of this router (not of mounted ones), in registration order."""
        seen: dict[int, Route] = {}
        for by_method in self._static.values():
            for found in by_method.values():
                assert found.route is not None
                seen.setdefault(id(found.route), found.route)
        return [*seen.values(), *self._dynamic]

    def url_path_for(self, name: str, /, **params: Any) -> str:
        """The path of the route called *name*, with *params* filled in
        (percent-encoded; mounted routers' routes with their prefix)."""
        for route in self.routes:
            if route.name == name:
                try:
                    return fill_pattern(route.pattern, params)
                except KeyError as exc:
                    raise KeyError(f"route {name!r} needs parameter {exc.args[0]!r}") from None
        for prefix, _, router in self._mounts:
            if router is not None:
                try:
                    return prefix + router.url_path_for(name, **params)
                except KeyError:
                    # The route exists but a parameter is missing: say so, don't
                    # report it as unknown (KeyError is a LookupError too).
                    raise
                except LookupError:
                    continue
        raise LookupError(f"no route named {name!r}")

    # Matching (pure) ---------------------------------------------------------

    def match(self, method: str, path: str) -> Match:
        """Find the handler for *method* and *path* (mounted routers included)."""
        found = self._match_own(method, path)
        if type(found) is not NotFound:
            return found
        for prefix, app, router in self._mounts:
            rest = strip_prefix(path, prefix)
            if rest is None:
                continue
            if router is None:
                return RouteMatch(app, {})
            return router.match(method, rest)
        return _NOT_FOUND

    def _match_own(self, method: str, path: str) -> Match:
        by_method = self._static.get(path)
        if by_method is not None:
            found = by_method.get(method)
            if found is not None:
                return found
        allowed: set[str] = set(by_method or ())
        for route in self._dynamic:
            params = route.match_path(path)
            if params is None:
                continue
            if method in route.methods:
                return RouteMatch(route.handler, params, route)
            allowed.update(route.methods)
        if allowed:
            return MethodNotAllowed(frozenset(allowed))
        return _NOT_FOUND

    # Dispatch ----------------------------------------------------------------

    def __call__(self, request: Request) -> Awaitable[Result]:
        # Not a coroutine function: it hands back the middleware chain's
        # awaitable, one frame less per request (the caller awaits it).
        entry = self._entry
        if entry is None:
            entry = self._entry = chain_middleware(self._middleware, self._dispatch)
        return entry(request)

    async def _dispatch(self, request: Request) -> Result:
        path = request.path
        if request.root_path:
            path = path[len(request.root_path) :] or "/"
        found = self._match_own(request.method, path)
        if type(found) is RouteMatch:
            if found.params:
                request.path_params.update(found.params)
            try:
                result = await found.handler(request)
            except HTTPError as exc:
                return error_response(exc.status, exc.detail, exc.headers)
            if type(result) is not Response and isinstance(result, _NOT_RESULTS):
                # Said here, where the handler is known, and as a 500 that the
                # middleware around can handle like any response. Only values
                # that are surely no result (a dict, a forgotten return): any
                # other type is the connection loop's to judge.
                return _not_a_response(found.handler, request, result)
            return result
        if type(found) is MethodNotAllowed:
            return error_response(405, None, [("allow", ", ".join(sorted(found.allowed)))])
        for prefix, app, _ in self._mounts:
            if strip_prefix(path, prefix) is not None:
                request.root_path += prefix
                return await app(request)
        if self.not_found is not None:
            return await self.not_found(request)
        return error_response(404, None)


def strip_prefix(path: str, prefix: str) -> str | None:
    """*path* below the mount *prefix* (``"/"`` for the prefix itself), or ``None``
    when it is not under it; a prefix ends at a segment boundary."""
    if path == prefix:
        return "/"
    if path.startswith(prefix) and path[len(prefix)] == "/":
        return path[len(prefix) :]
    return None


def chain_middleware(middleware: Sequence[Middleware], handler: Handler) -> Handler:
    """*handler* wrapped in *middleware*, the first outermost."""
    for mw in reversed(middleware):
        handler = _Step(mw, handler)
    return handler


@final
class _Step:
    """One middleware bound to what comes after it.

    Calling it returns the middleware's coroutine directly rather than
    awaiting it inside a coroutine of its own: one frame less per layer.
    """

    __slots__ = ("call_next", "middleware")

    def __init__(self, middleware: Middleware, call_next: Handler) -> None:
        self.middleware = middleware
        self.call_next = call_next

    def __call__(self, request: Request) -> Awaitable[Result]:
        return self.middleware(request, self.call_next)


def error_response(
    status: int, detail: str | None, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """A short plain-text error response: ``"404 Not Found"`` or the detail given."""
    text = detail if detail is not None else f"{status} {reason_phrase(status)}"
    return Response.text(text + "\n", status=status, headers=list(headers) or None)
