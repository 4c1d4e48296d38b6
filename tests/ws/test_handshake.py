"""The sans-I/O opening handshake: request validation, 101 building, client checks.

Head parsing lives in trio_upgrade._wire (tests/wire/test_wire_parse.py).
"""

from __future__ import annotations

import base64

import pytest

from trio_upgrade._wire import RequestParser, accept_key
from trio_upgrade.ws import (
    Accepted,
    ClientOffer,
    Deflate,
    HandshakeError,
    Rejection,
    WebSocketConfig,
    accept,
    check_response,
    client_request,
    validate_request,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    (b"host", b"example.com"),
    (b"upgrade", b"websocket"),
    (b"connection", b"keep-alive, Upgrade"),
    (b"sec-websocket-key", KEY),
    (b"sec-websocket-version", b"13"),
]


def without(name: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, v) for n, v in GOOD if n != name]


def replaced(name: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    return [*without(name), (name, value)]


def test_accept_key_matches_rfc6455_example() -> None:
    """RFC 6455 §1.3 gives this key/accept pair."""
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_yields_offer_with_subprotocols_and_extensions() -> None:
    headers = [
        *GOOD,
        (b"sec-websocket-protocol", b"chat, superchat"),
        (b"sec-websocket-protocol", b"v3"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits, x-foo"),
    ]
    offer = validate_request("GET", headers)
    assert offer == ClientOffer(
        key=KEY,
        subprotocols=("chat", "superchat", "v3"),
        extensions=("permessage-deflate; client_max_window_bits", "x-foo"),
    )


def test_header_tokens_are_case_insensitive() -> None:
    headers = replaced(b"upgrade", b"WebSocket")
    headers = [*[(n, v) for n, v in headers if n != b"connection"], (b"connection", b"UPGRADE")]
    assert isinstance(validate_request(b"GET", headers), ClientOffer)


@pytest.mark.parametrize(
    ("method", "version", "headers", "fragment"),
    [
        ("POST", "1.1", GOOD, "GET"),
        ("GET", "1.0", GOOD, "HTTP/1.1"),
        ("GET", "1.1", without(b"upgrade"), "Upgrade"),
        ("GET", "1.1", replaced(b"upgrade", b"h2c"), "Upgrade"),
        ("GET", "1.1", without(b"connection"), "Connection"),
        ("GET", "1.1", without(b"sec-websocket-key"), "Key"),
        ("GET", "1.1", replaced(b"sec-websocket-key", b"not base64!"), "16 bytes"),
        ("GET", "1.1", replaced(b"sec-websocket-key", base64.b64encode(b"x" * 15)), "16 bytes"),
        ("GET", "1.1", [*GOOD, (b"sec-websocket-key", KEY)], "exactly one"),
    ],
)
def test_invalid_request_is_rejected_with_400_and_a_reason(
    method: str, version: str, headers: list[tuple[bytes, bytes]], fragment: str
) -> None:
    result = validate_request(method, headers, http_version=version)
    assert isinstance(result, Rejection)
    assert result.status == 400
    assert fragment in result.reason


@pytest.mark.parametrize("version", [None, b"8", b"13, 8"])
def test_wrong_version_is_rejected_with_426_naming_version_13(version: bytes | None) -> None:
    headers = without(b"sec-websocket-version")
    if version is not None:
        headers.append((b"sec-websocket-version", version))
    result = validate_request("GET", headers)
    assert isinstance(result, Rejection)
    assert result.status == 426
    assert (b"sec-websocket-version", b"13") in result.headers


def test_accept_builds_101_headers_with_accept_key_and_subprotocol() -> None:
    offer = ClientOffer(key=KEY, subprotocols=("a", "b"))
    accepted = accept(offer, subprotocol="b", extra_headers=[(b"X-Server", b"us")])
    assert (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in accepted.headers
    assert (b"sec-websocket-protocol", b"b") in accepted.headers
    assert (b"x-server", b"us") in accepted.headers
    assert accepted.subprotocol == "b"
    assert accepted.extensions == []


def test_accept_refuses_a_subprotocol_the_client_did_not_offer() -> None:
    with pytest.raises(ValueError, match="not offered"):
        accept(ClientOffer(key=KEY, subprotocols=("a",)), subprotocol="z")


def test_accept_negotiates_deflate_only_when_configured() -> None:
    offer = ClientOffer(key=KEY, extensions=("permessage-deflate",))
    on = accept(offer)
    assert on.extension_names == ("permessage-deflate; server_max_window_bits=12",)
    assert (
        b"sec-websocket-extensions",
        b"permessage-deflate; server_max_window_bits=12",
    ) in on.headers
    assert len(on.extensions) == 1
    off = accept(offer, config=WebSocketConfig(compression=None))
    assert off.extensions == []
    assert all(n != b"sec-websocket-extensions" for n, _ in off.headers)


def test_accepted_head_is_the_101_to_send() -> None:
    head = Accepted([(b"upgrade", b"websocket")]).head()
    assert head == b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n"


def test_accepted_head_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        Accepted([(b"x", b"a\r\nset-cookie: evil")]).head()
    with pytest.raises(ValueError):
        Accepted([(b"bad name", b"v")]).head()


def test_rejection_response_has_length_close_and_the_reason() -> None:
    data = Rejection(403, "no", ((b"x-why", b"origin"),)).response()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"x-why: origin" in head
    assert b"content-length: 3" in head
    assert b"connection: close" in head
    assert body == b"no\n"


def test_client_request_round_trips_through_validation() -> None:
    data, sent = client_request(
        "example.com:8080",
        "/a?b=c",
        KEY,
        subprotocols=["x", "y"],
        extensions=["permessage-deflate"],
        headers=[(b"Origin", b"http://example.com")],
    )
    parser = RequestParser()
    head = parser.feed(data)
    assert head is not None
    assert parser.rest == b""
    assert head.target == b"/a?b=c"
    headers = head.fields
    assert headers == sent
    offer = validate_request(head.method, headers, http_version=head.http_version)
    assert isinstance(offer, ClientOffer)
    assert offer.subprotocols == ("x", "y")
    assert (b"origin", b"http://example.com") in headers


def test_check_response_accepts_a_matching_101() -> None:
    offer = ClientOffer(key=KEY, subprotocols=("x",), extensions=("permessage-deflate",))
    accepted = accept(offer, subprotocol="x")
    subprotocol, extensions, names = check_response(KEY, accepted.headers, subprotocols=["x"])
    assert subprotocol == "x"
    assert names == ("permessage-deflate; server_max_window_bits=12",)
    assert len(extensions) == 1


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        (without(b"upgrade"), "Upgrade"),
        ([(b"upgrade", b"websocket"), (b"connection", b"upgrade")], "Accept"),
        (
            [
                (b"upgrade", b"websocket"),
                (b"connection", b"upgrade"),
                (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                (b"sec-websocket-protocol", b"other"),
            ],
            "subprotocol",
        ),
        (
            [
                (b"upgrade", b"websocket"),
                (b"connection", b"upgrade"),
                (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                (b"sec-websocket-extensions", b"x-unknown"),
            ],
            "extension",
        ),
    ],
)
def test_check_response_fails_a_nonconforming_101(
    headers: list[tuple[bytes, bytes]], fragment: str
) -> None:
    headers = [(b"connection", b"upgrade"), *headers] if headers is GOOD else headers
    with pytest.raises(HandshakeError, match=fragment):
        check_response(KEY, headers, subprotocols=["x"])


def test_check_response_fails_deflate_parameters_breaking_the_offer() -> None:
    config = WebSocketConfig(compression=Deflate(server_max_window_bits=10))
    headers = [
        (b"upgrade", b"websocket"),
        (b"connection", b"upgrade"),
        (b"sec-websocket-accept", accept_key(KEY).encode()),
        (b"sec-websocket-extensions", b"permessage-deflate; server_max_window_bits=12"),
    ]
    with pytest.raises(HandshakeError, match="permessage-deflate"):
        check_response(KEY, headers, config=config)


BAD_FIELDS = [
    (b"x-a", b"1\r\nset-cookie: evil"),
    (b"x-a", b"1\nevil"),
    (b"x-a", b"1\revil"),
    (b"x-a", b"1\x00"),
    (b"x a", b"v"),
    (b"x:a", b"v"),
    (b"x\r\na", b"v"),
    (b"", b"v"),
]


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS)
def test_every_head_writer_refuses_a_field_that_would_split_the_head(
    name: bytes, value: bytes
) -> None:
    """The 101 (accept and Accepted.head), a refusal, and the client's request."""
    offer = ClientOffer(key=KEY)
    with pytest.raises(ValueError):
        accept(offer, extra_headers=[(name, value)])
    with pytest.raises(ValueError):
        Accepted([(name, value)]).head()
    with pytest.raises(ValueError):
        Rejection(403, "no", ((name, value),)).response()
    with pytest.raises(ValueError):
        client_request("example.com", "/", KEY, headers=[(name, value)])


@pytest.mark.parametrize("path", ["/a b", "/a\r\nx: y", "/a\nb", "/a\x00", "/\x7f", "/é", ""])
def test_client_request_refuses_a_path_that_is_not_visible_ascii(path: str) -> None:
    with pytest.raises(ValueError):
        client_request("example.com", path, KEY)


def test_client_request_refuses_a_subprotocol_that_would_split_the_head() -> None:
    with pytest.raises(ValueError):
        client_request("example.com", "/", KEY, subprotocols=["a\r\nx: y"])
    with pytest.raises(ValueError):
        client_request("example.com\r\nx: y", "/", KEY)
