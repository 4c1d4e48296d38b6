"""Request framing on the wire: requests framed two ways are refused (RFC 9112 §6.3),
malformed chunked bodies get 400, and nothing sent after them is ever answered.

Each case is run twice: in memory and over a real loopback socket (a raw
socket, since no well-behaved client sends these).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from _http_helpers import RawResponse, ResponseReader, open_memory_connection

from trio_upgrade.http import Request, Response, Router, serve

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


def make_app(seen: list[str]) -> Router:
    router = Router()

    @router.route("/", methods=["GET", "POST"])
    async def index(request: Request) -> Response:
        seen.append(request.path)
        return Response.text(f"read {len(await request.read())}")

    @router.get("/smuggled")
    async def smuggled(request: Request) -> Response:
        seen.append(request.path)
        return Response.text("smuggled")

    return router


async def exchange_in_memory(app: Router, data: bytes) -> tuple[list[RawResponse], bytes]:
    """Send *data*, then read responses until the server closes: (responses, leftover)."""
    async with open_memory_connection(app) as client:
        await client.send(data)
        return await read_all(client.reader), bytes(client.reader.buffer)


async def read_all(reader: ResponseReader) -> list[RawResponse]:
    responses = []
    while not await reader.at_eof():
        responses.append(await reader.read_response())
    return responses


@asynccontextmanager
async def loopback(app: Router) -> AsyncIterator[tuple[str, int]]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", task_status=task_status)
        )
        try:
            address = server.addresses[0]
            assert isinstance(address, tuple)
            yield address
        finally:
            await server.aclose()


async def exchange_over_loopback(app: Router, data: bytes) -> tuple[list[RawResponse], bytes]:
    async with loopback(app) as (host, port):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(data)
            reader = ResponseReader(stream)
            return await read_all(reader), bytes(reader.buffer)


Exchange = Callable[[Router, bytes], Awaitable[tuple[list[RawResponse], bytes]]]
TRANSPORTS = [
    pytest.param(exchange_in_memory, id="memory"),
    pytest.param(exchange_over_loopback, id="loopback"),
]

# Heads whose body could be framed two ways, or whose framing is faulty: each
# carries a chunked body ("0\r\n\r\n") that a server using the length would
# take for the start of a second request, and a second request after it.
AMBIGUOUS = {
    "CL then TE": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE then CL": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "chunked, identity": b"POST / HTTP/1.1\r\nHost: a\r\n"
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "TE twice": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "xchunked with CL": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "two different CLs": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\n0\r\n\r\n",
    "space before the colon": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "signed CL": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n0\r\n\r\n",
    "bare CR in a field": b"POST / HTTP/1.1\r\nHost: a\r\nX-A: 1\rTransfer-Encoding: chunked\r\n"
    b"Content-Length: 5\r\n\r\n0\r\n\r\n",
    "TE in HTTP/1.0": b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("exchange", TRANSPORTS)
@pytest.mark.parametrize("head", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
async def test_a_request_framed_two_ways_is_refused_and_what_follows_is_never_answered(
    exchange: Exchange, head: bytes
) -> None:
    seen: list[str] = []
    responses, leftover = await exchange(make_app(seen), head + SMUGGLED)
    assert len(responses) == 1, [r.head for r in responses]
    (response,) = responses
    assert 400 <= response.status < 500 or response.status == 501
    assert response.headers.get_tokens("connection") == ["close"]
    assert leftover == b""
    assert seen == []


MALFORMED_CHUNKS = {
    "negative size": b"-5\r\nhello\r\n0\r\n\r\n",
    "hex prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "leading space": b" 5\r\nhello\r\n0\r\n\r\n",
    "data longer than its size": b"5\r\nhelloEXTRA\r\n0\r\n\r\n",
    "missing CRLF after the data": b"5\r\nhello0\r\n\r\n",
}


@pytest.mark.parametrize("exchange", TRANSPORTS)
@pytest.mark.parametrize("body", list(MALFORMED_CHUNKS.values()), ids=list(MALFORMED_CHUNKS))
async def test_malformed_chunked_body_gets_400_and_close(exchange: Exchange, body: bytes) -> None:
    seen: list[str] = []
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    responses, leftover = await exchange(make_app(seen), head + body + SMUGGLED)
    assert [r.status for r in responses] == [400]
    assert responses[0].headers.get_tokens("connection") == ["close"]
    assert leftover == b""
    # The handler ran (and read the body); the request after it never did.
    assert seen == ["/"]


async def test_malformed_chunked_body_after_the_response_started_just_closes() -> None:
    """When the handler reads the body while streaming its response, the 200 is
    already out: the connection is cut, and no second status line follows."""

    async def app(request: Request) -> Response:
        async def echo() -> AsyncIterator[bytes]:
            yield b"start "
            async for chunk in request.body:
                yield chunk

        return Response.stream(echo())

    async with open_memory_connection(app) as client:
        await client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n-1\r\n\r\n" + SMUGGLED
        )
        head = await client.reader.read_head()
        assert head.status == 200
        rest = await client.reader.read_to_eof()
    assert b"HTTP/1.1" not in rest
    assert not rest.endswith(b"0\r\n\r\n"), "the body must not look complete"


async def test_a_well_framed_chunked_request_keeps_the_connection() -> None:
    seen: list[str] = []
    async with open_memory_connection(make_app(seen)) as client:
        await client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED
        )
        first = await client.read_response()
        second = await client.read_response()
    assert (first.body, second.body) == (b"read 5", b"smuggled")
    assert seen == ["/", "/smuggled"]
