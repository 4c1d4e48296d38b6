"""One HTTP request/response cycle of an ASGI app (the ``http`` scope).

The app runs in the connection's own task: the handler returns a
:class:`~trio_upgrade.http.DirectResponse` whose coroutine (:meth:`HTTPCycle.write`)
calls the app with a :class:`~trio_upgrade.http.ResponseWriter`, and the
app's ``send`` writes through it. No task per request, no channel: a hello
costs what a native handler's response costs, plus the app.

``http.response.start`` is held until the first body message: a response
whose first body message is also its last (the common case) goes out in one
write with its ``Content-Length``; otherwise the head and that first chunk
are written, then each further chunk as the app sends it.

Backpressure: ``send`` returns once the chunk was handed to the kernel, so a
slow client slows the app; nothing is buffered here.

Disconnects: ``send`` raises :class:`Disconnected` once a write has failed;
``receive`` after the request body returns ``http.disconnect`` when the
response is over or the client has gone, which a waiting app learns by a
non-destructive look at the socket (``MSG_PEEK``: a pipelined request is
left where the connection loop will read it).

Work an app does after its last body message (Starlette's background tasks)
runs before the connection reads its next request: the client already has
the whole response, and other connections are not affected.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, final

import trio

from ..http import ClientDisconnected, Headers, HTTPError, Request
from ..http._router import error_response
from ._errors import Disconnected, ProtocolError
from ._scope import Scope

__all__ = ["ASGIApp", "HTTPCycle", "Message", "Receive", "Send"]

logger = logging.getLogger("trio_upgrade.asgi")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Writer(Protocol):
    """What the cycle writes through: a ResponseWriter, or the collector of a
    request handled without a connection."""

    @property
    def started(self) -> bool: ...

    async def respond(self, status: int, headers: Headers, body: bytes) -> None: ...

    async def start(self, status: int, headers: Headers) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def end(self) -> None: ...

    def abort(self) -> None: ...


class _Phase(enum.IntEnum):
    """Where the response is, as the app sent it."""

    START = 0  # nothing sent yet
    HEAD = 1  # http.response.start received, held until the first body message
    STREAMING = 2  # the head and a body message with more_body were written
    COMPLETE = 3  # the last body message was sent


def _disconnect() -> Message:
    # A fresh dict each time: an app may change the messages it receives.
    return {"type": "http.disconnect"}


@final
class HTTPCycle:
    """The ``receive``/``send`` pair of one request, and the coroutine that runs the app."""

    __slots__ = (
        "_chunks",
        "_done",
        "_io",
        "_left",
        "_receiving",
        "_watching",
        "_writer",
        "app",
        "body_done",
        "disconnected",
        "finished",
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
        self._writer: Writer | None = None
        # The app has returned or raised: the socket is the connection loop's again.
        self.finished = False
        # The client went away (a failed write, EOF seen by the watcher).
        self.disconnected = False
        # The request body was read to its end by the app.
        self.body_done = False
        # Body bytes still expected by Content-Length (None: unknown, chunked).
        self._left: int | None = None
        self._chunks: Any = None
        # The cancel scope of an app's socket wait (a body read or the disconnect
        # watch), cancelled when the app returns and the loop takes the socket back.
        self._io: trio.CancelScope | None = None
        self._receiving = False
        self._watching = False
        # Set once the exchange is over for the app (complete, finished or disconnected).
        self._done: trio.Event | None = None

    # The connection's task ---------------------------------------------------------

    async def write(self, writer: Writer) -> None:
        """Run the app, writing through *writer*; failures are logged here and
        answered (a 500 before the head) or end the connection (after it)."""
        self._writer = writer
        try:
            await self.app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self.disconnected and isinstance(exc, (Disconnected, OSError)):
                writer.abort()  # the client left; the app noticed: nothing to report
                return
            if isinstance(exc, HTTPError) and not writer.started and self.phase is _Phase.START:
                raise  # a body limit or timeout raised by receive(): the loop answers it
            request = self.request
            logger.error(
                "ASGI app failed on %s %s%s",
                request.method,
                request.target,
                " after the response started" if self.phase > _Phase.START else "",
                exc_info=exc,
            )
            if writer.started:
                writer.abort()
            else:
                await self._error_500(writer)
            return
        finally:
            chunks = self._finish()
            if chunks is not None:
                # A body the app stopped reading: end the iterator here rather
                # than leave it to the garbage collector (it does not await).
                await chunks.aclose()
        phase = self.phase
        if phase is _Phase.COMPLETE:
            return
        request = self.request
        if phase is _Phase.STREAMING:
            if self.disconnected:
                writer.abort()
                return
            # Ended without its last body message: the response must not look complete.
            logger.error(
                "the ASGI app returned before its last 'http.response.body' "
                "(more_body=False) for %s %s; closing the connection",
                request.method,
                request.target,
            )
            writer.abort()
            return
        logger.error(
            "ASGI app returned without %s for %s %s",
            "a response body" if phase is _Phase.HEAD else "sending a response",
            request.method,
            request.target,
        )
        await self._error_500(writer)

    async def _error_500(self, writer: Writer) -> None:
        response = error_response(500, None)
        assert isinstance(response.body, bytes)
        with contextlib.suppress(ClientDisconnected):
            await writer.respond(500, response.headers, response.body)

    def _finish(self) -> Any:
        """The app is done: hand the socket back; the body iterator to close, if any.

        Synchronous, so that a hello costs no coroutine here."""
        self.finished = True
        if self._io is not None:
            # A wait on the socket by a task the app left behind ends here,
            # synchronously, before the loop reads again.
            self._io.cancel()
        if self._done is not None:
            self._done.set()
        chunks, self._chunks = self._chunks, None
        return None if self._receiving else chunks

    # The app's side ------------------------------------------------------------------

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
            # The app returned meanwhile (this is a task it left behind).
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
            # bytes() only for what is not bytes already: a call per name and
            # value cost more than the rest of the message.
            self.headers = [
                (name.lower(), value)
                if type(name) is bytes and type(value) is bytes
                else (bytes(name).lower(), bytes(value))
                for name, value in message.get("headers", ())
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
        if phase is _Phase.COMPLETE or self.disconnected or self.finished:
            await trio.lowlevel.checkpoint()
            if self.disconnected:
                raise Disconnected("the client disconnected")
            if phase is _Phase.COMPLETE:
                raise ProtocolError("'http.response.body' after the response was complete")
            raise ProtocolError("'http.response.body' after the app returned")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        writer = self._writer
        assert writer is not None
        try:
            if phase is _Phase.HEAD:
                headers = Headers.from_raw(self.headers)
                if not more:
                    await writer.respond(
                        self.status, headers, body if type(body) is bytes else bytes(body)
                    )
                    self._complete()
                    return
                self.phase = _Phase.STREAMING
                await writer.start(self.status, headers)
            if body:
                await writer.send(bytes(body))
            if not more:
                await writer.end()
                self._complete()
        except ClientDisconnected:
            self._lost()
            raise Disconnected("the client disconnected") from None

    def _complete(self) -> None:
        self.phase = _Phase.COMPLETE
        if self._watching and self._io is not None:
            # A task of the app waits in the disconnect watch: the exchange is over.
            self._io.cancel()
        if self._done is not None:
            self._done.set()

    def _lost(self) -> None:
        self.disconnected = True
        if self._done is not None:
            self._done.set()


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
