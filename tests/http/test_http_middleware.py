"""CORSMiddleware and GZipMiddleware on real loopback sockets, httpx as the client."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from trio_upgrade.core import Server
from trio_upgrade.http import CORSMiddleware, GZipMiddleware, Request, Response, Router, serve
from trio_upgrade.testing import AppClient

SITE = "https://app.example"


@asynccontextmanager
async def client_for(router: Router) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, router, "127.0.0.1:0")
        address = server.addresses[0]
        assert isinstance(address, tuple)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{address[1]}", trust_env=False
            ) as http:
                yield http
        finally:
            await server.aclose()


def cors_router(**options: Any) -> tuple[Router, list[str]]:
    calls: list[str] = []
    router = Router(middleware=[CORSMiddleware(**options)])

    @router.route("/items", methods=["GET", "PUT"])
    async def items(request: Request) -> Response:
        calls.append(request.method)
        response = Response.json([1])
        response.headers["x-total"] = "1"
        return response

    return router, calls


def preflight(method: str = "PUT", headers: str = "", origin: str = SITE) -> dict[str, str]:
    fields = {"origin": origin, "access-control-request-method": method}
    if headers:
        fields["access-control-request-headers"] = headers
    return fields


# CORS ------------------------------------------------------------------------------


async def test_a_preflight_is_answered_by_the_middleware_with_what_is_allowed() -> None:
    router, calls = cors_router(
        allow_origins=[SITE],
        allow_methods=["GET", "PUT"],
        allow_headers=["Content-Type", "X-Token"],
        max_age=120,
    )
    async with client_for(router) as http:
        response = await http.options("/items", headers=preflight("PUT", "x-token, content-type"))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SITE
    assert response.headers["access-control-allow-methods"] == "GET, PUT"
    assert response.headers["access-control-allow-headers"] == "content-type, x-token"
    assert response.headers["access-control-max-age"] == "120"
    assert response.headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in response.headers
    assert calls == []  # the handler never saw it (and its route has no OPTIONS)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (preflight(origin="https://evil.example"), "origin"),
        (preflight("DELETE"), "method"),
        (preflight("PUT", "x-other"), "headers x-other"),
    ],
)
async def test_a_preflight_asking_for_too_much_gets_400_without_cors_headers(
    fields: dict[str, str], problem: str
) -> None:
    router, _ = cors_router(allow_origins=[SITE], allow_methods=["GET", "PUT"])
    async with client_for(router) as http:
        response = await http.options("/items", headers=fields)
    assert response.status_code == 400
    assert problem in response.text
    assert "access-control-allow-origin" not in response.headers


async def test_a_simple_request_from_an_allowed_origin_gets_the_headers() -> None:
    router, calls = cors_router(allow_origins=[SITE], expose_headers=["X-Total"])
    async with client_for(router) as http:
        allowed = await http.get("/items", headers={"origin": SITE})
        other = await http.get("/items", headers={"origin": "https://evil.example"})
        same_origin = await http.get("/items")
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert allowed.headers["access-control-expose-headers"] == "X-Total"
    assert allowed.headers["vary"] == "Origin"
    # Not allowed: the handler still answers (CORS is the browser's to enforce),
    # without the headers that would let a page read the answer.
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    assert other.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in same_origin.headers
    assert calls == ["GET", "GET", "GET"]


async def test_star_without_credentials_says_star() -> None:
    router, _ = cors_router(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])
    async with client_for(router) as http:
        simple = await http.get("/items", headers={"origin": "https://any.example"})
        response = await http.options("/items", headers=preflight("PATCH", "x-a, x-b"))
    assert simple.headers["access-control-allow-origin"] == "*"
    assert "vary" not in simple.headers
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "PATCH"
    assert response.headers["access-control-allow-headers"] == "x-a, x-b"


async def test_credentials_never_get_star_the_origin_is_echoed_with_vary() -> None:
    router, _ = cors_router(allow_origins=["*"], allow_credentials=True)
    async with client_for(router) as http:
        simple = await http.get("/items", headers={"origin": "https://any.example"})
        response = await http.options(
            "/items", headers=preflight("GET", origin="https://any.example")
        )
    for answer in (simple, response):
        assert answer.headers["access-control-allow-origin"] == "https://any.example"
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in answer.headers["vary"]


async def test_origins_matching_the_regex_in_full_are_allowed() -> None:
    router, _ = cors_router(allow_origin_regex=r"https://[a-z]+\.example\.org")
    async with client_for(router) as http:
        good = await http.get("/items", headers={"origin": "https://shop.example.org"})
        suffix = await http.get("/items", headers={"origin": "https://shop.example.org.evil"})
    assert good.headers["access-control-allow-origin"] == "https://shop.example.org"
    assert "access-control-allow-origin" not in suffix.headers


def test_cors_options_are_checked_when_built() -> None:
    with pytest.raises(TypeError, match="list"):
        CORSMiddleware(allow_origins="https://a.example")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header name"):
        CORSMiddleware(allow_headers=["bad header"])
    with pytest.raises(ValueError, match="max_age"):
        CORSMiddleware(max_age=-1)


# GZip ------------------------------------------------------------------------------


def gzip_router(minimum_size: int = 100) -> tuple[Router, dict[str, trio.Event]]:
    events = {"first": trio.Event(), "go_on": trio.Event()}
    router = Router(middleware=[GZipMiddleware(minimum_size=minimum_size)])

    @router.get("/big")
    async def big(request: Request) -> Response:
        response = Response.text("hello world " * 100)
        response.headers["etag"] = '"v1"'
        return response

    @router.get("/small")
    async def small(request: Request) -> Response:
        return Response.text("tiny")

    @router.get("/encoded")
    async def encoded(request: Request) -> Response:
        body = gzip.compress(b"x" * 1000)
        return Response(body, headers={"content-encoding": "gzip"})

    @router.get("/stream")
    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk;"
            await events["go_on"].wait()  # only after the client has read the first
            yield b"second chunk" * 50

        return Response.stream(chunks(), content_type="text/plain")

    return router, events


async def test_gzip_compresses_big_bodies_for_clients_that_accept_it() -> None:
    router, _ = gzip_router()
    async with client_for(router) as http:
        response = await http.get("/big", headers={"accept-encoding": "gzip"})
        identity = await http.get("/big", headers={"accept-encoding": "identity"})
        refused = await http.get("/big", headers={"accept-encoding": "gzip;q=0, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text == "hello world " * 100  # httpx decoded it
    assert int(response.headers["content-length"]) < 1200
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["etag"] == 'W/"v1"'
    for plain in (identity, refused):
        assert "content-encoding" not in plain.headers
        assert plain.headers["vary"] == "Accept-Encoding"  # caches must still tell them apart
        assert plain.headers["etag"] == '"v1"'
        assert plain.text == "hello world " * 100


async def test_gzip_leaves_small_and_already_encoded_responses_alone() -> None:
    router, _ = gzip_router()
    async with client_for(router) as http:
        small = await http.get("/small", headers={"accept-encoding": "gzip"})
        encoded = await http.get("/encoded", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers
    assert "vary" not in small.headers
    assert encoded.headers["content-encoding"] == "gzip"
    assert encoded.content == b"x" * 1000  # compressed once, decoded once


async def test_a_streamed_body_is_compressed_as_it_streams() -> None:
    router, events = gzip_router()
    async with client_for(router) as http:
        async with http.stream("GET", "/stream", headers={"accept-encoding": "gzip"}) as response:
            assert response.headers["content-encoding"] == "gzip"
            assert "content-length" not in response.headers
            received = b""
            async for data in response.aiter_bytes():
                received += data
                if received == b"first chunk;":
                    # The first chunk arrived, decodable, while the handler waits.
                    events["go_on"].set()
        assert received == b"first chunk;" + b"second chunk" * 50


async def test_gzip_with_the_in_memory_client_and_head_requests() -> None:
    router, _ = gzip_router()
    async with AppClient(router) as client:
        response = await client.get("/big", headers={"accept-encoding": "gzip"})
        head = await client.head("/big", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert gzip.decompress(response.content) == ("hello world " * 100).encode()
    assert head.headers["content-length"] == response.headers["content-length"]
    assert head.content == b""


async def test_vary_keeps_what_the_handler_said_and_adds_once() -> None:
    router = Router(
        middleware=[CORSMiddleware(allow_origins=[SITE]), GZipMiddleware(minimum_size=0)]
    )

    @router.get("/")
    async def index(request: Request) -> Response:
        response = Response.text("x" * 10)
        response.headers.add("vary", "Cookie")
        response.headers.add("vary", "Accept-Language, accept-encoding")
        return response

    async with AppClient(router) as client:
        response = await client.get("/", headers={"origin": SITE, "accept-encoding": "gzip"})
    assert response.headers["vary"] == "Cookie, Accept-Language, accept-encoding, Origin"


async def test_a_compressed_stream_closes_the_body_under_it_also_for_head() -> None:
    closed: list[str] = []

    class Body:
        """A streamed body that records being closed (as a file-backed one would need)."""

        def __init__(self, method: str) -> None:
            self.method = method

        def __aiter__(self) -> AsyncIterator[bytes]:
            return self._chunks()

        async def _chunks(self) -> AsyncIterator[bytes]:
            yield b"data " * 200

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()
            closed.append(self.method)

    router = Router(middleware=[GZipMiddleware()])

    @router.get("/")
    async def index(request: Request) -> Response:
        return Response.stream(Body(request.method))

    async with client_for(router) as http:
        got = await http.get("/", headers={"accept-encoding": "gzip"})
        head = await http.head("/", headers={"accept-encoding": "gzip"})
    assert got.content == b"data " * 200
    assert head.headers["content-encoding"] == "gzip"
    assert closed == ["GET", "HEAD"]


async def test_cors_headers_reach_a_response_the_handler_writes_itself() -> None:
    """A DirectResponse (how ASGI apps answer) gets the CORS headers like a Response."""
    from trio_upgrade.http import DirectResponse, ResponseWriter

    router = Router(middleware=[CORSMiddleware(allow_origins=[SITE])])

    @router.route("/stream")
    async def stream(request: Request) -> DirectResponse:
        async def write(writer: ResponseWriter) -> None:
            await writer.start(200, [("content-type", "text/plain")])
            await writer.send(b"part one, ")
            await writer.send(b"part two")
            await writer.end()

        return DirectResponse(write)

    async with client_for(router) as http:
        allowed = await http.get("/stream", headers={"origin": SITE})
    assert allowed.text == "part one, part two"
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert allowed.headers["vary"] == "Origin"
