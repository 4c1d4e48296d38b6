"""One browser tab's connection: read its messages, write the room's events, apply the policies.

::

    ws ──► read loop ──► validate, rate-limit ──► hub.join / hub.say / hub.leave
    ws ◄── write loop ◄── bounded queue ◄── deliver() ◄── hub (any task)

The queue is the only buffer between the room and this client: ``deliver``
never waits, and a full queue closes the connection with 1013, so a client
that reads slower than its room talks is disconnected instead of holding
anyone up. How the connection ends decides its close code:

- 1000: the client left, or closed;
- 1001: the server is shutting down (the WebSocket layer sends it on drain);
- 1003: the client sent a binary message (the protocol is JSON text);
- 1008: the client kept sending bad or excessive messages;
- 1009: a message longer than ``max_frame`` (the WebSocket layer);
- 1013: the client could not keep up.
"""

from __future__ import annotations

import logging
import secrets
from typing import final

import trio

from trio_upgrade.bridge import ServerWebSocket
from trio_upgrade.ws import ConnectionClosed

from ._config import ChatConfig
from ._hub import Hub, HubUnavailable, JoinRefused, Member
from ._protocol import (
    Join,
    Leave,
    ProtocolError,
    Say,
    encode,
    error_event,
    parse_client_message,
)
from ._ratelimit import TokenBucket

__all__ = ["ChatSession"]

logger = logging.getLogger("examples.chat")

# Bounds the hub calls made while the connection winds down (Redis may be slow).
_CLEANUP_TIMEOUT = 5.0


@final
class ChatSession:
    """The chat protocol over one accepted WebSocket; a hub :class:`Subscriber`."""

    __slots__ = (
        "_close",
        "_config",
        "_hub",
        "_key",
        "_member",
        "_out_recv",
        "_out_send",
        "_rate",
        "_room",
        "_scope",
        "_strikes",
        "_written",
        "_ws",
    )

    def __init__(self, ws: ServerWebSocket, hub: Hub, config: ChatConfig) -> None:
        self._ws = ws
        self._hub = hub
        self._config = config
        # Identifies this connection's presence entries, across processes.
        self._key = secrets.token_hex(8)
        self._out_send, self._out_recv = trio.open_memory_channel[str](config.queue)
        # Cancelled to end the session from outside its tasks (a full queue).
        self._scope = trio.CancelScope()
        # The close code and reason once the server has decided to close.
        self._close: tuple[int, str] | None = None
        # The room this connection is in (or joining), and as whom.
        self._room: str | None = None
        self._member: Member | None = None
        self._rate = TokenBucket(config.rate, config.burst)
        # Error answers cost strikes; running out of them closes with 1008.
        self._strikes = TokenBucket(config.strike_rate, config.strike_burst)
        # Set when the write loop has ended (its queue drained, or the peer gone).
        self._written = trio.Event()

    # -- Subscriber ------------------------------------------------------------

    def deliver(self, payload: str) -> None:
        try:
            self._out_send.send_nowait(payload)
        except trio.WouldBlock:
            self.drop("too slow: could not keep up with the room")
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the session is ending

    def drop(self, reason: str) -> None:
        self._stop(1013, reason)

    def _stop(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
        self._scope.cancel()

    # -- the connection ----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the client leaves, misbehaves or falls behind,
        or the server shuts down; then leave the room and close."""
        ws = self._ws
        await ws.accept()
        try:
            with self._scope:
                rooms = await self._hub.rooms()
                self.deliver(
                    encode(
                        {
                            "type": "hello",
                            "rooms": [{"name": n, "count": c} for n, c in rooms],
                            "limits": {
                                "nick": self._config.max_nick,
                                "room": self._config.max_room,
                                "text": self._config.max_text,
                            },
                        }
                    )
                )
                self._hub.connect(self)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    await self._read_loop()
                    if self._close is not None:
                        # Closing for the client's own conduct: let it read the
                        # error events queued before the close (bounded).
                        self._hub.disconnect(self)
                        self._out_send.close()
                        with trio.move_on_after(self._config.close_timeout):
                            await self._written.wait()
                    nursery.cancel_scope.cancel()
        except HubUnavailable as exc:
            logger.warning("hub unavailable: %s", exc)
            self._stop(1011, "chat storage unavailable, try again later")
        finally:
            self._hub.disconnect(self)
            self._out_send.close()
            with trio.move_on_after(_CLEANUP_TIMEOUT, shield=True):
                await self._leave_room()
                code, reason = self._close or (1000, "")
                await ws.aclose(code, reason)

    async def _write_loop(self) -> None:
        try:
            async for payload in self._out_recv:
                await self._ws.send(payload)
        except ConnectionClosed:
            self._scope.cancel()  # the client is gone: nothing more to read either
        finally:
            self._written.set()

    async def _read_loop(self) -> None:
        config = self._config
        try:
            async for raw in self._ws:
                if not isinstance(raw, str):
                    self._close = (1003, "only JSON text messages are accepted")
                    return
                if not self._rate.allow(trio.current_time()):
                    if not self._reject(ProtocolError("rate_limited", "too many messages")):
                        return
                    continue
                message = parse_client_message(
                    raw,
                    max_nick=config.max_nick,
                    max_room=config.max_room,
                    max_text=config.max_text,
                )
                if isinstance(message, ProtocolError):
                    if not self._reject(message):
                        return
                elif isinstance(message, Say):
                    if not await self._say(message.text):
                        return
                elif isinstance(message, Join):
                    await self._join(message)
                elif isinstance(message, Leave):
                    room = self._room
                    await self._leave_room()
                    self.deliver(encode({"type": "left", "room": room}))
        except ConnectionClosed:
            pass  # closed abnormally (1009, 1006...): nothing to answer

    def _reject(self, error: ProtocolError) -> bool:
        """Answer a bad message with an error event; ``False``: out of strikes, close."""
        if self._strikes.allow(trio.current_time()):
            self.deliver(error_event(error))
            return True
        self._close = (1008, "too many bad or excessive messages")
        return False

    async def _join(self, join: Join) -> None:
        await self._leave_room()
        member = Member(join.nick, self._key, join.client)
        # Set before the call: if it is cancelled midway, cleanup still leaves.
        self._room, self._member = join.room, member
        try:
            await self._hub.join(join.room, member, self)
        except JoinRefused as exc:
            self._room = self._member = None
            self.deliver(error_event(ProtocolError(exc.code, exc.message)))
        except HubUnavailable as exc:
            logger.warning("join failed: %s", exc)
            await self._leave_room()
            self.deliver(error_event(ProtocolError("unavailable", "try again in a moment")))

    async def _say(self, text: str) -> bool:
        """Post *text*; ``False`` if that cost the last strike (close)."""
        room, member = self._room, self._member
        if room is None or member is None:
            return self._reject(ProtocolError("not_in_room", "join a room first"))
        try:
            posted = await self._hub.say(room, member, text)
        except HubUnavailable as exc:
            logger.warning("say failed: %s", exc)
            self.deliver(error_event(ProtocolError("unavailable", "not sent: try again")))
            return True
        if not posted:
            # Our place was taken by a newer connection of this tab, or expired.
            await self._leave_room()
            self.deliver(error_event(ProtocolError("not_in_room", f"you are no longer in #{room}")))
        return True

    async def _leave_room(self) -> None:
        room, member = self._room, self._member
        self._room = self._member = None
        if room is not None and member is not None:
            try:
                await self._hub.leave(room, member, self)
            except HubUnavailable as exc:
                # Our entry stays until the storage is back; the room's events
                # have stopped for us already.
                logger.warning("could not leave #%s: %s", room, exc)
