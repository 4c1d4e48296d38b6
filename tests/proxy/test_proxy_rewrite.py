"""Pure parts of the proxy: header rewriting, target rewriting, routes, backend URLs."""

from __future__ import annotations

import pytest

from trio_upgrade._wire import HOP_BY_HOP, connection_options
from trio_upgrade.proxy import Backend, ProxyConfig, ProxyRoute
from trio_upgrade.proxy._rewrite import (
    forward_target,
    is_upgrade_request,
    rewrite_request_headers,
    rewrite_response_headers,
)
from trio_upgrade.proxy._routes import match_route

H = list[tuple[bytes, bytes]]


def names(headers: H) -> list[bytes]:
    return [name for name, _ in headers]


def value(headers: H, name: bytes) -> bytes | None:
    found = [v for n, v in headers if n == name]
    assert len(found) <= 1, f"{name!r} appears {len(found)} times"
    return found[0] if found else None


REQUEST: H = [
    (b"host", b"example.test"),
    (b"connection", b"keep-alive, X-Secret, Close"),
    (b"keep-alive", b"timeout=5"),
    (b"x-secret", b"hop"),
    (b"te", b"trailers"),
    (b"transfer-encoding", b"chunked"),
    (b"trailer", b"x-checksum"),
    (b"proxy-connection", b"keep-alive"),
    (b"upgrade", b"h2c"),
    (b"accept", b"*/*"),
    (b"expect", b"100-continue"),
    (b"content-type", b"text/plain"),
]


def test_request_hop_by_hop_and_connection_named_fields_are_removed() -> None:
    out = rewrite_request_headers(REQUEST, client=("10.0.0.1", 5000), scheme="http")
    for name in (*HOP_BY_HOP, b"x-secret", b"expect"):
        assert name not in names(out)
    assert value(out, b"accept") == b"*/*"
    assert value(out, b"content-type") == b"text/plain"
    assert value(out, b"host") == b"example.test"


def test_connection_cannot_remove_host_or_content_length() -> None:
    headers: H = [
        (b"host", b"h"),
        (b"content-length", b"3"),
        (b"connection", b"host, content-length"),
    ]
    out = rewrite_request_headers(headers, client=None, scheme="http")
    assert value(out, b"host") == b"h"
    assert value(out, b"content-length") == b"3"


def test_upgrade_request_keeps_upgrade_and_sends_connection_upgrade() -> None:
    headers: H = [
        (b"host", b"h"),
        (b"connection", b"keep-alive, Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"keep-alive", b"300"),
    ]
    out = rewrite_request_headers(headers, client=("127.0.0.1", 1), scheme="http", upgrade=True)
    assert value(out, b"upgrade") == b"websocket"
    assert value(out, b"connection") == b"upgrade"
    assert value(out, b"sec-websocket-key") == b"dGhlIHNhbXBsZSBub25jZQ=="
    assert b"keep-alive" not in names(out)


def test_x_forwarded_headers_are_added() -> None:
    out = rewrite_request_headers(
        [(b"host", b"example.test:8443")], client=("10.0.0.1", 5000), scheme="https"
    )
    assert value(out, b"x-forwarded-for") == b"10.0.0.1"
    assert value(out, b"x-forwarded-proto") == b"https"
    assert value(out, b"x-forwarded-host") == b"example.test:8443"
    assert b"x-forwarded-prefix" not in names(out)
    assert b"forwarded" not in names(out)


def test_untrusted_forwarding_headers_from_the_client_are_replaced() -> None:
    forged: H = [
        (b"host", b"h"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil"),
        (b"x-forwarded-prefix", b"/evil"),
        (b"forwarded", b"for=1.2.3.4"),
    ]
    out = rewrite_request_headers(forged, client=("10.0.0.1", 1), scheme="http")
    assert value(out, b"x-forwarded-for") == b"10.0.0.1"
    assert value(out, b"x-forwarded-proto") == b"http"
    assert value(out, b"x-forwarded-host") == b"h"
    assert b"x-forwarded-prefix" not in names(out)
    assert b"forwarded" not in names(out)


def test_trusted_forwarding_headers_are_appended_to() -> None:
    incoming: H = [
        (b"host", b"inner"),
        (b"x-forwarded-for", b"1.2.3.4"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"outer.test"),
        (b"x-forwarded-prefix", b"/outer/"),
        (b"forwarded", b"for=1.2.3.4;proto=https"),
    ]
    out = rewrite_request_headers(
        incoming,
        client=("10.0.0.1", 1),
        scheme="http",
        prefix="/api",
        forwarded=True,
        trust_forwarded=True,
    )
    assert value(out, b"x-forwarded-for") == b"1.2.3.4, 10.0.0.1"
    assert value(out, b"x-forwarded-proto") == b"https"
    assert value(out, b"x-forwarded-host") == b"outer.test"
    assert value(out, b"x-forwarded-prefix") == b"/outer/api"
    assert (
        value(out, b"forwarded") == b"for=1.2.3.4;proto=https, for=10.0.0.1;proto=http;host=inner"
    )


def test_forwarded_header_quotes_ipv6_and_ports() -> None:
    out = rewrite_request_headers(
        [(b"host", b"example.test:8080")],
        client=("::1", 5000),
        scheme="http",
        x_forwarded=False,
        forwarded=True,
    )
    assert value(out, b"forwarded") == b'for="[::1]";proto=http;host="example.test:8080"'
    assert b"x-forwarded-for" not in names(out)


def test_unix_socket_client_is_forwarded_as_unknown() -> None:
    out = rewrite_request_headers(
        [(b"host", b"h")], client="/run/gw.sock", scheme="http", forwarded=True
    )
    assert value(out, b"x-forwarded-for") == b"unknown"
    assert value(out, b"forwarded") == b"for=unknown;proto=http;host=h"


def test_stripped_prefix_is_sent_as_x_forwarded_prefix() -> None:
    out = rewrite_request_headers([(b"host", b"h")], client=None, scheme="http", prefix="/svc/api")
    assert value(out, b"x-forwarded-prefix") == b"/svc/api"


def test_host_override_replaces_the_client_host() -> None:
    out = rewrite_request_headers(
        [(b"host", b"public.test"), (b"accept", b"*/*")],
        client=None,
        scheme="http",
        host="127.0.0.1:9000",
    )
    assert out[0] == (b"host", b"127.0.0.1:9000")
    assert value(out, b"x-forwarded-host") == b"public.test"


def test_response_hop_by_hop_removed_and_content_length_kept() -> None:
    headers: H = [
        (b"content-length", b"10"),
        (b"connection", b"keep-alive, x-internal"),
        (b"keep-alive", b"timeout=5"),
        (b"x-internal", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    out = rewrite_response_headers(headers)
    assert out == [(b"content-length", b"10"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]


def test_101_response_keeps_upgrade() -> None:
    headers: H = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    ]
    out = rewrite_response_headers(headers, upgrade=True)
    assert value(out, b"upgrade") == b"websocket"
    assert value(out, b"connection") == b"upgrade"
    assert value(out, b"sec-websocket-accept") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_connection_options_are_lowercased_tokens_of_every_field() -> None:
    headers: H = [(b"connection", b"Keep-Alive, UPGRADE"), (b"connection", b" x-a ,,")]
    assert connection_options(headers) == {b"keep-alive", b"upgrade", b"x-a"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"connection", b"Upgrade"), (b"upgrade", b"websocket")], True),
        ([(b"connection", b"keep-alive, upgrade"), (b"upgrade", b"h2c")], True),
        ([(b"upgrade", b"websocket")], False),
        ([(b"connection", b"upgrade")], False),
        ([(b"connection", b"upgrade"), (b"upgrade", b" ")], False),
        ([(b"connection", b"keep-alive")], False),
    ],
)
def test_upgrade_detection_needs_connection_upgrade_and_upgrade(headers: H, expected: bool) -> None:
    assert is_upgrade_request(headers) is expected


@pytest.mark.parametrize(
    ("target", "strip", "base", "expected"),
    [
        ("/api/users?x=1", "/api", "", "/users?x=1"),
        ("/api", "/api", "", "/"),
        ("/api?x=1", "/api", "", "/?x=1"),
        ("/api/a%20b", "/api", "", "/a%20b"),
        ("/a%70i/x", "/api", "", "/x"),
        ("/svc/api/x", "/svc/api", "/v1", "/v1/x"),
        ("/x/y?q", "", "/v1", "/v1/x/y?q"),
        ("/x/y", "/", "", "/x/y"),
        ("/a%2Fb/c", "/a/b", "", "/c"),
        ("*", "/api", "", "*"),
    ],
)
def test_forward_target(target: str, strip: str, base: str, expected: str) -> None:
    assert forward_target(target, strip, base) == expected


def test_longest_prefix_wins_at_segment_boundaries() -> None:
    a = Backend.parse("http://127.0.0.1:1")
    routes = [
        ProxyRoute("/", a),
        ProxyRoute("/api", a),
        ProxyRoute("/api/v2", a),
    ]
    assert match_route(routes, "/api/v2/x") is routes[2]
    assert match_route(routes, "/api/v2") is routes[2]
    assert match_route(routes, "/api/v20") is routes[1]
    assert match_route(routes, "/apix") is routes[0]
    assert match_route(routes[1:], "/other") is None


@pytest.mark.parametrize("prefix", ["api", "/api/", ""])
def test_route_prefix_is_validated(prefix: str) -> None:
    with pytest.raises(ValueError):
        ProxyRoute(prefix, Backend.parse("http://127.0.0.1:1"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8001", Backend(host="127.0.0.1", port=8001)),
        ("http://[::1]:8001/v1/", Backend(host="::1", port=8001, base_path="/v1")),
        ("http://localhost", Backend(host="localhost", port=80)),
        ("unix:/run/app.sock", Backend(unix_path="/run/app.sock")),
    ],
)
def test_backend_parse(url: str, expected: Backend) -> None:
    assert Backend.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1:1", "127.0.0.1:80", "unix:", "http://:80", "http://h:99999", "http://h/?q"],
)
def test_backend_parse_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        Backend.parse(url)


def test_backend_authority_and_str() -> None:
    assert Backend.parse("http://[::1]:81").authority == "[::1]:81"
    assert Backend.parse("http://h").authority == "h"
    assert Backend.parse("unix:/s.sock").authority == "localhost"
    assert str(Backend.parse("http://h:81/v1")) == "http://h:81/v1"
    assert str(Backend.parse("unix:/s.sock")) == "unix:/s.sock"


def test_config_validates() -> None:
    with pytest.raises(ValueError):
        ProxyConfig(read_size=0)
    with pytest.raises(ValueError):
        ProxyConfig(pool_size=-1)
