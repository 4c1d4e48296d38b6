"""The standalone WebSocket server: core listeners, our own handshake, a session per connection."""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from .._wire import (
    DEFAULT_MAX_FIELDS,
    DEFAULT_MAX_HEAD_SIZE,
    Framing,
    FramingError,
    HeadError,
    RequestParser,
    request_framing,
    simple_response,
)
from ..core import Bind, Connection, Observer, Server, open_listeners
from ._config import WebSocketConfig
from ._errors import ConnectionClosed
from ._handshake import Accepted, ClientOffer, Rejection, accept, validate_request
from ._request import HandshakeRequest
from ._session import WebSocket

__all__ = ["Accept", "HandshakeHook", "Reject", "WebSocketHandler", "serve_websocket"]

logger = logging.getLogger("trio_upgrade.ws")
access_logger = logging.getLogger("trio_upgrade.access")

HeaderPairs = Sequence[tuple[bytes, bytes]]


# After refusing a handshake: how long to drain the client's unread bytes, so
# that closing does not reset the connection and destroy our response in flight.
_LINGER_SECONDS = 1.0


async def _linger(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


@dataclass(frozen=True, slots=True)
class Accept:
    """A handshake hook's yes: the subprotocol to use (one the client offered) and extra headers."""

    subprotocol: str | None = None
    headers: HeaderPairs = ()


@dataclass(frozen=True, slots=True)
class Reject:
    """A handshake hook's no: the response to send instead of 101 (then the connection closes)."""

    status: int = 403
    headers: HeaderPairs = ()
    body: bytes = b""


WebSocketHandler = Callable[[WebSocket], Awaitable[object]]
HandshakeHook = Callable[[HandshakeRequest], Awaitable[Accept | Reject]]

_DEFAULT_CONFIG = WebSocketConfig()


async def serve_websocket(
    handler: WebSocketHandler,
    *binds: str | Bind,
    ssl_context: ssl.SSLContext | None = None,
    handshake: HandshakeHook | None = None,
    config: WebSocketConfig = _DEFAULT_CONFIG,
    max_connections: int = 1000,
    grace_period: float = 10.0,
    handshake_timeout: float = 10.0,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    max_header_fields: int = DEFAULT_MAX_FIELDS,
    unix_mode: int | None = None,
    access_log: bool = False,
    observer: Observer | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve WebSocket sessions on *binds* until cancelled, then shut down gracefully.

    Every connection does its own opening handshake (RFC 6455 §4.2), within
    *handshake_timeout* seconds. A request that is not a valid handshake gets
    400 (426 for a wrong ``Sec-WebSocket-Version``); otherwise *handshake*, if
    given, sees the :class:`HandshakeRequest` and returns :class:`Accept`
    (subprotocol, extra headers) or :class:`Reject` (any status, headers and
    body). A head over *max_head_size* bytes or with more than
    *max_header_fields* fields is answered with 431, a malformed one with 400.
    Then ``await handler(ws)`` runs; when it returns the session closes
    with 1000 (1011 if it raised; a :class:`ConnectionClosed` escaping the handler
    is not an error).

    ``nursery.start(serve_websocket, ...)`` returns the core
    :class:`~trio_upgrade.core.Server` once listening (``server.addresses``).
    Shutdown (cancelling, or ``await server.aclose()``) stops accepting, closes
    open sessions with 1001 and waits for them up to *grace_period* seconds.

    With *access_log*, each session logs one line on the ``trio_upgrade.access``
    logger (INFO) when it ends, as the HTTP server's access log does for an
    upgrade: ``127.0.0.1:5000 "GET /chat HTTP/1.1" 101 - 812.4ms close 1000``.
    An *observer* (:class:`~trio_upgrade.core.Observer`) is told of each
    session (opened, closed, and as a request answered with 101) and of each
    message the handler receives or sends.
    """
    listeners = await open_listeners(*binds, ssl_context=ssl_context, unix_mode=unix_mode)

    # A partial rather than a closure: one coroutine frame less per connection.
    on_connection = functools.partial(
        _serve_connection,
        handler=handler,
        handshake=handshake,
        config=config,
        handshake_timeout=handshake_timeout,
        access_log=access_log,
        # One argument for both head limits: the connection's frame lives as
        # long as the session, and every argument is 8 bytes of it.
        new_parser=functools.partial(
            RequestParser, max_size=max_head_size, max_fields=max_header_fields
        ),
    )
    server = Server(
        on_connection,
        listeners,
        max_connections=max_connections,
        grace_period=grace_period,
        observer=observer,
    )
    await server.serve(task_status=task_status)


async def _serve_connection(
    conn: Connection,
    *,
    handler: WebSocketHandler,
    handshake: HandshakeHook | None,
    config: WebSocketConfig,
    handshake_timeout: float,
    access_log: bool,
    new_parser: Callable[[], RequestParser],
) -> None:
    stream = conn.stream
    observer = conn.observer
    # Timed for the access log or the observer only.
    started = time.perf_counter() if access_log or observer is not None else 0.0
    opened: tuple[HandshakeRequest, bytes, Accepted] | None = None
    with trio.move_on_after(handshake_timeout):
        try:
            opened = await _handshake(conn, handshake, config, new_parser())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    if opened is None:
        await _linger(stream)
        return
    request, prefetched, accepted = opened
    # The one part of the handshake kept for the session's end: its target.
    target = request.path if started else ""
    ws = WebSocket(
        stream,
        prefetched=prefetched,
        request=request,
        subprotocol=accepted.subprotocol,
        extensions=accepted.extensions,
        config=config,
        client=False,
        observer=observer,
    )
    # The rest of the handshake (the 101's headers, the extension offer, the
    # prefetched bytes) must not stay alive for the whole session.
    del opened, request, prefetched, accepted
    # The session's tasks run in the connection's nursery rather than one of
    # their own: a nursery less per connection (memory), same lifetime.
    ws._start(conn.nursery, conn.shutdown)
    if observer is not None:
        observer.session_opened()
    error: BaseException | None = None
    try:
        await handler(ws)
    except ConnectionClosed:
        pass
    except BaseException as exc:
        error = exc
    try:
        await ws._end(error)
    finally:
        if observer is not None:
            observer.session_closed()
    if started:
        _report(conn, target, ws.close_code, started, access_log)
    if error is not None:
        raise error


def _report(
    conn: Connection, target: str, code: int | None, started: float, access_log: bool
) -> None:
    """A session has ended: its access-log line, and the observer's request."""
    seconds = time.perf_counter() - started
    if access_log:
        client = conn.client
        peer = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else (client or "-")
        access_logger.info(
            '%s "%s %s HTTP/%s" %d %s %.1fms close %s',
            peer,
            _GET,
            target,
            "1.1",
            101,
            "-",
            seconds * 1000,
            1006 if code is None else code,
        )
    if conn.observer is not None:
        conn.observer.request_done(_GET, 101, seconds, "websocket")


# The method as the session keeps it: one shared string rather than one per request.
_GET = "GET"


async def _handshake(
    conn: Connection,
    hook: HandshakeHook | None,
    config: WebSocketConfig,
    parser: RequestParser,
) -> tuple[HandshakeRequest, bytes, Accepted] | None:
    stream = conn.stream
    try:
        head = None
        while head is None:
            data = await stream.receive_some(parser.read_size)
            if not data:
                return None
            head = parser.feed(data)
        # An opening handshake has no body (RFC 6455 §4.1): bytes after its
        # head are frames, so a head that frames a body is refused, not guessed at.
        if request_framing(head.fields, head.http_version).kind != Framing.NONE:
            raise HeadError("an opening handshake has no body")
    except (HeadError, FramingError) as exc:
        await stream.send_all(simple_response(exc.status, body=f"{exc}\n".encode()))
        return None
    checked: ClientOffer | Rejection = validate_request(
        head.method, head.fields, http_version=head.http_version
    )
    if isinstance(checked, Rejection):
        await stream.send_all(checked.response())
        return None
    request = HandshakeRequest(
        path=head.target.decode("latin-1"),
        headers=tuple(head.fields),
        client=conn.client,
        server=conn.server,
        method=_GET,
    )
    rest = parser.rest
    del head, parser
    decision: Accept | Reject = Accept() if hook is None else await hook(request)
    if isinstance(decision, Reject):
        try:
            refusal = simple_response(decision.status, list(decision.headers), decision.body)
        except ValueError:
            logger.exception("handshake hook returned an invalid Reject")
            refusal = simple_response(500, body=b"internal error\n")
        await stream.send_all(refusal)
        return None
    try:
        result = accept(
            checked,
            subprotocol=decision.subprotocol,
            config=config,
            extra_headers=decision.headers,
        )
    except ValueError:
        logger.exception("handshake hook returned an invalid Accept")
        await stream.send_all(simple_response(500, body=b"internal error\n"))
        return None
    await stream.send_all(result.head())
    return request, rest, result
