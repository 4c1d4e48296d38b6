"""The WebSocket protocol (RFC 6455) without I/O: bytes in, events and bytes out.

::

    received bytes ─► receive_data() ─► events() ─► messages, fragments, pings, pongs, Close
    send_message(), send_fragment(), send_ping(), close() ─────────────► bytes to write

:class:`WebSocketProtocol` owns everything about the wire: parsing frames
(wsproto's decoder, with our :mod:`._fastmask` subclass unmasking in C and
decoding whole frames in one step), the limits on what the peer sends
(``max_message_size`` → 1009, ``max_fragments`` → 1008, every non-final frame
charged at least ``MIN_FRAME_COST``), answering pings (coalesced pongs), the
close handshake and the state as one enum (:class:`State`), the pings waiting
for their pong, and framing what we send: complete messages by our own framer
(a client's masked in C, compressed by permessage-deflate when negotiated),
fragments, pings and Close through wsproto. It never reads, writes, sleeps or
imports trio: the session (:mod:`._session`) drives it from its reader and
writer tasks and decides when to wait.

Events are yielded by :meth:`WebSocketProtocol.events` after
:meth:`WebSocketProtocol.receive_data`. A whole message is the message itself
(``str`` for text, ``bytes`` for binary); the others are small classes defined
here. Pieces of one message parsed from the same data come out as one item.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any, final

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension

from ._deflate import PerMessageDeflate
from ._errors import ConnectionClosed, closed_error
from ._fastmask import MASK as _MASK
from ._fastmask import MIN_FRAME_COST, accelerate, joined_frames
from ._lean import events as lean_events

__all__ = [
    "EVENTS_PER_TURN",
    "MIN_FRAME_COST",
    "TURN",
    "CloseReceived",
    "Event",
    "Fragment",
    "PING_RECEIVED",
    "PingReceived",
    "PingWaiter",
    "PongReceived",
    "State",
    "Turn",
    "Violation",
    "WebSocketProtocol",
    "join_pieces",
]

# wsproto's own states, which it keeps inside its connection object.
_WS_OPEN = ConnectionState.OPEN
_WS_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_WS_CLOSED = ConnectionState.CLOSED

# events() yields TURN after this many wsproto events of one call: data of up
# to max_read_size bytes may hold tens of thousands of tiny frames, and the
# driver must get a chance to let other connections run meanwhile.
EVENTS_PER_TURN = 64

# Headers of unmasked final frames with a payload under 126 bytes, by length.
_TEXT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
_BINARY_HEADERS = tuple(bytes((0x82, n)) for n in range(126))
# The same with RSV1 set: a message compressed by permessage-deflate.
_DEFLATED_HEADERS = {
    0x81: tuple(bytes((0xC1, n)) for n in range(126)),
    0x82: tuple(bytes((0xC2, n)) for n in range(126)),
}
# Payloads from this size on are handed on apart from their header instead of copied.
COPY_LIMIT = 64 * 1024


class State(enum.IntEnum):
    """Where a connection is in its life (one field, ``WebSocketProtocol.state``)."""

    OPEN = 0
    """Messages go both ways; ``close_code`` is None."""
    CLOSING = 1
    """A Close was sent or received, or the connection was lost: ``close_code``
    is set and nothing more is sent. A Close received now ends the handshake."""
    CLOSED = 2
    """The driver has closed the connection (:meth:`WebSocketProtocol.connection_closed`)."""


# Module constants: a global lookup instead of one more attribute lookup per event.
_OPEN = State.OPEN


@final
class Fragment:
    """A piece of a message whose end was not in the data received so far."""

    __slots__ = ("data", "last")

    def __init__(self, data: str | bytes, last: bool) -> None:
        self.data = data
        self.last = last


@final
class Turn:
    """Every ``EVENTS_PER_TURN`` parsed frames: the driver may let others run."""

    __slots__ = ()


TURN = Turn()


@final
class PingReceived:
    """A Ping arrived; its Pong is owed (see :meth:`WebSocketProtocol.take_pongs`)."""

    __slots__ = ()


PING_RECEIVED = PingReceived()


@final
class PingWaiter:
    """One of our pings waiting for its Pong."""

    __slots__ = ("event", "rtt", "sent")

    def __init__(self, sent: float, event: Any = None) -> None:
        self.sent = sent
        """When it was sent, on the driver's clock."""
        self.event = event
        """Whatever the driver wakes when the Pong comes (None: nobody waits)."""
        self.rtt: float | None = None
        """Set by the driver once answered."""


@final
class PongReceived:
    """A Pong answered these pings (its own and every earlier one, RFC 6455 §5.5.3)."""

    __slots__ = ("answered",)

    def __init__(self, answered: list[PingWaiter]) -> None:
        self.answered = answered


@final
class CloseReceived:
    """The peer's Close: the state is now CLOSING and no event follows.

    *reply* is what to write last (pongs still owed, then our Close echoing
    the peer's code, RFC 6455 §5.5.1) when the peer closed first; None when
    it answered our Close (the closing handshake is complete).
    """

    __slots__ = ("code", "reason", "reply")

    def __init__(self, code: int, reason: str, reply: bytes | None) -> None:
        self.code = code
        self.reason = reason
        self.reply = reply


@final
class Violation:
    """The peer broke the protocol or a limit: fail the connection with this code
    (:meth:`WebSocketProtocol.close`, RFC 6455 §7.1.7). No event follows."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


Event = str | bytes | Fragment | Turn | PingReceived | PongReceived | CloseReceived | Violation


def _long_header(first: int, n: int) -> bytes:
    if n < 65536:
        return struct.pack("!BBH", first, 126, n)
    return struct.pack("!BBQ", first, 127, n)


def join_pieces(pieces: list[str | bytes]) -> str | bytes:
    if len(pieces) == 1:
        return pieces[0]
    if isinstance(pieces[0], str):
        return "".join(pieces)  # type: ignore[arg-type]
    return b"".join(pieces)  # type: ignore[arg-type]


@final
class WebSocketProtocol:
    """One side of a WebSocket connection after its handshake, without I/O.

    *extensions* are the wsproto extension objects the handshake accepted
    (our :class:`PerMessageDeflate` is the one the fast paths know).
    ``max_message_size`` bounds a message (1009 beyond it), ``max_fragments``
    the frames of one message (1008); None lifts either bound.

    wsproto's connection is made on first use, so an idle connection holds
    none. Methods that send raise :class:`ConnectionClosed` once the state is
    not OPEN.
    """

    __slots__ = (
        "_conn",
        "_deflater",
        "_extensions",
        "_frame_size",
        "_max_fragments",
        "_max_message_size",
        "_msg_frames",
        "_msg_size",
        "_pings",
        "_plain",
        "_pongs",
        "client",
        "close_code",
        "close_reason",
        "state",
    )

    def __init__(
        self,
        *,
        client: bool,
        extensions: Sequence[Extension] = (),
        max_message_size: int | None = 1024 * 1024,
        max_fragments: int | None = None,
    ) -> None:
        self.client = client
        """The client's side: frames we send are masked, frames we receive are not."""
        self.state = State.OPEN
        """Where the connection is: the one field of its state (wsproto keeps
        its own inside; :class:`CloseReceived` says whether ours was answered)."""
        self.close_code: int | None = None
        """None while OPEN; then the code of the Close that ended the connection
        (the peer's if it closed first, ours if we did), or 1006 if it was lost."""
        self.close_reason = ""
        self._max_message_size = max_message_size
        self._max_fragments = max_fragments
        # wsproto's connection, made on first use; the extensions wait here
        # until then (a tuple: none at all is the shared empty one, not a list).
        self._conn: WSConnection | None = None
        self._extensions = tuple(extensions)
        # Complete messages bypass wsproto's serializer when no extension
        # rewrites frames, or when the one extension is our permessage-deflate
        # (then _deflater compresses them): always on a server (no masking), on
        # a client when the C extension can mask them.
        self._deflater: PerMessageDeflate | None = None
        if len(extensions) == 1 and type(extensions[0]) is PerMessageDeflate:
            self._deflater = extensions[0]
        self._plain = (not extensions or self._deflater is not None) and (
            not client or _MASK is not None
        )
        # Bytes (or characters) of the message being received; -1 between
        # messages (an empty first fragment still starts a message).
        self._msg_size = -1
        # Frames of that message so far (against max_fragments), and the
        # payload of its current frame so far.
        self._msg_frames = 0
        self._frame_size = 0
        # Pongs owed for pings received, written as one piece.
        self._pongs: bytearray | None = None
        # Our pings waiting for a Pong, by payload, oldest first.
        self._pings: dict[bytes, PingWaiter] | None = None

    def _connection(self) -> WSConnection:
        conn = self._conn
        if conn is None:
            conn = self._conn = WSConnection(
                ConnectionType.CLIENT if self.client else ConnectionType.SERVER,
                extensions=list(self._extensions),
            )
            if not self.client:
                # Received frames are masked only on the server side; unmask
                # them in C when the optional extension is built (_fastmask).
                accelerate(conn)
            self._extensions = ()
        return conn

    def _closed_error(self) -> ConnectionClosed:
        return closed_error(self.close_code or 1006, self.close_reason)

    def _closing(self, code: int, reason: str) -> None:
        if self.state is _OPEN:
            self.state = State.CLOSING
            self.close_code = code
            self.close_reason = reason

    # -- receiving ----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Take bytes received from the peer; :meth:`events` then parses them."""
        # wsproto only appends it to its buffer: a bytearray does as well.
        (self._conn or self._connection()).receive_data(data)  # type: ignore[arg-type]

    def events(self) -> Iterator[Event]:
        """Parse what was received so far into events; stop after a Close or a Violation.

        A message whole in the data is yielded as itself (``str``/``bytes``);
        the pieces of one message found in the same data as one
        :class:`Fragment`. A Ping queues its Pong (:meth:`take_pongs`) and
        yields :data:`PING_RECEIVED`. Data messages arriving after our Close
        are dropped. Every ``EVENTS_PER_TURN`` frames it yields :data:`TURN`.
        """
        conn = self._conn
        if conn is None:
            return
        limit = self._max_message_size
        max_frames = self._max_fragments
        # Pieces of the current message gathered from this data, if any.
        pieces: list[str | bytes] | None = None
        # The current message began in this data (so it may go out whole).
        began_here = False
        turn = EVENTS_PER_TURN
        # Whole plain messages come first, straight from the buffer (._lean),
        # as str/bytes; from the first other frame on, wsproto's events.
        for event in lean_events(conn):
            turn -= 1
            if not turn:
                turn = EVENTS_PER_TURN
                yield TURN
            cls = type(event)
            if cls is str or cls is bytes:
                # No message is in progress (the lean path runs only then),
                # and it stands for one frame: only the size limit applies.
                if self.state is not _OPEN:
                    continue  # we are closing: drop it
                if limit is not None and len(event) > limit:
                    yield Violation(1009, "message too big")
                    return
                yield event
                continue
            if cls is TextMessage or cls is BytesMessage:
                if self.state is not _OPEN:
                    continue  # we are closing: drop it
                data = event.data
                finished = event.message_finished
                if finished and pieces is None and self._msg_size < 0:
                    # The common case: a whole message in one event.
                    if limit is not None and len(data) > limit:
                        yield Violation(1009, "message too big")
                        return
                    # It may stand for several frames the decoder joined.
                    if max_frames is not None and joined_frames(conn) >= max_frames:
                        yield Violation(1008, "too many fragments")
                        return
                    yield data
                    continue
                size = len(data) + (self._msg_size if self._msg_size > 0 else 0)
                self._frame_size += len(data)
                if event.frame_finished:
                    if not finished and self._frame_size < MIN_FRAME_COST:
                        # Each frame costs us far more than its header: with this
                        # charge a message of tiny fragments ends, with 1009,
                        # after at most max_message_size / 64 frames.
                        size += MIN_FRAME_COST - self._frame_size
                    self._frame_size = 0
                    self._msg_frames += 1
                    if max_frames is not None:
                        self._msg_frames += joined_frames(conn)
                        if self._msg_frames > max_frames:
                            yield Violation(1008, "too many fragments")
                            return
                if limit is not None and size > limit:
                    yield Violation(1009, "message too big")
                    return
                if pieces is None:
                    began_here = self._msg_size < 0
                    pieces = [data]
                else:
                    pieces.append(data)
                if finished:
                    whole = join_pieces(pieces)
                    pieces = None
                    self._msg_size = -1
                    self._msg_frames = 0
                    yield whole if began_here else Fragment(whole, True)
                else:
                    self._msg_size = size
            elif cls is Ping:
                if self.state is _OPEN and conn.state is _WS_OPEN:
                    pong = conn.send(event.response())
                    if self._pongs is None:
                        self._pongs = bytearray(pong)
                    else:
                        self._pongs += pong
                    yield PING_RECEIVED
            elif cls is Pong:
                answered = self._answered(event.payload)
                if answered:
                    yield PongReceived(answered)
            elif cls is CloseConnection:
                assert isinstance(event, CloseConnection)
                reason = event.reason or ""
                state = conn.state
                if state is _WS_REMOTE_CLOSING:
                    # The peer closes first: echo its code (RFC 6455 §5.5.1),
                    # after the pongs still owed.
                    self._closing(event.code, reason)
                    reply = conn.send(event.response())
                    pongs = self._pongs
                    if pongs:
                        self._pongs = None
                        reply = bytes(pongs) + reply
                    yield CloseReceived(event.code, reason, reply)
                elif state is _WS_CLOSED:
                    yield CloseReceived(event.code, reason, None)  # the answer to ours
                else:
                    # wsproto reports a protocol violation as a CloseConnection
                    # without changing state.
                    yield Violation(event.code, event.reason or "protocol error")
                return
        if pieces is not None:
            yield Fragment(join_pieces(pieces), False)

    def take_pongs(self) -> bytes | None:
        """The pongs owed so far, as one piece of bytes to write (None if none).

        Owed pongs are dropped once the state is not OPEN (or went out before
        our Close, with :meth:`close`).
        """
        pongs = self._pongs
        if pongs is None:
            return None
        self._pongs = None
        return bytes(pongs) if self.state is _OPEN else None

    def pongs_owed(self) -> int:
        """Bytes of the pongs owed so far."""
        return 0 if self._pongs is None else len(self._pongs)

    def _answered(self, payload: bytes) -> list[PingWaiter] | None:
        pings = self._pings
        if not pings or payload not in pings:
            return None
        # A Pong answers its Ping and every earlier one still waiting.
        answered = []
        for key in list(pings):
            answered.append(pings.pop(key))
            if key == payload:
                break
        return answered

    # -- sending ------------------------------------------------------------

    def send_message(
        self, message: str | bytes | bytearray | memoryview, write: Callable[[bytes], object]
    ) -> int:
        """Frame one complete message (text for ``str``, binary for bytes-like).

        Hands its bytes to *write* (once, or for payloads of at least 64 KiB
        twice: the header, then the payload uncopied) and returns how many.
        """
        if not self._plain or self.state is not _OPEN or type(message) not in (bytes, str):
            frame = self.send_fragment(message, True)
            write(frame)
            return len(frame)
        # A frame without extensions is a header and the payload (RFC 6455
        # §5.2; masked on a client): built here, sparing wsproto's copies.
        if type(message) is str:
            payload = message.encode()
            headers = _TEXT_HEADERS
        else:
            payload = message  # type: ignore[assignment]
            headers = _BINARY_HEADERS
        deflater = self._deflater
        if deflater is not None:
            # RFC 7692 §7.2.1: the payload compressed, RSV1 on the frame.
            deflated = deflater.deflate_message(payload)
            if deflated is not None:
                payload = deflated
                headers = _DEFLATED_HEADERS[headers[0][0]]
        n = len(payload)
        if self.client:
            # RFC 6455 §5.3: every client frame is masked with a new key from a
            # strong source of entropy.
            assert _MASK is not None
            first = headers[0][0]
            if n < 126:
                head = bytes((first, 0x80 | n))
            elif n < 65536:
                head = struct.pack("!BBH", first, 0xFE, n)
            else:
                head = struct.pack("!BBQ", first, 0xFF, n)
            key = os.urandom(4)
            write(head + key + _MASK(payload, key))
            return len(head) + 4 + n
        if n < 126:
            write(headers[n] + payload)
            return n + 2
        if n < COPY_LIMIT:
            write(_long_header(headers[0][0], n) + payload)
        else:
            # Big payloads travel as they are; the writer joins or sends them.
            write(_long_header(headers[0][0], n))
            write(payload)
        return n + (4 if n < 65536 else 10)

    def send_fragment(self, data: str | bytes | bytearray | memoryview, fin: bool) -> bytes:
        """One frame of a message (the last one with *fin*), through wsproto."""
        if self.state is not _OPEN:
            raise self._closed_error()
        conn = self._conn or self._connection()
        if isinstance(data, str):
            return conn.send(TextMessage(data=data, message_finished=fin))
        if isinstance(data, (bytes, bytearray)):
            return conn.send(BytesMessage(data=data, message_finished=fin))
        if isinstance(data, memoryview):
            return conn.send(BytesMessage(data=bytes(data), message_finished=fin))
        raise TypeError(f"a message is str or bytes-like, not {type(data).__name__}")

    def send_ping(self, payload: bytes, waiter: PingWaiter) -> bytes:
        """A Ping with *payload* (at most 125 bytes); *waiter* waits for its Pong."""
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if self.state is not _OPEN:
            raise self._closed_error()
        pings = self._pings
        if pings is None:
            pings = self._pings = {}
        if payload in pings:
            raise ValueError("a ping with this payload is already waiting")
        frame = (self._conn or self._connection()).send(Ping(payload=payload))
        pings[payload] = waiter
        return frame

    def forget_ping(self, payload: bytes, waiter: PingWaiter) -> None:
        """*waiter* no longer waits for the Pong to *payload* (its waiter gave up)."""
        if self._pings is not None and self._pings.get(payload) is waiter:
            del self._pings[payload]

    def drop_pings(self) -> list[PingWaiter]:
        """Every ping still waiting, forgotten: no Pong will come for them now."""
        pings = self._pings
        if not pings:
            return []
        waiters = list(pings.values())
        pings.clear()
        return waiters

    # -- closing ------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> bytes | None:
        """Start the closing handshake, or fail the connection after a :class:`Violation`.

        Returns the last bytes to write (pongs still owed, then our Close
        frame) and moves to CLOSING; None if the state was not OPEN.
        """
        if self.state is not _OPEN:
            return None
        self._closing(code, reason)
        frame = (self._conn or self._connection()).send(CloseConnection(code=code, reason=reason))
        pongs = self._pongs
        if pongs:
            self._pongs = None
            return bytes(pongs) + frame
        return frame

    def connection_lost(self, reason: str = "connection lost") -> None:
        """The connection ended without a closing handshake: 1006 if still OPEN."""
        self._closing(1006, reason)

    def connection_closed(self) -> None:
        """The driver has closed the connection: the state becomes CLOSED."""
        self._closing(1006, "connection lost")
        self.state = State.CLOSED
        self._pongs = None
