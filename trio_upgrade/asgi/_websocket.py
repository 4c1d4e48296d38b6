"""One WebSocket connection of an ASGI app (the ``websocket`` scope).

The handler validates the opening handshake and returns a Takeover; the app
then runs in the connection's task. ``websocket.accept`` writes the 101 and
starts a :func:`trio_upgrade.ws.websocket_session` (its reader and writer run
in the connection's nursery); messages pass between the app and the session
as they are. Before accepting, ``websocket.close`` answers 403 and the
``websocket.http.response`` extension answers with any HTTP response.
"""

from __future__ import annotations

import enum
import logging
from contextlib import AsyncExitStack, suppress
from typing import Any, final

import trio

from .._wire import simple_response
from ..core import Observer
from ..http import Request, TakeoverOutcome
from ..ws import (
    ClientOffer,
    ConnectionClosed,
    HandshakeRequest,
    WebSocket,
    WebSocketConfig,
    accept,
    websocket_session,
)
from ._errors import Disconnected, ProtocolError
from ._http import ASGIApp, Message
from ._scope import Scope

__all__ = ["WebSocketCycle"]

logger = logging.getLogger("trio_upgrade.asgi")

# Bytes of a denial response body (websocket.http.response) held before it is sent.
_MAX_DENIAL_BODY = 1024 * 1024


class _State(enum.IntEnum):
    CONNECTING = 0  # websocket.connect not yet received by the app
    PENDING = 1  # the app has the connect event; no answer yet
    DENYING = 2  # websocket.http.response.start received, body to come
    ACCEPTING = 3  # writing the 101, starting the session
    ACCEPTED = 4  # session running
    CLOSED = 5  # session over (either side closed), or the handshake was refused


@final
class WebSocketCycle:
    """The Takeover that runs an ASGI app on one WebSocket connection."""

    __slots__ = (
        "_answered",
        "_body",
        "_code",
        "_denial_headers",
        "_observer",
        "_outcome",
        "_prefetched",
        "_reason",
        "_request",
        "_session",
        "_stack",
        "_status",
        "_stream",
        "app",
        "config",
        "offer",
        "scope",
        "state",
    )

    def __init__(
        self, app: ASGIApp, scope: Scope, offer: ClientOffer, config: WebSocketConfig
    ) -> None:
        self.app = app
        self.scope = scope
        self.offer = offer
        self.config = config
        self.state = _State.CONNECTING
        # Set once the handshake is answered (accepted or refused): a receive()
        # made while it is pending waits for it, as in other servers.
        self._answered = trio.Event()
        self._stream: trio.abc.Stream | None = None
        self._prefetched = b""
        self._request: Request | None = None
        self._session: WebSocket | None = None
        self._stack: AsyncExitStack | None = None
        # The close code and reason the app will see in websocket.disconnect.
        self._code = 1006
        self._reason = ""
        # A denial response being collected (websocket.http.response).
        self._status = 0
        self._denial_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        # The server's observer (metrics; None: nothing counted), and how the
        # handshake was refused, for the access log.
        self._observer: Observer | None = None
        self._outcome: TakeoverOutcome | None = None

    async def take_over(
        self, stream: trio.abc.Stream, prefetched: bytes, request: Request
    ) -> TakeoverOutcome | None:
        connection = request.connection
        if connection is not None:
            self._observer = connection.observer
        try:
            await self._run(stream, prefetched, request)
        finally:
            session = self._session
            if session is not None and self._observer is not None:
                self._observer.session_closed()
        if session is None:
            return self._outcome
        # The session has ended (the exit stack left it): its close code is final.
        code = session.close_code
        return TakeoverOutcome(101, close_code=1006 if code is None else code)

    async def _run(self, stream: trio.abc.Stream, prefetched: bytes, request: Request) -> None:
        self._stream = stream
        self._prefetched = prefetched
        self._request = request
        async with AsyncExitStack() as stack:
            self._stack = stack
            try:
                await self.app(self.scope, self.receive, self.send)
            except Exception as exc:
                if isinstance(exc, (Disconnected, ConnectionClosed)):
                    return  # the client went away and the app let it show: not a fault
                logger.error(
                    "ASGI app failed on WebSocket %s%s",
                    request.target,
                    " after accepting" if self.state is _State.ACCEPTED else "",
                    exc_info=exc,
                )
                if self.state is _State.ACCEPTED:
                    await self._close_session(1011, "")
                elif self.state < _State.ACCEPTING:
                    await self._refuse(500)
                # ACCEPTING: the 101 may be half written; the connection just closes.
                return
            if self.state < _State.ACCEPTED:
                logger.error(
                    "ASGI app returned without accepting or closing the WebSocket %s",
                    request.target,
                )
                await self._refuse(500)
            # An accepted session still open closes with 1000 as the stack unwinds.

    # receive ---------------------------------------------------------------------

    async def receive(self) -> Message:
        state = self.state
        if state is _State.ACCEPTED:
            session = self._session
            assert session is not None
            try:
                message = await session.receive()
            except ConnectionClosed as exc:
                self._move(_State.CLOSED)
                self._code, self._reason = int(exc.code), exc.reason
                return {"type": "websocket.disconnect", "code": int(exc.code), "reason": exc.reason}
            if type(message) is str:
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}
        if state is _State.CONNECTING:
            self.state = _State.PENDING  # before the checkpoint: another task may accept
            await trio.lowlevel.checkpoint()
            return {"type": "websocket.connect"}
        if state is not _State.CLOSED:
            # Pending or accepting: wait for the app (another of its tasks) to answer.
            await self._answered.wait()
            return await self.receive()
        await trio.lowlevel.checkpoint()
        return {"type": "websocket.disconnect", "code": self._code, "reason": self._reason}

    def _move(self, state: _State) -> None:
        self.state = state
        self._answered.set()

    # send ------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise ProtocolError(
                f"an ASGI message must be a dict with a 'type': {message!r}"
            ) from None
        state = self.state
        if state is _State.ACCEPTED:
            if kind == "websocket.send":
                await self._send_message(message)
            elif kind == "websocket.close":
                await self._close_session(message.get("code", 1000), message.get("reason") or "")
            else:
                raise ProtocolError(f"the WebSocket is open; the app sent {kind!r}")
            return
        if state <= _State.PENDING:
            if kind == "websocket.accept":
                await self._accept(message)
            elif kind == "websocket.close":
                # Closed before accepting: the handshake is refused (ASGI spec).
                await self._refuse(403)
                self._code = message.get("code", 1000)
                self._reason = message.get("reason") or ""
            elif kind == "websocket.http.response.start":
                status = message["status"]
                if type(status) is not int or not 100 <= status <= 999 or status == 101:
                    raise ProtocolError(f"invalid denial response status {status!r}")
                self._status = status
                self._denial_headers = [
                    (bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())
                ]
                self.state = _State.DENYING
                await trio.lowlevel.checkpoint()
            else:
                raise ProtocolError(
                    f"expected 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start', the app sent {kind!r}"
                )
            return
        if state is _State.DENYING:
            if kind != "websocket.http.response.body":
                raise ProtocolError(
                    f"expected 'websocket.http.response.body', the app sent {kind!r}"
                )
            body = bytes(message.get("body", b""))
            self._body.append(body)
            if sum(map(len, self._body)) > _MAX_DENIAL_BODY:
                raise ProtocolError("the denial response body is larger than 1 MiB")
            if message.get("more_body", False):
                await trio.lowlevel.checkpoint()
                return
            body = b"".join(self._body)
            data = simple_response(self._status, self._denial_headers, body)
            self._outcome = TakeoverOutcome(self._status, len(body))
            self._body = []
            self._move(_State.CLOSED)
            await self._write(data)
            return
        await trio.lowlevel.checkpoint()
        if state is _State.ACCEPTING:
            raise ProtocolError(f"{kind!r} sent while the WebSocket is being accepted")
        # CLOSED
        if kind == "websocket.close":
            return  # closing twice, or after the peer: nothing left to do
        if kind == "websocket.send":
            raise Disconnected("the WebSocket is closed")
        raise ProtocolError(f"the WebSocket is closed; the app sent {kind!r}")

    async def _send_message(self, message: Message) -> None:
        session = self._session
        assert session is not None
        text = message.get("text")
        data = message.get("bytes")
        if text is not None and data is None:
            payload: str | bytes = text
        elif data is not None and text is None:
            payload = bytes(data)
        else:
            raise ProtocolError("'websocket.send' needs exactly one of 'text' and 'bytes'")
        try:
            await session.send(payload)
        except ConnectionClosed as exc:
            self._move(_State.CLOSED)
            self._code, self._reason = int(exc.code), exc.reason
            raise Disconnected(f"the WebSocket is closed ({exc.code})") from None

    async def _accept(self, message: Message) -> None:
        request = self._request
        stream = self._stream
        stack = self._stack
        assert request is not None and stream is not None and stack is not None
        extra = [(bytes(n).lower(), bytes(v)) for n, v in message.get("headers", ())]
        try:
            accepted = accept(
                self.offer,
                subprotocol=message.get("subprotocol"),
                config=self.config,
                extra_headers=extra,
            )
            head = accepted.head()
        except ValueError as exc:
            raise ProtocolError(f"cannot accept the WebSocket: {exc}") from None
        self.state = _State.ACCEPTING
        await self._write(head)
        handshake = HandshakeRequest(
            request.target,
            tuple(request.headers.raw),
            client=request.client,
            server=request.server,
            method=request.method,
        )
        connection = request.connection
        self._session = await stack.enter_async_context(
            websocket_session(
                stream,
                prefetched=self._prefetched,
                request=handshake,
                subprotocol=accepted.subprotocol,
                extensions=accepted.extensions,
                config=self.config,
                nursery=connection.nursery if connection is not None else None,
            )
        )
        self._prefetched = b""
        self._move(_State.ACCEPTED)
        if self._observer is not None:
            self._observer.session_opened()

    async def _close_session(self, code: int, reason: str) -> None:
        session = self._session
        assert session is not None
        self._move(_State.CLOSED)
        self._code, self._reason = code, reason
        await session.aclose(code, reason)

    async def _refuse(self, status: int) -> None:
        self._move(_State.CLOSED)
        self._outcome = TakeoverOutcome(status)
        with suppress(Disconnected):
            await self._write(simple_response(status))

    async def _write(self, data: bytes) -> None:
        stream = self._stream
        assert stream is not None
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._move(_State.CLOSED)
            raise Disconnected("the client disconnected before the handshake answer") from None


def websocket_extensions(base: dict[str, Any] | None) -> dict[str, Any]:
    """The ``extensions`` of a websocket scope: the denial response, plus *base*."""
    extensions: dict[str, Any] = {"websocket.http.response": {}}
    if base:
        extensions.update(base)
    return extensions
