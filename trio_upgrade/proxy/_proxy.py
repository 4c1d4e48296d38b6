"""The reverse proxy: an HTTP handler that forwards requests to backends, streaming."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, final
from urllib.parse import unquote

import h11
import trio

from .._wire import (
    Framing,
    FramingError,
    forwardable_fields,
    list_tokens,
    parse_content_length,
    request_framing,
    response_framing,
)
from ..http import ClientDisconnected, Headers, HTTPError, Request, Response, Takeover
from ..http._router import error_response
from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BadBackendResponse, ProxyError
from ._pool import BackendConnection, ConnectionPool, Stale
from ._rewrite import (
    UnsafeTarget,
    forward_target,
    is_upgrade_request,
    normalize_path,
    rewrite_request_headers,
    rewrite_response_headers,
    split_target,
)
from ._routes import ProxyRoute, match_route
from ._tunnel import Tunnel

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Proxy", "ProxyStatistics"]

logger = logging.getLogger("trio_upgrade.proxy")

# The HTTP server adds its own Date; a relayed one would make two.
_DROP_FROM_RESPONSE = frozenset({b"date"})
# RFC 9110 §9.2.2: the methods a proxy may send again after a connection failed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
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
    no route matches gets 404. *strip_prefix*, *preserve_host* and *upgrades*
    are the defaults for routes given as a mapping or added with :meth:`add_route`.
    Mounted under a router, paths are matched without the mount prefix, and a
    stripping route strips the mount prefix too.

    Plain requests are streamed both ways: the request body goes to the
    backend as the client sends it, the response body comes back as the
    backend sends it (never held whole), over keep-alive connections from a
    bounded pool. A backend answering before it has read the whole request
    body (a 413, a 401) ends the upload there; a backend that streams its
    answer while still reading (full duplex) is not supported.

    Requests with ``Connection: upgrade`` and an ``Upgrade`` to a protocol the
    route allows (WebSocket by default, :attr:`ProxyRoute.upgrades`) become a
    :class:`~trio_upgrade.http.Takeover`: the request goes to the backend with
    its upgrade headers, the answer comes back, and after a ``101`` bytes are
    pumped both ways until either side closes. An upgrade to any other protocol
    is forwarded as an ordinary request without ``Upgrade``.

    Refused before anything is forwarded, with the client connection closed
    after the answer: a request framed two ways or doubtfully (400/501, see
    ``_wire.request_framing``), a target whose dot segments climb out of its
    route (400), a body whose first piece is already malformed.

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
        upgrades: tuple[str, ...] = ("websocket",),
    ) -> None:
        self._config = config or ProxyConfig()
        self._defaults = (strip_prefix, preserve_host, upgrades)
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
        upgrades: tuple[str, ...] | None = None,
    ) -> ProxyRoute:
        """Forward paths under *prefix* to *backend*; returns the route added."""
        route = ProxyRoute(
            prefix,
            backend if isinstance(backend, Backend) else Backend.parse(backend),
            strip_prefix=self._defaults[0] if strip_prefix is None else strip_prefix,
            preserve_host=self._defaults[1] if preserve_host is None else preserve_host,
            upgrades=self._defaults[2] if upgrades is None else upgrades,
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
        raw = request.headers.raw
        # Smuggling (RFC 9112 §6.3, §11.2): a request framed two ways, or in a
        # way we would read differently from a backend, is refused before
        # anything is forwarded, and the client connection closes after it.
        try:
            framing = request_framing(raw, request.http_version.encode("ascii"))
        except FramingError as exc:
            return self._refuse(request, exc.status, str(exc))
        try:
            raw_path, query, authority = split_target(request.target)
            route, raw_path = self._route(request, raw_path)
        except UnsafeTarget as exc:
            return self._refuse(request, 400, str(exc))
        if route is None:
            return error_response(404, None)
        if request.method == "CONNECT":
            return error_response(405, None, [("allow", "GET, HEAD, POST, PUT, PATCH, DELETE")])
        backend = route.backend
        strip = ""
        if route.strip_prefix:
            strip = request.root_path + (route.prefix if route.prefix != "/" else "")
        target = forward_target(raw_path + query, strip, backend.base_path)
        offered: list[bytes] = []
        if is_upgrade_request(raw):
            offered = route.allowed_upgrades(list_tokens(raw, b"upgrade"))
        config = self._config
        host: str | None = None
        if not route.preserve_host or request.host is None:
            host = backend.authority
        elif authority is not None:
            # RFC 9112 §3.2.2: an absolute-form target's authority replaces Host.
            host = authority
        headers = rewrite_request_headers(
            raw,
            client=request.client,
            scheme=request.scheme,
            prefix=strip,
            upgrade=bool(offered),
            host=host,
            x_forwarded=config.x_forwarded,
            forwarded=config.forwarded,
            trust_forwarded=config.trust_forwarded,
        )
        # One framing, ours: the received Content-Length and Transfer-Encoding
        # go, and the length we decided on (or chunked) is written afresh.
        headers = forwardable_fields(headers)
        if offered:
            # Only the protocols this route tunnels are offered to the backend.
            headers = [(n, v) for n, v in headers if n != b"upgrade"]
            headers.append((b"upgrade", b", ".join(offered)))
        if framing.kind is Framing.CHUNKED:
            headers.append((b"transfer-encoding", b"chunked"))
        elif framing.kind is Framing.LENGTH:
            headers.append((b"content-length", b"%d" % (framing.length or 0)))
        elif any(name == b"content-length" for name, _ in raw):
            headers.append((b"content-length", b"0"))
        has_body = framing.kind is not Framing.NONE
        try:
            forwarded = h11.Request(method=request.method, target=target, headers=headers)
        except h11.LocalProtocolError as exc:
            return self._refuse(request, 400, f"Cannot forward this request: {exc}")
        if offered:
            body = b""
            if has_body:
                request.max_body_size = _MAX_UPGRADE_BODY
                body = await request.read()
            return Tunnel(self._pool, config, backend, forwarded, body, offered)
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

    def _route(self, request: Request, raw_path: str) -> tuple[ProxyRoute | None, str]:
        """The route of a request, and its raw path without dot segments.

        Dot segments are removed before routing (RFC 3986 §5.2.4), so the
        backend never sees one. A path whose dot segments lead out of the route
        its text names (``/api/../internal``), out of the router the proxy is
        mounted under, or above the root is refused (:class:`UnsafeTarget`).
        """
        root = request.root_path
        if raw_path == "*":
            return match_route(self._routes, "*"), raw_path
        normal = normalize_path(raw_path)
        path = unquote(normal) if "%" in normal else normal
        if root:
            if not (path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/")):
                raise UnsafeTarget("the path climbs out of the mount point")
            path = path[len(root) :] or "/"
        route = match_route(self._routes, path)
        if normal != raw_path:
            written = request.path
            if root and written.startswith(root):
                written = written[len(root) :] or "/"
            if match_route(self._routes, written) is not route:
                raise UnsafeTarget("dot segments lead out of the route")
        return route, normal

    def _refuse(self, request: Request, status: int, detail: str) -> Response:
        """A request the proxy will not forward: *status*, and the connection closes
        (what follows this request on it cannot be trusted to start where we think)."""
        logger.warning(
            "proxy: refused %s %s: %d, %s", request.method, request.target, status, detail
        )
        return error_response(status, None, [("connection", "close")])

    async def _forward(
        self, request: Request, backend: Backend, forwarded: h11.Request, has_body: bool
    ) -> Response:
        first = b""
        chunks: AsyncIterator[bytes] | None = None
        try:
            if has_body:
                request.max_body_size = self._config.max_body_size
                chunks = request.body.__aiter__()
                # The first piece of the body is read before anything is sent: a
                # body refused at once (malformed chunked framing, a declared
                # length over the limit, a client gone) never reaches the backend.
                first = await _first_chunk(chunks)
            return await self._forward_on(request, backend, forwarded, chunks, first)
        finally:
            if chunks is not None:
                # Whatever became of the exchange (an unreachable backend
                # included), the body's iterator ends here.
                await _close_chunks(chunks)

    async def _forward_on(
        self,
        request: Request,
        backend: Backend,
        forwarded: h11.Request,
        chunks: AsyncIterator[bytes] | None,
        first: bytes,
    ) -> Response:
        pool = self._pool
        fresh = False
        while True:
            conn = await pool.acquire(backend, fresh=fresh)
            try:
                if chunks is not None:
                    head = await self._exchange_with_body(conn, forwarded, chunks, first)
                else:
                    head = await self._exchange(conn, forwarded)
                return self._relay(conn, head, forwarded.method)
            except Stale:
                pool.discard(conn)
                if request.method not in _IDEMPOTENT:
                    # RFC 9110 §9.2.2: the backend may have acted on it already.
                    raise BadBackendResponse(
                        f"{backend} closed a reused connection before answering;"
                        f" {request.method} is not idempotent, so it is not sent again"
                    ) from None
                # The backend closed an idle connection as we reused it; nothing
                # of a response came and the method is idempotent: send it again, once.
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
                raise Stale from None
            raise
        with trio.CancelScope(deadline=_deadline(config.response_timeout)) as scope:
            head = await conn.read_head(allow_stale=True)
            assert type(head) is h11.Response
            return head
        assert scope.cancelled_caught
        raise BackendTimeout(f"no response head within {config.response_timeout} s")

    async def _exchange_with_body(
        self,
        conn: BackendConnection,
        forwarded: h11.Request,
        chunks: AsyncIterator[bytes],
        first: bytes,
    ) -> h11.Response:
        """Stream the request body up while waiting for the response head.

        The upload runs in its own task so that a backend answering early (a
        413 before reading the body) is heard at once rather than deadlocking
        against a full socket buffer. The response timeout starts when the
        upload is complete.
        """
        config = self._config
        upload = _Upload()
        head: h11.Response | None = None
        head_scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                upload.run, conn, forwarded, chunks, first, config, head_scope, nursery
            )
            with head_scope:
                try:
                    event = await conn.read_head()
                    assert type(event) is h11.Response
                    head = event
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

    def _relay(self, conn: BackendConnection, head: h11.Response, method: bytes) -> Response:
        """The client's response: the backend's head, and its body streamed.

        The body is framed once, as ``_wire.response_framing`` decides (RFC 9112
        §6.3): the backend's ``Content-Length`` and ``Transfer-Encoding`` go, a
        normalised length is written when the body has one, and the HTTP server
        frames the rest (chunked or by closing). A response whose framing was
        in doubt is relayed that way and its connection never reused.
        """
        fields = head.headers
        try:
            framing = response_framing(
                head.status_code, fields, request_method=method, http_version=head.http_version
            )
        except FramingError as exc:
            raise BadBackendResponse(f"{conn.backend}: {exc}") from None
        if (
            framing.kind is not Framing.CHUNKED
            and framing.kind is not Framing.NONE
            and any(name == b"transfer-encoding" for name, _ in fields)
        ):
            # Chunked from an HTTP/1.0 peer: h11 would read it chunked, the
            # policy by the close. Two readings: refused.
            raise BadBackendResponse(f"{conn.backend} sent Transfer-Encoding in HTTP/1.0")
        if framing.close:
            conn.reusable = False
        headers = [
            (name, value)
            for name, value in forwardable_fields(rewrite_response_headers(fields))
            if name not in _DROP_FROM_RESPONSE
        ]
        status = head.status_code
        if framing.kind is Framing.LENGTH:
            headers.append((b"content-length", b"%d" % (framing.length or 0)))
        elif framing.kind is Framing.NONE and (method == b"HEAD" or status == 304):
            # The length of the body a GET would have had: relayed, normalised.
            with contextlib.suppress(FramingError):
                values = [v for n, v in fields if n == b"content-length"]
                if values and not any(n == b"transfer-encoding" for n, _ in fields):
                    headers.append((b"content-length", b"%d" % parse_content_length(values)))
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
                # Trailers (event.headers) are dropped: they belong to the hop.
                self._pool.release(conn)
                if framing.kind is Framing.NONE and not any(
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
        return Response(body, status=status, headers=Headers.from_raw(headers))


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return b""


async def _close_chunks(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with trio.CancelScope(shield=True):
            await aclose()


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
        chunks: AsyncIterator[bytes],
        first: bytes,
        config: ProxyConfig,
        head_scope: trio.CancelScope,
        nursery: trio.Nursery,
    ) -> None:
        """Send the head and *first*, then the rest of *chunks*, then the end.

        When the client's body fails (malformed chunked framing, too large, the
        client gone) the end of the message is never sent: the caller discards
        the connection, so the backend sees a request cut short, never one it
        could take as complete.
        """
        h = conn.h11
        try:
            data = h.send(forwarded)
            assert data is not None
            if first:
                data += h.send(h11.Data(data=first)) or b""
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
            await _close_chunks(chunks)
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
