"""The reverse proxy: an HTTP handler that forwards requests to backends, streaming."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import h11
import trio

from ..http import (
    ClientDisconnected,
    Headers,
    HTTPError,
    Request,
    Response,
    Takeover,
    error_response,
)
from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BadBackendResponse, ProxyError
from ._pool import BackendConnection, ConnectionPool
from ._rewrite import (
    forward_target,
    is_upgrade_request,
    rewrite_request_headers,
    rewrite_response_headers,
)
from ._routes import ProxyRoute, match_route
from ._tunnel import Tunnel

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Proxy", "ProxyStatistics"]

logger = logging.getLogger("trio_upgrade")

# The HTTP server adds its own Date; a relayed one would make two.
_DROP_FROM_RESPONSE = frozenset({b"date"})
# The largest body of an upgrade request that is forwarded (read before the
# tunnel opens); WebSocket handshakes have none.
_MAX_UPGRADE_BODY = 64 * 1024

RoutesLike = str | Backend | Mapping[str, str | Backend] | Iterable[ProxyRoute]
"""What :class:`Proxy` takes as routes: one backend for every path, a mapping
from prefix to backend, or :class:`ProxyRoute` objects."""


@final
@dataclass(frozen=True, slots=True)
class ProxyStatistics:
    """Counters of a :class:`Proxy` since it was created."""

    connections_opened: int
    """Connections opened to backends (plain requests and tunnels)."""
    connections_reused: int
    """Requests sent on a pooled keep-alive connection instead of a new one."""
    idle_connections: int
    """Keep-alive connections waiting in the pool now."""
    open_tunnels: int
    """Upgrade tunnels open now."""


class _Stale(Exception):
    """A reused connection turned out closed before our request was answered."""


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else trio.current_time() + timeout


@final
class Proxy:
    """A reverse proxy: an HTTP handler forwarding by path prefix to backends.

    ::

        proxy = Proxy({"/api": "http://127.0.0.1:8001", "/chat": "unix:/run/chat.sock"})
        await trio_upgrade.http.serve(proxy, "0.0.0.0:8080")   # on its own
        router.mount("/svc", proxy)                             # or next to routes

    *routes* is a mapping from prefix to backend, :class:`ProxyRoute` objects,
    or a single backend (``"http://host:port"``, ``"unix:/path.sock"``,
    :class:`Backend`) for every path. The longest matching prefix wins; a path
    no route matches gets 404. *strip_prefix* and *preserve_host* are the
    defaults for routes given as a mapping or added with :meth:`add_route`.
    Mounted under a router, paths are matched without the mount prefix, and a
    stripping route strips the mount prefix too.

    Plain requests are streamed both ways: the request body goes to the
    backend as the client sends it, the response body comes back as the
    backend sends it (never held whole), over keep-alive connections from a
    bounded pool. A backend answering before it has read the whole request
    body (a 413, a 401) ends the upload there; a backend that streams its
    answer while still reading (full duplex) is not supported.

    Requests with ``Connection: upgrade`` and ``Upgrade`` (WebSocket or any
    other protocol) become a :class:`~trio_upgrade.http.Takeover`: the request
    goes to the backend with its upgrade headers, the answer comes back, and
    after a ``101`` bytes are pumped both ways until either side closes.

    An unreachable backend is answered 502, one that does not answer within
    :attr:`ProxyConfig.response_timeout` 504 (short body, one log line on the
    ``trio_upgrade`` logger). A backend failing once its response has started
    ends the client connection.

    The proxy holds a connection pool: close it with :meth:`aclose` (or
    ``async with proxy:``) before the trio run ends. One proxy serves one trio
    run.
    """

    __slots__ = ("_config", "_defaults", "_pool", "_routes")

    def __init__(
        self,
        routes: RoutesLike = (),
        *,
        config: ProxyConfig | None = None,
        strip_prefix: bool = True,
        preserve_host: bool = True,
    ) -> None:
        self._config = config or ProxyConfig()
        self._defaults = (strip_prefix, preserve_host)
        self._routes: list[ProxyRoute] = []
        self._pool = ConnectionPool(self._config)
        if isinstance(routes, (str, Backend)):
            self.add_route("/", routes)
        elif isinstance(routes, Mapping):
            for prefix, backend in routes.items():
                self.add_route(prefix, backend)
        else:
            for route in routes:
                self._add(route)

    # Configuration -----------------------------------------------------------

    @property
    def config(self) -> ProxyConfig:
        return self._config

    @property
    def routes(self) -> list[ProxyRoute]:
        """The routes, longest prefix first."""
        return list(self._routes)

    def add_route(
        self,
        prefix: str,
        backend: str | Backend,
        *,
        strip_prefix: bool | None = None,
        preserve_host: bool | None = None,
    ) -> ProxyRoute:
        """Forward paths under *prefix* to *backend*; returns the route added."""
        route = ProxyRoute(
            prefix,
            backend if isinstance(backend, Backend) else Backend.parse(backend),
            strip_prefix=self._defaults[0] if strip_prefix is None else strip_prefix,
            preserve_host=self._defaults[1] if preserve_host is None else preserve_host,
        )
        self._add(route)
        return route

    def _add(self, route: ProxyRoute) -> None:
        if any(r.prefix == route.prefix for r in self._routes):
            raise ValueError(f"a route for {route.prefix!r} exists already")
        self._routes.append(route)
        self._routes.sort(key=lambda r: len(r.prefix), reverse=True)

    def statistics(self) -> ProxyStatistics:
        pool = self._pool
        return ProxyStatistics(
            connections_opened=pool.connections_opened,
            connections_reused=pool.connections_reused,
            idle_connections=pool.idle_connections,
            open_tunnels=pool.open_tunnels,
        )

    async def aclose(self) -> None:
        """Close the idle pooled connections. The proxy stays usable (it will
        open new ones); tunnels and responses in flight are not affected."""
        self._pool.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Proxy:
        await trio.lowlevel.checkpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Handling ----------------------------------------------------------------

    async def __call__(self, request: Request) -> Response | Takeover:
        path = request.path
        root = request.root_path
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        route = match_route(self._routes, path)
        if route is None:
            return error_response(404, None)
        if request.method == "CONNECT":
            return error_response(405, None, [("allow", "GET, HEAD, POST, PUT, PATCH, DELETE")])
        backend = route.backend
        strip = ""
        if route.strip_prefix:
            strip = root + (route.prefix if route.prefix != "/" else "")
        target = forward_target(request.target, strip, backend.base_path)
        raw = request.headers.raw
        upgrade = is_upgrade_request(raw)
        config = self._config
        headers = rewrite_request_headers(
            raw,
            client=request.client,
            scheme=request.scheme,
            prefix=strip,
            upgrade=upgrade,
            host=None if route.preserve_host and request.host is not None else backend.authority,
            x_forwarded=config.x_forwarded,
            forwarded=config.forwarded,
            trust_forwarded=config.trust_forwarded,
        )
        chunked = any(name == b"transfer-encoding" for name, _ in raw)
        if chunked:
            # The client's hop was chunked; ours is too (h11 encodes it).
            headers.append((b"transfer-encoding", b"chunked"))
        has_body = chunked or any(
            name == b"content-length" and value.strip() != b"0" for name, value in raw
        )
        try:
            forwarded = h11.Request(method=request.method, target=target, headers=headers)
        except h11.LocalProtocolError as exc:
            return error_response(400, f"Cannot forward this request: {exc}")
        if upgrade:
            body = b""
            if has_body:
                request.max_body_size = _MAX_UPGRADE_BODY
                body = await request.read()
            return Tunnel(self._pool, config, backend, forwarded, body)
        try:
            return await self._forward(request, backend, forwarded, has_body)
        except ProxyError as exc:
            logger.warning(
                "proxy: %s %s -> %s: %d, %s",
                request.method,
                request.target,
                backend,
                exc.status,
                exc.detail,
            )
            return error_response(exc.status, None)

    async def _forward(
        self, request: Request, backend: Backend, forwarded: h11.Request, has_body: bool
    ) -> Response:
        pool = self._pool
        fresh = False
        while True:
            conn = await pool.acquire(backend, fresh=fresh)
            try:
                if has_body:
                    head = await self._exchange_with_body(conn, forwarded, request)
                else:
                    head = await self._exchange(conn, forwarded)
                return self._relay(conn, head, request.method == "HEAD")
            except _Stale:
                # The backend closed an idle connection as we reused it; the
                # request had no body, so sending it again is safe — once.
                pool.discard(conn)
                fresh = True
            except BaseException:
                pool.discard(conn)
                raise

    async def _exchange(self, conn: BackendConnection, forwarded: h11.Request) -> h11.Response:
        """Send a request without a body and wait for the response head."""
        h = conn.h11
        data = h.send(forwarded)
        end = h.send(h11.EndOfMessage())
        assert data is not None and end is not None
        config = self._config
        try:
            await conn.send(data + end, config.write_timeout)
        except BadBackendResponse:
            if conn.reused:
                raise _Stale from None
            raise
        with trio.CancelScope(deadline=_deadline(config.response_timeout)) as scope:
            return await self._read_head(conn, allow_stale=True)
        assert scope.cancelled_caught
        raise BackendTimeout(f"no response head within {config.response_timeout} s")

    async def _exchange_with_body(
        self, conn: BackendConnection, forwarded: h11.Request, request: Request
    ) -> h11.Response:
        """Stream the request body up while waiting for the response head.

        The upload runs in its own task so that a backend answering early (a
        413 before reading the body) is heard at once rather than deadlocking
        against a full socket buffer. The response timeout starts when the
        upload is complete.
        """
        config = self._config
        request.max_body_size = config.max_body_size
        upload = _Upload()
        head: h11.Response | None = None
        head_scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload.run, conn, forwarded, request, config, head_scope, nursery)
            with head_scope:
                try:
                    head = await self._read_head(conn, allow_stale=False)
                except ProxyError as exc:
                    upload.failure = upload.failure or exc
            # Answered (or failed): an upload still running is over.
            nursery.cancel_scope.cancel()
        if upload.client_error is not None:
            raise upload.client_error
        if upload.failure is not None:
            raise upload.failure
        if head is None:
            assert head_scope.cancelled_caught
            raise BackendTimeout(f"no response head within {config.response_timeout} s")
        return head

    async def _read_head(self, conn: BackendConnection, *, allow_stale: bool) -> h11.Response:
        h = conn.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadBackendResponse(f"invalid response from {conn.backend}: {exc}") from None
            if type(event) is h11.Response:
                return event
            if type(event) is h11.InformationalResponse:
                # 100 Continue or 103 Early Hints: ours to take, not the client's.
                continue
            if event is h11.NEED_DATA:
                data = await conn.receive()
                if not data and allow_stale and conn.reused and not conn.received:
                    raise _Stale
                h.receive_data(data)
                continue
            raise BadBackendResponse(f"{conn.backend} closed the connection without answering")

    def _relay(self, conn: BackendConnection, head: h11.Response, head_request: bool) -> Response:
        """The client's response: the backend's head, and its body streamed."""
        headers = [
            (name, value)
            for name, value in rewrite_response_headers(head.headers)
            if name not in _DROP_FROM_RESPONSE
        ]
        h = conn.h11
        chunks: list[bytes] = []
        # Whatever of the body came with the head is taken now; when that is
        # all of it (small bodies, HEAD, 204, 304) the connection goes straight
        # back to the pool and the client gets a plain bytes body.
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadBackendResponse(f"invalid response from {conn.backend}: {exc}") from None
            if type(event) is h11.Data:
                chunks.append(event.data)
                continue
            if type(event) is h11.EndOfMessage:
                self._pool.release(conn)
                status = head.status_code
                if (head_request or status in (204, 304)) and not any(
                    name == b"content-length" for name, _ in headers
                ):
                    # No body by definition, and no length to invent: a bytes
                    # body would make the HTTP server add "Content-Length: 0"
                    # (wrong for HEAD, forbidden for 204); an empty stream lets
                    # it frame the head as the backend did.
                    return Response(_NO_BODY, status=status, headers=Headers.from_raw(headers))
                return Response(b"".join(chunks), status=status, headers=Headers.from_raw(headers))
            break
        if event is not h11.NEED_DATA:
            raise BadBackendResponse(f"{conn.backend} closed the connection mid-response")
        body = _ResponseBody(self._pool, conn, b"".join(chunks), self._config.read_timeout)
        return Response(body, status=head.status_code, headers=Headers.from_raw(headers))


@final
class _NoBody:
    """An empty response body that is not ``bytes`` (see ``Proxy._relay``)."""

    __slots__ = ()

    def __aiter__(self) -> _NoBody:
        return self

    async def __anext__(self) -> bytes:
        await trio.lowlevel.checkpoint()
        raise StopAsyncIteration


_NO_BODY = _NoBody()


@final
class _Upload:
    """The task that streams a request body to the backend, and what became of it."""

    __slots__ = ("client_error", "failure")

    def __init__(self) -> None:
        # The client failed us (body timeout, too large, gone): answered by the
        # HTTP layer (408, 413) or ends the connection.
        self.client_error: HTTPError | ClientDisconnected | None = None
        # The backend stalled the upload: 504.
        self.failure: ProxyError | None = None

    async def run(
        self,
        conn: BackendConnection,
        forwarded: h11.Request,
        request: Request,
        config: ProxyConfig,
        head_scope: trio.CancelScope,
        nursery: trio.Nursery,
    ) -> None:
        h = conn.h11
        chunks = request.body.__aiter__()
        try:
            data = h.send(forwarded)
            assert data is not None
            await conn.send(data, config.write_timeout)
            while True:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                data = h.send(h11.Data(data=chunk))
                assert data is not None
                await conn.send(data, config.write_timeout)
            end = h.send(h11.EndOfMessage())
            assert end is not None
            await conn.send(end, config.write_timeout)
        except (HTTPError, ClientDisconnected) as exc:
            self.client_error = exc
            nursery.cancel_scope.cancel()
            return
        except BackendTimeout as exc:
            self.failure = exc
            nursery.cancel_scope.cancel()
            return
        except BadBackendResponse:
            # The backend closed its side: it may have answered already (an
            # early 413); the head reader finds out.
            pass
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        head_scope.deadline = _deadline(config.response_timeout)


@final
class _ResponseBody:
    """A backend's response body as the async iterator the HTTP layer sends from.

    Runs in the client connection's task, one read ahead of the client at
    most: memory stays bounded whatever the body's size. At the end of the
    body the connection goes back to the pool; closed early (the client went
    away) it is discarded, since half a response is still in it. A backend
    that stops mid-body, or stays silent for ``read_timeout``, raises: the
    HTTP layer then cuts the client connection.
    """

    __slots__ = ("_conn", "_first", "_pool", "_read_timeout")

    def __init__(
        self,
        pool: ConnectionPool,
        conn: BackendConnection,
        first: bytes,
        read_timeout: float | None,
    ) -> None:
        self._pool = pool
        # None once the body is complete or abandoned.
        self._conn: BackendConnection | None = conn
        # Body bytes that arrived with the head.
        self._first = first
        self._read_timeout = read_timeout

    def __aiter__(self) -> _ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        if self._first:
            first, self._first = self._first, b""
            await trio.lowlevel.checkpoint()
            return first
        conn = self._conn
        if conn is None:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        h = conn.h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                self._abandon()
                raise BadBackendResponse(
                    f"{conn.backend} broke off the response body: {exc}"
                ) from None
            if type(event) is h11.Data:
                return event.data
            if event is h11.NEED_DATA:
                try:
                    data = await conn.receive(self._read_timeout)
                except BaseException:
                    self._abandon()
                    raise
                h.receive_data(data)
                continue
            if type(event) is h11.EndOfMessage:
                self._conn = None
                self._pool.release(conn)
                raise StopAsyncIteration
            self._abandon()
            raise BadBackendResponse(f"{conn.backend} closed the connection mid-body")

    def _abandon(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._pool.discard(conn)

    async def aclose(self) -> None:
        """Discard the backend connection unless the body was read to its end."""
        self._abandon()
        await trio.lowlevel.checkpoint()
