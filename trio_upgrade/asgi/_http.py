"""One HTTP request/response cycle of an ASGI app (the ``http`` scope).

The app runs in a task of its own in the connection's nursery, because it
produces the response while the connection task writes it: the handler waits
until the app has sent ``http.response.start`` and its first body message,
then returns a :class:`~trio_upgrade.http.Response` to the connection loop —
with the body as bytes when that first message was also the last (the common
case, written in one piece), or else streamed through :class:`_BodyStream`.

Backpressure: the streamed body passes through an unbuffered channel, so the
app's ``send`` returns only once the connection task has taken the chunk, and
waits while the previous one is being written. At most two chunks are held.

Disconnects: ``send`` raises :class:`Disconnected` once a write has failed;
``receive`` after the request body returns ``http.disconnect`` when the
response is over or the client has gone, which a waiting app learns by a
non-destructive look at the socket (``MSG_PEEK``: a pipelined request is
left where the connection loop will read it).
"""

from __future__ import annotations

import enum
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, final

import trio

from ..http import ClientDisconnected, Headers, HTTPError, Request, Response, error_response
from ._errors import Disconnected, ProtocolError
from ._scope import Scope

__all__ = ["ASGIApp", "HTTPCycle", "Message", "Receive", "Send"]

logger = logging.getLogger("trio_upgrade.asgi")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _Phase(enum.IntEnum):
    """Where the response is, as the app sent it."""

    START = 0  # nothing sent yet
    HEAD = 1  # http.response.start received, no body message yet
    STREAMING = 2  # a body message with more_body: the rest goes through the channel
    COMPLETE = 3  # the last body message was sent


def _disconnect() -> Message:
    # A fresh dict each time: an app may change the messages it receives.
    return {"type": "http.disconnect"}


@final
class HTTPCycle:
    """The ``receive``/``send`` pair of one request, and what the handler returns."""

    __slots__ = (
        "_chunks",
        "_done",
        "_io",
        "_left",
        "_ready",
        "_receiving",
        "_recv_out",
        "_send_in",
        "_waiter",
        "_watching",
        "app",
        "body_done",
        "disconnected",
        "ended",
        "error",
        "finished",
        "first",
        "headers",
        "phase",
        "request",
        "scope",
        "status",
    )

    def __init__(self, app: ASGIApp, request: Request, scope: Scope) -> None:
        self.app = app
        self.request = request
        self.scope = scope
        self.phase = _Phase.START
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        # The first body chunk (the whole body when it came in one message).
        self.first = b""
        # True when the handler can build its Response: the first body message
        # arrived, or the app ended without one. _waiter is the handler's task
        # parked until then (lighter than an Event: this is once per request).
        self._ready = False
        self._waiter: trio.lowlevel.Task | None = None
        # The app returned or raised; error is what it raised.
        self.ended = False
        self.error: BaseException | None = None
        # The server is done with the response: written, abandoned, or HEAD.
        self.finished = False
        # The client went away (a failed write, EOF seen by the watcher).
        self.disconnected = False
        # The request body was read to its end by the app.
        self.body_done = False
        # Body bytes still expected by Content-Length (None: unknown, chunked).
        self._left: int | None = None
        self._chunks: Any = None
        # The streamed body's unbuffered channel, made when streaming starts.
        self._send_in: trio.MemorySendChannel[bytes] | None = None
        self._recv_out: trio.MemoryReceiveChannel[bytes] | None = None
        # The cancel scope of the app's current socket wait (a body read or the
        # disconnect watch), cancelled when the connection loop takes the socket back.
        self._io: trio.CancelScope | None = None
        self._receiving = False
        self._watching = False
        # Set once the exchange is over for the app (finished or disconnected).
        self._done: trio.Event | None = None

    # The app's task ------------------------------------------------------------

    async def run(self) -> None:
        """Run the app; never raises (but Cancelled): failures are logged here."""
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            self.error = exc
            if self.disconnected and isinstance(exc, (Disconnected, OSError)):
                pass  # the client left; the app noticed: nothing to report
            elif isinstance(exc, HTTPError) and self.phase is _Phase.START:
                pass  # a body limit or timeout raised by receive(): answered below
            else:
                request = self.request
                logger.error(
                    "ASGI app failed on %s %s%s",
                    request.method,
                    request.target,
                    " after the response started" if self.phase > _Phase.START else "",
                    exc_info=exc,
                )
        finally:
            self.ended = True
            chunks, self._chunks = self._chunks, None
            if chunks is not None and not self._receiving:
                # A body the app stopped reading: end the iterator here rather
                # than leave it to the garbage collector. (It does not await.
                # One a task the app left behind is still reading ends with it.)
                await chunks.aclose()
            if self._send_in is not None:
                self._send_in.close()
            self._set_ready()

    async def receive(self) -> Message:
        # Once the app has sent its whole response the exchange is over for it
        # (as in uvicorn): the rest of the socket is the connection loop's.
        over = self.finished or self.disconnected or self.phase is _Phase.COMPLETE
        if not self.body_done:
            if not over:
                return await self._read_body()
            self.body_done = True
        if over:
            await trio.lowlevel.checkpoint()
            return _disconnect()
        await self._wait_over()
        return _disconnect()

    async def _read_body(self) -> Message:
        if self._receiving:
            await trio.lowlevel.checkpoint()
            raise ProtocolError("receive() called by two tasks at once")
        request = self.request
        if self._chunks is None:
            headers = request.headers
            length = headers.get("content-length")
            if length is None and "transfer-encoding" not in headers:
                length = "0"
            if length == "0":
                self.body_done = True
                await trio.lowlevel.checkpoint()
                return {"type": "http.request", "body": b"", "more_body": False}
            self._left = int(length) if length is not None and length.isdigit() else None
            self._chunks = request.body.__aiter__()
        self._receiving = True
        try:
            with trio.CancelScope() as scope:
                self._io = scope
                chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        except ClientDisconnected:
            self._lost()
            return _disconnect()
        finally:
            self._io = None
            self._receiving = False
        if scope.cancelled_caught:
            # The response ended meanwhile: the connection loop reads from now on.
            self.body_done = True
            return _disconnect()
        left = self._left
        if left is not None:
            left -= len(chunk)
            self._left = left
            if left <= 0:
                self.body_done = True
                return {"type": "http.request", "body": chunk, "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _wait_over(self) -> None:
        """Wait until the response is over or the client has gone."""
        if self._done is None:
            self._done = trio.Event()
        sock = None if self._watching else _raw_socket(self.request)
        if sock is not None:
            self._watching = True
            try:
                with trio.CancelScope() as scope:
                    self._io = scope
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        data = await sock.recv(1, socket.MSG_PEEK)
                    except OSError:
                        data = b""
                    if not data:
                        self._lost()
                        return
                    # The client sent more (a pipelined request, or TLS records):
                    # alive. What follows is the connection loop's to read.
            finally:
                self._io = None
                self._watching = False
        await self._done.wait()

    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ProtocolError(
                f"an ASGI message must be a dict with a 'type': {message!r}"
            ) from None
        phase = self.phase
        if phase is _Phase.START:
            if kind != "http.response.start":
                raise ProtocolError(f"expected 'http.response.start', the app sent {kind!r}")
            status = message["status"]
            if type(status) is not int or not 200 <= status <= 999:
                raise ProtocolError(f"'http.response.start' with an invalid status {status!r}")
            self.status = status
            self.headers = [
                (bytes(name).lower(), bytes(value)) for name, value in message.get("headers", ())
            ]
            self.phase = _Phase.HEAD
            # A cancel point, not a schedule point: the app goes straight on to
            # its body, and a hello costs no extra pass of the scheduler.
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        if kind != "http.response.body":
            if phase is _Phase.COMPLETE:
                raise ProtocolError(f"the response is complete; the app then sent {kind!r}")
            raise ProtocolError(f"expected 'http.response.body', the app sent {kind!r}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if phase is _Phase.HEAD:
            self.first = bytes(body)
            if more:
                self._send_in, self._recv_out = trio.open_memory_channel[bytes](0)
                self.phase = _Phase.STREAMING
            else:
                self.phase = _Phase.COMPLETE
            self._set_ready()
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        if phase is _Phase.COMPLETE:
            await trio.lowlevel.checkpoint()
            if self.disconnected:
                raise Disconnected("the client disconnected")
            raise ProtocolError("'http.response.body' after the response was complete")
        # STREAMING
        if self.finished:
            # Abandoned by the server: the write failed, or a HEAD request's
            # body is being discarded.
            await trio.lowlevel.checkpoint()
            if self.disconnected:
                raise Disconnected("the client disconnected")
            if not more:
                self.phase = _Phase.COMPLETE
            return
        assert self._send_in is not None
        try:
            if body:
                await self._send_in.send(bytes(body))
            else:
                await trio.lowlevel.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if self.disconnected:
                raise Disconnected("the client disconnected") from None
            # A HEAD request's body, discarded.
        if not more:
            self.phase = _Phase.COMPLETE
            self._send_in.close()

    # The connection's task -------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until :meth:`response` can be called (the app's first body message,
        or its end)."""
        if self._ready:
            await trio.lowlevel.checkpoint()
            return
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _set_ready(self) -> None:
        if not self._ready:
            self._ready = True
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                trio.lowlevel.reschedule(waiter)

    def response(self) -> Response:
        """What the handler returns once :meth:`wait_ready` has returned."""
        phase = self.phase
        if phase is _Phase.COMPLETE:
            self.finish()
            return self._response(self.first)
        if phase is _Phase.STREAMING:
            return self._response(_BodyStream(self))
        self.finish()
        error = self.error
        if isinstance(error, HTTPError):
            return error_response(error.status, error.detail, error.headers)
        if error is None:
            request = self.request
            logger.error(
                "ASGI app returned without %s for %s %s",
                "a response body" if phase is _Phase.HEAD else "sending a response",
                request.method,
                request.target,
            )
        return error_response(500, None)

    def _response(self, body: Any) -> Response:
        response = Response.__new__(Response)
        response.status = self.status
        response.headers = Headers.from_raw(self.headers)
        response.body = body
        return response

    def finish(self) -> None:
        """The connection loop is done with the response: the socket is its own again."""
        self.finished = True
        if self._io is not None:
            # Synchronous: the app's wait on the socket ends before the loop reads.
            self._io.cancel()
        if self._done is not None:
            self._done.set()

    def _lost(self) -> None:
        self.disconnected = True
        if self._done is not None:
            self._done.set()


@final
class _BodyStream:
    """The streamed response body: chunks from the app, pulled by the connection loop."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: HTTPCycle) -> None:
        self._cycle = cycle

    def __aiter__(self) -> _BodyStream:
        return self

    async def __anext__(self) -> bytes:
        cycle = self._cycle
        first = cycle.first
        if first:
            cycle.first = b""
            await trio.lowlevel.checkpoint()
            return first
        assert cycle._recv_out is not None
        try:
            return await cycle._recv_out.receive()
        except trio.EndOfChannel:
            pass
        cycle.finish()
        if cycle.phase is _Phase.COMPLETE:
            raise StopAsyncIteration
        # Ended without its last body message: the response must not look complete.
        request = cycle.request
        if cycle.error is not None:
            raise ProtocolError(
                f"the ASGI app failed while streaming the response to {request.method} "
                f"{request.target}; closing the connection"
            )
        raise ProtocolError(
            f"the ASGI app returned before its last 'http.response.body' "
            f"(more_body=False) for {request.method} {request.target}; closing the connection"
        )

    async def aclose(self) -> None:
        """Called by the connection loop however the response ended."""
        cycle = self._cycle
        if not cycle.finished:
            # Not read to its end: a write failed (the client is gone), the head
            # was refused, or this is a HEAD request (the body is discarded).
            if cycle.phase is not _Phase.COMPLETE and cycle.request.method != "HEAD":
                cycle.disconnected = True
            cycle.finish()
        if cycle._recv_out is not None:
            cycle._recv_out.close()
        await trio.lowlevel.checkpoint()


def _raw_socket(request: Request) -> trio.socket.SocketType | None:
    """The socket under the request's connection, TLS unwrapped; ``None`` if not a socket."""
    conn = request.connection
    if conn is None:
        return None
    stream: object = conn.stream
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        return stream.socket
    return None
