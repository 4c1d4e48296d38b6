"""permessage-deflate (RFC 7692) as a wsproto extension, with bounded inflation.

wsproto's own extension inflates whatever a peer sends in one go, so a small
compressed frame can become gigabytes. This one inflates at most the message
size limit and fails the message with 1009 beyond it. Negotiation is pure:
:func:`negotiate_server` picks the first acceptable client offer,
:func:`client_offer` / :func:`client_finalize` do the client's side.

wsproto calls the extension hooks for fragments, control frames and frames
that arrive in pieces. The busy paths skip its machinery: the session frames
complete messages itself with :meth:`PerMessageDeflate.deflate_message`, and
the server's frame decoder (``_fastmask``) hands a whole received data frame
to :meth:`PerMessageDeflate.inbound_frame`. Both share the one compressor and
decompressor per direction, so context takeover spans the two paths.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

from ._config import Deflate

__all__ = [
    "PerMessageDeflate",
    "client_finalize",
    "client_offer",
    "negotiate_server",
    "parse_extension_offers",
]

NAME = "permessage-deflate"
# Every compressed message ends with an empty stored block; RFC 7692 §7.2.1
# removes these four bytes on the wire and the receiver appends them again.
_TAIL = b"\x00\x00\xff\xff"
_RSV1 = RsvBits(True, False, False)


@dataclass(frozen=True, slots=True)
class _Params:
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    # 0 means "present without a value" (only legal in a client's offer).
    client_max_window_bits: int | None = None


def parse_extension_offers(values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Split ``Sec-WebSocket-Extensions`` elements into (name, [(param, value)])."""
    out: list[tuple[str, list[tuple[str, str | None]]]] = []
    for element in values:
        name, *raw_params = (p.strip() for p in element.split(";"))
        params: list[tuple[str, str | None]] = []
        for raw in raw_params:
            key, sep, value = raw.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            params.append((key.strip().lower(), value if sep else None))
        out.append((name.lower(), params))
    return out


def _window_bits(value: str | None, *, allow_empty: bool) -> int:
    if value is None:
        if allow_empty:
            return 0
        raise ValueError("window bits need a value")
    if not value.isdigit() or len(value) > 2:
        raise ValueError(f"bad window bits {value!r}")
    bits = int(value)
    if not 8 <= bits <= 15:
        raise ValueError(f"window bits {bits} out of range")
    return bits


def _parse_params(params: list[tuple[str, str | None]], *, offer: bool) -> _Params:
    seen: set[str] = set()
    values: dict[str, object] = {}
    for key, value in params:
        if key in seen:
            raise ValueError(f"duplicate parameter {key}")
        seen.add(key)
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ValueError(f"{key} takes no value")
            values[key] = True
        elif key == "server_max_window_bits":
            values[key] = _window_bits(value, allow_empty=False)
        elif key == "client_max_window_bits":
            values[key] = _window_bits(value, allow_empty=offer)
        else:
            raise ValueError(f"unknown parameter {key}")
    return _Params(**values)  # type: ignore[arg-type]


def negotiate_server(
    offers: list[str], config: Deflate, max_message_size: int | None
) -> tuple[str, PerMessageDeflate] | None:
    """Accept the first acceptable permessage-deflate offer (RFC 7692 §5, §7.1).

    Returns the ``Sec-WebSocket-Extensions`` response element and the extension
    for the session, or ``None`` when no offer is acceptable (then the session
    runs uncompressed, which every client must allow).
    """
    for name, raw in parse_extension_offers(offers):
        if name != NAME:
            continue
        try:
            p = _parse_params(raw, offer=True)
        except ValueError:
            continue
        server_bits = config.server_max_window_bits
        if p.server_max_window_bits is not None:
            if p.server_max_window_bits < 9:
                # zlib cannot deflate with a 256-byte window: decline this offer.
                continue
            server_bits = min(server_bits, p.server_max_window_bits)
        response = [NAME]
        server_no = p.server_no_context_takeover or config.server_no_context_takeover
        client_no = p.client_no_context_takeover or config.client_no_context_takeover
        if server_no:
            response.append("server_no_context_takeover")
        if client_no:
            response.append("client_no_context_takeover")
        if p.server_max_window_bits is not None or server_bits < 15:
            response.append(f"server_max_window_bits={server_bits}")
        client_bits = 15
        if p.client_max_window_bits is not None:
            offered = p.client_max_window_bits or 15
            client_bits = min(offered, config.client_max_window_bits)
            if p.client_max_window_bits or client_bits < 15:
                response.append(f"client_max_window_bits={client_bits}")
        ext = PerMessageDeflate(
            client=False,
            local_bits=server_bits,
            remote_bits=client_bits,
            local_no_context_takeover=server_no,
            remote_no_context_takeover=client_no,
            config=config,
            max_message_size=max_message_size,
        )
        return "; ".join(response), ext
    return None


def client_offer(config: Deflate) -> str:
    """The client's ``Sec-WebSocket-Extensions`` offer for *config*."""
    parts = [NAME]
    if config.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if config.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if config.server_max_window_bits < 15:
        parts.append(f"server_max_window_bits={config.server_max_window_bits}")
    if config.client_max_window_bits < 15:
        parts.append(f"client_max_window_bits={config.client_max_window_bits}")
    else:
        parts.append("client_max_window_bits")
    return "; ".join(parts)


def client_finalize(
    response: str, config: Deflate, max_message_size: int | None
) -> PerMessageDeflate:
    """Check the server's answer to :func:`client_offer`; raise ValueError if it breaks RFC 7692."""
    ((name, raw),) = parse_extension_offers([response])
    if name != NAME:
        raise ValueError(f"server accepted an extension we did not offer: {name}")
    p = _parse_params(raw, offer=False)
    if config.server_no_context_takeover and not p.server_no_context_takeover:
        raise ValueError("server ignored server_no_context_takeover")
    server_bits = p.server_max_window_bits or 15
    if server_bits < 9 or server_bits > config.server_max_window_bits:
        raise ValueError("server_max_window_bits larger than offered")
    client_bits = config.client_max_window_bits
    if p.client_max_window_bits is not None:
        if p.client_max_window_bits < 9:
            raise ValueError("client_max_window_bits below what zlib can deflate")
        client_bits = min(client_bits, p.client_max_window_bits)
    return PerMessageDeflate(
        client=True,
        local_bits=client_bits,
        remote_bits=server_bits,
        local_no_context_takeover=p.client_no_context_takeover or config.client_no_context_takeover,
        remote_no_context_takeover=p.server_no_context_takeover,
        config=config,
        max_message_size=max_message_size,
    )


class PerMessageDeflate(Extension):
    """One side's negotiated permessage-deflate state (a wsproto extension).

    "local" is what this side compresses, "remote" what it inflates. zlib
    objects are created on first use, so an idle session holds none.
    """

    name = NAME

    def __init__(
        self,
        *,
        client: bool,
        local_bits: int,
        remote_bits: int,
        local_no_context_takeover: bool,
        remote_no_context_takeover: bool,
        config: Deflate,
        max_message_size: int | None,
    ) -> None:
        self.client = client
        self.local_bits = local_bits
        self.remote_bits = remote_bits
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self._level = config.level
        self._mem_level = config.mem_level
        self._min_size = config.min_size
        self._max = max_message_size
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        # The frame being read is a control frame (never compressed).
        self._in_control = False
        # The message being read has RSV1 set (set on its first frame only).
        self._in_compressed = False
        # Inflated bytes the current message may still produce.
        self._in_budget: int | None = None
        # The message being sent is compressed (decided on its first frame).
        self._out_compressed = False

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return True  # pragma: no cover - negotiation happens in this module

    def frame_inbound_header(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        payload_length: int,
    ) -> CloseReason | RsvBits:
        if opcode.iscontrol():
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
            self._in_control = True
            return _RSV1
        self._in_control = False
        if opcode is Opcode.CONTINUATION:
            if rsv.rsv1:
                return CloseReason.PROTOCOL_ERROR
        else:
            self._in_compressed = rsv.rsv1
            self._in_budget = self._max
        return _RSV1

    def _inflate(self, data: bytes, final: bool = False) -> bytes | CloseReason:
        """Inflate one frame's payload (plus the stripped tail if *final*), within the budget.

        zlib is never asked for more than the message may still produce plus
        one byte: a compression bomb costs at most ``max_message_size`` bytes
        of output before it fails with 1009.
        """
        d = self._decompressor
        if d is None:
            d = self._decompressor = zlib.decompressobj(-max(self.remote_bits, 9))
        budget = self._in_budget
        try:
            if final and len(data) < 2048:
                # One call on a small copy is cheaper than a second call for the tail.
                data += _TAIL
                final = False
            if budget is None:
                out = d.decompress(data)
                if final:
                    out += d.decompress(_TAIL)
                return out
            out = d.decompress(data, budget + 1)
            if final and not d.unconsumed_tail and len(out) <= budget:
                out += d.decompress(_TAIL, budget + 1 - len(out))
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        if len(out) > budget or d.unconsumed_tail:
            return CloseReason.MESSAGE_TOO_BIG
        self._in_budget = budget - len(out)
        return out

    def inbound_frame(
        self, opcode: int, rsv1: bool, payload: bytes, fin: bool
    ) -> bytes | CloseReason:
        """A whole data frame at once (opcode 0, 1 or 2): its payload, inflated if compressed.

        What :meth:`frame_inbound_header`, :meth:`frame_inbound_payload_data`
        and :meth:`frame_inbound_complete` do for one frame, in one call: the
        session's frame decoder uses it for frames that arrived whole.
        """
        self._in_control = False
        if opcode == 0:
            if rsv1:
                return CloseReason.PROTOCOL_ERROR
        else:
            self._in_compressed = rsv1
            self._in_budget = self._max
        if not self._in_compressed:
            return payload
        if not fin:
            return self._inflate(payload) if payload else payload
        self._in_compressed = False
        out = self._inflate(payload, final=True)
        if self.remote_no_context_takeover:
            self._decompressor = None
        return out

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if self._in_control or not self._in_compressed or not data:
            return data
        return self._inflate(data)

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if self._in_control or not fin:
            return None
        if not self._in_compressed:
            return None
        self._in_compressed = False
        out = self._inflate(b"", final=True)
        if self.remote_no_context_takeover:
            self._decompressor = None
        return out

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        if opcode.iscontrol():
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            self._out_compressed = not (fin and len(data) < self._min_size)
            if not self._out_compressed:
                return rsv, data
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        elif not self._out_compressed:
            return rsv, data
        c = self._compressor
        if c is None:
            c = self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self.local_bits, self._mem_level
            )
        # A sync flush after every fragment, so a streamed message's chunks leave now.
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            out = out[:-4]
            if self.local_no_context_takeover:
                self._compressor = None
        return rsv, out

    def deflate_message(self, data: bytes) -> bytes | None:
        """The payload of one complete message, compressed; None to send *data* as it is.

        RFC 7692 section 7.2.1: compress, flush with Z_SYNC_FLUSH, strip the
        empty stored block (00 00 ff ff) the flush ends with. The compressor
        (and its window) carries over to the next message unless context
        takeover was refused. The caller frames it with RSV1 set.
        """
        if len(data) < self._min_size:
            return None
        c = self._compressor
        if c is None:
            c = self._compressor = zlib.compressobj(
                self._level, zlib.DEFLATED, -self.local_bits, self._mem_level
            )
        body = c.compress(data)
        tail = c.flush(zlib.Z_SYNC_FLUSH)
        if self.local_no_context_takeover:
            self._compressor = None
        # The flush output ends with the 4-byte marker (and holds at least it).
        if not body:
            return tail[:-4]
        return b"".join((body, memoryview(tail)[:-4]))

    def __repr__(self) -> str:
        return (
            f"<PerMessageDeflate local_bits={self.local_bits} remote_bits={self.remote_bits}"
            f" local_no_context_takeover={self.local_no_context_takeover}"
            f" remote_no_context_takeover={self.remote_no_context_takeover}>"
        )
