"""The optional C unmasker (_speedups) and its per-connection hook into wsproto (_fastmask)."""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.frame_protocol import FrameDecoder, XorMaskerSimple

from trio_upgrade.ws import Deflate, _fastmask, websocket_session
from trio_upgrade.ws._deflate import PerMessageDeflate

from ._helpers import QUIET, RawPeer, server_and_raw_peer, session_pair

try:
    from trio_upgrade.ws import _speedups
except ImportError:  # not built: the tests of the C routine skip, the fallback's still run
    _speedups = None  # type: ignore[assignment]

needs_speedups = pytest.mark.skipif(_speedups is None, reason="C extension not built")

# setup.py honours the same variable: the extension is skipped on purpose.
EXTENSION_SKIPPED = bool(os.environ.get("TRIO_UPGRADE_NO_EXTENSIONS"))

KEY = b"\x9a\x0f\x71\xe4"
BIG = dataclasses.replace(QUIET, max_message_size=4 << 20)


def reference(data: bytes, key: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))


def wsproto_masker(key: bytes) -> Callable[[bytes | bytearray | memoryview], bytes]:
    masker = XorMaskerSimple(key)
    return lambda piece: bytes(masker.process(bytearray(piece)))


def c_masker(key: bytes) -> Callable[[bytes | bytearray | memoryview], bytes]:
    assert _speedups is not None
    masker = _speedups.Masker(key)
    return lambda piece: bytes(masker.process(piece))


MASKERS = [
    pytest.param(wsproto_masker, id="wsproto"),
    pytest.param(c_masker, id="c", marks=needs_speedups),
]

INPUT_TYPES: list[Callable[[bytes], bytes | bytearray | memoryview]] = [
    bytes,
    bytearray,
    memoryview,
    lambda b: memoryview(bytearray(b)),
]


# -- the XOR itself -----------------------------------------------------------


@needs_speedups
@pytest.mark.parametrize("make", INPUT_TYPES)
def test_mask_matches_the_reference_for_every_short_length_and_offset(
    make: Callable[[bytes], bytes | bytearray | memoryview],
) -> None:
    assert _speedups is not None
    rng = random.Random(1)
    for length in range(65):
        data = rng.randbytes(length)
        key = rng.randbytes(4)
        for offset in (*range(-5, 9), rng.randrange(1 << 40)):
            assert _speedups.mask(make(data), key, offset) == reference(data, key, offset)


@pytest.mark.parametrize("masker", MASKERS)
@pytest.mark.parametrize("make", INPUT_TYPES)
def test_a_payload_in_two_pieces_is_unmasked_as_one_for_every_split(
    masker: Callable[[bytes], Callable[[bytes | bytearray | memoryview], bytes]],
    make: Callable[[bytes], bytes | bytearray | memoryview],
) -> None:
    # The second piece starts at every key rotation: the key carries over.
    rng = random.Random(2)
    for length in range(65):
        data = rng.randbytes(length)
        key = rng.randbytes(4)
        split = rng.randint(0, length)
        process = masker(key)
        got = process(make(data[:split])) + process(make(data[split:]))
        assert got == reference(data, key), (length, split)


@pytest.mark.parametrize("masker", MASKERS)
def test_a_mebibyte_in_odd_pieces_is_unmasked_exactly(
    masker: Callable[[bytes], Callable[[bytes | bytearray | memoryview], bytes]],
) -> None:
    rng = random.Random(3)
    data = rng.randbytes(1 << 20)
    process = masker(KEY)
    out = bytearray()
    pos = 0
    while pos < len(data):
        step = rng.choice([0, 1, 3, 7, 13, 4093, 65537, 131071])
        out += process(data[pos : pos + step])
        pos += step
    assert out == reference(data, KEY)


@needs_speedups
def test_masker_unmasks_a_bytearray_in_place_and_copies_other_buffers() -> None:
    assert _speedups is not None
    masker = _speedups.Masker(KEY)
    piece = bytearray(b"in place")
    assert masker.process(piece) is piece
    assert piece == reference(b"in place", KEY)

    data = b"copied!"
    out = _speedups.Masker(KEY).process(data)
    assert type(out) is bytearray
    assert out == reference(data, KEY)
    assert data == b"copied!"


@needs_speedups
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_a_key_must_be_four_bytes(key: bytes) -> None:
    assert _speedups is not None
    with pytest.raises(ValueError, match="4 bytes"):
        _speedups.Masker(key)
    with pytest.raises(ValueError, match="4 bytes"):
        _speedups.mask(b"data", key)


# -- the hook into wsproto ----------------------------------------------------


def test_the_accelerator_is_active_in_the_dev_environment() -> None:
    """Fails if the extension did not build or a wsproto upgrade broke the hook.

    Only ``TRIO_UPGRADE_NO_EXTENSIONS=1`` (which also makes setup.py skip the
    build) excuses a missing accelerator.
    """
    if EXTENSION_SKIPPED:
        pytest.skip("TRIO_UPGRADE_NO_EXTENSIONS is set")
    assert _speedups is not None, "trio_upgrade.ws._speedups is not built"
    assert _fastmask.ACTIVE, "wsproto's internals no longer match _fastmask"
    conn = Connection(ConnectionType.SERVER)
    _fastmask.accelerate(conn)
    decoder = conn._proto._frame_decoder
    # A 5-byte frame of which 2 payload bytes arrived: the header is parsed,
    # and the frame's masker is the C one.
    wire = b"\x82\x85" + KEY + reference(b"hello", KEY)
    conn.receive_data(wire[:8])
    first = [e.data for e in conn.events() if isinstance(e, BytesMessage)]
    assert type(decoder.masker) is _speedups.Masker
    conn.receive_data(wire[8:])
    rest = [e.data for e in conn.events() if isinstance(e, BytesMessage)]
    assert b"".join(first + rest) == b"hello"


async def test_server_sessions_use_the_accelerator_and_clients_do_not() -> None:
    async with session_pair() as (server, client):
        await client.send(b"x")
        assert await server.receive() == b"x"
        server_decoder = server._proto._conn._proto._frame_decoder  # type: ignore[union-attr]
        await server.send(b"y")
        assert await client.receive() == b"y"
        client_decoder = client._proto._conn._proto._frame_decoder  # type: ignore[union-attr]
    # A client receives unmasked frames: its decoder stays wsproto's own.
    assert type(client_decoder) is FrameDecoder
    if _fastmask.ACTIVE:
        assert type(server_decoder) is not FrameDecoder
        assert isinstance(server_decoder, FrameDecoder)
    else:
        assert type(server_decoder) is FrameDecoder


def test_accelerate_leaves_a_decoder_it_does_not_know_alone() -> None:
    class OtherDecoder(FrameDecoder):
        pass

    conn = Connection(ConnectionType.SERVER)
    conn._proto._frame_decoder.__class__ = OtherDecoder
    _fastmask.accelerate(conn)
    assert type(conn._proto._frame_decoder) is OtherDecoder
    conn.receive_data(b"\x82\x83" + KEY + reference(b"abc", KEY))
    assert [e.data for e in conn.events() if isinstance(e, BytesMessage)] == [b"abc"]


def test_an_accelerated_connection_leaves_other_wsproto_connections_alone() -> None:
    fast = Connection(ConnectionType.SERVER)
    _fastmask.accelerate(fast)
    plain = Connection(ConnectionType.SERVER)
    for conn in (fast, plain):
        conn.receive_data(b"\x82\x83" + KEY + reference(b"abc", KEY))
        assert [e.data for e in conn.events() if isinstance(e, BytesMessage)] == [b"abc"]
    assert type(plain._proto._frame_decoder) is FrameDecoder
    assert type(plain._proto._frame_decoder.masker) in (type(None), XorMaskerSimple)


# -- sessions receiving large masked messages ---------------------------------


async def test_a_server_session_receives_large_masked_messages_exactly() -> None:
    rng = random.Random(4)
    payloads = [rng.randbytes(n) for n in (1 << 20, 65536 + 3, 125, 126, 0, 3 * 65536 + 1)]
    async with session_pair(BIG, BIG) as (server, client):
        for data in payloads:
            await client.send(data)
            assert await server.receive() == data
        text = "ünïcode " * 100_000
        await client.send(text)
        assert await server.receive() == text


async def test_a_raw_peer_can_split_a_masked_frame_anywhere() -> None:
    # Frames trickle in a few bytes at a time, so each arrives in many pieces
    # whose lengths are not multiples of 4.
    rng = random.Random(5)
    peer_conn = Connection(ConnectionType.CLIENT)
    messages = [rng.randbytes(n) for n in (1, 5, 1000, 70_001)]
    wire = b"".join(peer_conn.send(BytesMessage(data=m)) for m in messages)
    async with server_and_raw_peer() as (server, peer):
        assert isinstance(peer, RawPeer)

        async def trickle() -> None:
            pos = 0
            while pos < len(wire):
                step = rng.choice([1, 2, 3, 5, 7, 4099])
                await peer.send_raw(wire[pos : pos + step])
                pos += step

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            for expected in messages:
                assert await server.receive() == expected


@pytest.mark.parametrize("no_takeover", [False, True])
async def test_large_compressed_messages_through_an_accelerated_server(
    no_takeover: bool,
) -> None:
    def ext(client: bool) -> PerMessageDeflate:
        return PerMessageDeflate(
            client=client,
            local_bits=15,
            remote_bits=15,
            local_no_context_takeover=no_takeover,
            remote_no_context_takeover=no_takeover,
            config=Deflate(),
            max_message_size=None,
        )

    rng = random.Random(6)
    # Compressible and incompressible payloads, larger than one read.
    payloads: list[str | bytes] = [
        b"abcd" * 300_000,
        rng.randbytes(600_000),
        "téxt " * 50_000,
    ]
    config = BIG
    left, right = trio.testing.memory_stream_pair()
    async with (
        websocket_session(left, config=config, extensions=[ext(False)]) as server,
        websocket_session(right, config=config, extensions=[ext(True)], client=True) as client,
    ):
        assert server.extensions and client.extensions
        for data in payloads:
            await client.send(data)
            got = await server.receive()
            assert got == data
            await server.send(got)
            assert await client.receive() == data


async def test_client_frames_masked_in_c_are_read_exactly_by_a_plain_wsproto_server() -> None:
    """Every length class (7-bit, 16-bit, 64-bit), text and binary: the frames our
    client builds itself carry the mask bit, a fresh key each, and the payload
    wsproto's own (unaccelerated) server decodes back."""
    from trio_upgrade.ws._protocol import _MASK

    if not EXTENSION_SKIPPED:
        assert _MASK is not None, "clients should mask through the C extension here"
    rng = random.Random(7)
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20]
    messages: list[str | bytes] = [rng.randbytes(n) for n in sizes]
    messages += ["é" * 70_000, "plain"]
    left, right = trio.testing.memory_stream_pair()
    server = Connection(ConnectionType.SERVER)  # not accelerated
    received: list[str | bytes] = []
    async with websocket_session(right, config=BIG, client=True) as client:
        for message in messages:
            await client.send(message)
            parts: list[str | bytes] = []
            while True:
                server.receive_data(await left.receive_some(1 << 20))
                done = False
                for event in server.events():
                    parts.append(event.data)  # type: ignore[attr-defined]
                    done = event.message_finished  # type: ignore[attr-defined]
                if done:
                    break
            received.append("".join(parts) if isinstance(message, str) else b"".join(parts))  # type: ignore[arg-type]
        # The same payload twice: two frames, two keys (RFC 6455 §5.3).
        await client.send(b"same")
        await client.send(b"same")
        raw = b""
        while len(raw) < 20:
            raw += await left.receive_some(20 - len(raw))
        await client.aclose()
    assert received == messages
    first, second = raw[:10], raw[10:]
    assert first[:2] == second[:2] == b"\x82\x84"
    assert first[2:6] != second[2:6]
    assert reference(first[6:], first[2:6]) == reference(second[6:], second[2:6]) == b"same"


# -- the one-step decoder of whole frames agrees with wsproto's ----------------


def _mixed_stream(rng: random.Random, compressed: bool) -> bytes:
    """Masked client frames: whole and fragmented messages, some with a ping inside,
    all three header lengths, empty payloads, text with multi-byte characters."""
    import zlib

    from ._helpers import frame

    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = b""
    for i in range(60):
        text = rng.random() < 0.5
        size = rng.choice([0, 1, 125, 126, 300, 65535, 65536, 70000])
        data = ("ä" * (size // 2)).encode() if text else rng.randbytes(size)
        if compressed:
            data = (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        cut = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))[:2] if i % 3 else []
        pieces = [data[a:b] for a, b in zip([0, *cut], [*cut, len(data)], strict=True)]
        for j, piece in enumerate(pieces):
            opcode = (0x1 if text else 0x2) if j == 0 else 0x0
            rsv = 0b100 if compressed and j == 0 else 0
            out += frame(opcode, piece, fin=j == len(pieces) - 1, rsv=rsv)
            if j == 0 and len(pieces) > 1 and i % 2:
                out += frame(0x9, b"ping %d" % i)
    return out + frame(0x8, b"\x03\xe8bye")


def _events(data: bytes, accelerated: bool, compressed: bool, step: int) -> list[object]:
    def ext() -> list[PerMessageDeflate]:
        if not compressed:
            return []
        return [
            PerMessageDeflate(
                client=False,
                local_bits=15,
                remote_bits=15,
                local_no_context_takeover=False,
                remote_no_context_takeover=False,
                config=Deflate(),
                max_message_size=None,
            )
        ]

    conn = Connection(ConnectionType.SERVER, extensions=ext())
    if accelerated:
        _fastmask.accelerate(conn)
    # Messages whole (chunk boundaries follow the reads, and the one-step
    # decoder joins whole continuation frames), everything else as it came.
    events: list[object] = []
    parts: list[str | bytes] = []
    for i in range(0, len(data), step):
        conn.receive_data(data[i : i + step])
        for event in conn.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                parts.append(event.data)
                if event.message_finished:
                    joined = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]
                    events.append((type(event).__name__, joined))
                    parts = []
            else:
                events.append(repr(event))
    return events


@needs_speedups
@pytest.mark.skipif(EXTENSION_SKIPPED, reason="extension skipped on purpose")
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "deflate"])
def test_the_one_step_decoder_yields_exactly_wsprotos_events(
    compressed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _mixed_stream(random.Random(11), compressed)
    calls = 0
    one_step = PerMessageDeflate.inbound_frame

    def counted(self: PerMessageDeflate, *args: object) -> object:
        nonlocal calls
        calls += 1
        return one_step(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(PerMessageDeflate, "inbound_frame", counted)
    expected = _events(data, accelerated=False, compressed=compressed, step=len(data))
    assert len(expected) > 80
    assert str(expected[-1]).startswith("CloseConnection")
    # Whole: every frame takes the one-step path; odd-sized reads: a mix of both.
    for step in (len(data), 7919, 301):
        assert _events(data, accelerated=True, compressed=compressed, step=step) == expected
    # Every compressed data frame of the whole run went through the one-step path.
    assert calls >= (60 if compressed else 0)
