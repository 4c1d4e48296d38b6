"""The one response-head writer and the field grammar, without trio."""

from __future__ import annotations

import h11
import pytest

from trio_upgrade._wire import (
    InvalidField,
    check_field,
    http_date,
    is_token,
    list_tokens,
    response_head,
    simple_response,
    split_list,
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x-a", b"1\r\nx-b: 2"),
        (b"x-a", b"1\nx"),
        (b"x-a", b"1\rx"),
        (b"x-a", b"1\x00"),
        (b"x-a", b" leading"),
        (b"x-a", b"trailing "),
        (b"x a", b"v"),
        (b"x:a", b"v"),
        (b"", b"v"),
        (b"x\r\na", b"v"),
    ],
)
def test_invalid_fields_are_refused(name: bytes, value: bytes) -> None:
    with pytest.raises(InvalidField):
        check_field(name, value)
    with pytest.raises(InvalidField):
        response_head(200, [(name, value)])


def test_obs_text_and_inner_whitespace_are_allowed() -> None:
    check_field(b"x-a", b"caf\xe9 \t au lait")
    assert is_token(b"X-Custom_1.2")
    assert not is_token(b"")


def test_head_is_what_h11_writes() -> None:
    fields = [
        (b"Content-Type", b"text/plain"),
        (b"x-a", b"1"),
        (b"x-a", b"2"),
        (b"content-length", b"3"),
    ]
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    conn.next_event()
    conn.next_event()
    expected = conn.send(h11.Response(status_code=200, headers=fields, reason=b"OK"))
    # h11 lower-cases names on the wire? It keeps their case: compare literally.
    assert response_head(200, fields) == expected


def test_unknown_status_has_an_empty_reason() -> None:
    assert response_head(599, []).startswith(b"HTTP/1.1 599 \r\n")


@pytest.mark.parametrize("status", [0, 99, 1000])
def test_status_out_of_range(status: int) -> None:
    with pytest.raises(ValueError):
        response_head(status, [])


def test_reason_with_crlf_is_refused() -> None:
    with pytest.raises(ValueError):
        response_head(200, [], reason_bytes=b"OK\r\nx: y")


def test_simple_response_is_complete_and_closes() -> None:
    data = simple_response(503, [(b"retry-after", b"1")])
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nconnection: close" in head
    assert b"\r\nretry-after: 1" in head
    assert b"\r\ndate: " in head
    assert body == b"503 Service Unavailable\n"
    assert b"content-length: %d" % len(body) in head


def test_http_date_format() -> None:
    assert http_date(784111777) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert http_date().endswith(b" GMT")


def test_lists_and_tokens() -> None:
    assert split_list([b"a, ,b", b" c "]) == [b"a", b"b", b"c"]
    assert list_tokens([(b"connection", b"Keep-Alive, Upgrade"), (b"x", b"y")], b"connection") == [
        b"keep-alive",
        b"upgrade",
    ]


def test_a_field_written_before_is_written_the_same_and_a_bad_one_still_refused() -> None:
    """Checked field lines are remembered: the same pair gives the same bytes, a
    pair never checked (the same name with a bad value) is still refused."""
    fields = [(b"content-type", b"text/plain; charset=utf-8")]
    first = response_head(200, fields)
    assert response_head(200, fields) == first
    with pytest.raises(InvalidField):
        response_head(200, [(b"content-type", b"text/plain\r\nx-evil: 1")])
    assert response_head(200, [(bytearray(b"x-a"), bytearray(b"1"))]) == response_head(
        200, [(b"x-a", b"1")]
    )
    with pytest.raises(InvalidField):
        response_head(200, [(bytearray(b"x-a"), bytearray(b"1\r\n"))])


def test_remembered_field_lines_stay_bounded() -> None:
    from trio_upgrade._wire import _head

    for i in range(3 * _head._CHECKED_MAX):
        response_head(200, [(b"etag", b'"%d"' % i)])
    response_head(200, [(b"x-long", b"v" * 10_000)])
    assert 0 < len(_head._CHECKED) <= _head._CHECKED_MAX
    assert all(len(line) <= _head._CHECKED_LINE_MAX for line in _head._CHECKED.values())
