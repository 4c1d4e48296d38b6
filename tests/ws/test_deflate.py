"""permessage-deflate (RFC 7692): negotiation both sides and bounded inflation."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from trio_upgrade.ws import ConnectionClosed, Deflate, WebSocket, websocket_session
from trio_upgrade.ws._deflate import (
    PerMessageDeflate,
    client_finalize,
    client_offer,
    negotiate_server,
)

from ._helpers import QUIET, frame

DEFAULT = Deflate()
CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2


def server_answer(offers: list[str], config: Deflate = DEFAULT) -> str | None:
    negotiated = negotiate_server(offers, config, None)
    return None if negotiated is None else negotiated[0]


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        # The default asks for a 4 KiB window for what we send (websockets' choice).
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            'permessage-deflate; client_max_window_bits="10"',
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12;"
            " client_max_window_bits=12",
        ),
    ],
)
def test_server_answers_each_autobahn_style_offer(offer: str, answer: str) -> None:
    assert server_answer([offer]) == answer


@pytest.mark.parametrize(
    "offer",
    [
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
    ],
)
def test_server_declines_offers_it_cannot_honour(offer: str) -> None:
    assert server_answer([offer]) is None


def test_server_picks_the_first_acceptable_offer() -> None:
    offers = ["permessage-deflate; server_max_window_bits=8", "permessage-deflate"]
    assert server_answer(offers) == "permessage-deflate; server_max_window_bits=12"


def test_server_with_full_windows_answers_a_bare_offer_bare() -> None:
    full = Deflate(server_max_window_bits=15, client_max_window_bits=15)
    assert server_answer(["permessage-deflate"], full) == "permessage-deflate"
    assert server_answer(["permessage-deflate; client_max_window_bits"], full) == (
        "permessage-deflate"
    )


def test_server_settings_shape_the_answer() -> None:
    config = Deflate(
        server_max_window_bits=11,
        client_max_window_bits=12,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )
    answer = server_answer(["permessage-deflate; client_max_window_bits"], config)
    assert answer == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
        " server_max_window_bits=11; client_max_window_bits=12"
    )


def test_client_offer_and_finalize() -> None:
    config = Deflate(server_max_window_bits=12, server_no_context_takeover=True)
    offer = client_offer(config)
    assert offer == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12;"
        " client_max_window_bits=12"
    )
    answer = server_answer([offer])
    assert answer is not None
    ext = client_finalize(answer, config, None)
    assert ext.remote_bits == 12
    assert ext.remote_no_context_takeover


@pytest.mark.parametrize(
    "answer",
    [
        "permessage-deflate; server_max_window_bits=15",  # more than the 12 offered
        "permessage-deflate; client_max_window_bits",  # needs a value in a response
        "permessage-deflate; bogus",
        "x-other",
    ],
)
def test_client_rejects_answers_that_break_rfc7692(answer: str) -> None:
    with pytest.raises(ValueError):
        client_finalize(answer, Deflate(server_max_window_bits=12), None)


def test_client_requires_server_no_context_takeover_when_asked() -> None:
    with pytest.raises(ValueError):
        client_finalize("permessage-deflate", Deflate(server_no_context_takeover=True), None)


def pair(
    *, max_size: int | None = None, min_size: int = 0, no_takeover: bool = False
) -> tuple[Connection, Connection]:
    config = Deflate(min_size=min_size)

    def ext(client: bool) -> PerMessageDeflate:
        return PerMessageDeflate(
            client=client,
            local_bits=15,
            remote_bits=15,
            local_no_context_takeover=no_takeover,
            remote_no_context_takeover=no_takeover,
            config=config,
            max_message_size=max_size,
        )

    return (
        Connection(ConnectionType.CLIENT, [ext(True)]),
        Connection(ConnectionType.SERVER, [ext(False)]),
    )


@pytest.mark.parametrize("no_takeover", [False, True])
def test_messages_round_trip_compressed(no_takeover: bool) -> None:
    client, server = pair(no_takeover=no_takeover)
    for text in ["hello " * 100, "", "second message, same context " * 50]:
        wire = client.send(TextMessage(data=text))
        assert wire[0] & 0x40  # RSV1: compressed
        server.receive_data(wire)
        (event,) = server.events()
        assert isinstance(event, TextMessage)
        assert event.data == text


def test_fragmented_compressed_message_sets_rsv1_on_first_frame_only() -> None:
    client, server = pair()
    first = client.send(BytesMessage(data=b"a" * 1000, message_finished=False))
    last = client.send(BytesMessage(data=b"b" * 1000, message_finished=True))
    assert first[0] & 0x40 and not last[0] & 0x40
    server.receive_data(first + last)
    data = b"".join(e.data for e in server.events() if isinstance(e, BytesMessage))
    assert data == b"a" * 1000 + b"b" * 1000


def test_small_messages_below_min_size_go_out_uncompressed() -> None:
    client, server = pair(min_size=64)
    wire = client.send(BytesMessage(data=b"tiny"))
    assert not wire[0] & 0x40
    server.receive_data(wire)
    (event,) = server.events()
    assert isinstance(event, BytesMessage)
    assert event.data == b"tiny"


def test_inflation_stops_at_the_message_size_limit() -> None:
    """A compression bomb fails with 1009 instead of inflating past the limit."""
    client, server = pair(max_size=10_000)
    bomb = client.send(BytesMessage(data=b"\0" * 5_000_000))
    assert len(bomb) < 10_000
    server.receive_data(bomb)
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == CloseReason.MESSAGE_TOO_BIG


def test_garbage_compressed_payload_fails_with_1007() -> None:
    client, server = pair()
    wire = bytearray(client.send(BytesMessage(data=b"x" * 100)))
    # Corrupt the deflate stream: 0xFF starts a block of the reserved type 3.
    mask = wire[2:6]
    wire[6] = 0xFF ^ mask[0]
    server.receive_data(bytes(wire))
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == CloseReason.INVALID_FRAME_PAYLOAD_DATA


# -- sessions: complete messages framed by the session, whole frames inflated in one step --


def server_ext(*, no_takeover: bool = False, max_size: int | None = 1 << 20) -> PerMessageDeflate:
    offer = "permessage-deflate" + ("; client_no_context_takeover" if no_takeover else "")
    negotiated = negotiate_server([offer], DEFAULT, max_size)
    assert negotiated is not None
    return negotiated[1]


def deflate_frames(
    messages: list[bytes], *, opcode: int = BINARY, split: int = 0
) -> tuple[bytes, list[bytes]]:
    """What a client sends for *messages* compressed in one context (split in frames of *split*)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = b""
    payloads = []
    for message in messages:
        payload = (c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        payloads.append(payload)
        pieces = [payload[i : i + split] for i in range(0, len(payload), split)] if split else []
        if len(pieces) < 2:
            wire += frame(opcode, payload, rsv=0b100)
            continue
        wire += frame(opcode, pieces[0], rsv=0b100, fin=False)
        for piece in pieces[1:-1]:
            wire += frame(CONTINUATION, piece, fin=False)
        wire += frame(CONTINUATION, pieces[-1])
    return wire, payloads


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, payload) of each complete unmasked frame at the start of *data*."""
    out = []
    while len(data) >= 2:
        n = data[1] & 0x7F
        at = 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + n:
            break
        out.append((data[0], data[at : at + n]))
        data = data[at + n :]
    return out


@asynccontextmanager
async def deflate_server(
    ext: PerMessageDeflate,
) -> AsyncIterator[tuple[WebSocket, trio.abc.Stream]]:
    """A server session with *ext* negotiated; its peer is the raw stream."""
    left, right = trio.testing.memory_stream_pair()
    async with websocket_session(left, config=QUIET, extensions=[ext]) as server:
        try:
            yield server, right
        finally:
            await right.aclose()


async def receive_frames(stream: trio.abc.Stream, count: int) -> list[tuple[int, bytes]]:
    """The first *count* frames the server sends."""
    data = b""
    while len(frames := read_frames(data)) < count:
        chunk = await stream.receive_some(1 << 20)
        assert chunk, f"EOF after {len(frames)} frames"
        data += chunk
    return frames[:count]


@pytest.mark.parametrize("no_takeover", [False, True])
async def test_session_sends_complete_messages_compressed_with_rsv1(no_takeover: bool) -> None:
    """send() compresses a whole message itself: RSV1 frames that inflate in one context."""
    ext = server_ext()
    ext.local_no_context_takeover = no_takeover
    messages: list[str | bytes] = ["hello " * 50, b"\x00\x01" * 3000, "hello " * 50, b""]
    async with deflate_server(ext) as (server, peer):
        for message in messages:
            await server.send(message)
        frames = await receive_frames(peer, len(messages))
    d = zlib.decompressobj(-12)
    assert [first for first, _ in frames] == [0xC1, 0xC2, 0xC1, 0xC2]
    for message, (_, payload) in zip(messages, frames, strict=False):
        if no_takeover:
            d = zlib.decompressobj(-12)
        got = d.decompress(payload + b"\x00\x00\xff\xff")
        assert got == (message.encode() if isinstance(message, str) else message)
    # With context takeover the repeat is a back-reference, smaller than the first.
    assert (len(frames[2][1]) < len(frames[0][1])) is not no_takeover


@pytest.mark.parametrize("split", [0, 7, 300])
async def test_session_inflates_whole_and_fragmented_messages(split: int) -> None:
    messages = [b"abc" * 1000, b"", bytes(range(256)) * 40, b"abc" * 1000]
    wire, _ = deflate_frames(messages, split=split)
    async with deflate_server(server_ext()) as (server, peer):
        # Everything in one read: every frame is whole (the one-step path).
        await peer.send_all(wire)
        assert [await server.receive() for _ in messages] == messages
        # Byte by byte: no frame is ever whole (wsproto's own path), same context.
        wire, _ = deflate_frames([*messages, b"late"], split=split)
        tail = wire[len(deflate_frames(messages, split=split)[0]) :]
        for i in range(len(tail)):
            await peer.send_all(tail[i : i + 1])
        assert await server.receive() == b"late"


async def test_session_text_messages_inflate_to_str() -> None:
    wire, _ = deflate_frames(["grüße ".encode() * 200], opcode=TEXT, split=5)
    async with deflate_server(server_ext()) as (server, peer):
        await peer.send_all(wire)
        assert await server.receive() == "grüße " * 200


async def test_rsv1_on_a_continuation_frame_fails_with_1002() -> None:
    wire = frame(BINARY, b"\x00", rsv=0b100, fin=False) + frame(CONTINUATION, b"x", rsv=0b100)
    async with deflate_server(server_ext()) as (server, peer):
        await peer.send_all(wire)
        frames = await receive_frames(peer, 1)
    assert frames[0][0] == 0x88
    assert struct.unpack("!H", frames[0][1][:2])[0] == 1002
    assert server.close_code == 1002


async def test_a_one_gib_compression_bomb_closes_with_1009() -> None:
    """1 GiB of zeros in a 1 MiB frame: inflation stops at the 1 MiB limit, the close is 1009."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    # After a full flush the compressor starts afresh, so every MiB of zeros
    # compresses to the same bytes: the bomb is one chunk repeated.
    chunk = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    bomb = chunk * 1024
    assert len(bomb) < 2 << 20
    async with deflate_server(server_ext(max_size=1 << 20)) as (server, peer):
        await peer.send_all(frame(BINARY, bomb, rsv=0b100))
        frames = await receive_frames(peer, 1)
        with pytest.raises(ConnectionClosed):
            await server.receive()
    assert frames[0][0] == 0x88
    assert struct.unpack("!H", frames[0][1][:2])[0] == 1009
    assert server.close_code == 1009
