"""The framing policy of RFC 9112 §6, without trio: which length wins, what is refused."""

from __future__ import annotations

import pytest

from trio_upgrade._wire import (
    BodyFraming,
    Framing,
    FramingError,
    forwardable_fields,
    parse_content_length,
    request_framing,
    response_framing,
)


def _f(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode(), v.encode()) for n, v in pairs]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ((), BodyFraming(Framing.NONE, 0)),
        ((("content-length", "0"),), BodyFraming(Framing.NONE, 0)),
        ((("content-length", "12"),), BodyFraming(Framing.LENGTH, 12)),
        ((("content-length", "0005"),), BodyFraming(Framing.LENGTH, 5)),
        ((("content-length", "5, 5"),), BodyFraming(Framing.LENGTH, 5)),
        ((("content-length", "5"), ("content-length", "5")), BodyFraming(Framing.LENGTH, 5)),
        ((("transfer-encoding", "chunked"),), BodyFraming(Framing.CHUNKED)),
        ((("transfer-encoding", "Chunked"),), BodyFraming(Framing.CHUNKED)),
    ],
)
def test_request_framing_accepted(
    fields: tuple[tuple[str, str], ...], expected: BodyFraming
) -> None:
    assert request_framing(_f(*fields)) == expected


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ((("content-length", "5"), ("transfer-encoding", "chunked")), 400),
        ((("transfer-encoding", "chunked"), ("content-length", "5")), 400),
        ((("transfer-encoding", "chunked, identity"),), 400),
        ((("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")), 400),
        ((("transfer-encoding", "chunked, chunked"),), 400),
        ((("transfer-encoding", "xchunked"), ("content-length", "5")), 400),
        ((("transfer-encoding", "xchunked"),), 400),
        ((("transfer-encoding", "gzip, chunked"),), 501),
        ((("transfer-encoding", ""),), 400),
        ((("content-length", "5"), ("content-length", "6")), 400),
        ((("content-length", "5, 6"),), 400),
        ((("content-length", "+5"),), 400),
        ((("content-length", "-5"),), 400),
        ((("content-length", "0x5"),), 400),
        ((("content-length", "5 5"),), 400),
        ((("content-length", ""),), 400),
        ((("content-length", "9" * 19),), 400),
    ],
)
def test_request_framing_refused(fields: tuple[tuple[str, str], ...], status: int) -> None:
    with pytest.raises(FramingError) as info:
        request_framing(_f(*fields))
    assert info.value.status == status


def test_transfer_encoding_in_http10_request_is_refused() -> None:
    with pytest.raises(FramingError):
        request_framing(_f(("transfer-encoding", "chunked")), b"1.0")


def test_parse_content_length_drops_leading_zeros() -> None:
    assert parse_content_length([b"0005"]) == 5


@pytest.mark.parametrize(
    ("status", "method", "fields", "expected"),
    [
        (200, b"GET", (("content-length", "3"),), BodyFraming(Framing.LENGTH, 3)),
        (200, b"GET", (("transfer-encoding", "chunked"),), BodyFraming(Framing.CHUNKED)),
        (
            200,
            b"GET",
            (("transfer-encoding", "chunked"), ("content-length", "3")),
            BodyFraming(Framing.CHUNKED, close=True),
        ),
        (200, b"GET", (), BodyFraming(Framing.UNTIL_CLOSE, close=True)),
        (
            200,
            b"GET",
            (("transfer-encoding", "gzip"),),
            BodyFraming(Framing.UNTIL_CLOSE, close=True),
        ),
        (200, b"HEAD", (("content-length", "3"),), BodyFraming(Framing.NONE, 0)),
        (304, b"GET", (("content-length", "3"),), BodyFraming(Framing.NONE, 0)),
        (204, b"GET", (), BodyFraming(Framing.NONE, 0)),
        (204, b"GET", (("content-length", "3"),), BodyFraming(Framing.NONE, 0, close=True)),
        (101, b"GET", (), BodyFraming(Framing.NONE, 0)),
        (200, b"CONNECT", (), BodyFraming(Framing.UNTIL_CLOSE, close=True)),
    ],
)
def test_response_framing(
    status: int, method: bytes, fields: tuple[tuple[str, str], ...], expected: BodyFraming
) -> None:
    assert response_framing(status, _f(*fields), request_method=method) == expected


def test_response_framing_bad_length_is_the_backends_fault() -> None:
    with pytest.raises(FramingError) as info:
        response_framing(200, _f(("content-length", "3"), ("content-length", "4")))
    assert info.value.status == 502


def test_forwardable_fields_drop_both_framing_fields() -> None:
    fields = _f(
        ("host", "a"), ("content-length", "5"), ("transfer-encoding", "chunked"), ("x", "y")
    )
    assert forwardable_fields(fields) == _f(("host", "a"), ("x", "y"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"13"], 13),
        ([b"0"], 0),
        ([b" 13\t"], 13),
        ([b"13, 13"], 13),
        ([b"9" * 18], 10**18 - 1),
        ([b"9" * 19], None),
        ([b"+13"], None),
        ([b"-1"], None),
        ([b"1 3"], None),
        ([b"0x1"], None),
        ([b""], None),
        ([b"13", b"14"], None),
    ],
)
def test_parse_content_length_one_plain_value_and_the_rest(
    values: list[bytes], expected: int | None
) -> None:
    """A single plain-digit value (the common case) and every other form agree
    with RFC 9110 §8.6: one length, digits only, repeats allowed."""
    if expected is None:
        with pytest.raises(FramingError):
            parse_content_length(values)
    else:
        assert parse_content_length(values) == expected
