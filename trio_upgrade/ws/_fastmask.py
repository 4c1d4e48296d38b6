"""Per-connection C unmasking for wsproto, when the optional extension is built.

A server receives every frame masked (RFC 6455 §5.3). wsproto unmasks in pure
Python (``wsproto.frame_protocol.XorMaskerSimple``: a copy and four strided
``translate`` calls per chunk), which costs milliseconds per MiB received.
:mod:`._speedups` is our own C routine for it, built by ``pip install`` when a
compiler is available and skipped otherwise.

:func:`accelerate` hooks it into one connection, never process-wide: other code
in the same process may use wsproto with its own maskers. It swaps the class of
the connection's frame decoder for a subclass whose ``parse_header`` replaces
wsproto's masker by ours. That relies on wsproto internals
(``Connection._proto._frame_decoder``, ``FrameDecoder.parse_header``/``masker``,
``XorMaskerSimple._masking_key``), so everything is feature-detected once at
import; if anything is missing, or the extension is not built, :func:`accelerate`
does nothing and wsproto's own masker runs.

``ACTIVE`` tells whether the accelerator is in use in this process. Setting
the environment variable ``TRIO_UPGRADE_NO_EXTENSIONS`` (to anything non-empty)
before the import turns it off, as it makes ``setup.py`` skip building it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType

__all__ = ["ACTIVE", "MASK", "MIN_FRAME_COST", "accelerate", "joined_frames"]

# What a frame of a fragmented message (its last frame excepted) counts at
# least against max_message_size (see the session's reader). Frames shorter
# than this are never joined by the decoder below, so the session sees and
# charges each of them; joined ones are counted by joined_frames().
MIN_FRAME_COST = 64


def _build() -> type[Any] | None:
    """The accelerated frame decoder class, or None if it cannot be used here."""
    if os.environ.get("TRIO_UPGRADE_NO_EXTENSIONS"):
        return None
    try:
        from wsproto.frame_protocol import (
            Buffer,
            CloseReason,
            Frame,
            FrameDecoder,
            Opcode,
            ParseFailed,
            XorMaskerSimple,
        )

        from ._deflate import PerMessageDeflate
        from ._speedups import Masker, mask
    except ImportError:
        return None
    # Masker.process unmasks a bytearray in place: that is only safe if the
    # pieces wsproto hands it are copies, not views of its receive buffer.
    try:
        buffer = Buffer()
        buffer.feed(b"abcd")
        piece = buffer.consume_at_most(4)
        piece[0] ^= 0xFF
        buffer.rollback()
        if buffer.consume_at_most(4) != b"abcd":
            return None
    except Exception:
        return None
    if not callable(getattr(FrameDecoder, "parse_header", None)):
        return None
    # The masker wsproto makes must keep its key where we expect it.
    probe = XorMaskerSimple(b"\x01\x02\x03\x04")
    if getattr(probe, "_masking_key", None) != b"\x01\x02\x03\x04":
        return None
    if not callable(getattr(probe, "process", None)):
        return None
    parse_header = FrameDecoder.parse_header
    process_buffer = FrameDecoder.process_buffer
    data_opcodes = (Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY)

    class _FastFrameDecoder(FrameDecoder):
        """wsproto's frame decoder, unmasking payloads with :class:`._speedups.Masker`.

        A data frame that is already whole in the buffer (the common case) is
        decoded in one step: header, unmasking in C straight from the buffer,
        and, on a permessage-deflate session, one call to
        :meth:`PerMessageDeflate.inbound_frame`. Continuation frames of the
        same message that are whole behind it come with it, as one chunk. Anything else (control
        frames, frames still arriving, reserved bits or opcodes, malformed
        lengths, other extensions) goes through wsproto's own decoder, which
        also raises its errors.
        """

        # No __slots__: instances are wsproto's FrameDecoders, whose class is
        # swapped in place, so the layout must stay the base class's.

        def process_buffer(self) -> Frame | None:
            if self.header is not None:
                return process_buffer(self)
            buffer = self.buffer
            buf = buffer.buffer
            start = buffer.bytes_used
            avail = len(buf) - start
            if avail < 6:
                return process_buffer(self)
            b0 = buf[start]
            b1 = buf[start + 1]
            opcode = b0 & 0x0F
            # Data opcodes, RSV2/RSV3 clear, masked (we are the server).
            if opcode > 2 or b0 & 0x30 or not b1 & 0x80:
                return process_buffer(self)
            n = b1 & 0x7F
            if n < 126:
                at = start + 2
            elif n == 126:
                n = (buf[start + 2] << 8) | buf[start + 3]
                at = start + 4
                if n < 126:
                    return process_buffer(self)  # not minimal: wsproto fails it
            else:
                if avail < 14:
                    return process_buffer(self)
                n = int.from_bytes(buf[start + 2 : start + 10], "big")
                at = start + 10
                if n < 65536 or n >> 63:
                    return process_buffer(self)
            end = at + 4 + n
            if end > len(buf):
                return process_buffer(self)
            rsv1 = bool(b0 & 0x40)
            extensions = self.extensions
            if extensions:
                ext = extensions[0]
                if len(extensions) > 1 or type(ext) is not PerMessageDeflate:
                    return process_buffer(self)
            elif rsv1:
                return process_buffer(self)
            else:
                ext = None
            fin = bool(b0 & 0x80)
            total = len(buf)
            view = memoryview(buf)
            try:
                payload = mask(view[at + 4 : end], view[at : at + 4])
                if not fin and n >= MIN_FRAME_COST:
                    # The continuation frames already whole behind it join this
                    # one: a peer that cuts its messages into 256-byte frames
                    # costs one event per read instead of one per frame. Only
                    # plain ones (opcode 0, RSV clear, masked, lengths below
                    # 64 KiB); the first other frame ends the run.
                    pieces = None
                    while total - end >= 6:
                        c0 = buf[end]
                        c1 = buf[end + 1]
                        if c0 & 0x7F or not c1 & 0x80:
                            break
                        m = c1 & 0x7F
                        if m < 126:
                            cat = end + 2
                        elif m == 126 and total - end >= 8:
                            m = (buf[end + 2] << 8) | buf[end + 3]
                            cat = end + 4
                            if m < 126:
                                break
                        else:
                            break
                        cend = cat + 4 + m
                        if cend > total or (m < MIN_FRAME_COST and not c0 & 0x80):
                            # Tiny fragments go one by one: the session charges
                            # each at least MIN_FRAME_COST (floods of them end).
                            break
                        if pieces is None:
                            pieces = [payload]
                        pieces.append(mask(view[cat + 4 : cend], view[cat : cat + 4]))
                        end = cend
                        if c0 & 0x80:
                            fin = True
                            break
                    if pieces is not None:
                        payload = b"".join(pieces)
                        # For max_fragments: frames this one stands for, beyond itself.
                        self.joined = getattr(self, "joined", 0) + len(pieces) - 1
            finally:
                view.release()
            del buf[:end]
            buffer.bytes_used = 0
            if ext is not None:
                result = ext.inbound_frame(opcode, rsv1, payload, fin)
                if type(result) is CloseReason:
                    raise ParseFailed("error in extension", result)
                payload = result  # type: ignore[assignment]
            return Frame(data_opcodes[opcode], payload, True, fin)

        def parse_header(self) -> bool:
            if not parse_header(self):
                return False
            masker = self.masker
            # Only a fresh wsproto masker is replaced; a null masker (client
            # side) or anything else is left as it is.
            if type(masker) is XorMaskerSimple:
                # wsproto only calls .process(); its annotation names its own classes.
                self.masker = Masker(masker._masking_key)  # type: ignore[assignment]
            return True

    # Check the pieces fit together on a real connection before trusting them:
    # b"abc" under the key 01 02 03 04, in two reads, then b"de" in one.
    try:
        conn = WSConnection(ConnectionType.SERVER)
        decoder = conn._proto._frame_decoder
        if type(decoder) is not FrameDecoder:
            return None
        decoder.__class__ = _FastFrameDecoder
        conn.receive_data(b"\x82\x83\x01\x02\x03\x04" + bytes([0x61 ^ 1]))
        events = list(conn.events())
        # Mid-frame: our masker must be the one at work.
        masker: object = decoder.masker
        if type(masker) is not Masker:
            return None
        conn.receive_data(bytes([0x62 ^ 2, 0x63 ^ 3]))
        events += conn.events()
        # A whole frame in one read takes the one-step path.
        conn.receive_data(b"\x82\x82\x01\x02\x03\x04" + bytes([0x64 ^ 1, 0x65 ^ 2]))
        events += conn.events()
    except Exception:
        return None
    if b"".join(getattr(event, "data", b"?") for event in events) != b"abcde":
        return None
    return _FastFrameDecoder


_DECODER = _build()
# The class _DECODER derives from: only decoders of exactly that class are swapped.
_BASE: type[Any] | None = _DECODER.__mro__[1] if _DECODER is not None else None

#: True when received frames are unmasked by the C extension in this process.
ACTIVE: bool = _DECODER is not None


def _mask_function() -> Callable[[bytes, bytes], bytes] | None:
    if os.environ.get("TRIO_UPGRADE_NO_EXTENSIONS"):
        return None
    try:
        from ._speedups import mask
    except ImportError:
        return None
    return mask


#: ``MASK(payload, key)``: the C routine that masks a whole payload (a client's
#: outgoing frames), or None when the extension is not built or turned off.
MASK: Callable[[bytes, bytes], bytes] | None = _mask_function()


def joined_frames(conn: WSConnection) -> int:
    """Frames the accelerated decoder joined into earlier ones since the last call
    (each joined frame is whole and at least ``MIN_FRAME_COST`` long)."""
    decoder = getattr(getattr(conn, "_proto", None), "_frame_decoder", None)
    state = getattr(decoder, "__dict__", None)
    if not state:
        return 0
    joined: int = state.pop("joined", 0)
    return joined


def accelerate(conn: WSConnection) -> None:
    """Make ``conn`` unmask received frames with the C routine, if available.

    Call it right after creating the connection, before it receives data.
    Does nothing if the extension is not built or wsproto's internals are not
    the ones this was written for; the connection then works as wsproto made it.
    """
    if _DECODER is None:
        return
    decoder = getattr(getattr(conn, "_proto", None), "_frame_decoder", None)
    if decoder is not None and decoder.__class__ is _BASE:
        decoder.__class__ = _DECODER
