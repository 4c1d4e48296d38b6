"""check_origin: same origin, allow-lists, patterns, ``*``, malformed origins, proxies."""

from __future__ import annotations

import pytest
import trio
from _bridge_helpers import (
    handshake,
    open_memory_connection,
    open_ws,
    port_of,
    serving,
    ws_connect,
)
from _wire import QUIET
from websockets.exceptions import InvalidStatus

from trio_upgrade.bridge import App, Origin, ServerWebSocket, check_origin, parse_origin
from trio_upgrade.bridge._origin import request_host
from trio_upgrade.http import Middleware, Request, Response, Takeover

PASSED = Response.text("passed")


def make_request(headers: list[tuple[str, str]], *, scheme: str = "http") -> Request:
    return Request("GET", "/ws", headers=headers, scheme=scheme)


async def outcome(middleware: Middleware, request: Request) -> int:
    """The status the middleware answers with; 0 when it lets the request through."""

    async def call_next(request: Request) -> Response | Takeover:
        await trio.lowlevel.checkpoint()
        return PASSED

    result = await middleware(request, call_next)
    if result is PASSED:
        return 0
    assert isinstance(result, Response)
    return result.status


def origin_request(origin: str | None, host: str = "example.com", **extra: str) -> Request:
    headers = [("host", host)]
    if origin is not None:
        headers.append(("origin", origin))
    headers += [(name.replace("_", "-"), value) for name, value in extra.items()]
    return make_request(headers)


# parse_origin and request_host (pure) --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://example.com", Origin("http", "example.com", 80)),
        ("https://Example.COM", Origin("https", "example.com", 443)),
        ("HTTPS://example.com:8443", Origin("https", "example.com", 8443)),
        ("http://example.com:80", Origin("http", "example.com", 80)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("wss://chat.example.com", Origin("wss", "chat.example.com", 443)),
        ("http://127.0.0.1:5000", Origin("http", "127.0.0.1", 5000)),
    ],
)
def test_parse_origin_reads_scheme_host_and_port(value: str, expected: Origin) -> None:
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "example.com",
        "//example.com",
        "http://",
        "http://example.com/",
        "http://example.com/path",
        "http://example.com?q",
        "http://example.com#f",
        "http://user@example.com",
        "http://user:pw@example.com",
        "http://example.com:99999",
        "http://example.com:port",
        "ftp://example.com",
        "file:///etc/passwd",
        "http://exa mple.com",
        "http://example.com, http://other.com",
    ],
)
def test_parse_origin_rejects_malformed_values(value: str) -> None:
    assert parse_origin(value) is None


def test_origin_prints_without_its_default_port() -> None:
    assert str(Origin("https", "example.com", 443)) == "https://example.com"
    assert str(Origin("http", "example.com", 8080)) == "http://example.com:8080"
    assert str(Origin("http", "::1", 8000)) == "http://[::1]:8000"


def test_request_host_reads_host_and_fills_the_default_port() -> None:
    assert request_host(origin_request(None, "Example.com")) == ("http", "example.com", 80)
    assert request_host(origin_request(None, "example.com:8000")) == ("http", "example.com", 8000)
    assert request_host(make_request([("host", "[::1]:9")])) == ("http", "::1", 9)
    tls = make_request([("host", "example.com")], scheme="https")
    assert request_host(tls) == ("https", "example.com", 443)
    assert request_host(make_request([])) is None
    assert request_host(origin_request(None, "example.com/x")) is None
    assert request_host(origin_request(None, "example.com:x")) is None


def test_request_host_uses_forwarded_headers_only_when_trusting_the_proxy() -> None:
    request = origin_request(
        None,
        "backend:8000",
        x_forwarded_host="app.example.com",
        x_forwarded_proto="https",
    )
    assert request_host(request) == ("http", "backend", 8000)
    assert request_host(request, trust_proxy=True) == ("https", "app.example.com", 443)
    forwarded = origin_request(
        None,
        "backend:8000",
        forwarded='for=192.0.2.1;host="app.example.com:8443";proto=https, host=inner',
        x_forwarded_host="ignored.example.com",
    )
    # Forwarded (RFC 7239) wins over X-Forwarded-*; its first element is the client-most.
    assert request_host(forwarded, trust_proxy=True) == ("https", "app.example.com", 8443)
    no_host_param = origin_request(None, "backend:8000", forwarded="for=192.0.2.1")
    assert request_host(no_host_param, trust_proxy=True) == ("http", "backend", 8000)


# check_origin (the middleware, called directly) ------------------------------------


async def test_same_origin_passes_by_host_and_port() -> None:
    mw = check_origin(allow_missing=False)
    assert await outcome(mw, origin_request("http://example.com", "example.com")) == 0
    assert await outcome(mw, origin_request("http://EXAMPLE.com:80", "example.com")) == 0
    assert await outcome(mw, origin_request("http://example.com:8000", "example.com:8000")) == 0
    assert await outcome(mw, origin_request("http://[::1]:8000", "[::1]:8000")) == 0


async def test_another_host_or_port_fails_with_403() -> None:
    mw = check_origin(allow_missing=False)
    assert await outcome(mw, origin_request("http://evil.example", "example.com")) == 403
    assert await outcome(mw, origin_request("http://example.com:8001", "example.com:8000")) == 403
    assert await outcome(mw, origin_request("http://sub.example.com", "example.com")) == 403
    # an https page is port 443, a plain-HTTP server's Host is port 80
    assert await outcome(mw, origin_request("https://example.com", "example.com")) == 403


async def test_same_origin_can_be_switched_off() -> None:
    mw = check_origin(allow_missing=False, allow_same_origin=False)
    assert await outcome(mw, origin_request("http://example.com", "example.com")) == 403
    listed = check_origin(
        allow_missing=False, allow_same_origin=False, allowed=["http://example.com"]
    )
    assert await outcome(listed, origin_request("http://example.com", "example.com")) == 0


async def test_allow_list_of_exact_origins_compares_scheme_host_and_port() -> None:
    mw = check_origin(
        allow_missing=False, allowed=["https://app.example.com", "http://localhost:3000"]
    )
    passes = ["https://app.example.com", "https://app.example.com:443", "http://localhost:3000"]
    fails = ["http://app.example.com", "https://app.example.com:8443", "http://localhost:3001"]
    for origin in passes:
        assert await outcome(mw, origin_request(origin, "api.example.com")) == 0, origin
    for origin in fails:
        assert await outcome(mw, origin_request(origin, "api.example.com")) == 403, origin


async def test_allow_list_patterns_match_whole_origins() -> None:
    mw = check_origin(allow_missing=False, allowed=["https://*.example.com"])
    for origin in ["https://a.example.com", "https://a.b.example.com"]:
        assert await outcome(mw, origin_request(origin, "api.other.net")) == 0, origin
    for origin in [
        "https://example.com",
        "https://evilexample.com",
        "https://a.example.com.evil.net",
        "http://a.example.com",
        "https://a.example.com:8443",
    ]:
        assert await outcome(mw, origin_request(origin, "api.other.net")) == 403, origin


async def test_star_allows_any_well_formed_origin_but_not_a_malformed_one() -> None:
    mw = check_origin(allow_missing=False, allowed=["*"])
    assert await outcome(mw, origin_request("https://anything.example", "example.com")) == 0
    assert await outcome(mw, origin_request("null", "example.com")) == 403
    assert await outcome(mw, origin_request("not an origin", "example.com")) == 403


@pytest.mark.parametrize("origin", ["null", "example.com", "http://example.com/", ""])
async def test_malformed_or_null_origin_fails_even_when_it_resembles_the_host(origin: str) -> None:
    mw = check_origin(allow_missing=True)
    assert await outcome(mw, origin_request(origin, "example.com")) == 403


async def test_missing_origin_passes_only_when_allowed() -> None:
    assert await outcome(check_origin(allow_missing=True), origin_request(None)) == 0
    assert await outcome(check_origin(allow_missing=False), origin_request(None)) == 403


def test_allow_missing_must_be_chosen() -> None:
    with pytest.raises(TypeError):
        check_origin()  # type: ignore[call-arg]


async def test_two_origin_headers_fail() -> None:
    request = make_request(
        [
            ("host", "example.com"),
            ("origin", "http://example.com"),
            ("origin", "http://example.com"),
        ]
    )
    assert await outcome(check_origin(allow_missing=True), request) == 403


async def test_forwarded_host_counts_only_when_trusting_the_proxy() -> None:
    behind_proxy = origin_request(
        "https://app.example.com",
        "127.0.0.1:8000",
        x_forwarded_host="app.example.com",
        x_forwarded_proto="https",
    )
    assert await outcome(check_origin(allow_missing=False), behind_proxy) == 403
    trusting = check_origin(allow_missing=False, trust_proxy=True)
    assert await outcome(trusting, behind_proxy) == 0
    forwarded = origin_request(
        "https://app.example.com", "127.0.0.1:8000", forwarded="host=app.example.com;proto=https"
    )
    assert await outcome(trusting, forwarded) == 0
    assert await outcome(check_origin(allow_missing=False), forwarded) == 403


async def test_failure_status_is_configurable_and_the_body_says_why() -> None:
    mw = check_origin(allow_missing=False, status=400)
    result = await mw(origin_request("http://evil.example"), _unreachable)
    assert isinstance(result, Response)
    assert result.status == 400
    assert result.body == b"Forbidden: origin http://evil.example is not allowed\n"


async def _unreachable(request: Request) -> Response | Takeover:
    raise AssertionError("the middleware let the request through")


def test_a_malformed_allow_list_entry_is_refused_at_once() -> None:
    for bad in ["example.com", "https://example.com/app", "null"]:
        with pytest.raises(ValueError, match="not an origin"):
            check_origin(allow_missing=False, allowed=[bad])


# On a served App ---------------------------------------------------------------------


def guarded_app(*, allow_missing: bool) -> App:
    app = App(websocket_config=QUIET)
    app.add_websocket_middleware(check_origin(allow_missing=allow_missing))

    @app.route("/")
    async def index(request: Request) -> Response:
        return Response.text("page")

    @app.websocket("/ws")
    async def hello(ws: ServerWebSocket) -> None:
        await ws.send("welcome")

    return app


async def test_app_wide_origin_check_never_touches_plain_requests() -> None:
    async with open_memory_connection(guarded_app(allow_missing=False)) as client:
        page = await client.get("/", headers="Origin: http://evil.example\r\n")
        assert page.status == 200
        refused = await client.request(handshake(headers="Origin: http://evil.example\r\n"))
        assert refused.status == 403
        assert refused.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
    async with open_memory_connection(guarded_app(allow_missing=False)) as client:
        # the helper's requests say "Host: test"
        await open_ws(client, headers="Origin: http://test\r\n")
        assert await client.reader.next_message() == "welcome"


async def test_origin_check_with_a_real_client_over_loopback() -> None:
    """The websockets client sends Origin only when told to: all three outcomes."""
    async with serving(guarded_app(allow_missing=False)) as server:
        port = port_of(server)
        url = f"ws://127.0.0.1:{port}/ws"
        async with ws_connect(url, origin=f"http://127.0.0.1:{port}") as ws:
            assert await ws.recv() == "welcome"
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(url, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as missing:
            async with ws_connect(url):
                pass
        assert missing.value.response.status_code == 403
        assert b"missing Origin" in missing.value.response.body
