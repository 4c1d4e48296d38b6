"""Whole small messages straight from wsproto's receive buffer: the common case
of the receive path, without wsproto's per-frame machinery.

For each received message wsproto runs three generators (``Connection.events``,
``FrameProtocol.received_frames`` and ``_parse_more_gen``), builds two
``Frame`` tuples and an event dataclass, and for text a fresh incremental
UTF-8 decoder. On an echo of 32-byte messages that is about a sixth of the
server's CPU (docs/architecture.md, "Fast paths and why"). :func:`events` takes the
frames that need none of it -- a whole data frame (FIN set, text or binary,
no reserved bits, masked, minimally encoded length) arriving while no
fragmented message is in progress, on a session without extensions -- and
hands on their payloads (``str`` for text, ``bytes`` for binary) itself,
unmasked by the C routine of :mod:`._speedups`. At the first frame that is
anything else (a control frame, a fragment, a frame not yet whole, invalid
UTF-8, a reserved bit) it stops and lets wsproto carry on from exactly that
byte, so every error is still wsproto's, with wsproto's close code.

It relies on wsproto internals (``Connection._proto``, the frame decoder's
``buffer``/``header``, the message decoder's ``opcode``), feature-detected once
at import; without them, or without the C extension, :func:`events` is
wsproto's own ``Connection.events``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType

__all__ = ["ACTIVE", "events"]

_OPEN = ConnectionState.OPEN


def _take(conn: Any, mask: Callable[[Any, Any], bytes]) -> Iterator[str | bytes]:
    """The whole plain messages at the front of *conn*'s buffer, consumed as they go."""
    if conn._events or conn._state is not _OPEN:
        return
    proto = conn._proto
    decoder = proto._frame_decoder
    # Only a server's connection: a client must refuse masked frames, which
    # wsproto does.
    if (
        decoder.client
        or decoder.header is not None
        or decoder.extensions
        or proto._message_decoder.opcode
    ):
        return
    buffer = decoder.buffer
    buf = buffer.buffer
    pos = buffer.bytes_used
    total = len(buf)
    try:
        while total - pos >= 6:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            # FIN, no RSV bits, opcode 1 (text) or 2 (binary); masked.
            if (b0 != 0x81 and b0 != 0x82) or b1 < 0x80:
                return
            n = b1 & 0x7F
            if n < 126:
                at = pos + 2
            elif n == 126:
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                if n < 126:
                    return  # not minimal: wsproto fails the connection for it
                at = pos + 4
            else:
                return  # 64-bit lengths: large frames gain nothing here
            end = at + 4 + n
            if end > total:
                return
            view = memoryview(buf)
            try:
                payload = mask(view[at + 4 : end], view[at : at + 4])
            finally:
                view.release()
            if b0 == 0x81:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    return  # wsproto decodes it again and closes with 1007
                pos = buffer.bytes_used = end
                yield text
            else:
                pos = buffer.bytes_used = end
                yield payload
            # The consumer may have fed more data in between (it does not
            # today); read the length afresh either way.
            total = len(buf)
    finally:
        buffer.commit()


def _build() -> Callable[[WSConnection], Iterator[Any]] | None:
    if os.environ.get("TRIO_UPGRADE_NO_EXTENSIONS"):
        return None
    try:
        from ._speedups import mask
    except ImportError:
        return None

    def lean_events(conn: WSConnection) -> Iterator[Any]:
        yield from _take(conn, mask)
        yield from conn.events()

    # Check the internals are the ones this was written for, on a real
    # connection: two whole messages, a ping, then a fragmented message.
    try:
        conn = WSConnection(ConnectionType.SERVER)
        key = b"\x01\x02\x03\x04"

        def frame(first: int, payload: bytes) -> bytes:
            return bytes([first, 0x80 | len(payload)]) + key + mask(payload, key)

        conn.receive_data(
            frame(0x81, b"hi")
            + frame(0x82, b"\x00\x01")
            + frame(0x89, b"p")
            + frame(0x01, b"a")
            + frame(0x80, b"b")
            + frame(0x81, b"after")
        )
        got = list(lean_events(conn))
        if getattr(conn._proto._frame_decoder, "client", None) is not False:
            return None
    except Exception:
        return None
    kinds = [type(event).__name__ for event in got]
    if got[:2] != ["hi", b"\x00\x01"] or kinds[2:] != [
        "Ping",
        "TextMessage",
        "TextMessage",
        "TextMessage",
    ]:
        return None
    if [getattr(event, "data", None) for event in got[3:]] != ["a", "b", "after"]:
        return None
    return lean_events


_EVENTS = _build()

#: True when :func:`events` takes plain messages itself in this process.
ACTIVE: bool = _EVENTS is not None


def events(conn: WSConnection) -> Iterator[Any]:
    """*conn*'s events: whole plain messages as ``str``/``bytes``, then wsproto's events.

    Drop-in for ``conn.events()`` on a server connection; a ``str`` or
    ``bytes`` item is a complete message. Falls back to wsproto's own
    ``events()`` when the accelerator is unavailable.
    """
    if _EVENTS is None:
        return conn.events()
    return _EVENTS(conn)
