"""The sans-I/O ServerProtocol on its own: bytes in, requests out; responses in, bytes out.

No trio and no streams here: these pin the protocol object's decisions
(framing, keep-alive, error statuses) independently of the connection loop.
"""

from __future__ import annotations

import os

import h11
import pytest

from trio_upgrade.http._config import PARSER_ENV
from trio_upgrade.http._parsers import resolve_parser
from trio_upgrade.http._protocol import (
    NEED_DATA,
    IncompleteBody,
    Phase,
    ProtocolError,
    RequestHead,
    ServerProtocol,
)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


# The parser the suite runs under (scripts/test runs it under both).
PARSER = resolve_parser(os.environ.get(PARSER_ENV, "auto"))


def protocol(**options: object) -> ServerProtocol:
    return ServerProtocol(
        max_head_size=16 * 1024,
        date=False,
        parser=PARSER,
        **options,  # type: ignore[arg-type]
    )


def head_of(proto: ServerProtocol, data: bytes) -> RequestHead:
    proto.receive_data(data)
    head = proto.next_request()
    assert isinstance(head, RequestHead)
    return head


def test_a_head_in_pieces_needs_data_then_comes_whole() -> None:
    proto = protocol()
    proto.receive_data(GET[:10])
    assert proto.next_request() is NEED_DATA
    assert proto.has_buffered_data
    head = head_of(proto, GET[10:])
    assert (head.method, head.target, head.http_version) == (b"GET", b"/", b"1.1")
    assert list(head.headers) == [(b"host", b"a")]
    assert not head.upgrade and proto.body_done and proto.keep_alive


def test_pipelined_requests_are_parsed_one_cycle_at_a_time() -> None:
    proto = protocol()
    head_of(proto, GET + b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = proto.respond(200, [], b"one", False, False)
    assert head.endswith(b"content-length: 3\r\n\r\n") and body == b"one"
    assert proto.next_cycle()
    second = proto.next_request()
    assert isinstance(second, RequestHead) and second.target == b"/two"


def test_the_peer_closing_between_requests_ends_the_connection() -> None:
    proto = protocol()
    proto.receive_data(b"")
    assert proto.next_request() is None
    assert proto.phase is Phase.CLOSED


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
    ],
)
def test_http_10_and_connection_close_end_the_connection_after_the_response(
    request_head: bytes,
) -> None:
    proto = protocol()
    head_of(proto, request_head)
    head, _ = proto.respond(200, [], b"x", False, False)
    assert head.endswith(b"connection: close\r\n\r\n")
    assert not proto.next_cycle()


def test_the_servers_own_reason_to_close_is_written_once() -> None:
    proto = protocol()
    head_of(proto, GET)
    head, _ = proto.respond(200, [(b"connection", b"close")], b"", False, True)
    assert head.count(b"connection") == 1
    assert not proto.next_cycle()


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"Transfer-Encoding: gzip, chunked\r\n", 501),
        (b"Transfer-Encoding: chunked, chunked\r\n", 400),
        (b"Transfer-Encoding: identity\r\n", 400),
        (b"Content-Length: 3\r\nContent-Length: 4\r\n", 400),
    ],
)
def test_requests_framed_two_ways_or_not_at_all_are_refused(fields: bytes, status: int) -> None:
    proto = protocol()
    proto.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    with pytest.raises(ProtocolError) as caught:
        proto.next_request()
    # h11 refuses some of these itself (with 501 for codings it lacks).
    assert caught.value.status in (status, 501)
    assert proto.phase is Phase.CLOSED
    answer = proto.error_response(caught.value.status)
    assert answer.startswith(b"HTTP/1.1 %d " % caught.value.status)
    assert b"connection: close\r\n" in answer


def test_a_whole_head_past_the_limit_in_one_read_is_431() -> None:
    proto = ServerProtocol(max_head_size=1024)
    proto.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n")
    with pytest.raises(ProtocolError) as caught:
        proto.next_request()
    assert caught.value.status == 431


def test_another_major_version_is_505() -> None:
    proto = protocol()
    proto.receive_data(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
    with pytest.raises(ProtocolError) as caught:
        proto.next_request()
    assert caught.value.status == 505


def test_body_pieces_then_its_end_then_the_next_request() -> None:
    proto = protocol()
    head_of(proto, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert not proto.body_done
    assert proto.next_body_data() == b"abc"
    assert proto.next_body_data() is NEED_DATA
    proto.receive_data(b"0\r\n\r\n" + GET)
    assert proto.next_body_data() == b""
    assert proto.body_done
    proto.respond(200, [], b"", False, False)
    assert proto.next_cycle()
    assert isinstance(proto.next_request(), RequestHead)


def test_malformed_chunk_is_a_400_and_the_end_of_the_connection() -> None:
    proto = protocol()
    head_of(proto, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n")
    with pytest.raises(ProtocolError) as caught:
        proto.next_body_data()
    assert caught.value.status == 400
    assert not proto.keep_alive
    proto.respond(400, [], b"bad", False, False)
    assert not proto.next_cycle()


def test_eof_before_the_end_of_the_body_is_incomplete_not_malformed() -> None:
    proto = protocol()
    head_of(proto, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert proto.next_body_data() == b"abc"
    proto.receive_data(b"")
    with pytest.raises(IncompleteBody):
        proto.next_body_data()


def test_100_continue_is_owed_only_for_a_body_and_sent_once() -> None:
    proto = protocol()
    head_of(
        proto,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    assert proto.expects_continue
    assert proto.send_continue() == b"HTTP/1.1 100 \r\n\r\n"
    assert not proto.expects_continue
    other = protocol()
    head_of(other, b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
    assert not other.expects_continue


def test_a_refused_response_changes_nothing_and_a_500_can_follow() -> None:
    proto = protocol()
    head_of(proto, GET)
    with pytest.raises(ValueError, match="does not match"):
        proto.respond(200, [(b"content-length", b"4")], b"hello", False, False)
    with pytest.raises(ValueError):
        proto.respond(200, [(b"x-bad", b"a\r\nb")], b"", False, False)
    assert not proto.response_started
    answer = proto.error_response(500)
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert answer.endswith(b"\r\n\r\n500 Internal Server Error\n")
    assert not proto.next_cycle()


@pytest.mark.parametrize(
    "fields",
    [
        [(b"transfer-encoding", b"gzip")],
        [(b"transfer-encoding", b"chunked"), (b"content-length", b"5")],
    ],
)
def test_response_framing_fields_that_contradict_are_refused(
    fields: list[tuple[bytes, bytes]],
) -> None:
    proto = protocol()
    head_of(proto, GET)
    with pytest.raises(ValueError):
        proto.start_response(200, fields, None)


def test_a_stream_of_unknown_length_is_chunked_for_http_11() -> None:
    proto = protocol()
    head_of(proto, GET)
    head = proto.start_response(200, [], None)
    assert b"transfer-encoding: chunked\r\n" in head
    assert proto.send_body(b"hello") == b"5\r\nhello\r\n"
    assert proto.send_body(b"") == b""
    assert proto.end_response() == b"0\r\n\r\n"
    assert proto.next_cycle()


def test_a_stream_of_unknown_length_ends_with_the_connection_for_http_10() -> None:
    proto = protocol()
    head_of(proto, b"GET / HTTP/1.0\r\n\r\n")
    head = proto.start_response(200, [], None)
    assert b"transfer-encoding" not in head and b"connection: close" in head
    assert proto.send_body(b"hello") == b"hello"
    assert proto.end_response() == b""
    assert not proto.next_cycle()


def test_a_stream_must_match_its_content_length() -> None:
    proto = protocol()
    head_of(proto, GET)
    proto.start_response(200, [(b"content-length", b"3")], None)
    assert proto.send_body(b"ab") == b"ab"
    with pytest.raises(ValueError):
        proto.send_body(b"cd")
    with pytest.raises(ValueError):
        proto.end_response()


def test_head_and_no_content_responses_carry_no_body() -> None:
    proto = protocol()
    head_of(proto, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = proto.respond(200, [], b"hello", True, False)
    assert b"content-length: 5\r\n" in head and body == b""
    assert proto.next_cycle()
    proto.receive_data(GET)
    assert isinstance(proto.next_request(), RequestHead)
    head, body = proto.respond(204, [], b"", False, False)
    assert b"content-length" not in head and body == b""
    assert proto.next_cycle()


def test_a_head_response_may_state_a_length_without_carrying_the_body() -> None:
    """A proxied HEAD response keeps its backend's Content-Length (RFC 9110 §9.3.2)."""
    proto = protocol()
    head_of(proto, b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n")
    head, body = proto.respond(200, [(b"content-length", b"1000")], b"", True, False)
    assert head.endswith(b"content-length: 1000\r\n\r\n") and body == b""
    assert proto.next_cycle()


def test_date_and_server_are_added_unless_the_handler_set_them() -> None:
    proto = ServerProtocol(max_head_size=1024, server=b"us")
    head_of(proto, GET)
    head, _ = proto.respond(200, [(b"server", b"backend")], b"", False, False)
    assert head.count(b"server: ") == 1 and b"server: backend" in head
    assert b"\r\ndate: " in head


def test_a_stream_response_head_matches_h11s_bytes() -> None:
    """The head of a chunked response, as h11 writes it (names aside: h11
    title-cases the Transfer-Encoding it adds)."""
    proto = protocol()
    head_of(proto, GET)
    ours = proto.start_response(200, [(b"content-type", b"text/plain")], None)
    ours += proto.send_body(b"abc") + proto.end_response()
    h = h11.Connection(h11.SERVER)
    h.receive_data(GET)
    h.next_event()
    h.next_event()
    theirs = h.send(
        h11.Response(status_code=200, headers=[(b"content-type", b"text/plain")], reason=b"OK")
    )
    assert theirs is not None
    theirs += (h.send(h11.Data(data=b"abc")) or b"") + (h.send(h11.EndOfMessage()) or b"")
    assert ours.lower() == theirs.lower()


def test_an_upgrade_request_answered_plainly_keeps_the_connection() -> None:
    """Upgrade is optional for the server (RFC 9110 §7.8): after a normal
    response, the bytes behind the request are the next request."""
    proto = protocol()
    head = head_of(proto, b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: other\r\n\r\n" + GET)
    assert head.upgrade
    proto.respond(200, [], b"plain", False, False)
    assert proto.next_cycle()
    assert isinstance(proto.next_request(), RequestHead)


def test_the_bytes_past_a_request_are_its_trailing_data() -> None:
    """What a takeover gets: exactly the bytes after the request (and its body)."""
    proto = protocol()
    head_of(proto, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiNEXT")
    assert proto.next_body_data() == b"hi"
    assert proto.next_body_data() == b""
    assert proto.trailing_data == b"NEXT"
