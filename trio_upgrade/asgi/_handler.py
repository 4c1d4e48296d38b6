"""ASGIHandler: an ASGI 3 application as an ordinary HTTP handler."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable
from typing import Any, TypeGuard, final

import trio

from ..core._interface import takes_three_arguments
from ..http import DirectResponse, Headers, HTTPError, Request, Response, Takeover
from ..http._router import error_response
from ..ws import Rejection, WebSocketConfig, validate_request
from ._http import ASGIApp, HTTPCycle
from ._scope import http_scope
from ._websocket import WebSocketCycle, websocket_extensions

__all__ = ["ASGIHandler", "is_asgi_app"]

_DEFAULT_WS_CONFIG = WebSocketConfig()

# ssl's protocol names as the `tls` extension's numbers (the TLS wire version).
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


@final
class ASGIHandler:
    """Serve an ASGI 3 *app* (Starlette, FastAPI, Quart-trio, ...) as an HTTP handler.

    ``serve(ASGIHandler(app), ...)``, ``router.mount("/api", ASGIHandler(app))``
    or ``App.mount`` take it like any handler: plain requests become ``http``
    scopes, WebSocket upgrades ``websocket`` scopes. Lifespan events are not
    sent here (a handler lives per request): :func:`trio_upgrade.asgi.serve`
    and :func:`~trio_upgrade.asgi.run` run them, or use
    :class:`~trio_upgrade.asgi.Lifespan` around your own server.

    *root_path* is prepended to every scope's ``root_path`` and ``path`` (the
    prefix a proxy in front removed); mounts add their own prefix after it.
    *state* is the lifespan state: each scope gets a shallow copy of it.
    *websocket_config* sets the limits of WebSocket sessions.
    """

    __slots__ = ("app", "root_path", "state", "websocket_config")

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str = "",
        state: dict[str, Any] | None = None,
        websocket_config: WebSocketConfig | None = None,
    ) -> None:
        if root_path and not root_path.startswith("/"):
            raise ValueError("root_path must start with '/'")
        self.app = app
        self.root_path = root_path.rstrip("/")
        self.state = state
        self.websocket_config = websocket_config or _DEFAULT_WS_CONFIG

    def __call__(self, request: Request) -> Awaitable[Response | DirectResponse | Takeover]:
        upgrade = request.upgrade
        if upgrade is not None and "websocket" in upgrade.split(", "):
            return self._websocket(request)
        return self._http(request)

    def _http(self, request: Request) -> Awaitable[DirectResponse | Response]:
        scope = http_scope(request, "http", self.root_path, self.state, _tls_extension(request))
        cycle = HTTPCycle(self.app, request, scope)
        if request.connection is None:
            return _run_detached(cycle)
        # The connection loop awaits cycle.write in its own task: the app runs
        # there and writes its response itself.
        return _direct(DirectResponse(cycle.write))

    async def _websocket(self, request: Request) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        found = validate_request(
            request.method, request.headers.raw, http_version=request.http_version
        )
        if isinstance(found, Rejection):
            response = Response.text(found.reason + "\n", status=found.status)
            for name, value in found.headers:
                response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
            if found.status == 426:
                response.headers.set("upgrade", "websocket")
            response.headers.set("connection", "close")
            return response
        scope = http_scope(
            request,
            "websocket",
            self.root_path,
            self.state,
            websocket_extensions(_tls_extension(request)),
        )
        scope["subprotocols"] = list(found.subprotocols)
        return WebSocketCycle(self.app, scope, found, self.websocket_config)

    def __repr__(self) -> str:
        return f"<ASGIHandler {self.app!r}>"


async def _direct(response: DirectResponse) -> DirectResponse:
    return response


@final
class _Collector:
    """The writer of a request handled without a connection (a handler called
    directly): the response is collected whole."""

    __slots__ = ("aborted", "body", "headers", "started", "status")

    def __init__(self) -> None:
        self.aborted = False
        self.started = False
        self.status = 0
        self.headers = Headers()
        self.body: list[bytes] = []

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        await self.start(status, headers)
        self.body.append(body)

    async def start(self, status: int, headers: Headers) -> None:
        await trio.lowlevel.checkpoint()
        if self.started:
            raise RuntimeError("the response head was already sent")
        self.started = True
        self.status = status
        self.headers = headers

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.body.append(data)

    async def end(self) -> None:
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        self.aborted = True


async def _run_detached(cycle: HTTPCycle) -> Response:
    collector = _Collector()
    try:
        await cycle.write(collector)
    except HTTPError as exc:
        return error_response(exc.status, exc.detail, exc.headers)
    if collector.aborted:
        # Failed or ended mid-body (logged): the partial body would look complete.
        return error_response(500, None)
    return Response(b"".join(collector.body), status=collector.status, headers=collector.headers)


def _tls_extension(request: Request) -> dict[str, Any] | None:
    """The ``tls`` extension on TLS connections (ASGI "TLS" extension), else ``None``."""
    if request.scheme != "https" or request.connection is None:
        return None
    stream = request.connection.stream
    if not isinstance(stream, trio.SSLStream):
        return None
    try:
        version = stream.version()
        peer = stream.getpeercert(binary_form=True)
    except (ssl.SSLError, AttributeError, ValueError, trio.NeedHandshakeError):
        return None
    chain = [ssl.DER_cert_to_PEM_cert(peer)] if peer else []
    return {
        "tls": {
            "server_cert": None,
            "client_cert_chain": chain,
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(version or ""),
            "cipher_suite": None,
        }
    }


def is_asgi_app(obj: object) -> TypeGuard[ASGIApp]:
    """Whether *obj* looks like an ASGI 3 application: callable with
    ``(scope, receive, send)`` rather than a native handler's ``(request)``.

    Judged by the signature, as uvicorn's ``--interface auto`` does; an
    object whose signature cannot be read is taken as native.
    """
    return takes_three_arguments(obj)
