"""The trio connection loop: one per connection, requests answered in order.

The loop reads, feeds the sans-I/O :class:`~._protocol.ServerProtocol`,
calls the handler and writes what the protocol object gives back; every
decision about the wire (parsing, framing, keep-alive, error statuses) is the
protocol object's. The handler runs in the connection's own task (no task per
request), and the body is pulled from the protocol object as the handler
reads it. A handler's result is a :class:`Response`, a
:class:`DirectResponse`, whose coroutine the loop awaits with a
:class:`ResponseWriter` (the handler's code writes the response itself, still
in this task), or a :class:`Takeover`, which gets the raw stream plus every
byte read past the request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Coroutine, Sequence
from typing import Any, final

import trio

from ..core import Connection
from ._config import HTTPConfig
from ._errors import ClientDisconnected, HTTPError, RequestTimeout
from ._headers import Headers, HeadersLike
from ._protocol import NEED_DATA, IncompleteBody, Phase, ProtocolError, RequestHead, ServerProtocol
from ._request import _UNKNOWN as _UNKNOWN_UPGRADE
from ._request import Request
from ._response import DirectResponse, Response
from ._router import Handler, error_response
from ._takeover import Takeover, TakeoverOutcome

__all__ = ["ResponseWriter", "serve_http_connection"]

logger = logging.getLogger("trio_upgrade.http")
access_logger = logging.getLogger("trio_upgrade.access")

# Sent in one send_all with the head when the body is no larger than this;
# larger bodies go in a second write rather than being copied into the head.
_COALESCE_LIMIT = 16 * 1024
# After an error response we read (and discard) what the client still sends, for
# at most this long, so that closing does not reset the connection under the
# response (RFC 9112 §9.6, "lingering close").
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 64 * 1024
# When a graceful shutdown finds the connection between requests, what the
# client already sent is still read: trio has no non-blocking read, so the read
# gets this long. A read of bytes already there returns at once; the window
# also catches a request still in flight from a client that sends its next
# request as soon as a response arrives (wrk -c100 under SIGTERM on a loaded
# 2-core box, three runs each: 0-27 of 100 connections missed a 5 ms window,
# 0-7 a 50 ms one; without the read, all 100 lost a request). A connection
# with nothing pending is half-closed after it.
_DRAIN_PROBE_SECONDS = 0.05


# Whether a socket is a file descriptor that os.read and os.write take (not on
# Windows, where a socket is a handle): the loop's own socket I/O needs it.
_FD_SOCKETS = os.name == "posix"
_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable
_checkpoint_if_cancelled = trio.lowlevel.checkpoint_if_cancelled
_cancel_shielded_checkpoint = trio.lowlevel.cancel_shielded_checkpoint
_checkpoint = trio.lowlevel.checkpoint


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else trio.current_time() + timeout


# What the current wait is, for the watchdog: when its deadline passes, the
# connection ends (after a 408 for a head that came too slowly).
_NOT_WAITING, _IDLE, _HEAD, _WRITE = 0, 1, 2, 3


# A takeover ready to run: the handler's Takeover, its request, the bytes read
# past it, and when the request began (see _HTTPConnection._timed).
_Handover = tuple[Takeover, Request, bytes, float]


class _Abort(Exception):
    """Stop serving this connection without answering (peer gone, write failed)."""


@final
class _Body:
    """The body source of one request, valid until its response is finished."""

    __slots__ = ("done", "owner", "received", "started", "timed_out")

    def __init__(self, owner: _HTTPConnection, done: bool) -> None:
        self.owner: _HTTPConnection | None = owner
        # True once the body was read to its end (or there is none).
        self.done = done
        # Body bytes handed out so far, to tell how much is left unread.
        self.received = 0
        # When the handler first asked for the body (for min_body_rate).
        self.started: float | None = None
        # True after a body read timed out: the client is too slow to drain.
        self.timed_out = False

    async def receive_body(self) -> bytes:
        owner = self.owner
        if owner is None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("the request body can only be read while the request is handled")
        if self.done:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await owner.receive_body_chunk(self)
        except RequestTimeout:
            self.timed_out = True
            raise
        if not data:
            self.done = True
        self.received += len(data)
        return data


@final
class _HTTPConnection:
    __slots__ = (
        "_deadline",
        "_expired",
        "_idle",
        "_now",
        "_period",
        "_scope",
        "_sock",
        "_timed",
        "_unchecked",
        "_waiting",
        "_watchdog_scope",
        "app",
        "config",
        "conn",
        "proto",
        "requests",
        "scheme",
        "stream",
    )

    def __init__(self, conn: Connection, app: Handler, config: HTTPConfig) -> None:
        self.conn = conn
        self.stream = conn.stream
        self.app = app
        self.config = config
        self.proto = ServerProtocol(
            max_head_size=config.max_header_size,
            date=config.date_header,
            server=None if config.server_header is None else config.server_header.encode("latin-1"),
            parser=config.resolved_parser,
        )
        self.scheme = "https" if conn.tls else "http"
        # On plain TCP the loop reads and writes the socket's descriptor
        # itself, one scheduler pass per request instead of trio's two (see
        # docs/architecture.md, "Fast paths and why"); None for any other
        # stream (TLS, in-memory) or platform (Windows), which goes through
        # the stream's own methods.
        self._sock = (
            self.stream.socket if _FD_SOCKETS and type(self.stream) is trio.SocketStream else None
        )
        # True after the last write of a response returned without a schedule
        # point: the loop owes one before it answers another request without
        # reading first (a read that waits is one).
        self._unchecked = False
        # Requests answered so far on this connection.
        self.requests = 0
        # Whether each request is timed and reported when answered: for the
        # access log, or for the server's observer (metrics). Without either,
        # the request path reads no clock.
        self._timed = config.access_log or conn.observer is not None
        # Timeouts of the per-request waits (idle, head, write) are enforced by
        # one watchdog task per connection instead of a cancel scope per wait,
        # which would cost more than the rest of the request. The hot path only
        # stores a deadline; the watchdog cancels the connection's scope when the
        # deadline of the current wait passes, and the connection then ends.
        self._deadline = math.inf
        self._waiting = _NOT_WAITING
        # The wait whose deadline passed (_NOT_WAITING: none, or a drain).
        self._expired = _NOT_WAITING
        # True while waiting between requests with nothing received (the only
        # wait a graceful shutdown cancels), and after a drain ended that wait.
        self._idle = False
        self._scope = trio.CancelScope()
        self._watchdog_scope = trio.CancelScope()
        # trio.current_time() without its two layers of indirection.
        self._now = trio.lowlevel.current_clock().current_time
        timeouts = [
            t
            for t in (config.header_timeout, config.keepalive_timeout, config.write_timeout)
            if t is not None
        ]
        # The watchdog never sleeps longer than the shortest timeout, so a new
        # deadline can never be earlier than its next wake-up.
        self._period = max(min(timeouts), 0.01) if timeouts else None

    # Reading -----------------------------------------------------------------

    async def _receive(self, deadline: float) -> bytes:
        """One read from the stream; ``b""`` at EOF or when the peer is gone."""
        try:
            with trio.CancelScope(deadline=deadline) as scope:
                data = await self.stream.receive_some(self.config.read_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        if scope.cancelled_caught:
            raise TimeoutError
        return bytes(data)

    async def _receive_pending(self) -> bytes:
        """What the client already sent, without waiting for more (see _DRAIN_PROBE_SECONDS)."""
        with trio.move_on_after(_DRAIN_PROBE_SECONDS):
            try:
                return bytes(await self.stream.receive_some(self.config.read_size))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        return b""

    async def _watchdog(self, period: float, scope: trio.CancelScope) -> None:
        # The scope comes as an argument: a takeover may have dropped the
        # attribute before this task first runs.
        with scope:
            while True:
                now = trio.current_time()
                deadline = self._deadline
                if deadline <= now:
                    self._expired = self._waiting
                    self._scope.cancel()
                    return
                await trio.sleep_until(min(deadline, now + period))

    async def _next_request(self) -> RequestHead | None:
        """Read the next request head; ``None`` when the connection should end.

        Waits at most ``keepalive_timeout`` (``header_timeout`` for the first
        request) for the request to start, cancelled at once by a graceful
        shutdown, then ``header_timeout`` for the rest of the head.
        """
        proto = self.proto
        config = self.config
        head_deadline: float | None = None
        conn = self.conn
        shutdown = conn.shutdown
        # While no request is in progress, a full server may shed this
        # connection to make room (docs/core.md, "Limits and shedding").
        conn.sheddable = True
        while True:
            try:
                head = proto.next_request()
            except ProtocolError as exc:
                conn.sheddable = False
                await self._send_error(exc.status, str(exc))
                return None
            if head is not NEED_DATA:
                if self._unchecked:
                    # A head already read, after a response written without
                    # a schedule point: the one owed (see _send).
                    self._unchecked = False
                    await trio.lowlevel.checkpoint()
                # Never shed a request in progress; one shed just before its
                # head completed ends here (the cancel is already on its way).
                conn.sheddable = False
                if conn.shed:
                    return None
                return head
            idle = head_deadline is None and not proto.has_buffered_data
            if idle:
                # Idle: no byte of the next request yet. A graceful shutdown
                # cancels this wait (and run() reads what had already come),
                # unless it keeps idle connections (a rolling restart): then
                # the next request is answered, with "Connection: close".
                first = self.requests == 0
                timeout = config.header_timeout if first else config.keepalive_timeout
                deadline = math.inf if timeout is None else self._now() + timeout
                self._idle = True
                shutdown.cancel_on_drain(self._scope)
                self._waiting = _IDLE
            else:
                if head_deadline is None:
                    head_deadline = _deadline(config.header_timeout)
                deadline = head_deadline
                self._waiting = _HEAD
            # One read under the watchdog. Here rather than in a helper: every
            # frame between the task and the socket is walked at each wake-up.
            self._deadline = deadline
            sock = self._sock
            try:
                if sock is None:
                    data = bytes(await self.stream.receive_some(config.read_size))
                else:
                    got: bytes | None = None
                    if idle:
                        # Between requests: a read without waiting first (after
                        # the schedule point the last write skipped, if it did).
                        # Under load the client's next request has come while
                        # the other connections took their turn, and the wait
                        # (an epoll_ctl and trio's bookkeeping) is not needed.
                        if self._unchecked:
                            self._unchecked = False
                            await _checkpoint()
                        try:
                            got = os.read(sock.fileno(), config.read_size)
                        except BlockingIOError:  # not contextlib.suppress: two calls a read
                            got = None
                    else:
                        self._unchecked = False
                    while got is None:
                        # A checkpoint, whether or not the bytes are there already.
                        await _wait_readable(sock)
                        # The descriptor is read afresh each time: -1 once
                        # closed (EBADF below), never a number reused by
                        # another socket.
                        try:
                            got = os.read(sock.fileno(), config.read_size)
                        except BlockingIOError:  # not contextlib.suppress: two calls a read
                            got = None
                    data = got
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            finally:
                self._waiting = _NOT_WAITING
                self._deadline = math.inf
                if idle:
                    shutdown.forget(self._scope)
            if idle:
                if not data:
                    self._idle = False
                    return None
                if self._expired or shutdown.closing_idle:
                    # The scope was cancelled as the read completed (by the
                    # watchdog, which sets _expired first, or the drain; the
                    # two tests are cheaper than the scope's cancel_called):
                    # it would cancel this request's handler at its first
                    # checkpoint. Keep the bytes; run() serves them under a
                    # fresh scope.
                    proto.receive_data(data)
                    return None
                self._idle = False
                # The first head must be complete header_timeout after the
                # accept (a byte just before the deadline must not restart it).
                if first:
                    head_deadline = deadline
                else:
                    timeout = config.header_timeout
                    head_deadline = math.inf if timeout is None else self._now() + timeout
            proto.receive_data(data)

    async def receive_body_chunk(self, body: _Body) -> bytes:
        """The next piece of the current request's body; ``b""`` at its end.

        Each read waits at most ``body_timeout``; with ``min_body_rate``, the
        whole body must also keep up that average rate once ``body_timeout``
        has passed since the handler first asked for it.
        """
        proto = self.proto
        if proto.expects_continue:
            await self._send(proto.send_continue())
        config = self.config
        while True:
            try:
                data = proto.next_body_data()
            except ProtocolError as exc:
                # Malformed chunked framing: a 400 if the handler lets this
                # propagate before its response started; the connection closes.
                raise HTTPError(exc.status, f"Malformed request body: {exc}") from None
            except IncompleteBody as exc:
                raise ClientDisconnected(str(exc)) from None
            if data is not NEED_DATA:
                return data
            timeout = config.body_timeout
            deadline = math.inf
            if timeout is not None:
                now = self._now()
                deadline = now + timeout
                rate = config.min_body_rate
                if rate is not None:
                    if body.started is None:
                        body.started = now
                    deadline = min(deadline, body.started + timeout + body.received / rate)
            try:
                received = await self._receive(deadline)
            except TimeoutError:
                raise RequestTimeout("Timed out reading the request body") from None
            proto.receive_data(received)

    # Writing -----------------------------------------------------------------

    async def _send(self, data: bytes, last: bool = False) -> None:
        """Write *data* (a checkpoint, as ``send_all``), within ``write_timeout``.

        *last*: the last write of a response, after which the loop reads the
        next request. On a socket it then skips the schedule point when the
        kernel takes every byte at once: the loop owes one (``_unchecked``),
        and its next read, which waits, is it.
        """
        if not data:
            return
        sock = self._sock
        if sock is None:
            await self._send_stream(data)
            return
        if not last:
            await _checkpoint_if_cancelled()
        try:
            sent = os.write(sock.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.proto.response_failed()
            raise _Abort from None
        if sent < len(data):
            await self._send_rest(sock, data, sent)
        elif last:
            self._unchecked = True
        else:
            await _cancel_shielded_checkpoint()

    def _start_write_timeout(self) -> None:
        timeout = self.config.write_timeout
        if timeout is not None:
            self._deadline = self._now() + timeout
            self._waiting = _WRITE

    async def _send_stream(self, data: bytes) -> None:
        """:meth:`_send` on a stream other than a plain socket."""
        self._start_write_timeout()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.proto.response_failed()
            raise _Abort from None
        finally:
            self._waiting = _NOT_WAITING
            self._deadline = math.inf

    async def _send_rest(self, sock: trio.socket.SocketType, data: bytes, sent: int) -> None:
        """Write what the kernel did not take at once, as it makes room.

        The write timeout starts here, at the first wait: a write the kernel
        takes at once (microseconds) needs no deadline.
        """
        self._start_write_timeout()
        view = memoryview(data)
        try:
            while sent < len(view):
                await _wait_writable(sock)
                with contextlib.suppress(BlockingIOError):
                    sent += os.write(sock.fileno(), view[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.proto.response_failed()
            raise _Abort from None
        finally:
            self._waiting = _NOT_WAITING
            self._deadline = math.inf

    async def _send_response(self, response: Response, head_only: bool, close: bool) -> int:
        """Write *response*; return the number of body bytes sent.

        Raises ``ValueError`` before anything is written when the protocol
        object refuses the response (an invalid header, a wrong length).
        """
        proto = self.proto
        body = response.body
        if isinstance(body, (bytes, bytearray, memoryview)):
            if type(body) is not bytes:
                body = bytes(body)
            raw = response.headers.raw
            head, data = proto.respond(response.status, raw, body, head_only, close)
            if len(data) <= _COALESCE_LIMIT:
                await self._send(head + data, True)
            else:
                await self._send(head)
                await self._send(data, True)
            return len(body) if data else 0
        # Streamed body.
        sent = 0
        aclose = getattr(body, "aclose", None)
        try:
            await self._send(
                proto.start_response(
                    response.status, response.headers.raw, None, head_only=head_only, close=close
                )
            )
            if proto.response_has_body:
                async for chunk in body:
                    if chunk:
                        await self._send(
                            proto.send_body(chunk if type(chunk) is bytes else bytes(chunk))
                        )
                        sent += len(chunk)
            await self._send(proto.end_response())
        finally:
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        return sent

    async def _send_error(self, status: int, detail: str) -> None:
        """Answer a request we could not take (bad head, timeout) and close."""
        proto = self.proto
        if proto.response_started:
            return
        logger.debug("answering %d and closing: %s", status, detail)
        try:
            await self._send(proto.error_response(status))
        except _Abort:
            return
        await self._linger()

    async def _linger(self) -> None:
        """Half-close, then discard what the peer still sends, briefly (see above)."""
        stream = self.stream
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            with trio.move_on_after(_LINGER_SECONDS):
                received = 0
                while received < _LINGER_BYTES:
                    data = await stream.receive_some(self.config.read_size)
                    if not data:
                        break
                    received += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    # The loop ----------------------------------------------------------------

    async def run(self) -> None:
        if self._period is not None:
            self.conn.nursery.start_soon(self._watchdog, self._period, self._watchdog_scope)
        proto = self.proto
        # The request loop lives here rather than in a helper: every frame
        # between the connection task and a socket call is walked again each
        # time the task sleeps and wakes, several times per request.
        takeover: _Handover | None = None
        try:
            while True:
                with self._scope:
                    while True:
                        head = await self._next_request()
                        if head is None:
                            break
                        outcome = await self._handle(head)
                        if outcome is not True:
                            if outcome is not False:
                                takeover = outcome
                            break
                        if not proto.next_cycle():
                            break
                if not self._idle or self._expired:
                    break
                # A graceful shutdown found the connection between requests.
                # Bytes of a next request may have arrived already (the client
                # sent it as the previous response reached it): that request
                # is answered, with "Connection: close"; otherwise close now.
                self._idle = False
                if not proto.has_buffered_data:
                    data = await self._receive_pending()
                    if not data:
                        # Nothing came: close now, but lingering, so that a
                        # request crossing our FIN finds a clean end of stream
                        # (the client may retry it, RFC 9112 §9.3.1) rather
                        # than a reset.
                        await self._linger()
                        return
                    proto.receive_data(data)
                self._scope = trio.CancelScope()
        except _Abort:
            return
        finally:
            self._watchdog_scope.cancel()
        if takeover is not None:
            # Run from this frame, with the protocol object and the request
            # loop gone: a takeover (a WebSocket session) may stay idle for
            # hours, and whatever this connection still holds is held that long.
            # So are the last head, the cancel scopes and the clock method. The
            # watchdog, cancelled already, may still wake once: with no deadline
            # it reads no scope.
            self._deadline = math.inf
            del self.proto, proto, head, outcome
            del self._scope, self._watchdog_scope, self._now
            handler, request, prefetched, started = takeover
            takeover = None
            stream = self.stream
            try:
                ended = await handler.take_over(stream, prefetched, request)
                if type(ended) is TakeoverOutcome and self._timed:
                    self._report(request, ended.status, ended.sent, started, ended)
            except Exception:
                logger.exception("takeover for %s %s failed", request.method, request.target)
            finally:
                await trio.aclose_forcefully(stream)
            return
        if not self._scope.cancelled_caught:
            return
        expired = self._expired
        if expired == _WRITE:
            # send_all is not cancel-safe: part of the data may be gone.
            proto.response_failed()
        elif expired == _HEAD:
            with trio.move_on_after(self.config.write_timeout or _LINGER_SECONDS):
                await self._send_error(408, "Timed out waiting for the request head")
        # _IDLE (keep-alive timeout): just close.

    async def _handle(self, head: RequestHead) -> bool | _Handover:
        """Answer one request; return whether the connection may carry another,
        or, for a takeover, what :meth:`run` hands the connection to."""
        proto = self.proto
        conn = self.conn
        config = self.config
        started = time.perf_counter() if self._timed else 0.0
        body_source = _Body(self, proto.body_done)
        method = head.method.decode("ascii")
        version = head.http_version
        request = Request.__new__(Request)
        request._set_fields(
            method,
            head.target.decode("latin-1"),
            Headers.from_raw(head.headers),
            body_source,
            "1.1" if version == b"1.1" else version.decode("ascii"),
            conn.client,
            conn.server,
            self.scheme,
            config.max_body_size,
            conn,
            # A request without an Upgrade header (nor CONNECT) needs no
            # header scan to know it is not an upgrade.
            _UNKNOWN_UPGRADE if head.upgrade else None,
        )
        head_only = method == "HEAD"
        self.requests += 1
        try:
            result = await self.app(request)
        except HTTPError as exc:
            result = error_response(exc.status, exc.detail, exc.headers)
        except ClientDisconnected:
            return False
        except _Abort:
            raise
        except Exception:
            logger.exception("error in handler for %s %s", method, request.target)
            result = error_response(500, None)

        if type(result) is not Response:
            if type(result) is DirectResponse:
                return await self._write_direct(result, request, body_source, head_only, started)
            if isinstance(result, Response):
                pass
            elif isinstance(result, Takeover):
                prefetched = await self._prepare_takeover(request, body_source)
                return False if prefetched is None else (result, request, prefetched, started)
            else:
                logger.error(
                    "handler for %s %s returned %r, not a Response or a Takeover",
                    method,
                    request.target,
                    result,
                )
                result = error_response(500, None)
        response: Response = result
        if proto.failed:
            # A write (a "100 Continue") already failed: the connection is dead.
            return False

        close = conn.shutdown.draining or (
            config.max_requests_per_connection is not None
            and self.requests >= config.max_requests_per_connection
        )
        body_done = proto.body_done
        if not body_done and not close:
            # The body was not read to its end. If the client still waits for
            # "100 Continue" it may never send it: don't wait to find out. A
            # client that timed out, a body whose framing broke, or a rest
            # known to be past max_drain_size cannot be drained either: say so
            # with "Connection: close".
            close = (
                proto.expects_continue
                or body_source.timed_out
                or proto.phase is not Phase.REQUEST
                or not self._may_drain(request, body_source)
            )
        try:
            sent = await self._send_response(response, head_only, close)
        except _Abort:
            raise
        except Exception:
            body_source.owner = None
            if not proto.response_started:
                # The protocol object refused the response itself (a CR/LF in
                # a header value, a Content-Length that doesn't match the
                # body): nothing went out, so the client can still get an
                # honest 500.
                logger.exception("invalid response to %s %s", method, request.target)
                await self._send(proto.error_response(500))
                return False
            # The body iterator failed after the head was sent: the only honest
            # thing left is to cut the connection short.
            proto.response_failed()
            logger.exception("error while streaming the response to %s %s", method, request.target)
            return False
        if self._timed:
            self._report(request, response.status, sent, started)
        if not proto.body_done:
            return await self._finish_body(body_source)
        body_source.owner = None
        return True

    async def _write_direct(
        self,
        direct: DirectResponse,
        request: Request,
        body_source: _Body,
        head_only: bool,
        started: float,
    ) -> bool:
        """Await a DirectResponse's coroutine with a writer; then as :meth:`_handle`."""
        proto = self.proto
        writer = ResponseWriter(self, request, body_source, head_only, direct.headers.raw)
        try:
            await direct.write(writer)
        except _Abort:
            raise
        except Exception as exc:
            state = writer._state
            writer._conn = None
            if state == _W_FAILED or proto.failed:
                # The client is gone (the writer raised ClientDisconnected), or
                # the response was abandoned: nothing to tell anyone.
                body_source.owner = None
                return False
            if state == _W_IDLE:
                if isinstance(exc, ClientDisconnected):
                    body_source.owner = None
                    return False
                if isinstance(exc, HTTPError):
                    response = error_response(exc.status, exc.detail, exc.headers)
                else:
                    logger.exception("error in handler for %s %s", request.method, request.target)
                    response = error_response(500, None)
                return await self._answer_direct_failure(
                    response, request, body_source, head_only, started
                )
            proto.response_failed()
            body_source.owner = None
            logger.exception(
                "error while writing the response to %s %s", request.method, request.target
            )
            return False
        state = writer._state
        writer._conn = None
        if state != _W_ENDED:
            if state == _W_IDLE:
                logger.error(
                    "DirectResponse for %s %s returned without writing a response",
                    request.method,
                    request.target,
                )
                return await self._answer_direct_failure(
                    error_response(500, None), request, body_source, head_only, started
                )
            if state == _W_STARTED:
                logger.error(
                    "DirectResponse for %s %s returned before ending its response; "
                    "closing the connection",
                    request.method,
                    request.target,
                )
                proto.response_failed()
            body_source.owner = None
            return False
        if self._timed:
            self._report(request, writer.status, writer.sent, started)
        if not proto.body_done:
            return await self._finish_body(body_source)
        body_source.owner = None
        return True

    async def _finish_body(self, body_source: _Body) -> bool:
        """After a response to a request whose body the handler did not read
        whole: drain it if the connection may be kept (whether it may)."""
        if self.proto.keep_alive and await self._drain(body_source):
            body_source.owner = None
            return True
        body_source.owner = None
        # The client may still be sending: closing now could reset the
        # connection under the response we just sent.
        await self._linger()
        return False

    async def _answer_direct_failure(
        self,
        response: Response,
        request: Request,
        body_source: _Body,
        head_only: bool,
        started: float,
    ) -> bool:
        """A DirectResponse failed before its head: answer *response* instead,
        as for a handler that raised; whether the connection may go on."""
        proto = self.proto
        if proto.failed:
            body_source.owner = None
            return False
        sent = await self._send_response(
            response, head_only, self._close_after(request, body_source)
        )
        if self._timed:
            self._report(request, response.status, sent, started)
        if not proto.body_done and (not proto.keep_alive or not await self._drain(body_source)):
            body_source.owner = None
            await self._linger()
            return False
        body_source.owner = None
        return True

    def _close_after(self, request: Request, body: _Body) -> bool:
        """Whether the connection must close after the response now starting
        (the same decision :meth:`_handle` makes for a Response)."""
        config = self.config
        proto = self.proto
        if self.conn.shutdown.draining or (
            config.max_requests_per_connection is not None
            and self.requests >= config.max_requests_per_connection
        ):
            return True
        if proto.body_done:
            return False
        return (
            proto.expects_continue
            or body.timed_out
            or proto.phase is not Phase.REQUEST
            or not self._may_drain(request, body)
        )

    def _may_drain(self, request: Request, body: _Body) -> bool:
        """Whether the unread rest of the body may fit in ``max_drain_size``."""
        declared = request.headers.get("content-length")
        if declared is None:
            # Chunked: unknown until drained.
            return self.config.max_drain_size > 0
        return int(declared) - body.received <= self.config.max_drain_size

    async def _drain(self, body: _Body) -> bool:
        """Discard the unread rest of the body, up to ``max_drain_size``."""
        remaining = self.config.max_drain_size
        try:
            while remaining >= 0:
                chunk = await body.receive_body()
                if not chunk:
                    return True
                remaining -= len(chunk)
        except (HTTPError, ClientDisconnected):
            return False
        return False

    async def _prepare_takeover(self, request: Request, body: _Body) -> bytes | None:
        """End HTTP on this connection; the bytes read past the request, or ``None``
        when the request could not be completed (answered with 413)."""
        # The request (and any body) must be complete so that the parser's
        # buffer holds exactly the bytes sent after it.
        if not body.done and not await self._drain(body):
            await self._send_error(413, "Request body too large before a takeover")
            return None
        body.owner = None
        # HTTP timeouts end here: the takeover owns the connection from now on.
        self._watchdog_scope.cancel()
        return self.proto.trailing_data

    def _report(
        self,
        request: Request,
        status: int,
        size: int,
        started: float,
        outcome: TakeoverOutcome | None = None,
    ) -> None:
        """Write the access-log line and tell the observer: *request* was answered."""
        seconds = time.perf_counter() - started
        if self.config.access_log:
            client = self.conn.client
            peer = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else (client or "-")
            if outcome is not None and outcome.close_code is not None:
                # A session (an accepted WebSocket): its close code, no size.
                access_logger.info(
                    '%s "%s %s HTTP/%s" %d %s %.1fms close %s',
                    peer,
                    request.method,
                    request.target,
                    request.http_version,
                    status,
                    "-",
                    seconds * 1000,
                    outcome.close_code,
                )
            else:
                access_logger.info(
                    '%s "%s %s HTTP/%s" %d %d %.1fms',
                    peer,
                    request.method,
                    request.target,
                    request.http_version,
                    status,
                    size,
                    seconds * 1000,
                )
        observer = self.conn.observer
        if observer is not None:
            observer.request_done(request.method, status, seconds, request.upgrade)


# ResponseWriter states.
_W_IDLE, _W_STARTED, _W_ENDED, _W_FAILED = 0, 1, 2, 3


@final
class ResponseWriter:
    """Writes one response from a :class:`DirectResponse`'s coroutine.

    Either :meth:`respond` (a whole response, one write with
    ``Content-Length``), or :meth:`start`, any number of :meth:`send` and
    :meth:`end`. The server adds ``Date``, ``Server``, the framing (chunked
    coding without a ``Content-Length`` header; the end of the connection for
    an HTTP/1.0 client) and ``Connection: close`` when it must; for ``HEAD``
    the body is discarded. Each write goes straight to the socket and returns
    once the kernel took it, so a slow client slows the writer (bounded by
    ``write_timeout``, which ends the connection).

    The request body can still be read while writing (full duplex). One task
    at a time may write; reading and writing may happen in two tasks.

    Errors: ``RuntimeError`` on misuse (a second head, a write before
    :meth:`start` or after :meth:`end`, a writer kept past its coroutine, two
    tasks writing at once); ``ValueError`` before anything is written when the
    head is invalid, and on a body longer or shorter than its
    ``Content-Length``; :class:`ClientDisconnected` once a write failed (the
    client is gone, nothing more can be written).
    """

    __slots__ = (
        "_body",
        "_busy",
        "_conn",
        "_extra",
        "_head_only",
        "_request",
        "_state",
        "sent",
        "status",
    )

    def __init__(
        self,
        conn: _HTTPConnection,
        request: Request,
        body: _Body,
        head_only: bool,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self._conn: _HTTPConnection | None = conn
        # The DirectResponse's own headers (middleware's), added to the head.
        self._extra = extra
        self._request = request
        self._body = body
        self._head_only = head_only
        self._state = _W_IDLE
        # True while a write is in progress (two tasks must not interleave bytes).
        self._busy = False
        #: The status sent (0 before the head).
        self.status = 0
        #: Body bytes written so far (before framing).
        self.sent = 0

    @property
    def started(self) -> bool:
        """Whether the head was sent (or a write of it failed)."""
        return self._state != _W_IDLE

    @property
    def ended(self) -> bool:
        """Whether the response is complete."""
        return self._state == _W_ENDED

    def _owner(self, *allowed: int) -> _HTTPConnection:
        conn = self._conn
        if conn is None:
            raise RuntimeError("a ResponseWriter is only valid while its DirectResponse runs")
        if self._busy:
            raise RuntimeError("another task is writing this response")
        state = self._state
        if state not in allowed:
            if state == _W_FAILED:
                raise ClientDisconnected("the response can no longer be written")
            if state == _W_ENDED:
                raise RuntimeError("the response is already complete")
            if state == _W_STARTED:
                raise RuntimeError("the response head was already sent")
            raise RuntimeError("start() the response before sending its body")
        return conn

    async def _write(self, conn: _HTTPConnection, data: bytes) -> None:
        self._busy = True
        try:
            await conn._send(data)
        except _Abort:
            self._state = _W_FAILED
            raise ClientDisconnected("the client disconnected during the response") from None
        finally:
            self._busy = False

    def _fields(self, headers: HeadersLike | None) -> Sequence[tuple[bytes, bytes]]:
        if headers is None:
            fields: Sequence[tuple[bytes, bytes]] = ()
        elif type(headers) is Headers:
            fields = headers.raw
        else:
            fields = Headers(headers).raw
        extra = self._extra
        if not extra:
            return fields
        own = {name for name, _ in fields}
        return [*fields, *(field for field in extra if field[0] not in own)]

    async def respond(
        self, status: int = 200, headers: HeadersLike | None = None, body: bytes = b""
    ) -> None:
        """Send a whole response: head and *body*, with its ``Content-Length``.

        On a socket that takes the whole response at once it returns without
        a checkpoint: the connection's next read, right after, is one. When it
        has to wait for the client it is a checkpoint, as ``send_all`` is.
        """
        conn = self._conn
        if conn is None or self._busy or self._state != _W_IDLE:
            conn = self._owner(_W_IDLE)  # raises, saying why
        if not 200 <= status <= 999:
            raise ValueError(f"invalid final status {status} (the server sends 1xx itself)")
        if type(body) is not bytes:
            body = bytes(body)
        close = conn._close_after(self._request, self._body)
        head, data = conn.proto.respond(status, self._fields(headers), body, self._head_only, close)
        self.status = status
        self._state = _W_STARTED
        if len(data) <= _COALESCE_LIMIT:
            # The common case, without _write's frame: every frame between the
            # connection's task and the socket is walked at each switch.
            self._busy = True
            try:
                await conn._send(head + data, True)
            except _Abort:
                self._state = _W_FAILED
                raise ClientDisconnected("the client disconnected during the response") from None
            finally:
                self._busy = False
        else:
            await self._write(conn, head)
            await self._write(conn, data)
        self.sent = len(body) if data else 0
        self._state = _W_ENDED

    async def start(self, status: int = 200, headers: HeadersLike | None = None) -> None:
        """Send the head now; the body follows with :meth:`send` and :meth:`end`."""
        conn = self._owner(_W_IDLE)
        if not 200 <= status <= 999:
            raise ValueError(f"invalid final status {status} (the server sends 1xx itself)")
        close = conn._close_after(self._request, self._body)
        head = conn.proto.start_response(
            status, self._fields(headers), None, head_only=self._head_only, close=close
        )
        self.status = status
        self._state = _W_STARTED
        await self._write(conn, head)

    async def send(self, data: bytes) -> None:
        """Write *data* as the next piece of the body (nothing for ``HEAD``)."""
        conn = self._owner(_W_STARTED)
        if self._head_only or not data:
            await trio.lowlevel.checkpoint()
            return
        if type(data) is not bytes:
            data = bytes(data)
        await self._write(conn, conn.proto.send_body(data))
        self.sent += len(data)

    async def end(self) -> None:
        """End the body (the last chunk of a chunked one)."""
        conn = self._owner(_W_STARTED)
        data = conn.proto.end_response()
        if data:
            await self._write(conn, data)
        else:
            await trio.lowlevel.checkpoint()
        self._state = _W_ENDED

    def abort(self) -> None:
        """Give up on this response: nothing more is written and the connection
        closes once the coroutine returns (a client cannot mistake what it got
        for a complete response). Does nothing once the response is complete."""
        conn = self._conn
        if conn is None or self._state == _W_ENDED:
            return
        self._state = _W_FAILED
        conn.proto.response_failed()

    def __repr__(self) -> str:
        state = ("idle", "started", "ended", "failed")[self._state]
        return f"<ResponseWriter {state}>"


def serve_http_connection(
    conn: Connection, app: Handler, config: HTTPConfig | None = None
) -> Coroutine[Any, Any, None]:
    """Serve HTTP/1.1 on *conn* with *app* until the connection ends.

    Keep-alive, pipelining (answered in order), HTTP/1.0, ``Expect:
    100-continue`` (100 sent when the handler first reads the body), HEAD,
    timeouts and limits from *config*. Requests framed two ways (RFC 9112
    §6.3) and malformed heads are answered with 4xx (or 501) and the
    connection closes. Returns when the peer closes, a limit or timeout ends
    the connection, graceful shutdown closes it, or a takeover finishes. The
    stream is closed by whoever owns it (the server), except after a takeover,
    which closes it itself.

    Call and await it like a coroutine function: ``await
    serve_http_connection(conn, app)`` (it returns the connection loop's
    coroutine itself, one frame less on every wake-up).
    """
    return _HTTPConnection(conn, app, config or HTTPConfig()).run()
