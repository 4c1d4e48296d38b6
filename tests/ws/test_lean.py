"""The receive path's lean case (ws/_lean.py): whole plain messages taken
straight from wsproto's buffer, and everything else left to wsproto from
exactly the right byte. No trio here: bytes in, events out."""

from __future__ import annotations

import os
import struct

import pytest
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from trio_upgrade.ws import _lean
from trio_upgrade.ws._lean import events

pytestmark = pytest.mark.skipif(not _lean.ACTIVE, reason="the C extension is not built")

KEY = b"\x11\x22\x33\x44"


def masked(payload: bytes) -> bytes:
    return bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def frame(first: int, payload: bytes, *, length: bytes | None = None) -> bytes:
    if length is None:
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            length = bytes([0x80 | 127]) + struct.pack("!Q", n)
    return bytes([first]) + length + KEY + masked(payload)


def server() -> Connection:
    return Connection(ConnectionType.SERVER)


def test_whole_plain_messages_come_as_str_and_bytes() -> None:
    conn = server()
    big = os.urandom(70_000)
    conn.receive_data(
        frame(0x81, "héllo".encode())
        + frame(0x82, b"\x00\xff")
        + frame(0x82, b"")
        + frame(0x81, b"x" * 300)
    )
    assert list(events(conn)) == ["héllo", b"\x00\xff", b"", "x" * 300]
    # A 64-bit length goes through wsproto, and still arrives whole.
    conn.receive_data(frame(0x82, big))
    got = list(events(conn))
    assert [type(e) for e in got] == [BytesMessage]
    assert got[0].data == big


def test_the_buffer_is_consumed_across_reads() -> None:
    conn = server()
    data = frame(0x82, b"abc") * 100
    for _ in range(50):
        conn.receive_data(data)
        assert list(events(conn)) == [b"abc"] * 100
        assert len(conn._proto._frame_decoder.buffer) == 0  # type: ignore[attr-defined]


def test_a_frame_split_across_reads_waits_for_its_end() -> None:
    conn = server()
    whole = frame(0x81, b"split me") + frame(0x81, b"next")
    for cut in range(1, len(whole)):
        conn = server()
        conn.receive_data(whole[:cut])
        first = list(events(conn))
        conn.receive_data(whole[cut:])
        rest = list(events(conn))
        texts = [e if isinstance(e, str) else e.data for e in first + rest]
        assert "".join(texts) == "split menext"


def test_control_frames_and_fragments_go_through_wsproto_in_order() -> None:
    conn = server()
    conn.receive_data(
        frame(0x81, b"one")
        + frame(0x89, b"ping")
        + frame(0x81, b"two")
        + frame(0x01, b"fr")
        + frame(0x80, b"ag")
        + frame(0x82, b"three")
    )
    got = list(events(conn))
    assert got[0] == "one"
    assert isinstance(got[1], Ping) and got[1].payload == b"ping"
    # Once wsproto has taken over in a read, it carries on to the end of it.
    assert [getattr(e, "data", e) for e in got[2:]] == ["two", "fr", "ag", b"three"]
    # The next read starts lean again: no message is in progress.
    conn.receive_data(frame(0x82, b"four"))
    assert list(events(conn)) == [b"four"]


def test_no_lean_path_while_a_fragmented_message_is_in_progress() -> None:
    conn = server()
    conn.receive_data(frame(0x01, b"begin"))
    got = list(events(conn))
    assert isinstance(got[0], TextMessage) and not got[0].message_finished
    # A whole text frame now is a protocol error (a continuation was due):
    # wsproto must see it, not the lean path.
    conn.receive_data(frame(0x81, b"bad"))
    got = list(events(conn))
    assert isinstance(got[0], CloseConnection) and got[0].code == 1002


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x81, b"\xff\xfe"), 1007),  # invalid UTF-8
        (frame(0x81, b"ok\xed\xa0\x80"), 1007),  # a surrogate
        (frame(0xC1, b"rsv1"), 1002),  # RSV1 without an extension
        (frame(0x83, b"op"), 1002),  # reserved opcode
        (frame(0x82, b"short", length=bytes([0x80 | 126, 0, 5])), 1002),  # not minimal
        (bytes([0x82, 0x03]) + b"abc", 1002),  # unmasked from a client
    ],
)
def test_errors_are_wsproto_s_with_its_close_code(data: bytes, code: int) -> None:
    conn = server()
    conn.receive_data(frame(0x82, b"before") + data)
    got = list(events(conn))
    assert got[0] == b"before"
    assert isinstance(got[1], CloseConnection)
    assert got[1].code == code


def test_nothing_is_taken_once_the_peer_closed_or_we_did() -> None:
    conn = server()
    conn.receive_data(frame(0x88, struct.pack("!H", 1000)))
    assert isinstance(next(iter(events(conn))), CloseConnection)
    assert conn.state is ConnectionState.REMOTE_CLOSING

    conn = server()
    conn.send(CloseConnection(code=1000))
    assert conn.state is ConnectionState.LOCAL_CLOSING
    conn.receive_data(frame(0x82, b"late"))
    got = list(events(conn))
    assert [type(e) for e in got] == [BytesMessage]  # wsproto's event, not the lean bytes


def test_an_abandoned_iteration_keeps_what_was_not_taken() -> None:
    conn = server()
    conn.receive_data(frame(0x82, b"a") + frame(0x82, b"b") + frame(0x82, b"c"))
    it = events(conn)
    assert next(it) == b"a"
    it.close()  # type: ignore[attr-defined]
    assert list(events(conn)) == [b"b", b"c"]


def test_a_client_connection_is_left_to_wsproto() -> None:
    conn = Connection(ConnectionType.CLIENT)
    conn.receive_data(bytes([0x82, 0x02]) + b"hi")
    got = list(events(conn))
    assert [type(e) for e in got] == [BytesMessage]
    # A masked frame is a protocol error for a client (RFC 6455 §5.1).
    conn.receive_data(frame(0x82, b"masked"))
    got = list(events(conn))
    assert isinstance(got[0], CloseConnection) and got[0].code == 1002
