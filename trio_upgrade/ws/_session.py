"""One WebSocket session over a trio stream: a reader task, a writer task, the application.

::

    stream ─► reader task ─► WebSocketProtocol ─► receive channel ─► ws.receive() (application)
    stream ◄─ writer task ◄─ send channel ◄─ WebSocketProtocol ◄──── ws.send()    (application)
                          ▲
              pongs, Close replies (reader), keepalive pings (the shared keeper)

This module is the trio driver of the sans-I/O :class:`._protocol.WebSocketProtocol`,
which owns the wire: parsing, limits, framing, deflate, the close handshake
and the session's state. Here are only tasks, channels and waiting.

The reader is the only task that calls ``receive_some``; the writer the only
one that calls ``send_all``. The writer drains everything queued and writes it
with one ``send_all``; the reader hands every event parsed from one read to
the application before it reads again. Framing happens in the task that sends
(the application's, for messages), so the writer only moves bytes.

Backpressure: the receive channel holds at most ``receive_queue`` items and
``max_queued_bytes`` (plus one message) of inflated payload, after which the
reader stops reading and the peer's TCP window closes; outgoing bytes not yet
written are counted, and above ``send_buffer`` the sender (application or
reader) waits for the writer. The reader also yields to the scheduler every
64 events of one read.

An idle session costs little memory: the writer task, both channels and the
wsproto connection are created on first use; a writer started for control
frames (pings, pongs) ends once they are written; a session quiet for a whole
keepalive interval lets its writer and receive channel go again (``_shed``);
keepalive and server drains are handled by shared tasks in a nursery someone
owns (:mod:`._keeper`), which call :meth:`WebSocket.keepalive_tick` and
:meth:`WebSocket.drain_close`;
and sessions started by :func:`serve_websocket` or the bridge run in the
connection's own nursery.
"""

from __future__ import annotations

import enum
import json as _json
import logging
import math
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, final

import trio
from wsproto.extensions import Extension

from ..core import Observer, Shutdown, current_connection
from ._config import WebSocketConfig
from ._errors import NORMAL_CLOSE_CODES, ConnectionClosed, closed_error
from ._keeper import Drain, Keeper, start_keepalive, stop_keepalive, unwatch_drain, watch_drain
from ._protocol import (
    COPY_LIMIT,
    CloseReceived,
    Fragment,
    PingReceived,
    PingWaiter,
    PongReceived,
    State,
    Turn,
    Violation,
    WebSocketProtocol,
    join_pieces,
)
from ._request import HandshakeRequest

logger = logging.getLogger("trio_upgrade.ws")

__all__ = ["MessageChunks", "WebSocket", "websocket_session"]

_OPEN = State.OPEN
_CLOSED = State.CLOSED

# The fast paths of receive()/send() are always cancel points but yield to the
# scheduler only once per this many calls (see docs/websocket.md, "Scheduling").
_SCHEDULE_MASK = 64 - 1

_DEFAULT_CONFIG = WebSocketConfig()


class _End(enum.IntEnum):
    """How the reader stopped reading: how the stream must be wound down."""

    LOST = 0
    """EOF or a broken stream without a Close handshake: just close."""
    HANDSHAKE_DONE = 1
    """Close frames went both ways."""
    FAILED = 2
    """We sent a Close because the peer broke the protocol or a limit."""


_Item = str | bytes | Fragment


@final
class WebSocket:
    """An open WebSocket session (RFC 6455), server or client side.

    Made by :func:`websocket_session`, :func:`serve_websocket` or
    :func:`open_websocket`, never directly. Methods may be called from several
    tasks of the session's owner; one message is never interleaved with another.

    **Scheduling.** When a message is already queued, :meth:`receive` returns it
    and :meth:`send` queues its frame without yielding to the scheduler, except
    once every 64 calls; both are *always* cancel points. This keeps a busy
    session from paying a context switch per message while a flooding peer
    still cannot starve other tasks.
    """

    __slots__ = (
        "__weakref__",
        "_config",
        "_done",
        "_drain",
        "_drained",
        "_in_message",
        "_keepalive_ping",
        "_keeper",
        "_nursery",
        "_observer",
        "_ops",
        "_ops_mark",
        "_pending",
        "_proto",
        "_queued",
        "_receiver",
        "_recv_in",
        "_recv_out",
        "_room",
        "_send_in",
        "_send_lock",
        "_send_out",
        "_stream",
        "_writer_done",
        "extensions",
        "request",
        "subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        prefetched: bytes,
        request: HandshakeRequest,
        subprotocol: str | None,
        extensions: Sequence[Extension],
        config: WebSocketConfig,
        client: bool,
        observer: Observer | None = None,
    ) -> None:
        self._stream = stream
        self._config = config
        # The server's observer (metrics; None: nothing counted), told of each
        # message the application receives or sends.
        self._observer = observer
        self.request = request
        """The opening handshake request (on a client: the one we sent)."""
        self.subprotocol = subprotocol
        """The negotiated subprotocol, or ``None``."""
        self.extensions = tuple(ext.name for ext in extensions)
        """Names of the negotiated extensions, e.g. ``("permessage-deflate",)``."""
        # Everything about the wire: framing, limits, the close handshake and
        # the session's state (see _protocol).
        self._proto = WebSocketProtocol(
            client=client,
            extensions=extensions,
            max_message_size=config.max_message_size,
            max_fragments=config.max_fragments,
        )
        if prefetched:
            self._proto.receive_data(prefetched)
        # The receive channel, made with the first message (see _channel()).
        self._recv_in: trio.MemorySendChannel[_Item] | None = None
        self._recv_out: trio.MemoryReceiveChannel[_Item] | None = None
        # The application task waiting for the channel to have something: it
        # waits here rather than in the channel, which need not exist yet.
        self._receiver: trio.lowlevel.Task | None = None
        # The writer's channel and task start with the first outgoing frame.
        # Unbounded in count on purpose: the bound is in bytes (_pending vs
        # send_buffer), and a Close frame must be queued without waiting.
        self._send_in: trio.MemorySendChannel[bytes] | None = None
        self._send_out: trio.MemoryReceiveChannel[bytes] | None = None
        self._writer_done: trio.Event | None = None
        # Where the reader (and later the writer) run; set by _start().
        self._nursery: trio.Nursery | None = None
        # The shared tasks this session is registered with (see _keeper).
        self._drain: Drain | None = None
        self._keeper: Keeper | None = None
        # Outgoing bytes queued but not yet written by the writer.
        self._pending = 0
        # Set (then replaced) when _pending drops to send_buffer; None when nobody waits.
        self._drained: trio.Event | None = None
        # Fast-path calls of receive()/send(); every 64th one yields.
        self._ops = 0
        # _ops at the last keepalive tick: unchanged at the next one means the
        # application was quiet for a whole interval (see _shed()).
        self._ops_mark = -1
        # Bytes (characters for text) queued for the application, against
        # max_queued_bytes; _room is set when it drops below that bound while
        # the reader waits.
        self._queued = 0
        self._room: trio.Event | None = None
        # The application stopped in the middle of a chunked message.
        self._in_message = False
        # The last keepalive ping (None before the first one).
        self._keepalive_ping: PingWaiter | None = None
        # Held while a fragmented message is being sent.
        self._send_lock: trio.Lock | None = None
        # Set when the phase becomes CLOSED; made only if somebody waits for that.
        self._done: trio.Event | None = None

    def __repr__(self) -> str:
        proto = self._proto
        side = "client" if proto.client else "server"
        state = "open" if proto.state is _OPEN else f"closed {proto.close_code}"
        return f"<WebSocket {side} {self.request.path!r} {state}>"

    # -- public state -------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """``None`` while open; then the close code (RFC 6455 §7.1.5), 1006 if the
        connection was lost without a Close frame."""
        return self._proto.close_code

    @property
    def close_reason(self) -> str:
        """The close reason that came with :attr:`close_code` (may be empty)."""
        return self._proto.close_reason

    @property
    def closed(self) -> bool:
        """True once the session is closing or closed: sending is no longer possible."""
        return self._proto.state is not _OPEN

    # -- receiving ----------------------------------------------------------

    async def _next(self) -> _Item:
        """The next queued item: THE fast path of receive(), ``async for`` and receive_chunks().

        Trio's memory channels' rule, with the schedule point thinned out: always
        a cancel point, checked before anything is taken (so a cancelled call
        loses nothing); an item already queued is taken at once, and every 64th
        call (counted per session, with :meth:`send`) then also yields to the
        scheduler, shielded since the item is already taken; with nothing
        queued it waits, a full checkpoint. Raises :class:`ConnectionClosed`
        once the channel is closed and empty.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._ops += 1
        # self._recv_out, not a local: a local would keep the channel alive
        # while this frame waits, after _shed() let go of it.
        if self._recv_out is not None:
            try:
                item = self._recv_out.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                raise self._closed_error() from None
            else:
                # _taken(), inlined: this is the hottest path of a busy session.
                self._queued -= len(item) if type(item) is not Fragment else len(item.data)
                if self._room is not None:
                    self._taken(None)
                if not self._ops & _SCHEDULE_MASK:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return item
        # Nothing queued: wait, in this frame (an idle session's application
        # waits on this stack for its whole life; every frame on it is memory).
        while True:
            if self._receiver is not None:
                # Another task already waits here: this one waits in the
                # channel's own queue (rare: two tasks receiving at once).
                if self._recv_out is None:
                    self._channel()
                out = self._recv_out
                assert out is not None
                try:
                    item = await out.receive()
                except trio.EndOfChannel:
                    raise self._closed_error() from None
                self._taken(item)
                return item
            self._receiver = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_receive)
            if self._recv_out is not None:
                try:
                    item = self._recv_out.receive_nowait()
                except trio.WouldBlock:
                    continue
                except trio.EndOfChannel:
                    raise self._closed_error() from None
                self._taken(item)
                return item

    def _taken(self, item: _Item | None) -> None:
        # The application took *item* (None: already counted): its bytes no
        # longer count against max_queued_bytes; a reader waiting for room may
        # go on.
        if item is not None:
            self._queued -= len(item.data) if type(item) is Fragment else len(item)
        room = self._room
        if room is not None and self._queued < self._config.max_queued_bytes:
            self._room = None
            room.set()

    def _abort_receive(self, _: object) -> trio.lowlevel.Abort:
        self._receiver = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake_receiver(self) -> None:
        task = self._receiver
        if task is not None:
            self._receiver = None
            trio.lowlevel.reschedule(task)

    def _channel(self) -> trio.MemorySendChannel[_Item]:
        """The receive channel's sending end, made on first use.

        An idle session has none: trio's memory channel (its state, deque,
        wait queues and two ends) is about 1.8 KiB.
        """
        send_in = self._recv_in
        if send_in is None:
            send_in, self._recv_out = trio.open_memory_channel[_Item](self._config.receive_queue)
            self._recv_in = send_in
        return send_in

    def _close_receive(self) -> None:
        """No more items: the application gets what is queued, then ConnectionClosed."""
        (self._recv_in or self._channel()).close()
        self._wake_receiver()
        room = self._room
        if room is not None:
            # The reader waiting for room stops waiting: we are closing.
            self._room = None
            room.set()

    async def _skip_partial(self) -> None:
        # The application abandoned a chunked message: drop the rest of it.
        while self._in_message:
            item = await self._next()
            self._in_message = type(item) is Fragment and not item.last

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`ConnectionClosed` once the session is closed and every
        message received before the close has been returned. Cancelling it
        loses nothing: a message is either returned or stays queued.
        """
        if self._in_message:
            await self._skip_partial()
        item = await self._next()
        if type(item) is Fragment:
            item = await self._gather(item)
        if self._observer is not None:
            self._observer.message_received(message_size(item))
        return item

    async def _gather(self, item: Fragment) -> str | bytes:
        # A message that arrived over several reads: gather its pieces.
        parts = [item.data]
        self._in_message = True
        while not item.last:
            next_item = await self._next()
            assert type(next_item) is Fragment
            item = next_item
            parts.append(item.data)
        self._in_message = False
        return join_pieces(parts)

    def receive_chunks(self) -> MessageChunks:
        """The next message as an async iterator of chunks, without buffering it whole.

        ``async for chunk in ws.receive_chunks(): ...`` yields ``str`` chunks for
        a text message (each valid UTF-8 on its own) or ``bytes`` for binary,
        ending with the message. Chunk sizes follow the network, not the sender's
        fragments. Leaving the loop early discards the rest of the message.
        Raises :class:`ConnectionClosed` if the session closes first.
        """
        return MessageChunks(self)

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        """``async for message in ws``: ends quietly on a normal close (1000, 1001, 1005)."""
        # receive(), with the normal close turned into the end of the loop.
        try:
            if self._in_message:
                await self._skip_partial()
            item = await self._next()
            if type(item) is Fragment:
                item = await self._gather(item)
            if self._observer is not None:
                self._observer.message_received(message_size(item))
            return item
        except ConnectionClosed as exc:
            if exc.code in NORMAL_CLOSE_CODES:
                raise StopAsyncIteration from None
            raise

    # -- sending ------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosed:
        return closed_error(self._proto.close_code or 1006, self._proto.close_reason)

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one message: text for ``str``, binary for bytes-like objects.

        Returns once the frame is queued for the writer; waits first if more
        than ``send_buffer`` bytes are still unwritten (a slow peer). Raises
        :class:`ConnectionClosed` if the session is closing or closed.
        Always a cancel point, checked before anything is queued; cancelling
        it while it waits for the writer leaves the message queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        lock = self._send_lock
        if lock is not None and lock.locked():
            # Another task is sending a fragmented message: wait for its end.
            async with lock:
                send_in = self._send_in or self._message_writer(message)
                self._pending += self._proto.send_message(message, send_in.send_nowait)
        else:
            send_in = self._send_in or self._message_writer(message)
            self._pending += self._proto.send_message(message, send_in.send_nowait)
        if self._observer is not None:
            self._observer.message_sent(message_size(message))
        await self._sent()

    async def _sent(self) -> None:
        """The end of every send (the one rule): wait while more than ``send_buffer``
        bytes are unwritten, else yield to the scheduler on every 64th call."""
        self._ops += 1
        if self._pending > self._config.send_buffer:
            await self._wait_drained()
        elif not self._ops & _SCHEDULE_MASK:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _message_writer(self, message: object) -> trio.MemorySendChannel[bytes]:
        # The writer for a message about to be framed, unless nothing may be
        # sent, or the message is no message (no writer is started for it).
        if self._proto.state is not _OPEN:
            raise self._closed_error()
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a message is str or bytes-like, not {type(message).__name__}")
        return self._start_writer()

    async def _send_frame(self, data: str | bytes | bytearray | memoryview, fin: bool) -> None:
        # One frame of send_fragments(): the same rule as send().
        await trio.lowlevel.checkpoint_if_cancelled()
        frame = self._proto.send_fragment(data, fin)
        send_in = self._send_in or self._start_writer()
        send_in.send_nowait(frame)
        self._pending += len(frame)
        await self._sent()

    async def _wait_drained(self) -> None:
        limit = self._config.send_buffer
        while self._pending > limit:
            done = self._writer_done
            if self._proto.state is _CLOSED or done is None or done.is_set():
                # No writer left to take the bytes (the stream broke).
                raise self._closed_error()
            event = self._drained
            if event is None:
                event = self._drained = trio.Event()
            await event.wait()

    async def send_fragments(
        self,
        chunks: Iterable[str | bytes | bytearray | memoryview]
        | AsyncIterable[str | bytes | bytearray | memoryview],
    ) -> None:
        """Send one message made of *chunks*, each chunk one frame (RFC 6455 §5.4).

        All chunks must be ``str`` (a text message) or all bytes-like (binary).
        Other sends wait until this message is complete. If the iterator
        raises or the call is cancelled after the first frame went out, the
        message cannot be completed and the session is closed with 1011.
        An empty iterable sends nothing.
        """
        if self._send_lock is None:
            self._send_lock = trio.Lock()
        kind: type | None = None
        # Each chunk goes out when the next one arrives, so the last one can
        # carry FIN without an extra empty frame.
        previous: str | bytes | bytearray | memoryview | None = None
        sent_any = False
        # The message's size, for the observer (metrics).
        size = 0

        async def push(chunk: str | bytes | bytearray | memoryview) -> None:
            nonlocal kind, previous, sent_any, size
            chunk_kind = str if isinstance(chunk, str) else bytes
            if kind is None:
                kind = chunk_kind
            elif chunk_kind is not kind:
                raise TypeError("a fragmented message mixes str and bytes chunks")
            if previous is not None:
                await self._send_frame(previous, False)
                sent_any = True
            previous = chunk
            if self._observer is not None:
                size += message_size(chunk)

        async with self._send_lock:
            try:
                if isinstance(chunks, AsyncIterable):
                    async for chunk in chunks:
                        await push(chunk)
                else:
                    for chunk in chunks:
                        await push(chunk)
                if previous is not None:
                    await self._send_frame(previous, True)
                    if self._observer is not None:
                        self._observer.message_sent(size)
            except BaseException:
                if sent_any:
                    self._start_close(1011, "fragmented message interrupted")
                raise

    # -- ping and close -----------------------------------------------------

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a Ping and wait for its Pong; return the round trip in seconds.

        *payload* (at most 125 bytes) defaults to 4 random bytes. A Pong also
        answers every earlier unanswered ping (RFC 6455 §5.5.3). Raises
        :class:`ConnectionClosed` if the session closes first.
        """
        if payload is None:
            payload = os.urandom(4)
        elif len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        await trio.lowlevel.checkpoint()
        event = trio.Event()
        waiter = PingWaiter(trio.current_time(), event)
        self._queue(self._proto.send_ping(payload, waiter))
        try:
            await event.wait()
        finally:
            self._proto.forget_ping(payload, waiter)
        if waiter.rtt is None:
            raise self._closed_error()
        return waiter.rtt

    async def send_json(self, data: Any, *, binary: bool = False) -> None:
        """Send *data* as compact UTF-8 JSON: a text message (a binary one with *binary*)."""
        text = _json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        await self.send(text.encode() if binary else text)

    async def receive_json(self) -> Any:
        """Receive one message (text or binary) and parse it as JSON.

        Malformed JSON raises :class:`ValueError` (``json.JSONDecodeError``);
        the session stays open, the handler decides what to answer.
        """
        return _json.loads(await self.receive())

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the session (RFC 6455 §7.1.2): send Close, wait for the peer's, close the stream.

        Waits at most ``close_timeout`` for the peer, then drops the connection.
        Idempotent; after a close already under way it just waits for the end.
        Messages still queued for the application can be received afterwards.
        """
        self._start_close(code, reason)
        await self._wait_done()

    def _start_close(self, code: int, reason: str) -> None:
        frame = self._proto.close(code, reason)
        if frame is not None:
            self._queue_final(frame)
            # The application learns at once that the session is closing; what the
            # peer sends until its Close arrives is dropped.
            self._close_receive()

    async def _wait_done(self) -> None:
        if self._proto.state is _CLOSED:
            await trio.lowlevel.checkpoint()
            return
        done = self._done
        if done is None:
            done = self._done = trio.Event()
        with trio.move_on_after(self._config.close_timeout):
            await done.wait()
        if not done.is_set():  # (set when the phase becomes CLOSED)
            self._proto.connection_lost("close timed out")
            await self._kill()
            await done.wait()

    async def _kill(self) -> None:
        # Closing the stream wakes the reader and writer with ClosedResourceError.
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self._stream)

    # -- internals shared by the tasks --------------------------------------

    def _start_writer(self, transient: bool = False) -> trio.MemorySendChannel[bytes]:
        """Start the writer for frames about to be queued.

        A *transient* writer (started for control frames: a keepalive ping, a
        pong, a Close) ends once it has written what is queued, so that a
        session that sends no messages keeps no writer between pings.
        """
        self._send_in, self._send_out = trio.open_memory_channel[bytes](math.inf)
        done = self._writer_done = trio.Event()
        assert self._nursery is not None, "session not started"
        self._nursery.start_soon(self._writer, self._send_out, done, transient)
        return self._send_in

    def _writer_gone(self, done: trio.Event) -> None:
        # The writer that owns *done* stops taking frames: the next one starts
        # another (unless a newer writer has already replaced it).
        if self._writer_done is done:
            self._send_in = self._send_out = None
            self._writer_done = None

    def _queue(self, frame: bytes) -> None:
        send_in = self._send_in
        if send_in is None:
            send_in = self._start_writer(transient=True)
        send_in.send_nowait(frame)
        self._pending += len(frame)

    def _queue_final(self, frame: bytes) -> None:
        # A Close frame is the last thing we send (RFC 6455 §5.5.1): the writer
        # ends once it has written it.
        self._queue(frame)
        assert self._send_in is not None
        self._send_in.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): send Close with *code*, stop reading."""
        frame = self._proto.close(code, reason)
        if frame is not None:
            self._queue_final(frame)
        self._close_receive()

    def _answered(self, answered: list[PingWaiter]) -> None:
        # A Pong answered these pings: their round trip ends now.
        now = trio.current_time()
        for waiter in answered:
            waiter.rtt = now - waiter.sent
            if waiter.event is not None:
                waiter.event.set()

    def _wake_everyone(self) -> None:
        self._close_receive()
        if self._send_in is not None:
            self._send_in.close()
        for waiter in self._proto.drop_pings():
            if waiter.event is not None:
                waiter.event.set()
        if self._drained is not None:
            self._drained.set()
            self._drained = None

    # -- the tasks ----------------------------------------------------------

    async def _reader(self) -> None:
        # The read loop runs in this frame rather than in a helper: an idle
        # session's reader waits on this stack for its whole life, and every
        # coroutine frame on it is memory.
        stream = self._stream
        config = self._config
        low = config.min_read_size
        high = config.max_read_size
        size = low
        # A TCP stream is read through its socket: SocketStream.receive_some
        # only adds a coroutine frame and a context manager to the idle stack
        # (~0.6 KiB) to turn OSError into stream errors, done here instead.
        receive = stream.socket.recv if type(stream) is trio.SocketStream else stream.receive_some
        how: _End | None = _End.LOST
        try:
            how = await self._dispatch()  # bytes prefetched with the handshake, if any
            while how is None:
                try:
                    data = await receive(size)
                except OSError:
                    data = b""  # the socket broke (a reset...): as at EOF
                if not data:
                    how = _End.LOST
                    break
                # Read more at once while data flows, less when it trickles.
                n = len(data)
                if n == size:
                    size = min(size * 2, high)
                elif n < size >> 3 and size > low:
                    size = max(size >> 1, low)
                self._proto.receive_data(data)
                how = await self._dispatch()
                if how is None and self._pending > config.send_buffer:
                    # Our pongs pile up: stop reading until the peer takes them.
                    await self._wait_drained()
            if how is not _End.LOST:
                await self._wind_down(how)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            # ConnectionClosed: the writer died while the reader waited for it.
            pass
        finally:
            self._proto.connection_lost("connection lost")
            self._wake_everyone()
            if self._drain is not None:
                unwatch_drain(self, self._drain)
                self._drain = None
            if self._keeper is not None:
                stop_keepalive(self._keeper)
                self._keeper = None
            await self._kill()
            self._proto.connection_closed()
            if self._done is not None:
                self._done.set()

    async def _deliver(self, item: _Item, n: int) -> None:
        """Queue *item* (*n* bytes or characters) for the application; wait for room.

        Waits while the channel is full (``receive_queue`` items) and, once
        the item is queued, while more than ``max_queued_bytes`` are.
        """
        send_in = self._recv_in or self._channel()
        self._queued += n
        try:
            send_in.send_nowait(item)
        except trio.WouldBlock:
            # Full: the application must run before there is room.
            self._wake_receiver()
            try:
                await send_in.send(item)
            except trio.ClosedResourceError:
                # A local close began meanwhile: the item is dropped.
                self._queued -= n
                return
        except trio.ClosedResourceError:
            self._queued -= n
            return
        if self._receiver is not None:
            self._wake_receiver()
        if self._queued >= self._config.max_queued_bytes:
            await self._wait_room()

    async def _wait_room(self) -> None:
        # Stop reading (backpressure) until the application has taken enough,
        # or the session is closing (what the peer sends then is dropped).
        limit = self._config.max_queued_bytes
        while self._queued >= limit and self._proto.state is _OPEN:
            room = self._room = trio.Event()
            await room.wait()

    async def _dispatch(self) -> _End | None:
        """Hand on every event parsed so far; return how to wind down, or None to go on.

        Pieces of one message parsed from the same read (a peer may send
        hundreds of tiny fragments) come as one item. The protocol says when
        to let others run (:class:`Turn`, every 64 frames), so that one read
        full of tiny frames cannot keep other connections waiting.
        """
        proto = self._proto
        config = self._config
        # Some message was passed on in this call.
        delivered = False
        try:
            for event in proto.events():
                cls = type(event)
                if cls is str or cls is bytes:
                    # The common case, _deliver() inlined: a whole message.
                    delivered = True
                    n = len(event)  # type: ignore[arg-type]
                    self._queued += n
                    try:
                        (self._recv_in or self._channel()).send_nowait(event)  # type: ignore[arg-type]
                    except trio.WouldBlock:
                        self._queued -= n
                        await self._deliver(event, n)  # type: ignore[arg-type]
                        continue
                    except trio.ClosedResourceError:
                        self._queued -= n
                        continue
                    if self._receiver is not None:
                        self._wake_receiver()
                    if self._queued >= config.max_queued_bytes:
                        await self._wait_room()
                elif cls is Fragment:
                    assert isinstance(event, Fragment)
                    delivered = delivered or event.last
                    await self._deliver(event, len(event.data))
                elif cls is Turn:
                    await trio.lowlevel.checkpoint()
                elif cls is PingReceived:
                    if self._pending + proto.pongs_owed() > config.send_buffer:
                        # The peer does not read its pongs: stop reading until
                        # it does (the bound on what we owe it).
                        pongs = proto.take_pongs()
                        if pongs is not None:
                            self._queue(pongs)
                        await self._wait_drained()
                elif cls is PongReceived:
                    assert isinstance(event, PongReceived)
                    self._answered(event.answered)
                elif cls is CloseReceived:
                    assert isinstance(event, CloseReceived)
                    if event.reply is not None:
                        # The peer closed first; our answer is the last frame.
                        self._queue_final(event.reply)
                        self._close_receive()
                    return _End.HANDSHAKE_DONE
                else:
                    assert isinstance(event, Violation)
                    recv_in = self._recv_in
                    if delivered or (
                        recv_in is not None and recv_in.statistics().current_buffer_used
                    ):
                        # Messages that arrived before the violation (in this
                        # read, or in an earlier one the application has not
                        # taken yet) are passed on: let the application answer
                        # them before our Close goes out (two turns of the
                        # scheduler, no more).
                        await trio.lowlevel.checkpoint()
                        await trio.lowlevel.checkpoint()
                    self._fail(event.code, event.reason)
                    return _End.FAILED
        finally:
            # Pongs owed for pings of this read go as one item (a flood of empty
            # pings must not become a flood of tiny objects).
            pongs = proto.take_pongs()
            if pongs is not None:
                self._queue(pongs)
        return None

    async def _wind_down(self, how: _End) -> None:
        """After Close frames: flush, let the peer see our end, then close (bounded)."""
        stream = self._stream
        with trio.move_on_after(self._config.close_timeout):
            if self._writer_done is not None:
                await self._writer_done.wait()
            if how is _End.FAILED and isinstance(stream, trio.abc.HalfCloseableStream):
                # Half-close and drain, so that unread bytes of the peer do not
                # turn our close into a reset that could destroy our Close frame.
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                while await stream.receive_some(self._config.max_read_size):
                    pass
            elif how is _End.HANDSHAKE_DONE and self._proto.client:
                # RFC 6455 §7.1.1: the server closes the TCP connection first.
                while await stream.receive_some(self._config.min_read_size):
                    pass
            await stream.aclose()

    async def _send_parts(self, parts: list[bytes]) -> None:
        small: list[bytes] = []
        for part in parts:
            if len(part) < COPY_LIMIT:
                small.append(part)
                continue
            if small:
                await self._stream.send_all(b"".join(small))
                small.clear()
            await self._stream.send_all(part)
        if small:
            await self._stream.send_all(b"".join(small))

    async def _writer(
        self, channel: trio.MemoryReceiveChannel[bytes], done: trio.Event, transient: bool
    ) -> None:
        receive_nowait = channel.receive_nowait
        stream = self._stream
        limit = self._config.send_buffer
        try:
            while True:
                if transient:
                    try:
                        data = receive_nowait()
                    except trio.WouldBlock:
                        self._writer_gone(done)  # everything is written
                        return
                    except trio.EndOfChannel:
                        return
                else:
                    try:
                        data = await channel.receive()
                    except trio.EndOfChannel:
                        return
                n = len(data)
                # Coalesce everything queued meanwhile into one send_all.
                try:
                    more = receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    pass
                else:
                    parts = [data, more]
                    n += len(more)
                    big = len(data) >= COPY_LIMIT or len(more) >= COPY_LIMIT
                    while True:
                        try:
                            more = receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        parts.append(more)
                        n += len(more)
                        big = big or len(more) >= COPY_LIMIT
                    if big:
                        # Joining would copy megabytes: send the big parts as
                        # they are, the small ones between them joined.
                        await self._send_parts(parts)
                        data = b""
                    else:
                        data = b"".join(parts)
                if data:
                    await stream.send_all(data)
                self._pending -= n
                event = self._drained
                if event is not None and self._pending <= limit:
                    self._drained = None
                    event.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The peer is gone: stop the reader too.
            self._proto.connection_lost("connection lost")
            # Wake the reader too, wherever it waits (for room, for us).
            self._wake_everyone()
            await self._kill()
        finally:
            done.set()
            event = self._drained
            if event is not None:
                # Whoever waits for the writer sees that it is gone.
                self._drained = None
                event.set()

    # -- lifecycle ----------------------------------------------------------

    def _start(self, nursery: trio.Nursery, shutdown: Shutdown | None) -> None:
        """Start the reader in *nursery*; watch *shutdown*'s drain; arm keepalive.

        The shared drain watcher and keeper run in the server's service
        nursery when this is a server's connection, else in *nursery*.
        """
        self._nursery = nursery
        nursery.start_soon(self._reader)
        services = nursery
        if not self._proto.client:
            conn = current_connection()
            if conn is not None and conn.services is not None:
                services = conn.services
        if shutdown is not None:
            self._drain = watch_drain(self, shutdown, services)
        interval = self._config.ping_interval
        if interval is not None:
            self._keeper = start_keepalive(self, trio.current_time() + interval, services)

    async def _end(self, error: BaseException | None) -> None:
        """Close after the application's part ended (normally or with *error*)."""
        if error is None:
            await self.aclose(1000)
        elif isinstance(error, Exception):
            with trio.CancelScope(shield=True) as scope:
                # Shielded but bounded: the application's failure must not stop us
                # from telling the peer (1011), nor keep us here for long.
                scope.deadline = trio.current_time() + self._config.close_timeout
                await self.aclose(1011, "internal error")
            self._proto.connection_lost("close timed out")
            await self._kill()
        else:
            # Cancelled (or KeyboardInterrupt): no time for a handshake.
            self._proto.connection_lost("cancelled")
            await self._kill()

    # -- what the shared tasks call (the _keeper.Kept protocol) --------------

    def drain_close(self) -> None:
        """The server drains: start closing with 1001 (called by the drain watcher)."""
        self._start_close(1001, "server shutting down")

    def keepalive_tick(self, now: float) -> float | None:
        """Ping, check the last pong, or give up; return when to be called again.

        Called by the keeper (see :mod:`._keeper`), never by applications.
        """
        if self._proto.state is not _OPEN:
            return None
        config = self._config
        assert config.ping_interval is not None
        if self._ops == self._ops_mark:
            self._shed()
        self._ops_mark = self._ops
        last = self._keepalive_ping
        if last is not None and last.rtt is None:
            if now < last.sent + config.ping_timeout:
                return last.sent + config.ping_timeout
            # No pong within ping_timeout: fail (1011), drop the connection soon.
            # The wait for the Close to go out happens in a task of the
            # session's nursery: the keeper serves every session and must not
            # wait on one dead peer.
            self._fail(1011, "keepalive ping timeout")
            self._wake_everyone()
            assert self._nursery is not None
            self._nursery.start_soon(self._drop_after_close)
            return None
        if last is not None and now < last.sent + config.ping_interval:
            return last.sent + config.ping_interval
        waiter = self._keepalive_ping = PingWaiter(now)
        self._queue(self._proto.send_ping(os.urandom(4), waiter))
        return waiter.sent + min(config.ping_interval, config.ping_timeout)

    async def _drop_after_close(self) -> None:
        # Give a failed session's Close frame a moment to go out, then drop the stream.
        with trio.move_on_after(min(self._config.close_timeout, 1.0)):
            if self._writer_done is not None:
                await self._writer_done.wait()
        await self._kill()

    def _shed(self) -> None:
        """Let a quiet session go of its writer and receive channel; made again on use.

        Called at a keepalive tick when the application has neither sent nor
        received since the previous one: an idle session then costs what it
        did before its first message (~7 KiB less).
        """
        send_in = self._send_in
        if send_in is not None and self._pending == 0:
            # Nothing unwritten, so the writer waits in receive(): closing its
            # channel ends it.
            assert self._writer_done is not None
            self._writer_gone(self._writer_done)
            send_in.close()
        out = self._recv_out
        if out is not None:
            stats = out.statistics()
            if (
                stats.current_buffer_used == 0
                and stats.tasks_waiting_send == 0
                and stats.tasks_waiting_receive == 0
                and stats.open_send_channels == 1
            ):
                # Nobody holds it: an application task waits in _receiver.
                self._recv_in = self._recv_out = None


@final
class MessageChunks:
    """Async iterator over the chunks of one message; see :meth:`WebSocket.receive_chunks`."""

    __slots__ = ("_finished", "_size", "_started", "_ws")

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._started = False
        self._finished = False
        # Bytes of the message so far, for the session's observer.
        self._size = 0

    def __aiter__(self) -> MessageChunks:
        return self

    async def __anext__(self) -> str | bytes:
        if self._finished:
            raise StopAsyncIteration
        ws = self._ws
        if not self._started:
            self._started = True
            if ws._in_message:
                await ws._skip_partial()
        item = await ws._next()
        if type(item) is Fragment:
            ws._in_message = not item.last
            self._finished = item.last
            data = item.data
        else:
            self._finished = True
            data = item
        observer = ws._observer
        if observer is not None:
            self._size += message_size(data)
            if self._finished:
                observer.message_received(self._size)
        return data


@asynccontextmanager
async def open_session(
    stream: trio.abc.Stream,
    *,
    client: bool,
    prefetched: bytes = b"",
    request: HandshakeRequest,
    subprotocol: str | None,
    extensions: Sequence[Extension],
    config: WebSocketConfig,
    shutdown: Shutdown | None,
    observer: Observer | None = None,
) -> AsyncIterator[WebSocket]:
    """Run a session over *stream* for the duration of the block (both sides)."""
    ws = WebSocket(
        stream,
        prefetched=prefetched,
        request=request,
        subprotocol=subprotocol,
        extensions=extensions,
        config=config,
        client=client,
        observer=observer,
    )
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        ws._start(nursery, shutdown)
        try:
            yield ws
        except BaseException as exc:
            # Kept and re-raised outside the nursery, so the caller sees its own
            # exception rather than an ExceptionGroup.
            error = exc
        await ws._end(error)
        nursery.cancel_scope.cancel()
    if error is not None:
        raise error


@final
class _SessionIn:
    """``websocket_session(..., nursery=...)``: the session's tasks run in the caller's nursery.

    A class rather than a generator-based context manager, and no nursery of
    its own: an idle session started this way carries neither (~1.5 KiB).
    """

    __slots__ = ("_nursery", "_shutdown", "_ws")

    def __init__(self, ws: WebSocket, nursery: trio.Nursery, shutdown: Shutdown | None) -> None:
        self._ws = ws
        self._nursery = nursery
        self._shutdown = shutdown

    async def __aenter__(self) -> WebSocket:
        self._ws._start(self._nursery, self._shutdown)
        return self._ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # As open_session: close (1000, or 1011 after an exception), and let the
        # block's exception, if any, propagate unchanged.
        await self._ws._end(exc)
        return False


def websocket_session(
    stream: trio.abc.Stream,
    *,
    prefetched: bytes = b"",
    request: HandshakeRequest | None = None,
    subprotocol: str | None = None,
    extensions: Sequence[Extension] = (),
    config: WebSocketConfig = _DEFAULT_CONFIG,
    client: bool = False,
    nursery: trio.Nursery | None = None,
) -> AbstractAsyncContextManager[WebSocket]:
    """Run a session over *stream* after a handshake done elsewhere.

    The caller has already sent the 101 response; *prefetched* holds bytes read
    past the request head (they are the first WebSocket frames). *extensions*
    are the wsproto extension objects the handshake accepted (see
    :func:`accept`), *request* the handshake request. With ``client=True`` the
    session is the client's side (masked frames; it waits for the server to
    close the TCP connection) and ignores server drains.

    ``async with websocket_session(stream, ...) as ws:`` starts the reader and
    writer tasks in a nursery of its own. Leaving the block closes the session:
    1000 normally, 1011 if the block raised (the exception then propagates
    unchanged), waiting at most ``close_timeout``; the stream is closed on exit.
    Inside a connection served by :class:`trio_upgrade.core.Server`, a graceful
    server drain closes the session with 1001 (``async for`` over it ends).

    With *nursery* (typically the connection's,
    :attr:`trio_upgrade.core.Connection.nursery`), the reader and writer run
    there instead, which saves an idle session about 1.5 KiB. Leaving the block
    still closes the session and waits (bounded) for the reader to finish;
    if the block was cancelled, the tasks end as soon as they see the stream
    closed. *nursery* must outlive the block.
    """
    conn = None if client else current_connection()
    # The server's observer counts the session's messages (metrics).
    observer = conn.observer if conn is not None else None
    if nursery is not None:
        ws = WebSocket(
            stream,
            prefetched=prefetched,
            request=request if request is not None else HandshakeRequest("/"),
            subprotocol=subprotocol,
            extensions=extensions,
            config=config,
            client=client,
            observer=observer,
        )
        return _SessionIn(ws, nursery, conn.shutdown if conn is not None else None)
    return open_session(
        stream,
        client=client,
        prefetched=prefetched,
        request=request if request is not None else HandshakeRequest("/"),
        subprotocol=subprotocol,
        extensions=extensions,
        config=config,
        shutdown=conn.shutdown if conn is not None else None,
        observer=observer,
    )


def message_size(message: str | bytes | bytearray | memoryview) -> int:
    """A message's payload size in bytes (UTF-8 for text), as the observer counts it."""
    if type(message) is str:
        return len(message) if message.isascii() else len(message.encode())
    return memoryview(message).nbytes if type(message) is memoryview else len(message)
