"""The sans-I/O WebSocketProtocol: bytes in, events and bytes out, no trio anywhere."""

from __future__ import annotations

import ast
import struct
import sys
import zlib
from pathlib import Path

import pytest
from _wire import frame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import Opcode

from trio_upgrade.ws import ConnectionClosed, Deflate
from trio_upgrade.ws._deflate import PerMessageDeflate
from trio_upgrade.ws._protocol import (
    EVENTS_PER_TURN,
    MIN_FRAME_COST,
    PING_RECEIVED,
    TURN,
    CloseReceived,
    Event,
    Fragment,
    PingWaiter,
    PongReceived,
    State,
    Violation,
    WebSocketProtocol,
)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PACKAGE = Path(__file__).resolve().parents[2] / "trio_upgrade"


def server(**kwargs: object) -> WebSocketProtocol:
    return WebSocketProtocol(client=False, **kwargs)  # type: ignore[arg-type]


def client(**kwargs: object) -> WebSocketProtocol:
    return WebSocketProtocol(client=True, **kwargs)  # type: ignore[arg-type]


def feed(proto: WebSocketProtocol, *chunks: bytes) -> list[Event]:
    """Every event of *chunks*, received in one go, without the TURN markers."""
    proto.receive_data(b"".join(chunks))
    return [event for event in proto.events() if event is not TURN]


def framed(proto: WebSocketProtocol, message: str | bytes) -> bytes:
    out: list[bytes] = []
    n = proto.send_message(message, out.append)
    data = b"".join(out)
    assert n == len(data)
    return data


def peer_events(data: bytes, side: ConnectionType = ConnectionType.CLIENT) -> list[object]:
    """What wsproto's own connection (the peer) parses from *data*."""
    conn = Connection(side)
    conn.receive_data(data)
    return list(conn.events())


def deflate(
    client_side: bool, max_message_size: int | None = 1 << 20, min_size: int = 0
) -> PerMessageDeflate:
    return PerMessageDeflate(
        client=client_side,
        local_bits=15,
        remote_bits=15,
        local_no_context_takeover=False,
        remote_no_context_takeover=False,
        config=Deflate(min_size=min_size),
        max_message_size=max_message_size,
    )


def close_code(data: bytes) -> int:
    """The code of the Close frame *data* ends with (a server's, unmasked)."""
    events = peer_events(data)
    last = events[-1]
    assert isinstance(last, CloseConnection)
    return last.code


# -- no trio ---------------------------------------------------------------


def _module_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join([*base, node.module] if node.module else base))
            else:
                names.add(node.module or "")
    return names


def test_the_protocol_and_everything_it_imports_never_import_trio() -> None:
    """Walks ws/_protocol.py's own imports transitively (our modules only)."""
    seen: set[str] = set()
    todo = ["trio_upgrade.ws._protocol"]
    third_party: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        path = PACKAGE.parent.joinpath(*parts).with_suffix(".py")
        if not path.exists():
            path = PACKAGE.parent.joinpath(*parts, "__init__.py")
        if not path.exists():
            # The C extension (ws/_speedups.c) imports nothing.
            assert list(PACKAGE.parent.joinpath(*parts[:-1]).glob(parts[-1] + ".*"))
            continue
        for name in _module_imports(path):
            if name.split(".")[0] == "trio_upgrade":
                # "from ._x import y" names a module; "from . import y" may name either.
                todo.append(name)
            elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
                third_party.add(name.split(".")[0])
    assert "trio_upgrade.ws._fastmask" in seen and "trio_upgrade.ws._deflate" in seen
    assert third_party <= {"wsproto", "h11"}, third_party


# -- framing ---------------------------------------------------------------


def test_a_server_frames_a_small_message_unmasked_byte_for_byte() -> None:
    assert framed(server(), "hello") == b"\x81\x05hello"
    assert framed(server(), b"\x00\x01") == b"\x82\x02\x00\x01"


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 1 << 20])
def test_messages_of_every_length_class_survive_both_directions(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ours_client, ours_server = client(max_message_size=None), server(max_message_size=None)
    wire = framed(ours_client, payload)
    # RFC 6455 §5.3: a client's frame carries the mask bit, and a key.
    assert wire[1] & 0x80
    if size >= 16:
        assert payload not in wire
    assert feed(ours_server, wire) == [payload]
    back = framed(ours_server, payload)
    assert not back[1] & 0x80
    assert feed(ours_client, back) == [payload]
    # wsproto's own server reads our client's frames.
    (event,) = peer_events(wire, ConnectionType.SERVER)
    assert isinstance(event, BytesMessage) and event.data == payload


def test_a_client_masks_every_frame_with_a_fresh_key() -> None:
    proto = client()
    first, second = framed(proto, "same"), framed(proto, "same")
    assert first[2:6] != second[2:6]


def test_big_payloads_are_handed_on_uncopied_after_their_header() -> None:
    payload = b"x" * (64 * 1024)
    out: list[bytes] = []
    n = server().send_message(payload, out.append)
    assert len(out) == 2 and out[1] is payload
    assert n == len(out[0]) + len(payload)


def test_bytearray_memoryview_and_fragments_go_through_wsproto() -> None:
    proto = server()
    assert framed(proto, bytearray(b"ab")) == b"\x82\x02ab"
    assert framed(proto, memoryview(b"cd")) == b"\x82\x02cd"
    wire = proto.send_fragment("he", False) + proto.send_fragment("llo", True)
    events = peer_events(wire)
    assert [(e.data, e.message_finished) for e in events] == [("he", False), ("llo", True)]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        proto.send_message(42, [].append)  # type: ignore[arg-type]


# -- receiving -------------------------------------------------------------


def test_fragments_in_one_read_make_one_message() -> None:
    proto = server()
    events = feed(
        proto,
        frame(TEXT, b"he", fin=False),
        frame(CONTINUATION, b"l", fin=False),
        frame(CONTINUATION, b"lo"),
    )
    assert events == ["hello"]


def test_a_message_across_reads_comes_as_fragments_then_its_last_piece() -> None:
    proto = server()
    (first,) = feed(proto, frame(BINARY, b"ab", fin=False))
    assert type(first) is Fragment and first.data == b"ab" and not first.last
    (last,) = feed(proto, frame(CONTINUATION, b"cd"))
    assert type(last) is Fragment and last.data == b"cd" and last.last
    # The next message starts afresh, whole.
    assert feed(proto, frame(BINARY, b"e")) == [b"e"]


def test_a_frame_split_anywhere_still_decodes() -> None:
    wire = frame(TEXT, "héllo wörld".encode())
    for cut in range(1, len(wire)):
        proto = server()
        events = feed(proto, wire[:cut]) + feed(proto, wire[cut:])
        assert "".join(e if isinstance(e, str) else e.data for e in events) == "héllo wörld"  # type: ignore[misc]


def test_every_64_frames_the_driver_gets_a_turn() -> None:
    proto = server()
    proto.receive_data(frame(PING) * (2 * EVENTS_PER_TURN + 1))
    events = list(proto.events())
    assert events.count(TURN) == 2
    assert events.count(PING_RECEIVED) == 2 * EVENTS_PER_TURN + 1


# -- deflate ---------------------------------------------------------------


def test_deflate_round_trip_both_ways_with_context_takeover() -> None:
    ours_client = client(extensions=[deflate(True)])
    ours_server = server(extensions=[deflate(False)])
    text = "compress me " * 200
    sizes = []
    for _ in range(3):
        wire = framed(ours_client, text)
        assert wire[0] == 0xC1  # FIN, RSV1, text
        sizes.append(len(wire))
        assert feed(ours_server, wire) == [text]
        back = framed(ours_server, text.encode())
        assert back[0] == 0xC2
        assert feed(ours_client, back) == [text.encode()]
    # The window carries over: later copies of the same text cost less.
    assert sizes[1] < sizes[0]


def test_deflate_leaves_messages_under_min_size_uncompressed() -> None:
    proto = server(extensions=[deflate(False, min_size=2)])
    assert framed(proto, b"x")[0] == 0x82
    assert framed(proto, b"xx")[0] == 0xC2


def test_a_compression_bomb_stops_at_the_message_limit_with_1009() -> None:
    proto = server(extensions=[deflate(False, max_message_size=1000)], max_message_size=1000)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(b"\x00" * 100_000) + c.flush(zlib.Z_SYNC_FLUSH)[:-4]
    (event,) = feed(proto, frame(BINARY, bomb, rsv=4))
    assert type(event) is Violation and event.code == 1009


# -- limits ----------------------------------------------------------------


def test_a_message_over_max_message_size_is_a_1009_violation() -> None:
    proto = server(max_message_size=10)
    assert feed(proto, frame(BINARY, b"x" * 10)) == [b"x" * 10]
    (event,) = feed(proto, frame(BINARY, b"x" * 11))
    assert type(event) is Violation and event.code == 1009
    reply = proto.close(event.code, event.reason)
    assert reply is not None and close_code(reply) == 1009
    assert proto.state is State.CLOSING and proto.close_code == 1009


def test_fragments_add_up_against_max_message_size() -> None:
    proto = server(max_message_size=100)
    (event,) = feed(proto, frame(TEXT, b"x" * 64, fin=False), frame(CONTINUATION, b"y" * 64))
    assert type(event) is Violation and event.code == 1009


def test_tiny_fragments_count_min_frame_cost_each() -> None:
    """10 empty non-final frames fill 640 bytes; the 11th is one too many."""
    limit = 10 * MIN_FRAME_COST
    proto = server(max_message_size=limit)
    events = feed(proto, frame(BINARY, b"", fin=False), *[frame(CONTINUATION, b"", fin=False)] * 9)
    assert all(type(e) is Fragment for e in events)
    (event,) = feed(proto, frame(CONTINUATION, b"", fin=False))
    assert type(event) is Violation and event.code == 1009


def test_more_fragments_than_max_fragments_is_a_1008_violation() -> None:
    proto = server(max_fragments=3)
    assert feed(
        proto,
        frame(BINARY, b"a", fin=False),
        frame(CONTINUATION, b"b", fin=False),
        frame(CONTINUATION, b"c"),
    ) == [b"abc"]


@pytest.mark.parametrize("frames", [4, 5])
def test_frames_joined_by_the_fast_decoder_count_against_max_fragments(frames: int) -> None:
    """Frames of at least MIN_FRAME_COST, whole in one read, reach the protocol as one
    (the accelerated decoder joins them): they still count one by one."""
    proto = server(max_fragments=4)
    chunk = b"z" * MIN_FRAME_COST
    middle = [frame(CONTINUATION, chunk, fin=False)] * (frames - 2)
    wire = [frame(BINARY, chunk, fin=False), *middle, frame(CONTINUATION, chunk)]
    events = feed(proto, *wire)
    if frames <= 4:
        assert events == [chunk * frames]
        # Nothing left over is charged to the next message.
        assert feed(proto, frame(BINARY, b"a", fin=False), frame(CONTINUATION, b"b")) == [b"ab"]
    else:
        assert type(events[-1]) is Violation and events[-1].code == 1008


# -- ping and pong ---------------------------------------------------------


def test_pings_of_one_read_are_answered_by_one_piece_of_pongs() -> None:
    proto = server()
    events = feed(proto, frame(PING, b"1"), frame(PING, b"2"), frame(PING, b"3"))
    assert events == [PING_RECEIVED] * 3
    assert proto.pongs_owed() == 9
    pongs = proto.take_pongs()
    assert pongs is not None
    assert [(type(e), e.payload) for e in peer_events(pongs)] == [  # type: ignore[attr-defined]
        (Pong, b"1"),
        (Pong, b"2"),
        (Pong, b"3"),
    ]
    assert proto.take_pongs() is None


def test_a_pong_answers_its_ping_and_every_earlier_one() -> None:
    proto = server()
    first, second, third = PingWaiter(1.0), PingWaiter(2.0), PingWaiter(3.0)
    wire = b"".join(
        proto.send_ping(payload, waiter)
        for payload, waiter in ((b"a", first), (b"b", second), (b"c", third))
    )
    assert [e.payload for e in peer_events(wire) if isinstance(e, Ping)] == [b"a", b"b", b"c"]  # type: ignore[attr-defined]
    (event,) = feed(proto, frame(PONG, b"b"))
    assert type(event) is PongReceived and event.answered == [first, second]
    # An unsolicited pong is nothing to report.
    assert feed(proto, frame(PONG, b"zz")) == []
    assert proto.drop_pings() == [third]


def test_ping_payloads_are_checked() -> None:
    proto = server()
    with pytest.raises(ValueError, match="125"):
        proto.send_ping(b"x" * 126, PingWaiter(0.0))
    proto.send_ping(b"p", PingWaiter(0.0))
    with pytest.raises(ValueError, match="already"):
        proto.send_ping(b"p", PingWaiter(0.0))


# -- the close handshake ---------------------------------------------------


def test_the_peer_closing_first_gets_its_code_echoed_after_the_pongs_owed() -> None:
    proto = server()
    close = frame(CLOSE, struct.pack("!H", 4000) + b"bye")
    events = feed(proto, frame(PING, b"p"), close, frame(TEXT, b"late"))
    assert events[0] is PING_RECEIVED
    reply = events[1]
    assert type(reply) is CloseReceived and (reply.code, reply.reason) == (4000, "bye")
    assert len(events) == 2  # nothing after a Close
    assert reply.reply is not None
    answer = peer_events(reply.reply)
    assert isinstance(answer[0], Pong)
    assert isinstance(answer[1], CloseConnection) and answer[1].code == 4000
    assert proto.state is State.CLOSING and proto.close_code == 4000
    assert proto.close(1000) is None  # the Close already went


def test_our_close_first_then_the_peers_answer_ends_the_handshake() -> None:
    proto = server()
    feed(proto, frame(PING, b"p"))
    data = proto.close(1001, "going away")
    assert data is not None
    sent = peer_events(data)
    assert isinstance(sent[0], Pong)  # owed pongs go out before our Close
    assert isinstance(sent[1], CloseConnection) and sent[1].code == 1001
    assert proto.state is State.CLOSING
    with pytest.raises(ConnectionClosed) as info:
        framed(proto, "too late")
    assert info.value.code == 1001
    # Data after our Close is dropped; the peer's Close completes the handshake.
    events = feed(proto, frame(TEXT, b"dropped"), frame(CLOSE, struct.pack("!H", 1001)))
    assert len(events) == 1
    assert type(events[0]) is CloseReceived and events[0].reply is None
    assert proto.close_code == 1001  # ours: we closed first
    proto.connection_closed()
    assert proto.state is State.CLOSED


def test_a_lost_connection_is_1006_and_sends_nothing() -> None:
    proto = client()
    proto.connection_lost()
    assert proto.state is State.CLOSING and proto.close_code == 1006
    assert proto.close() is None
    with pytest.raises(ConnectionClosed) as info:
        proto.send_ping(b"x", PingWaiter(0.0))
    assert info.value.code == 1006


# -- violations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(0x3), 1002),  # reserved opcode
        (frame(TEXT, b"\xff\xfe"), 1007),  # not UTF-8
        (frame(TEXT, b"\xce", fin=False) + frame(CONTINUATION, b"\xff"), 1007),
        (frame(PING, b"x" * 126), 1002),  # control frame too long
        (frame(PING, b"", fin=False), 1002),  # fragmented control frame
        (frame(CONTINUATION, b"x"), 1002),  # continuation of nothing
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),  # a new message mid-message
        (frame(BINARY, b"x", rsv=4), 1002),  # RSV1 without an extension
        (frame(BINARY, b"x", mask=False), 1002),  # a client must mask
        (frame(CLOSE, b"\x03\xe8\xff"), 1007),  # a close reason that is not UTF-8
        (frame(CLOSE, struct.pack("!H", 999)), 1002),  # a close code no one may send
    ],
)
def test_protocol_violations_name_their_close_code(wire: bytes, code: int) -> None:
    proto = server()
    events = feed(proto, wire)
    assert type(events[-1]) is Violation and events[-1].code == code
    reply = proto.close(events[-1].code, events[-1].reason)
    assert reply is not None and close_code(reply) == code


def test_messages_before_a_violation_are_delivered() -> None:
    proto = server()
    events = feed(proto, frame(TEXT, b"ok"), frame(0x3))
    assert events[0] == "ok" and type(events[1]) is Violation


def test_a_client_reads_unmasked_frames_and_refuses_masked_ones() -> None:
    proto = client()
    assert feed(proto, frame(TEXT, b"hi", mask=False)) == ["hi"]
    (event,) = feed(proto, frame(TEXT, b"hi"))
    assert type(event) is Violation and event.code == 1002


def test_opcodes_are_wsprotos() -> None:
    # The raw opcodes these tests write are RFC 6455's.
    assert (TEXT, BINARY, CLOSE, PING, PONG) == (
        Opcode.TEXT,
        Opcode.BINARY,
        Opcode.CLOSE,
        Opcode.PING,
        Opcode.PONG,
    )


def test_a_whole_text_message_is_str_and_binary_bytes() -> None:
    proto = server()
    events = feed(proto, frame(TEXT, "ünï".encode()), frame(BINARY, b"\x00"))
    assert events == ["ünï", b"\x00"]
    assert [type(e) for e in peer_events(framed(server(), "ünï"))] == [TextMessage]
