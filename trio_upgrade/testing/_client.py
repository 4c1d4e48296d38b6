"""The in-memory client: an app served by a real Server over memory streams.

::

    AppClient ── connect() ──► memory_stream_pair ──► in-memory listener
        │                          (client end)          (server end)
        │                                                     │
        └── ClientConnection: h11 CLIENT              core.Server ─► serve_http_connection(app)

The server side is the code a socket goes through — ``trio_upgrade.core.Server``
(connection nursery, drain signal, grace period) and
``trio_upgrade.http.serve_http_connection`` — with a listener that hands out
in-memory streams instead of accepted sockets. Nothing here reads the clock
except through trio, so everything runs under
``trio.testing.MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import base64
import itertools
import json as _json
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, final
from urllib.parse import urlencode, urlsplit

import h11
import trio
import trio.testing

from ..asgi import (
    ASGIApp,
    ASGIHandler,
    Disconnected,
    Lifespan,
    LifespanMode,
    Receive,
    Scope,
    Send,
    is_asgi_app,
)
from ..core import Connection, PrefixedStream, Server
from ..http import (
    ClientDisconnected,
    DirectResponse,
    Handler,
    Headers,
    HeadersLike,
    HTTPConfig,
    HTTPError,
    Request,
    Response,
    ResponseWriter,
    Takeover,
    app_lifespan,
    serve_http_connection,
)
from ..ws import (
    HandshakeRequest,
    WebSocket,
    WebSocketConfig,
    check_response,
    client_request,
    offered_extensions,
    websocket_session,
)
from ._errors import ServerDisconnected, WebSocketRejected
from ._response import ClientResponse

__all__ = ["AppClient", "ClientConnection", "RequestContent"]

Address = tuple[str, int] | str

RequestContent = bytes | str | Iterable[bytes] | AsyncIterable[bytes]
"""A request body: bytes (or text, sent as UTF-8) with a Content-Length, or an
iterable / async iterable of bytes chunks sent with ``Transfer-Encoding: chunked``."""

QueryLike = Mapping[str, Any] | Sequence[tuple[str, Any]] | str

_READ_SIZE = 64 * 1024
_DEFAULT_WS_CONFIG = WebSocketConfig()
# Client ports of in-memory connections count up from here, one per connection,
# so that request.client tells connections apart as it would with sockets.
_FIRST_CLIENT_PORT = 50000


@final
class _Link:
    """What one connection's two ends share: addresses and the app's exceptions."""

    __slots__ = ("client", "errors", "server", "tls")

    def __init__(self, client: Address, server: Address, tls: bool) -> None:
        self.client = client
        self.server = server
        self.tls = tls
        # Exceptions the app raised while answering on this connection, oldest
        # first; the client re-raises them (raise_server_exceptions).
        self.errors: list[BaseException] = []


@final
class _MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """A listener whose "accepted connections" are memory streams handed in by the client."""

    def __init__(self) -> None:
        # Unbounded, like a kernel backlog that never fills: connect() never waits
        # for the server to accept (which it does only below max_connections).
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](math.inf)

    def connect(self, server_end: trio.abc.Stream) -> None:
        try:
            self._send.send_nowait(server_end)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionRefusedError("the in-memory server is not accepting") from None

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        self._send.close()
        self._receive.close()
        # Connections never accepted: their clients see the connection close.
        while True:
            try:
                stream = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            await trio.aclose_forcefully(stream)
        await trio.lowlevel.checkpoint()


def _build_target(url: str, params: QueryLike | None) -> tuple[str, str | None]:
    """(path and query, host from an absolute URL or None)."""
    parts = urlsplit(url)
    host = parts.netloc or None
    path = parts.path or "/"
    query = parts.query
    if params is not None:
        extra = params if isinstance(params, str) else urlencode(params, doseq=True)
        if extra:
            query = f"{query}&{extra}" if query else extra
    return (f"{path}?{query}" if query else path), host


def _body_and_headers(
    headers: HeadersLike | None,
    host: str,
    content: RequestContent | None,
    json: Any,
    data: QueryLike | None,
) -> tuple[Headers, bytes | Iterable[bytes] | AsyncIterable[bytes] | None]:
    fields = Headers(headers)
    if "host" not in fields:
        encoded = host.encode("ascii") if host.isascii() else host.encode("idna")
        fields.raw = [(b"host", encoded), *fields.raw]
    if sum(x is not None for x in (content, json, data)) > 1:
        raise TypeError("give at most one of content=, json= and data=")
    body: bytes | Iterable[bytes] | AsyncIterable[bytes] | None
    if json is not None:
        body = _json.dumps(json).encode()
        fields.setdefault("content-type", "application/json")
    elif data is not None:
        body = (data if isinstance(data, str) else urlencode(data, doseq=True)).encode()
        fields.setdefault("content-type", "application/x-www-form-urlencoded")
    elif isinstance(content, str):
        body = content.encode()
    elif isinstance(content, (bytearray, memoryview)):
        body = bytes(content)
    else:
        body = content
    if "content-length" not in fields and "transfer-encoding" not in fields:
        if isinstance(body, bytes):
            if body:
                fields.add("content-length", str(len(body)))
        elif body is not None:
            fields.add("transfer-encoding", "chunked")
    return fields, body


class _Methods:
    """``get``, ``post``, ... as shortcuts for ``request`` (which subclasses define)."""

    __slots__ = ()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryLike | None = None,
        headers: HeadersLike | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        data: QueryLike | None = None,
    ) -> ClientResponse:
        raise NotImplementedError

    async def get(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("OPTIONS", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> ClientResponse:
        return await self.request("DELETE", url, **kwargs)


@final
class ClientConnection(_Methods):
    """One in-memory connection to the app, speaking HTTP/1.1 (h11) as a client.

    Requests on it are sent one at a time and kept alive between them as the
    server allows, so keep-alive, ``Connection: close``, pipelining limits and
    idle timeouts can be tested. Get one with ``async with client.connect() as
    conn``; it is closed when the block ends.

    :attr:`raw_stream` is the client end of the memory stream, for tests that
    send bytes no well-behaved client would (mixing raw bytes with
    :meth:`request` on one connection confuses the HTTP state; use a fresh one).
    """

    __slots__ = ("_busy", "_closed", "_eof", "_h11", "_host", "_link", "_raise", "raw_stream")

    def __init__(
        self, raw_stream: trio.abc.Stream, link: _Link, *, host: str, raise_errors: bool
    ) -> None:
        self.raw_stream = raw_stream
        self._link = link
        self._host = host
        self._raise = raise_errors
        self._h11 = h11.Connection(h11.CLIENT)
        # True while a request's response is not read to its end.
        self._busy = False
        # True once the connection cannot carry another request.
        self._closed = False
        # True once the server's side reached EOF.
        self._eof = False

    @property
    def client_address(self) -> Address:
        """The address the app sees as ``request.client`` for this connection."""
        return self._link.client

    @property
    def closed(self) -> bool:
        """True once this connection can carry no more requests (either side closed it)."""
        return self._closed or self._eof

    # -- HTTP ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryLike | None = None,
        headers: HeadersLike | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        data: QueryLike | None = None,
    ) -> ClientResponse:
        """Send a request and read the whole response.

        *url* is a path (``"/items?id=1"``) or an absolute URL whose host goes in
        the ``Host`` header. *params* are added to the query string; the body is
        *content*, *json* (serialised, ``application/json``) or *data* (a form,
        ``application/x-www-form-urlencoded``). The app's answer to a request
        whose body it did not read is returned as soon as it is complete; the
        rest of the body is then not sent.

        Raises :class:`~trio_upgrade.testing.ServerDisconnected` when the server
        closes the connection before answering completely.
        """
        async with self.stream(
            method, url, params=params, headers=headers, content=content, json=json, data=data
        ) as response:
            await response.aread()
        return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: QueryLike | None = None,
        headers: HeadersLike | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        data: QueryLike | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """Send a request; the block gets the response as soon as its head arrives.

        Read the body with ``async for chunk in response.iter_bytes()`` or
        ``await response.aread()``. Leaving the block with the body unread
        closes the connection (the server sees the client go away).
        """
        target, url_host = _build_target(url, params)
        fields, body = _body_and_headers(headers, url_host or self._host, content, json, data)
        self._start_exchange()
        # Errors are kept and raised outside the nursery, so that callers see
        # them as themselves rather than inside an exception group. A failing
        # body iterator comes first: it is why the connection was cut.
        body_errors: list[BaseException] = []
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await self._send_head(method, target, fields, body)
                    if body is not None and not isinstance(body, bytes):
                        nursery.start_soon(self._send_body, body, body_errors)
                    response = await self._receive_head(method, target)
                    yield response
                except BaseException as exc:
                    error = exc
                finally:
                    # A body still being sent when the response is complete is
                    # not wanted any more (an early answer: 413, 401...).
                    nursery.cancel_scope.cancel()
        finally:
            await self._end_exchange()
        if body_errors:
            raise body_errors[0]
        if error is not None:
            raise error

    def _start_exchange(self) -> None:
        h = self._h11
        if self._busy:
            raise RuntimeError("this connection is busy with another request")
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
        if self._closed or h.our_state is not h11.IDLE:
            if h.their_state in (h11.MUST_CLOSE, h11.CLOSED) or self._eof:
                raise ServerDisconnected("the server closed this connection")
            raise RuntimeError("this connection cannot carry another request")
        self._busy = True

    async def _end_exchange(self) -> None:
        self._busy = False
        h = self._h11
        # Unread body, unsent body, Connection: close: nothing more can go over
        # this connection, and closing tells the server at once. After a 101 the
        # stream belongs to the new protocol.
        reusable = h.our_state is h11.DONE and h.their_state is h11.DONE
        if not reusable and h.their_state is not h11.SWITCHED_PROTOCOL:
            await self.aclose()

    async def _send(self, data: bytes) -> None:
        try:
            await self.raw_stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._h11.send_failed()
            raise

    async def _send_head(
        self,
        method: str,
        target: str,
        fields: Headers,
        body: bytes | Iterable[bytes] | AsyncIterable[bytes] | None,
    ) -> None:
        h = self._h11
        data = h.send(h11.Request(method=method, target=target, headers=list(fields.raw)))
        assert data is not None
        if body is None or isinstance(body, bytes):
            if body:
                more = h.send(h11.Data(data=body))
                assert more is not None
                data += more
            if h.our_state is h11.SEND_BODY:
                data += h.send(h11.EndOfMessage()) or b""
        try:
            await self._send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ServerDisconnected("the server closed the connection") from None

    async def _send_body(
        self, body: Iterable[bytes] | AsyncIterable[bytes], errors: list[BaseException]
    ) -> None:
        h = self._h11
        try:
            if isinstance(body, AsyncIterable):
                async for chunk in body:
                    if chunk:
                        await self._send(h.send(h11.Data(data=chunk)) or b"")
            else:
                for chunk in body:
                    if chunk:
                        await self._send(h.send(h11.Data(data=chunk)) or b"")
            await self._send(h.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server closed: reading the response tells what happened
        except Exception as exc:
            # The caller's body iterator failed: the request cannot be completed.
            errors.append(exc)
            await self.aclose()

    async def _next_event(self) -> Any:
        h = self._h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError:
                if self._eof:
                    raise ServerDisconnected(
                        "the server closed the connection before the response was complete"
                    ) from None
                raise
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.raw_stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._eof = True
            h.receive_data(bytes(data))

    async def _receive_head(self, method: str, target: str) -> ClientResponse:
        while True:
            event = await self._next_event()
            if type(event) is h11.InformationalResponse:
                if event.status_code == 101:
                    self._raise_server_error()
                    return self._response(event, method, target, content=b"")
                continue  # 100 Continue and other interim answers
            if type(event) is h11.Response:
                self._raise_server_error()
                return self._response(event, method, target, content=None)
            raise ServerDisconnected("the server closed the connection without answering")

    def _response(
        self,
        event: h11.Response | h11.InformationalResponse,
        method: str,
        target: str,
        *,
        content: bytes | None,
    ) -> ClientResponse:
        return ClientResponse(
            event.status_code,
            Headers.from_raw(list(event.headers)),
            reason=event.reason.decode("latin-1"),
            http_version=event.http_version.decode("ascii"),
            method=method,
            target=target,
            content=content,
            next_chunk=self._read_chunk,
        )

    async def _read_chunk(self) -> bytes:
        while True:
            event = await self._next_event()
            if type(event) is h11.Data:
                if event.data:
                    return bytes(event.data)
                continue
            if type(event) is h11.EndOfMessage:
                return b""
            raise ServerDisconnected(
                "the server closed the connection before the response was complete"
            )

    def _raise_server_error(self) -> None:
        errors = self._link.errors
        if self._raise and errors:
            error = errors.pop(0)
            errors.clear()
            raise error

    def upgraded_stream(self) -> trio.abc.Stream:
        """After a ``101 Switching Protocols``: the stream in the new protocol.

        It replays whatever the server sent after the 101 that was already read.
        """
        if self._h11.their_state is not h11.SWITCHED_PROTOCOL:
            raise RuntimeError("the connection has not switched protocols")
        return PrefixedStream(self.raw_stream, self._h11.trailing_data[0])

    async def wait_closed(self) -> bytes:
        """Wait until the server closes the connection; return what it sent meanwhile.

        For an idle keep-alive connection that returns ``b""`` when the server's
        keep-alive timeout ends it; after a partial request head sent on
        :attr:`raw_stream`, it returns the ``408`` the server answers with.
        """
        received = bytearray(self._h11.trailing_data[0])
        while not self._eof:
            try:
                data = await self.raw_stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._eof = True
            received += data
        return bytes(received)

    async def aclose(self) -> None:
        """Close the connection (the server sees EOF). Idempotent."""
        self._closed = True
        await trio.aclose_forcefully(self.raw_stream)

    # -- WebSocket ---------------------------------------------------------------

    @asynccontextmanager
    async def websocket(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        config: WebSocketConfig = _DEFAULT_WS_CONFIG,
    ) -> AsyncIterator[WebSocket]:
        """Open a WebSocket session over this connection (see :meth:`AppClient.websocket`)."""
        target, url_host = _build_target(path, None)
        extra = Headers(headers).raw if headers is not None else ()
        key = base64.b64encode(os.urandom(16))
        _, fields = client_request(
            url_host or self._host,
            target,
            key,
            subprotocols=subprotocols,
            extensions=offered_extensions(config),
            headers=extra,
        )
        self._start_exchange()
        upgraded = False
        try:
            await self._send_head("GET", target, Headers.from_raw(fields), None)
            response = await self._receive_head("GET", target)
            if response.status_code != 101:
                await response.aread()
                raise WebSocketRejected(response)
            subprotocol, extensions, _ = check_response(
                key, list(response.headers.raw), subprotocols=subprotocols, config=config
            )
            upgraded = True
        finally:
            if not upgraded:
                await self._end_exchange()
                if not self._closed:
                    # A 101 we cannot accept: the server's session has started.
                    await self.aclose()
        link = self._link
        request = HandshakeRequest(
            target, tuple(fields), client=link.client, server=link.server, method="GET"
        )
        try:
            async with websocket_session(
                self.raw_stream,
                prefetched=self._h11.trailing_data[0],
                request=request,
                subprotocol=subprotocol,
                extensions=extensions,
                config=config,
                client=True,
            ) as ws:
                yield ws
        finally:
            self._busy = False
            self._closed = True


@final
class AppClient(_Methods):
    """Drive *app* in memory: HTTP requests and WebSocket sessions, no sockets.

    ::

        async with AppClient(app) as client:
            response = await client.get("/")
            async with client.websocket("/ws") as ws:
                await ws.send("hi")

    Entering starts a :class:`trio_upgrade.core.Server` for *app* (an ``App``,
    a ``Router`` or any ``async def app(request)``) whose listener hands out
    in-memory streams; every connection is served by
    :func:`trio_upgrade.http.serve_http_connection` with *config*, exactly as
    a socket's would be. Leaving shuts the server down gracefully (at once if
    the block raised).

    Connections: every ``request``/``get``/``stream``/``websocket`` call opens
    a new connection and closes it when done, so tests never depend on each
    other's connection state. For keep-alive behaviour use :meth:`connect`.

    *base_url* sets the ``Host`` header and the scheme the app sees
    (``https://`` makes ``request.scheme`` ``"https"``). With
    *raise_server_exceptions* (the default), an exception raised by the app's
    handler (other than an :class:`~trio_upgrade.http.HTTPError`) is raised
    again in the test once the 500 it caused has arrived, so a failing test
    shows the app's traceback, not just a status code.

    Works under ``trio.testing.MockClock(autojump_threshold=0)``: the app's
    timeouts (keep-alive, header, body, WebSocket ping) then pass instantly.

    An ASGI 3 application (FastAPI, Starlette, Quart-trio...) is served
    through :class:`trio_upgrade.asgi.ASGIHandler`, its lifespan startup run on
    entering and shutdown on leaving (*lifespan* as in
    :func:`trio_upgrade.asgi.serve`); with *raise_server_exceptions* its
    exceptions are raised again in the test as a native handler's are. An
    :class:`~trio_upgrade.bridge.App`'s own lifespan (``App(lifespan=...)``)
    runs the same way: startup on entering, shutdown after the drain.
    """

    __test__ = False  # not a pytest test class, whatever the name pattern says

    def __init__(
        self,
        app: Handler,
        *,
        config: HTTPConfig | None = None,
        base_url: str = "http://testserver",
        raise_server_exceptions: bool = True,
        grace_period: float = 10.0,
        max_connections: int = 1000,
        server_address: Address = ("127.0.0.1", 80),
        lifespan: LifespanMode = "auto",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be http://host or https://host, not {base_url!r}")
        # An ASGI app's lifespan, run around the server, and the app itself
        # (each connection wraps it to record its exceptions).
        self._lifespan: Lifespan | None = None
        self._native_lifespan: AbstractAsyncContextManager[Any] | None = None
        self._asgi_app: ASGIApp | None = None
        if is_asgi_app(app):
            self._asgi_app = app
            self._lifespan = Lifespan(app, mode=lifespan)
            app = ASGIHandler(app, state=self._lifespan.state)
        self.app = app
        self.config = config or HTTPConfig()
        self.host = parts.netloc
        """The ``Host`` header sent when a request's URL has none."""
        self.tls = parts.scheme == "https"
        self.raise_server_exceptions = raise_server_exceptions
        self.server_address = server_address
        self._listener = _MemoryListener()
        self._server = Server(
            self._serve_connection,
            [self._listener],
            max_connections=max_connections,
            grace_period=grace_period,
        )
        self._ports = itertools.count(_FIRST_CLIENT_PORT)
        # Connections handed to the listener, by identity of their server end,
        # until the server picks them up.
        self._links: dict[int, _Link] = {}
        self._nursery_manager: Any = None
        self._nursery: trio.Nursery | None = None

    @property
    def server(self) -> Server:
        """The :class:`trio_upgrade.core.Server` behind the client (``connection_count``...)."""
        return self._server

    # -- lifetime ------------------------------------------------------------------

    async def __aenter__(self) -> AppClient:
        if self._nursery_manager is not None:
            raise RuntimeError("an AppClient can be entered only once")
        if self._lifespan is not None:
            await self._lifespan.__aenter__()
        else:
            # A native app's lifespan (an App's), as serve() runs it.
            self._native_lifespan = app_lifespan(self.app)
            await self._native_lifespan.__aenter__()
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        try:
            await self._nursery.start(self._server.serve)
        except BaseException as exc:
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            if self._lifespan is not None:
                await self._lifespan.__aexit__(type(exc), exc, exc.__traceback__)
            if self._native_lifespan is not None:
                await self._native_lifespan.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        nursery = self._nursery
        assert nursery is not None
        if exc is None:
            await self._server.aclose()
        else:
            # The test failed: no grace period, no exception group around its error.
            self._server.cancel_connections()
            nursery.cancel_scope.cancel()
        await self._nursery_manager.__aexit__(None, None, None)
        if self._lifespan is not None:
            # Shutdown after the drain, as a real server does.
            await self._lifespan.__aexit__(exc_type, exc, tb)
        if self._native_lifespan is not None:
            await self._native_lifespan.__aexit__(exc_type, exc, tb)
        return False

    async def shutdown(self) -> None:
        """Shut the server down gracefully and wait until every connection ended.

        Rehearses a deploy: new connections are refused (``ConnectionRefusedError``),
        idle keep-alive connections close, a request in flight is answered with
        ``Connection: close``, WebSocket sessions close with 1001, and what is
        still running after ``grace_period`` is cancelled.
        """
        await self._server.aclose()

    def begin_shutdown(self) -> None:
        """Start :meth:`shutdown` in the background and return at once."""
        if self._nursery is None:
            raise RuntimeError("the client is not running (use `async with AppClient(app)`)")
        self._nursery.start_soon(self._server.aclose)

    # -- server side ----------------------------------------------------------------

    async def _serve_connection(self, conn: Connection) -> None:
        link = self._links.pop(id(conn.stream))
        # The Server could not know the addresses of a memory stream: give the app
        # the ones this connection pretends to have.
        conn = Connection(
            conn.stream,
            conn.nursery,
            client=link.client,
            server=link.server,
            tls=link.tls,
            shutdown=conn.shutdown,
        )
        app = self.app
        asgi_app = self._asgi_app
        if asgi_app is not None:
            # An ASGI app's exceptions never leave its handler (the server
            # answers them): record them where the app raises them.
            async def recording_asgi(scope: Scope, receive: Receive, send: Send) -> None:
                try:
                    await asgi_app(scope, receive, send)
                except (HTTPError, ClientDisconnected, Disconnected):
                    raise
                except Exception as exc:
                    link.errors.append(exc)
                    raise

            assert self._lifespan is not None
            app = ASGIHandler(recording_asgi, state=self._lifespan.state)

        async def recording_app(request: Request) -> Response | DirectResponse | Takeover:
            try:
                result = await app(request)
            except (HTTPError, ClientDisconnected):
                raise
            except Exception as exc:
                link.errors.append(exc)
                raise
            if type(result) is DirectResponse and asgi_app is None:
                write = result.write

                async def recording_write(writer: ResponseWriter) -> None:
                    try:
                        await write(writer)
                    except (HTTPError, ClientDisconnected):
                        raise
                    except Exception as exc:
                        link.errors.append(exc)
                        raise

                return DirectResponse(recording_write)
            return result

        await serve_http_connection(conn, recording_app, self.config)

    # -- client side ------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ClientConnection]:
        """Open one connection for several requests (keep-alive); closed at the end.

        Raises ``ConnectionRefusedError`` once the server is shutting down.
        """
        if self._nursery is None:
            raise RuntimeError("the client is not running (use `async with AppClient(app)`)")
        client_end, server_end = trio.testing.memory_stream_pair()
        link = _Link(("127.0.0.1", next(self._ports)), self.server_address, self.tls)
        self._links[id(server_end)] = link
        try:
            self._listener.connect(server_end)
        except ConnectionRefusedError:
            del self._links[id(server_end)]
            await trio.lowlevel.checkpoint()
            raise
        conn = ClientConnection(
            client_end, link, host=self.host, raise_errors=self.raise_server_exceptions
        )
        try:
            yield conn
        finally:
            await conn.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryLike | None = None,
        headers: HeadersLike | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        data: QueryLike | None = None,
    ) -> ClientResponse:
        """Send one request on a new connection and read the whole response.

        See :meth:`ClientConnection.request` for the arguments.
        """
        async with self.connect() as conn:
            return await conn.request(
                method, url, params=params, headers=headers, content=content, json=json, data=data
            )

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: QueryLike | None = None,
        headers: HeadersLike | None = None,
        content: RequestContent | None = None,
        json: Any = None,
        data: QueryLike | None = None,
    ) -> AsyncIterator[ClientResponse]:
        """Send one request; the block reads the response as it streams in.

        ::

            async with client.stream("GET", "/events") as response:
                async for chunk in response.iter_bytes():
                    ...
        """
        async with (
            self.connect() as conn,
            conn.stream(
                method, url, params=params, headers=headers, content=content, json=json, data=data
            ) as response,
        ):
            yield response

    @asynccontextmanager
    async def websocket(
        self,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        headers: HeadersLike | None = None,
        config: WebSocketConfig = _DEFAULT_WS_CONFIG,
    ) -> AsyncIterator[WebSocket]:
        """Open a WebSocket session with the app for the block, on a new connection.

        The block gets the client side's :class:`trio_upgrade.ws.WebSocket`
        (``send``, ``receive``, ``async for``, ``aclose(code, reason)``,
        ``close_code``/``close_reason`` once closed, ``subprotocol``). Leaving
        the block closes the session with 1000 (1011 if the block raised).

        Offers *subprotocols*, adds *headers* (``Origin``, ``Authorization``...)
        and offers permessage-deflate when *config* has compression. A handshake
        the app refuses raises :class:`~trio_upgrade.testing.WebSocketRejected`
        carrying its HTTP response; an invalid 101 raises
        :class:`~trio_upgrade.ws.HandshakeError`.
        """
        async with (
            self.connect() as conn,
            conn.websocket(path, subprotocols=subprotocols, headers=headers, config=config) as ws,
        ):
            yield ws
