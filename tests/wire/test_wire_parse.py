"""Reading request and response heads (the WebSocket handshakes' parser), without trio."""

from __future__ import annotations

import pytest

from trio_upgrade._wire import (
    DEFAULT_MAX_FIELDS,
    HeadError,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
)

HANDSHAKE = (
    b"GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
FRAME = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"  # masked "Hello" (RFC 6455 §5.7)


def request(data: bytes, **limits: int) -> tuple[RequestHead, bytes]:
    parser = RequestParser(**limits)
    head = parser.feed(data)
    assert head is not None
    return head, parser.rest


def refused(data: bytes, **limits: int) -> int:
    with pytest.raises(HeadError) as info:
        RequestParser(**limits).feed(data)
    return info.value.status


def test_a_request_head_is_parsed_and_the_bytes_after_it_are_kept() -> None:
    head, rest = request(HANDSHAKE + FRAME + FRAME)
    assert (head.method, head.target, head.http_version) == (b"GET", b"/chat?x=1", b"1.1")
    assert head.fields[:3] == [
        (b"host", b"a"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
    ]
    assert rest == FRAME + FRAME


def test_a_head_fed_one_byte_at_a_time_keeps_the_frames_after_it() -> None:
    parser = RequestParser()
    for byte in HANDSHAKE[:-1]:
        assert parser.feed(bytes([byte])) is None
    # The read that completes the head also brings the client's first frame.
    head = parser.feed(HANDSHAKE[-1:] + FRAME)
    assert head is not None and head.target == b"/chat?x=1"
    assert parser.rest == FRAME


def test_repeated_fields_are_kept_in_order() -> None:
    head, _ = request(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nSec-WebSocket-Protocol: a\r\nX-A: 2\r\n"
        b"sec-websocket-protocol: b, c\r\n\r\n"
    )
    assert head.fields == [
        (b"host", b"a"),
        (b"x-a", b"1"),
        (b"sec-websocket-protocol", b"a"),
        (b"x-a", b"2"),
        (b"sec-websocket-protocol", b"b, c"),
    ]


def test_values_lose_surrounding_whitespace_and_may_be_empty() -> None:
    head, _ = request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: \t websocket \r\nX-Empty:\r\n\r\n")
    assert head.fields == [(b"host", b"a"), (b"upgrade", b"websocket"), (b"x-empty", b"")]


def test_common_handshake_names_and_values_are_shared_objects() -> None:
    one, _ = request(HANDSHAKE)
    two, _ = request(HANDSHAKE)
    for (n1, v1), (n2, v2) in zip(one.fields, two.fields, strict=True):
        assert n1 is n2
        if v1 != b"dGhlIHNhbXBsZSBub25jZQ==" and v1 != b"a":
            assert v1 is v2


def test_header_field_count_is_capped_with_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(DEFAULT_MAX_FIELDS))
    head, _ = request(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields[: -len(b"X-99: v\r\n")] + b"\r\n")
    assert len(head.fields) == DEFAULT_MAX_FIELDS
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n") == 431
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nX: 2\r\n\r\n", max_fields=2) == 431
    head, _ = request(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n", max_fields=2)
    assert len(head.fields) == 2


def test_head_size_is_capped_with_431_whether_or_not_it_ends() -> None:
    long_value = b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 2000
    assert refused(long_value, max_size=1024) == 431  # no end in sight
    assert refused(long_value + b"\r\n\r\n", max_size=1024) == 431  # complete but too large
    parser = RequestParser(max_size=1024)
    assert parser.read_size == 1024
    assert parser.feed(b"GET / HTTP/1.1\r\n") is None
    assert parser.read_size == 1024 - 16


def test_a_head_exactly_at_the_limit_is_accepted() -> None:
    head, rest = request(HANDSHAKE + FRAME, max_size=len(HANDSHAKE))
    assert head.method == b"GET" and rest == FRAME


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\tfolded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
        (b"GET /\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nbad name: v\r\n\r\n", 400),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"\x16\x03\x01 not http\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ],
)
def test_malformed_request_heads_are_refused_with_the_status_to_answer(
    data: bytes, status: int
) -> None:
    assert refused(data) == status


def test_a_bare_lf_ends_lines() -> None:
    """RFC 9112 §2.2: a recipient may take a bare LF as a line terminator."""
    head, rest = request(b"GET / HTTP/1.1\nHost: a\nX: 1\n\n" + FRAME)
    assert head.fields == [(b"host", b"a"), (b"x", b"1")]
    assert rest == FRAME


# Responses ----------------------------------------------------------------------


def response(data: bytes, **limits: int) -> tuple[ResponseHead, ResponseParser]:
    parser = ResponseParser(**limits)
    head = parser.feed(data)
    assert head is not None
    return head, parser


def test_a_101_keeps_the_servers_first_frames() -> None:
    head, parser = response(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        + b"\x81\x02hi"
    )
    assert head.status == 101
    assert head.fields == [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
    assert parser.rest == b"\x81\x02hi"
    assert parser.body_complete


def test_a_chunked_refusal_body_is_decoded_across_reads() -> None:
    head, parser = response(
        b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n3\r\nno "
    )
    assert head.status == 403
    assert head.fields[1:] == [(b"x-a", b"1"), (b"x-a", b"2")]
    assert not parser.body_complete
    assert parser.feed_body(b"\r\n4\r\nway!\r\n") is False
    assert parser.feed_body(b"0\r\n\r\n") is True
    assert bytes(parser.body) == b"no way!"


def test_a_length_framed_refusal_body_stops_at_its_length() -> None:
    _, parser = response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 5\r\n\r\nwho?\n")
    assert parser.body_complete
    assert bytes(parser.body) == b"who?\n"


def test_a_refusal_body_without_framing_runs_to_eof_and_is_bounded() -> None:
    _, parser = response(b"HTTP/1.1 400 Bad Request\r\n\r\nabc", max_body_size=5)
    assert not parser.body_complete
    assert parser.feed_body(b"") is True
    assert bytes(parser.body) == b"abc"
    _, parser = response(b"HTTP/1.1 400 Bad Request\r\n\r\nabc", max_body_size=5)
    assert parser.feed_body(b"defgh") is True
    assert bytes(parser.body) == b"abcde"


def test_a_body_cut_short_by_the_close_is_kept() -> None:
    _, parser = response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc")
    assert parser.feed_body(b"") is True
    assert bytes(parser.body) == b"abc"


def test_no_body_for_204_and_304() -> None:
    for status in (204, 304):
        _, parser = response(b"HTTP/1.1 %d X\r\n\r\n" % status)
        assert parser.body_complete and parser.body == b""


@pytest.mark.parametrize(
    "coding",
    [b"xchunked", b"chunked, chunked", b"gzip, chunked", b"chunkedx", b"identity"],
)
def test_only_chunked_alone_is_chunked(coding: bytes) -> None:
    """Not a substring match: "xchunked" is not chunked; codings we cannot decode are refused."""
    with pytest.raises(HeadError):
        ResponseParser().feed(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: "
            + coding
            + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )


@pytest.mark.parametrize("lengths", [[b"1", b"2"], [b"1, 2"], [b"+3"], [b"0x3"], [b"3 3"], [b"-1"]])
def test_conflicting_or_invalid_content_lengths_are_refused(lengths: list[bytes]) -> None:
    data = b"HTTP/1.1 403 Forbidden\r\n"
    data += b"".join(b"Content-Length: " + v + b"\r\n" for v in lengths) + b"\r\nabc"
    with pytest.raises(HeadError):
        ResponseParser().feed(data)


def test_repeated_identical_content_lengths_are_one_length() -> None:
    _, parser = response(
        b"HTTP/1.1 403 X\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabcdef"
    )
    assert parser.body_complete and bytes(parser.body) == b"abc"


def test_a_malformed_chunk_is_refused() -> None:
    _, parser = response(b"HTTP/1.1 403 X\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(HeadError):
        parser.feed_body(b"zz\r\nabc\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 403 X\r\nX: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 403 X\r\nX: a\rb\r\n\r\n",
        b"FTP/1.1 200 OK\r\n\r\n",
    ],
)
def test_malformed_response_heads_are_refused(data: bytes) -> None:
    with pytest.raises(HeadError):
        ResponseParser().feed(data)


def test_response_field_count_and_size_are_capped() -> None:
    many = b"HTTP/1.1 403 X\r\n" + b"X: v\r\n" * 5 + b"\r\n"
    with pytest.raises(HeadError) as info:
        ResponseParser(max_fields=4).feed(many)
    assert info.value.status == 431
    with pytest.raises(HeadError) as info:
        ResponseParser(max_size=1024).feed(b"HTTP/1.1 403 X\r\nX: " + b"a" * 2000)
    assert info.value.status == 431
