"""The server side of one WebSocket route: decide, then talk.

A route handler receives a :class:`ServerWebSocket`. Before the 101 it can look
at the request, reject with any HTTP response, or accept with a subprotocol
and extra headers; after that it sends and receives through the session of the
ws layer. Calling ``send``/``receive`` (or iterating) before deciding accepts
with the defaults, so the simplest handler is just a loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, final

import trio

from .._wire import forwardable_fields, simple_response
from ..core import Observer
from ..http import Headers, HeadersLike, Request, Response, TakeoverOutcome
from ..http._router import error_response
from ..ws import (
    ClientOffer,
    ConnectionClosedError,
    HandshakeRequest,
    MessageChunks,
    WebSocket,
    WebSocketConfig,
    accept,
    websocket_session,
)

__all__ = ["ServerWebSocket"]

# Bytes of a streamed rejection body collected before it is sent (the
# connection closes after a rejection, so it is sent with Content-Length).
_MAX_REJECTION_BODY = 1024 * 1024


@final
class ServerWebSocket:
    """One WebSocket connection as a route handler sees it.

    Before the handshake completes:

    - :attr:`request` is the HTTP upgrade request (headers, query, cookies...),
      :attr:`path_params` the values captured by the route pattern;
    - ``await ws.accept(subprotocol=..., headers=...)`` sends the 101;
    - ``await ws.reject(response)`` answers with any HTTP response instead,
      and the connection closes.

    After it: ``receive``, ``async for``, ``send``, ``send_fragments``,
    ``receive_chunks``, ``ping``, ``aclose``, ``close_code``... as on
    :class:`trio_upgrade.ws.WebSocket` (:attr:`session` is that object).

    A handler that returns without accepting or rejecting gets a 403 sent
    for it; one that raises :class:`~trio_upgrade.http.HTTPError` before
    accepting gets that error's response, any other exception before
    accepting a 500; one that raises after accepting closes the session with
    1011. :class:`~trio_upgrade.ws.ConnectionClosed` escaping the handler
    (the peer went away) is not an error.
    """

    __slots__ = (
        "_config",
        "_observer",
        "_offer",
        "_outcome",
        "_prefetched",
        "_session",
        "_session_cm",
        "_state",
        "_stream",
        "_subprotocols",
        "request",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        prefetched: bytes,
        request: Request,
        offer: ClientOffer,
        *,
        config: WebSocketConfig,
        subprotocols: Iterable[str],
        observer: Observer | None = None,
    ) -> None:
        self.request = request
        self._stream = stream
        # Bytes the client sent after its handshake: its first frames.
        self._prefetched = prefetched
        self._offer = offer
        self._config = config
        # Subprotocols the route supports, in the server's order of preference.
        self._subprotocols = tuple(subprotocols)
        self._session: WebSocket | None = None
        # The session's context manager, entered by accept(), left by _leave().
        self._session_cm: AbstractAsyncContextManager[WebSocket] | None = None
        # "pending" until accept() or reject(), then "accepted" or "rejected".
        self._state = "pending"
        # The server's observer (metrics; None: nothing counted), told of the
        # session's start and end (the session counts its own messages).
        self._observer = observer
        # A rejection's status and size, for the access log.
        self._outcome: TakeoverOutcome | None = None

    # Before the 101 ------------------------------------------------------------

    @property
    def path_params(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def offered_subprotocols(self) -> tuple[str, ...]:
        """Subprotocols the client offered, in its order of preference."""
        return self._offer.subprotocols

    @property
    def state(self) -> str:
        """``"pending"``, ``"accepted"`` or ``"rejected"``."""
        return self._state

    def _default_subprotocol(self) -> str | None:
        # The first of the route's subprotocols that the client offered.
        for name in self._subprotocols:
            if name in self._offer.subprotocols:
                return name
        return None

    async def accept(
        self,
        *,
        subprotocol: str | None = None,
        headers: HeadersLike | None = None,
        config: WebSocketConfig | None = None,
    ) -> WebSocket:
        """Send the 101 and start the session; return it.

        *subprotocol* must be one the client offered (by default: the first of
        the route's ``subprotocols`` that the client offered, else none).
        *headers* are added to the 101; *config* replaces the route's limits.
        Raises :class:`~trio_upgrade.ws.ConnectionClosedError` (1006) if the
        client has gone away.
        """
        if self._state != "pending":
            raise RuntimeError(f"cannot accept: the handshake is already {self._state}")
        if subprotocol is None:
            subprotocol = self._default_subprotocol()
        if config is not None:
            self._config = config
        extra = Headers(headers).raw if headers is not None else ()
        accepted = accept(
            self._offer, subprotocol=subprotocol, config=self._config, extra_headers=extra
        )
        self._state = "accepted"
        await self._send(accepted.head())
        request = self.request
        handshake = HandshakeRequest(
            request.target,
            tuple(request.headers.raw),
            client=request.client,
            server=request.server,
            method=request.method,
        )
        connection = request.connection
        session_cm = websocket_session(
            self._stream,
            prefetched=self._prefetched,
            request=handshake,
            subprotocol=accepted.subprotocol,
            extensions=accepted.extensions,
            config=self._config,
            # The session's tasks are the connection's (docs/architecture.md,
            # "Flow of one connection"): no nursery of its own per idle session.
            nursery=connection.nursery if connection is not None else None,
        )
        self._session = session = await session_cm.__aenter__()
        self._session_cm = session_cm
        # The client's first frames now belong to the session.
        self._prefetched = b""
        if self._observer is not None:
            self._observer.session_opened()
        return session

    async def _leave(self, exc: BaseException | None) -> bool:
        """Leave the session's context (if accepted) as ``async with`` would on
        *exc*; whether it suppressed *exc*. The route's takeover calls it once."""
        session_cm = self._session_cm
        if session_cm is None:
            return False
        self._session_cm = None
        if exc is None:
            return bool(await session_cm.__aexit__(None, None, None))
        return bool(await session_cm.__aexit__(type(exc), exc, exc.__traceback__))

    async def reject(
        self,
        response: Response | int = 403,
        *,
        detail: str | None = None,
    ) -> None:
        """Refuse the handshake with *response* (or a status and a short text body).

        The connection closes after it. Raises
        :class:`~trio_upgrade.ws.ConnectionClosedError` (1006) if the client
        has gone away, and ``ValueError`` (nothing sent, the handshake still
        pending) for a header that cannot be written.
        """
        if self._state != "pending":
            raise RuntimeError(f"cannot reject: the handshake is already {self._state}")
        if isinstance(response, int):
            response = error_response(response, detail)
        body = response.body
        if not isinstance(body, (bytes, bytearray, memoryview)):
            # Collected before deciding: if this fails (too large, the iterator
            # raises) the handshake is still pending and gets its 500.
            body = await _collect(body)
            if self._state != "pending":
                raise RuntimeError(f"cannot reject: the handshake is already {self._state}")
        # Sent with its Content-Length, whatever framing the response declared,
        # a Date unless it has one, and Connection: close. Built (and every
        # field checked) before the state changes.
        data = simple_response(
            response.status, forwardable_fields(response.headers.raw), bytes(body)
        )
        self._state = "rejected"
        self._outcome = TakeoverOutcome(response.status, len(body))
        await self._send(data)

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client left before hearing the answer: the same exception as
            # when it leaves later (1006: no Close frame), not a server error.
            raise ConnectionClosedError(
                1006, "connection lost before the handshake answer"
            ) from None

    # After the 101 -------------------------------------------------------------

    @property
    def session(self) -> WebSocket:
        """The accepted session (RuntimeError before :meth:`accept`)."""
        if self._session is None:
            raise RuntimeError("the WebSocket handshake has not been accepted")
        return self._session

    async def _ensure(self) -> WebSocket:
        session = self._session
        if session is None:
            if self._state == "rejected":
                raise RuntimeError("the WebSocket handshake was rejected")
            session = await self.accept()
        return session

    def receive(self) -> Awaitable[str | bytes]:
        """The next message (``await ws.receive()``), as on the session.

        Once accepted, this is the session's own coroutine: no frame of ours
        stays on the stack, for hours, while an idle handler waits.
        """
        session = self._session
        if session is not None:
            return session.receive()
        return self._receive_first()

    async def _receive_first(self) -> str | bytes:
        return await (await self._ensure()).receive()

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        await (self._session or await self._ensure()).send(message)

    async def send_fragments(
        self, chunks: Iterable[str | bytes] | AsyncIterable[str | bytes]
    ) -> None:
        await (self._session or await self._ensure()).send_fragments(chunks)

    def receive_chunks(self) -> MessageChunks:
        """Like :meth:`trio_upgrade.ws.WebSocket.receive_chunks` (after :meth:`accept`)."""
        return self.session.receive_chunks()

    async def ping(self, payload: bytes | None = None) -> float:
        return await (self._session or await self._ensure()).ping(payload)

    async def send_json(self, data: Any, *, binary: bool = False) -> None:
        """Send *data* as compact UTF-8 JSON (a text message; binary with *binary*)."""
        await (self._session or await self._ensure()).send_json(data, binary=binary)

    async def receive_json(self) -> Any:
        """The next message parsed as JSON (``ValueError`` if it is not JSON)."""
        return await (self._session or await self._ensure()).receive_json()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self._session is None:
            if self._state == "pending":
                await self.reject(403)
            else:
                await trio.lowlevel.checkpoint()
            return
        await self._session.aclose(code, reason)

    def __aiter__(self) -> ServerWebSocket:
        return self

    def __anext__(self) -> Awaitable[str | bytes]:
        """The next message; the iteration ends when the peer closes normally.

        Once accepted, the session's own coroutine (see :meth:`receive`).
        """
        session = self._session
        if session is not None:
            return session.__anext__()
        return self._anext_first()

    async def _anext_first(self) -> str | bytes:
        return await (await self._ensure()).__anext__()

    @property
    def subprotocol(self) -> str | None:
        return self.session.subprotocol

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.session.extensions

    @property
    def closed(self) -> bool:
        """True once rejected, or once the accepted session is closing or closed."""
        if self._session is None:
            return self._state == "rejected"
        return self._session.closed

    @property
    def close_code(self) -> int | None:
        return self._session.close_code if self._session is not None else None

    @property
    def close_reason(self) -> str:
        return self._session.close_reason if self._session is not None else ""

    def __repr__(self) -> str:
        return f"<ServerWebSocket {self.request.target} {self._state}>"

    def _finish(self) -> TakeoverOutcome | None:
        """After the handler and the session have ended: the outcome for the access
        log, and the end of the session for the observer."""
        session = self._session
        if session is None:
            return self._outcome
        if self._observer is not None:
            self._observer.session_closed()
        code = session.close_code
        return TakeoverOutcome(101, close_code=1006 if code is None else code)


async def _collect(chunks: AsyncIterable[bytes]) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > _MAX_REJECTION_BODY:
            raise ValueError("rejection body too large")
        parts.append(chunk)
    return b"".join(parts)
