"""The h11 server loop: one per connection, requests answered in order.

The handler runs in the connection's own task (no task per request), and the
body is pulled from h11 as the handler reads it. A handler's result is either a
:class:`Response`, written through h11, or a :class:`Takeover`, which gets the
raw stream plus every byte h11 read past the request.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Coroutine
from email.utils import formatdate
from typing import Any, final

import h11
import trio

from ..core import Connection
from ._config import HTTPConfig
from ._errors import ClientDisconnected, HTTPError, RequestTimeout
from ._headers import Headers
from ._request import _UNKNOWN as _UNKNOWN_UPGRADE
from ._request import Request
from ._response import Response, reason_phrase
from ._router import Handler, error_response
from ._takeover import Takeover

__all__ = ["serve_http_connection"]

logger = logging.getLogger("trio_upgrade")
access_logger = logging.getLogger("trio_upgrade.access")

# Sent in one send_all with the head when the body is no larger than this;
# larger bodies go in a second write rather than being copied into the head.
_COALESCE_LIMIT = 16 * 1024
# After an error response we read (and discard) what the client still sends, for
# at most this long, so that closing does not reset the connection under the
# response (RFC 9112 §9.6, "lingering close").
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 64 * 1024

# Responses that never have a body: a Content-Length would be wrong in a 204
# (RFC 9110 §8.6) and, in a 304, would describe a representation we don't know.
_NO_BODY_STATUSES = frozenset({204, 304})

# Written without h11 when h11 has refused the handler's response.
_RAW_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 26\r\n"
    b"connection: close\r\n\r\n"
    b"500 Internal Server Error\n"
)

# What a response header may hold (RFC 9110 §5.1 token, §5.5 field-value with
# obs-text): checked on every response, so that a CR or LF from a handler can
# never split the head, whether h11 writes it or we do.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*)?")

# h11 events are immutable: one EndOfMessage serves every response.
_END = h11.EndOfMessage()

_REASONS: dict[int, bytes] = {}
_date_cache: tuple[int, bytes] = (0, b"")


def _reason(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        reason = _REASONS[status] = reason_phrase(status).encode("ascii")
    return reason


def _http_date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else trio.current_time() + timeout


def _head_size(event: h11.Request) -> int:
    """Bytes of the request head as sent (request line, fields, CRLFs), near enough.

    h11 bounds only a head still incomplete; one that arrives whole in a single
    read is parsed whatever its size, so the limit is checked again here.
    """
    size = len(event.method) + len(event.target) + 14
    for name, value in event.headers:
        size += len(name) + len(value) + 4
    return size


def _has_body(request: Request) -> bool:
    """Whether the request's framing announces body bytes (RFC 9112 §6.3)."""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


# What the current wait is, for the watchdog: when its deadline passes, the
# connection ends (after a 408 for a head that came too slowly).
_NOT_WAITING, _IDLE, _HEAD, _WRITE = 0, 1, 2, 3


# A takeover ready to run: the handler's Takeover, its request, the bytes read past it.
_Handover = tuple[Takeover, Request, bytes]


class _Abort(Exception):
    """Stop serving this connection without answering (peer gone, write failed)."""


@final
class _Body:
    """The body source of one request, valid until its response is finished."""

    __slots__ = ("done", "owner", "pending", "received", "timed_out")

    def __init__(self, owner: _HTTPConnection) -> None:
        self.owner: _HTTPConnection | None = owner
        # True once h11 produced EndOfMessage for this request.
        self.done = False
        # A first chunk h11 had already buffered when the request arrived.
        self.pending = b""
        # Body bytes handed out so far, to tell how much is left unread.
        self.received = 0
        # True after a body read timed out: the client is too slow to drain.
        self.timed_out = False

    async def receive_body(self) -> bytes:
        owner = self.owner
        if owner is None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("the request body can only be read while the request is handled")
        if self.pending:
            await trio.lowlevel.checkpoint()
            data, self.pending = self.pending, b""
            self.received += len(data)
            return data
        if self.done:
            await trio.lowlevel.checkpoint()
            return b""
        try:
            data = await owner.receive_body_chunk()
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
        "_head_written",
        "_now",
        "_period",
        "_scope",
        "_server_header",
        "_waiting",
        "_watchdog_scope",
        "app",
        "config",
        "conn",
        "h11",
        "requests",
        "scheme",
        "stream",
    )

    def __init__(self, conn: Connection, app: Handler, config: HTTPConfig) -> None:
        self.conn = conn
        self.stream = conn.stream
        self.app = app
        self.config = config
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_size)
        self.scheme = "https" if conn.tls else "http"
        self._server_header = (
            None if config.server_header is None else config.server_header.encode("latin-1")
        )
        # Requests answered so far on this connection.
        self.requests = 0
        # Timeouts of the per-request waits (idle, head, write) are enforced by
        # one watchdog task per connection instead of a cancel scope per wait,
        # which would cost more than the rest of the request. The hot path only
        # stores a deadline; the watchdog cancels the connection's scope when the
        # deadline of the current wait passes, and the connection then ends.
        self._deadline = math.inf
        self._waiting = _NOT_WAITING
        # Whether any byte of the current response went out (see _handle).
        self._head_written = False
        # The wait whose deadline passed (_NOT_WAITING: none, or a drain).
        self._expired = _NOT_WAITING
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

    async def _wait_read(self, waiting: int, deadline: float) -> bytes:
        """One read under the watchdog; ``b""`` at EOF or when the peer is gone."""
        self._deadline = deadline
        self._waiting = waiting
        try:
            return bytes(await self.stream.receive_some(self.config.read_size))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        finally:
            self._waiting = _NOT_WAITING
            self._deadline = math.inf

    async def _watchdog(self, period: float) -> None:
        with self._watchdog_scope:
            while True:
                now = trio.current_time()
                deadline = self._deadline
                if deadline <= now:
                    self._expired = self._waiting
                    self._scope.cancel()
                    return
                await trio.sleep_until(min(deadline, now + period))

    async def _next_request(self) -> h11.Request | None:
        """Read the next request head; ``None`` when the connection should end.

        Waits at most ``keepalive_timeout`` (``header_timeout`` for the first
        request) for the request to start, cancelled at once by a graceful
        shutdown, then ``header_timeout`` for the rest of the head.
        """
        h = self.h11
        config = self.config
        shutdown = self.conn.shutdown
        head_deadline: float | None = None
        # Bytes fed to h11 while this head was read, plus what it held before:
        # h11 bounds only a head still incomplete, so a head that arrived whole
        # is measured here (cheaply: only when enough bytes came to exceed it).
        fed = len(h.trailing_data[0])
        conn = self.conn  # capacity
        conn.sheddable = True  # capacity: a full server may close us while we wait for a head
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_error(exc.error_status_hint, str(exc))
                return None
            if event is h11.NEED_DATA:
                if head_deadline is None and not fed:
                    # Idle: no byte of the next request yet. A graceful shutdown
                    # ends the connection now.
                    first = self.requests == 0
                    timeout = config.header_timeout if first else config.keepalive_timeout
                    deadline = math.inf if timeout is None else self._now() + timeout
                    shutdown.cancel_on_drain(self._scope)
                    try:
                        data = await self._wait_read(_IDLE, deadline)
                    finally:
                        shutdown.forget(self._scope)
                    if not data:
                        return None
                    # The first head must be complete header_timeout after the
                    # accept (a byte just before the deadline must not restart it).
                    head_deadline = deadline if first else _deadline(config.header_timeout)
                else:
                    if head_deadline is None:
                        head_deadline = _deadline(config.header_timeout)
                    data = await self._wait_read(_HEAD, head_deadline)
                fed += len(data)
                h.receive_data(data)
                continue
            if type(event) is h11.Request:
                conn.sheddable = False  # capacity: never shed a request in progress
                if conn.shed:  # capacity: shed just before the head completed
                    return None  # capacity
                if fed > config.max_header_size and _head_size(event) > config.max_header_size:
                    await self._send_error(431, "Request head too large")
                    return None
                if event.http_version[:2] != b"1.":
                    # h11 parses any digit.digit; only major version 1 is
                    # ours to answer (RFC 9110 §6.2, §15.6.6).
                    await self._send_error(505, "HTTP version not supported")
                    return None
                return event
            # ConnectionClosed, or PAUSED after a protocol switch we did not take.
            return None

    async def receive_body_chunk(self) -> bytes:
        """The next piece of the current request's body; ``b""`` at its end."""
        h = self.h11
        if h.they_are_waiting_for_100_continue:
            await self._send(h.send(h11.InformationalResponse(status_code=100, headers=[])))
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise ClientDisconnected(str(exc)) from None
            if type(event) is h11.Data:
                return bytes(event.data)
            if type(event) is h11.EndOfMessage:
                return b""
            if event is h11.NEED_DATA:
                try:
                    data = await self._receive(_deadline(self.config.body_timeout))
                except TimeoutError:
                    raise RequestTimeout("Timed out reading the request body") from None
                h.receive_data(data)
                continue
            raise ClientDisconnected("connection closed while reading the request body")

    # Writing -----------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        if not data:
            return
        self._head_written = True
        timeout = self.config.write_timeout
        if timeout is not None:
            self._deadline = self._now() + timeout
            self._waiting = _WRITE
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.h11.send_failed()
            raise _Abort from None
        finally:
            self._waiting = _NOT_WAITING
            self._deadline = math.inf

    async def _send_response(
        self, response: Response, head_only: bool, close: bool, request: Request | None = None
    ) -> int:
        """Write *response*; return the number of body bytes sent.

        With *request* given, a complete response to a complete request may be
        written without h11 (see :meth:`_send_plain`).
        """
        h = self.h11
        config = self.config
        raw = response.headers.raw
        # One pass over the handler's headers: what it set itself, we don't add
        # (a proxied response keeps its backend's Date and Server). The names
        # and values are checked here, whichever way the response goes out.
        has_date = has_server = False
        framing = False
        length: bytes | None = None
        for name, value in raw:
            if _TOKEN.fullmatch(name) is None or _FIELD_VALUE.fullmatch(value) is None:
                raise ValueError(f"invalid response header {name!r}: {value!r}")
            if name == b"content-length":
                # One that matches a bytes body (a proxied response's) is ours
                # to write; any other is h11's to judge.
                if length is not None:
                    framing = True  # Several: h11 judges them.
                length = value
            elif name == b"date":
                has_date = True
            elif name == b"server":
                has_server = True
            elif name == b"transfer-encoding" or name == b"connection":
                framing = True
        headers = list(raw)
        if config.date_header and not has_date:
            headers.append((b"date", _http_date()))
        if self._server_header is not None and not has_server:
            headers.append((b"server", self._server_header))
        body = response.body
        status = response.status
        self._head_written = False
        if (
            request is not None
            and type(body) is bytes
            and not framing
            and (length is None or length == b"%d" % len(body))
            and h.their_state is h11.DONE
            and h.our_state is h11.SEND_RESPONSE
            and type(status) is int
            and 200 <= status <= 999
            and status not in _NO_BODY_STATUSES
        ):
            return await self._send_plain(status, headers, body, head_only, close, length is None)
        if close:
            headers.append((b"connection", b"close"))
        if isinstance(body, (bytes, bytearray, memoryview)):
            if status not in _NO_BODY_STATUSES and length is None:
                headers.append((b"content-length", str(len(body)).encode("ascii")))
            head = h.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
            assert head is not None
            if head_only or not body or h.our_state is h11.DONE:
                await self._send(head + h.send(_END))
                return 0
            if len(body) <= _COALESCE_LIMIT:
                data = h.send(h11.Data(data=body))
                assert data is not None
                await self._send(head + data + h.send(_END))
            else:
                await self._send(head)
                pieces = h.send_with_data_passthrough(h11.Data(data=body))
                assert pieces is not None
                for piece in pieces:
                    await self._send(bytes(piece) if not isinstance(piece, bytes) else piece)
                await self._send(h.send(_END))
            return len(body)
        # Streamed body.
        sent = 0
        aclose = getattr(body, "aclose", None)
        try:
            head = h.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
            assert head is not None
            await self._send(head)
            if not head_only and h.our_state is not h11.DONE:
                async for chunk in body:
                    if chunk:
                        data = h.send(h11.Data(data=chunk))
                        assert data is not None
                        await self._send(data)
                        sent += len(chunk)
            await self._send(h.send(_END))
        finally:
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        return sent

    async def _send_plain(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        head_only: bool,
        close: bool,
        add_length: bool,
    ) -> int:
        """Write a complete response ourselves, then start h11 afresh on what follows.

        The common case (the request read to its end, a final status, a body of
        known length, no framing headers from the handler) needs none of h11's
        response machinery, which costs more than all the rest of a request:
        two validations of every header, the state machine, the writers. The
        head is the one h11 would write (RFC 9112 §4 and §5) and the headers were
        checked by the caller. The keep-alive decision is h11's (RFC 9112
        §9.3): a request with ``Connection: close``, or from a client older
        than HTTP/1.1, leaves h11 in MUST_CLOSE rather than DONE, so it never
        comes here; only the server's own reasons (*close*) end the connection.
        """
        h = self.h11
        if add_length:
            headers.append((b"content-length", b"%d" % len(body)))
        if close:
            headers.append((b"connection", b"close"))
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        if head_only or not body:
            sent = 0
        elif len(body) <= _COALESCE_LIMIT:
            parts.append(body)
            sent = len(body)
        else:
            await self._send(b"".join(parts))
            parts = [body]
            sent = len(body)
        await self._send(b"".join(parts))
        if not close:
            # h11 still waits for this response: a new connection object takes
            # over from the next request, fed whatever was read past this one.
            leftover, eof = h.trailing_data
            fresh = self.h11 = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self.config.max_header_size
            )
            if leftover:
                fresh.receive_data(leftover)
            if eof:
                fresh.receive_data(b"")
        return sent

    async def _send_error(self, status: int, detail: str) -> None:
        """Answer a request we could not take (bad head, timeout) and close."""
        h = self.h11
        if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = error_response(status, None)
        logger.debug("answering %d and closing: %s", status, detail)
        try:
            await self._send_response(response, head_only=False, close=True)
        except (_Abort, h11.LocalProtocolError):
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
            self.conn.nursery.start_soon(self._watchdog, self._period)
        # The request loop lives here rather than in a helper: every frame
        # between the connection task and a socket call is walked again each
        # time the task sleeps and wakes, several times per request.
        takeover: _Handover | None = None
        try:
            with self._scope:
                while True:
                    event = await self._next_request()
                    if event is None:
                        break
                    outcome = await self._handle(event)
                    if outcome is not True:
                        if outcome is not False:
                            takeover = outcome
                        break
                    h = self.h11
                    if h.our_state is h11.IDLE:
                        continue  # A fresh h11 connection after _send_plain.
                    if h.our_state is not h11.DONE or h.their_state is not h11.DONE:
                        break
                    h.start_next_cycle()
        except _Abort:
            return
        finally:
            self._watchdog_scope.cancel()
        if takeover is not None:
            # Run from this frame, with h11 and the request loop gone: a
            # takeover (a WebSocket session) may stay idle for hours, and
            # whatever this connection still holds is held that long.
            del self.h11
            handler, request, prefetched = takeover
            takeover = None
            stream = self.stream
            try:
                await handler.take_over(stream, prefetched, request)
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
            self.h11.send_failed()
        elif expired == _HEAD:
            with trio.move_on_after(self.config.write_timeout or _LINGER_SECONDS):
                await self._send_error(408, "Timed out waiting for the request head")
        # _IDLE (keep-alive timeout) or a graceful shutdown: just close.

    async def _handle(self, event: h11.Request) -> bool | _Handover:
        """Answer one request; return whether the connection may carry another,
        or, for a takeover, what :meth:`run` hands the connection to."""
        h = self.h11
        conn = self.conn
        started = time.perf_counter() if self.config.access_log else 0.0
        body_source = _Body(self)
        # Most requests have no body, and h11 can say so at once: then nothing
        # needs draining after the response. A first chunk already buffered is
        # kept for the handler.
        try:
            peeked = h.next_event()
        except h11.RemoteProtocolError:
            pass  # raised again when the handler reads the body
        else:
            if type(peeked) is h11.EndOfMessage:
                body_source.done = True
            elif type(peeked) is h11.Data:
                body_source.pending = bytes(peeked.data)
        method = event.method.decode("ascii")
        request = Request._from_wire(
            method,
            event.target.decode("latin-1"),
            Headers.from_raw(event.headers),
            body_source,
            "1.1" if event.http_version == b"1.1" else event.http_version.decode("ascii"),
            conn.client,
            conn.server,
            self.scheme,
            self.config.max_body_size,
            conn,
            # A request that h11 saw end without an Upgrade header (or CONNECT)
            # needs no header scan to know it is not an upgrade.
            None if h.their_state is h11.DONE else _UNKNOWN_UPGRADE,
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
            if isinstance(result, Response):
                pass
            elif isinstance(result, Takeover):
                prefetched = await self._prepare_takeover(request, body_source)
                return False if prefetched is None else (result, request, prefetched)
            else:
                logger.error(
                    "handler for %s %s returned %r, not a Response or a Takeover",
                    method,
                    request.target,
                    result,
                )
                result = error_response(500, None)
        response: Response = result

        config = self.config
        close = conn.shutdown.draining or (
            config.max_requests_per_connection is not None
            and self.requests >= config.max_requests_per_connection
        )
        if not body_source.done and not close:
            # The body was not read to its end. If the client still waits for
            # "100 Continue" it may never send it: don't wait to find out. A
            # client that timed out, or a rest known to be past max_drain_size,
            # cannot be drained either: say so with "Connection: close".
            close = (
                h.they_are_waiting_for_100_continue
                or body_source.timed_out
                or not self._may_drain(request, body_source)
            )
        writable = h.our_state is h11.SEND_RESPONSE
        try:
            sent = await self._send_response(response, head_only, close, request)
        except _Abort:
            raise
        except Exception:
            body_source.owner = None
            if writable and not self._head_written:
                # h11 refused the response itself (a CR/LF in a header value, a
                # Content-Length that doesn't match the body): nothing went out,
                # so the client can still get an honest 500.
                logger.exception("invalid response to %s %s", method, request.target)
                await self._send(_RAW_500)
                return False
            # The body iterator failed after the head was sent: the only honest
            # thing left is to cut the connection short.
            logger.exception("error while streaming the response to %s %s", method, request.target)
            return False
        if config.access_log:
            self._log_access(request, response.status, sent, started)
        if not body_source.done and (
            not await self._drain(body_source)
            if h.our_state is not h11.MUST_CLOSE
            else h.their_state is h11.SEND_BODY and _has_body(request)
        ):
            body_source.owner = None
            # The client may still be sending: closing now could reset the
            # connection under the response we just sent.
            await self._linger()
            return False
        body_source.owner = None
        return True

    def _may_drain(self, request: Request, body: _Body) -> bool:
        """Whether the unread rest of the body may fit in ``max_drain_size``."""
        declared = request.headers.get("content-length")
        if declared is None:
            # No body at all, or chunked: unknown until drained.
            return not _has_body(request) or self.config.max_drain_size > 0
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
        # The request (and any body) must be complete so that h11's buffer holds
        # exactly the bytes sent after it.
        if not body.done and not await self._drain(body):
            await self._send_error(413, "Request body too large before a takeover")
            return None
        body.owner = None
        # HTTP timeouts end here: the takeover owns the connection from now on.
        self._watchdog_scope.cancel()
        prefetched, _ = self.h11.trailing_data
        return bytes(prefetched)

    def _log_access(self, request: Request, status: int, size: int, started: float) -> None:
        client = self.conn.client
        peer = f"{client[0]}:{client[1]}" if isinstance(client, tuple) else (client or "-")
        access_logger.info(
            '%s "%s %s HTTP/%s" %d %d %.1fms',
            peer,
            request.method,
            request.target,
            request.http_version,
            status,
            size,
            (time.perf_counter() - started) * 1000,
        )


def serve_http_connection(
    conn: Connection, app: Handler, config: HTTPConfig | None = None
) -> Coroutine[Any, Any, None]:
    """Serve HTTP/1.1 on *conn* with *app* until the connection ends.

    Keep-alive, pipelining (answered in order), HTTP/1.0, ``Expect:
    100-continue`` (100 sent when the handler first reads the body), HEAD,
    timeouts and limits from *config*. Returns when the peer closes, a limit or
    timeout ends the connection, graceful shutdown closes it, or a takeover
    finishes. The stream is closed by whoever owns it (the server), except after
    a takeover, which closes it itself.

    Call and await it like a coroutine function: ``await
    serve_http_connection(conn, app)`` (it returns the connection loop's
    coroutine itself, one frame less on every wake-up).
    """
    return _HTTPConnection(conn, app, config or HTTPConfig()).run()
