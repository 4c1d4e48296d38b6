"""The HTTP connection loop over in-memory streams: framing, keep-alive, limits, timeouts.

Raw request bytes go in; the answers are parsed by ``ResponseReader``, which
does not use h11, so these tests pin what actually goes on the wire. Tests
that involve a timeout run on trio's autojump clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncGenerator, AsyncIterator

import h11
import pytest
import trio
import trio.testing
from _http_helpers import (
    CLIENT,
    SERVER,
    FailingSendStream,
    MemoryClient,
    open_memory_connection,
    receive_until_eof,
)

from trio_upgrade._wire import reason_phrase
from trio_upgrade.core import Connection, Shutdown
from trio_upgrade.http import (
    ClientDisconnected,
    Headers,
    HTTPConfig,
    HTTPError,
    Request,
    RequestTimeout,
    Response,
    Router,
    serve_http_connection,
)

MockClock = trio.testing.MockClock


def make_app() -> Router:
    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        return Response.text("hello")

    @router.get("/path/{rest:path}")
    async def echo_path(request: Request) -> Response:
        return Response.json(
            {
                "method": request.method,
                "target": request.target,
                "path": request.path,
                "query": request.query.items(),
                "rest": request.path_params["rest"],
                "version": request.http_version,
            }
        )

    @router.route("/echo", methods=["POST", "PUT"])
    async def echo(request: Request) -> Response:
        return Response(await request.read(), content_type="application/octet-stream")

    @router.post("/chunks")
    async def chunks(request: Request) -> Response:
        sizes = [len(chunk) async for chunk in request.body]
        return Response.json(sizes)

    @router.post("/ignore")
    async def ignore(request: Request) -> Response:
        return Response.text("ignored")

    @router.get("/stream")
    async def stream(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one ", b"", b"two ", b"three"):
                yield part

        return Response(parts(), content_type="text/plain")

    @router.get("/boom")
    async def boom(request: Request) -> Response:
        raise ValueError("kaboom")

    @router.get("/status/{code:int}")
    async def status(request: Request) -> Response:
        return Response(status=request.path_params["code"])

    return router


# Keep-alive, pipelining, versions ---------------------------------------------


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with open_memory_connection(make_app()) as client:
        for _ in range(3):
            response = await client.request("GET", "/")
            assert response.status == 200
            assert response.http_version == b"HTTP/1.1"
            assert response.body == b"hello"
            assert "connection" not in response.headers
        assert not client.finished.is_set()


async def test_pipelined_requests_in_one_write_are_answered_in_order() -> None:
    order: list[str] = []
    router = Router()

    @router.get("/slow")
    async def slow(request: Request) -> Response:
        await trio.sleep(0.01)
        order.append("slow")
        return Response.text("slow")

    @router.get("/fast")
    async def fast(request: Request) -> Response:
        order.append("fast")
        return Response.text("fast")

    async with open_memory_connection(router) as client:
        await client.send(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /fast HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"
            b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        first = await client.read_response()
        second = await client.read_response()
        third = await client.read_response()
    assert (first.body, second.status, third.body) == (b"slow", 405, b"fast")
    assert order == ["slow", "fast"]


async def test_http_10_request_is_answered_and_the_connection_closed() -> None:
    """An HTTP/1.0 connection is never kept alive, even when asked to (as h11 does)."""
    async with open_memory_connection(make_app()) as client:
        await client.send(b"GET /path/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = await client.read_response()
        assert response.status == 200
        assert response.http_version == b"HTTP/1.1"
        assert response.headers.get_tokens("connection") == ["close"]
        assert b'"version":"1.0"' in response.body
        await client.assert_closed()


async def test_http_10_streamed_response_is_delimited_by_closing() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(b"GET /stream HTTP/1.0\r\n\r\n")
        response = await client.read_response()
        assert "transfer-encoding" not in response.headers
        assert "content-length" not in response.headers
        assert response.body == b"one two three"
        await client.assert_closed()


async def test_client_connection_close_is_honoured() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", "/", headers="Connection: close\r\n")
        assert response.status == 200
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_eof_between_requests_ends_the_connection_quietly() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.request("GET", "/")
        await client.stream.send_eof()
        await client.assert_closed()


async def test_request_target_path_and_query_come_from_the_wire() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", "/path/a%20b/c?x=1&x=2&y")
    assert json.loads(response.body) == {
        "method": "GET",
        "target": "/path/a%20b/c?x=1&x=2&y",
        "path": "/path/a b/c",
        "query": [["x", "1"], ["x", "2"], ["y", ""]],
        "rest": "a b/c",
        "version": "1.1",
    }


async def test_request_carries_addresses_scheme_headers_and_connection() -> None:
    seen: list[Request] = []

    async def app(request: Request) -> Response:
        seen.append(request)
        return Response()

    async with open_memory_connection(app, tls=True) as client:
        await client.request("GET", "/", headers="X-Multi: a\r\nx-multi: b\r\n")
        conn = client.conn
    (request,) = seen
    assert request.scheme == "https"
    assert request.url == "https://test/"
    assert request.client == CLIENT and request.server == SERVER
    assert request.headers.get_all("X-MULTI") == ["a", "b"]
    assert request.connection is conn


# Response framing -------------------------------------------------------------


async def test_bytes_body_gets_content_length() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", "/")
    assert response.headers["content-length"] == "5"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert not response.chunked


async def test_large_bytes_body_is_sent_whole() -> None:
    payload = bytes(range(256)) * 1024  # past the size that is coalesced with the head

    async def app(request: Request) -> Response:
        return Response(payload)

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
        again = await client.request("GET", "/")
    assert response.body == payload and again.body == payload


async def test_streamed_body_without_length_is_chunked() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", "/stream")
        assert response.chunked
        assert response.body == b"one two three"
        # The connection stays usable: the chunked body ended properly.
        assert (await client.request("GET", "/")).body == b"hello"


async def test_streamed_body_with_content_length_is_not_chunked() -> None:
    async def app(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            yield b"abc"
            yield b"de"

        return Response(parts(), headers={"content-length": "5"})

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert not response.chunked and response.body == b"abcde"


async def test_head_sends_headers_of_get_without_body() -> None:
    async with open_memory_connection(make_app()) as client:
        head = await client.request("HEAD", "/")
        assert head.status == 200
        assert head.headers["content-length"] == "5"
        # Had a body been sent, it would be read as the next response's head.
        assert (await client.request("GET", "/")).body == b"hello"


async def test_head_of_a_streamed_response_does_not_iterate_it_but_closes_it() -> None:
    events: list[str] = []

    async def app(request: Request) -> Response:
        async def parts() -> AsyncGenerator[bytes, None]:
            try:
                yield b"x"
                yield b"y"
            finally:
                events.append("closed")

        iterator = parts()
        await iterator.asend(None)  # started, so that closing it is observable
        return Response(iterator)

    async with open_memory_connection(app) as client:
        head = await client.request("HEAD", "/")
        assert head.headers["transfer-encoding"] == "chunked"
        get = await client.request("GET", "/")
    assert head.body == b""
    assert get.body == b"y"
    assert events == ["closed", "closed"]


@pytest.mark.parametrize("status", [204, 304])
async def test_no_content_and_not_modified_have_no_body_and_no_content_length(
    status: int,
) -> None:
    """RFC 9110 §8.6: no Content-Length in a 204; in a 304 it would describe the
    selected representation, which we do not know."""
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", f"/status/{status}")
        assert response.status == status
        assert "content-length" not in response.headers
        assert "transfer-encoding" not in response.headers
        assert (await client.request("GET", "/")).body == b"hello"


async def test_date_and_server_headers_follow_config() -> None:
    async with open_memory_connection(make_app()) as client:
        default = await client.request("GET", "/")
    assert "date" in default.headers and "server" not in default.headers
    config = HTTPConfig(date_header=False, server_header="trio-upgrade-test")
    async with open_memory_connection(make_app(), config) as client:
        custom = await client.request("GET", "/")
    assert "date" not in custom.headers
    assert custom.headers["server"] == "trio-upgrade-test"


async def test_repeated_response_headers_are_sent_as_separate_fields() -> None:
    async def app(request: Request) -> Response:
        return Response(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]


# Request bodies ---------------------------------------------------------------


async def test_content_length_body_is_read() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("POST", "/echo", body=b"x" * 100_000)
    assert response.body == b"x" * 100_000


async def test_chunked_request_body_is_streamed_to_the_handler() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(
            b"POST /chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await trio.testing.wait_all_tasks_blocked()
        await client.send(b"2\r\nde\r\n0\r\n\r\n")
        response = await client.read_response()
    assert response.body == b"[3,2]"


async def test_unread_small_body_is_drained_and_the_connection_kept() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("POST", "/ignore", body=b"y" * 1000)
        assert response.body == b"ignored"
        assert "connection" not in response.headers
        assert (await client.request("GET", "/")).body == b"hello"


async def test_unread_body_past_max_drain_size_closes_the_connection(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(max_drain_size=1000)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n")
        await client.send(b"z" * 5000)
        response = await client.read_response()
        assert response.body == b"ignored"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_body_past_max_body_size_gets_413_without_reading_it(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(max_body_size=10)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
        response = await client.read_response()
        assert response.status == 413
        assert response.body == b"Request body larger than 10 bytes\n"


async def test_chunked_body_past_max_body_size_gets_413_and_close(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(max_body_size=10, max_drain_size=0)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n"
        )
        response = await client.read_response()
        assert response.status == 413
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_body_at_max_body_size_is_accepted() -> None:
    config = HTTPConfig(max_body_size=10)
    async with open_memory_connection(make_app(), config) as client:
        response = await client.request("POST", "/echo", body=b"0123456789")
    assert response.status == 200 and response.body == b"0123456789"


async def test_body_timeout_answers_408_and_closes(autojump_clock: MockClock) -> None:
    config = HTTPConfig(body_timeout=3)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
        response = await client.read_response()
        assert response.status == 408
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()
        assert trio.current_time() < 2 * 3, "waited for the body a second time"


async def test_body_timeout_applies_per_piece_not_to_the_whole_body(
    autojump_clock: MockClock,
) -> None:
    """Without a minimum rate, only each wait is bounded."""
    config = HTTPConfig(body_timeout=3, min_body_rate=None)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n")
        for byte in b"abcd":
            await trio.sleep(2)
            await client.send(bytes([byte]))
        response = await client.read_response()
    assert response.status == 200 and response.body == b"abcd"


async def trickle(
    client: MemoryClient, size: int, piece: int, every: float, sent: list[int]
) -> None:
    """Send a PUT /echo head, then its body *piece* bytes every *every* seconds."""
    await client.send(b"PUT /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while sent[0] < size:
            await trio.sleep(every)
            await client.send(b"x" * piece)
            sent[0] += piece


async def test_a_body_trickled_a_byte_at_a_time_gets_408_before_it_ends(
    autojump_clock: MockClock,
) -> None:
    """One byte every 2 s never trips the per-read body_timeout (30 s); the
    minimum average rate (after a grace of body_timeout) does."""
    config = HTTPConfig(body_timeout=30, min_body_rate=500)
    sent = [0]
    async with open_memory_connection(make_app(), config) as client, trio.open_nursery() as nursery:
        nursery.start_soon(trickle, client, 1000, 1, 2.0, sent)
        response = await client.read_response()
        assert response.status == 408
        assert response.headers.get_tokens("connection") == ["close"]
        assert sent[0] < 1000, "answered only once the whole body had come"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("every", "status"), [(0.1, 200), (0.5, 408)])
async def test_min_body_rate_judges_the_average_rate_after_the_grace(
    every: float, status: int, autojump_clock: MockClock
) -> None:
    """100 bytes per piece against 500 bytes/s: 1000 bytes/s passes, 200 bytes/s
    does not, though no single wait reaches body_timeout (1 s)."""
    config = HTTPConfig(body_timeout=1, min_body_rate=500)
    sent = [0]
    async with open_memory_connection(make_app(), config) as client, trio.open_nursery() as nursery:
        nursery.start_soon(trickle, client, 2000, 100, every, sent)
        response = await client.read_response()
        assert response.status == status
        if status == 200:
            assert response.body == b"x" * 2000
        nursery.cancel_scope.cancel()


async def test_client_disconnecting_mid_body_ends_the_connection_without_answer() -> None:
    errors: list[BaseException] = []

    async def app(request: Request) -> Response:
        try:
            await request.read()
        except ClientDisconnected as exc:
            errors.append(exc)
            raise
        return Response()

    async with open_memory_connection(app) as client:
        await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n123")
        await client.stream.send_eof()
        await client.assert_closed()
    assert len(errors) == 1


async def test_body_cannot_be_read_after_the_response() -> None:
    kept: list[Request] = []

    async def app(request: Request) -> Response:
        kept.append(request)
        return Response()

    async with open_memory_connection(app) as client:
        await client.request("POST", "/", body=b"abc")
    with pytest.raises(RuntimeError, match="only be read while"):
        await kept[0].read()


# Expect: 100-continue ---------------------------------------------------------


async def test_100_continue_is_sent_when_the_handler_reads_the_body() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await client.read_response()
        assert interim.status == 100
        assert interim.head == b"HTTP/1.1 100 \r\n\r\n"
        await client.send(b"data")
        final = await client.read_response()
        assert final.status == 200 and final.body == b"data"
        assert "connection" not in final.headers
        assert (await client.request("GET", "/")).body == b"hello"


async def test_100_continue_is_not_sent_when_the_handler_does_not_read(
    autojump_clock: MockClock,
) -> None:
    """The final answer comes instead, with ``Connection: close``: the client may
    or may not send its body now, so the connection cannot be reused."""
    async with open_memory_connection(make_app()) as client:
        await client.send(
            b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        final = await client.read_response()
        assert final.status == 200 and final.body == b"ignored"
        assert final.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_100_continue_is_not_sent_when_the_declared_body_is_too_large(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(max_body_size=3)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        final = await client.read_response()
        assert final.status == 413
        assert final.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


# Errors -----------------------------------------------------------------------


async def test_handler_exception_is_a_500_logged_with_traceback_and_serving_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_memory_connection(make_app()) as client:
        with caplog.at_level(logging.ERROR, logger="trio_upgrade"):
            response = await client.request("GET", "/boom")
        assert response.status == 500
        assert response.body == b"500 Internal Server Error\n"
        assert b"kaboom" not in response.body
        assert (await client.request("GET", "/")).body == b"hello"
    (record,) = [r for r in caplog.records if r.name == "trio_upgrade.http"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "GET /boom" in record.getMessage()


async def test_http_error_escaping_the_router_becomes_its_status() -> None:
    async def app(request: Request) -> Response:
        raise HTTPError(403, "go away", headers=[("x-why", "because")])

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert response.status == 403 and response.body == b"go away\n"
    assert response.headers["x-why"] == "because"


async def test_handler_returning_something_else_is_a_logged_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(request: Request) -> Response:
        return "not a response"  # type: ignore[return-value]

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert response.status == 500
    assert any("not a Response or a Takeover" in r.getMessage() for r in caplog.records)


async def test_streamed_body_that_fails_midway_cuts_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            yield b"partial"
            raise RuntimeError("disk gone")

        return Response(parts())

    async with open_memory_connection(app) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        head = await client.reader.read_head()
        assert head.status == 200
        rest = await client.reader.read_to_eof()
    # The chunk went out, the terminating zero-length chunk never did.
    assert rest == b"7\r\npartial\r\n"
    assert any("disk gone" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nbad header\r\n\r\n", 400),
    ],
)
async def test_malformed_request_gets_h11s_status_and_close(
    raw: bytes, status: int, autojump_clock: MockClock
) -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(raw)
        response = await client.read_response()
        assert response.status == status
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_oversized_head_gets_431_and_close(autojump_clock: MockClock) -> None:
    config = HTTPConfig(max_header_size=2048)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n")
        response = await client.read_response()
        assert response.status == 431
        await client.assert_closed()


async def test_head_just_under_the_limit_is_accepted() -> None:
    config = HTTPConfig(max_header_size=2048)
    async with open_memory_connection(make_app(), config) as client:
        response = await client.request("GET", "/", headers="X-Big: " + "a" * 1900 + "\r\n")
    assert response.status == 200


def test_config_rejects_unsafe_values() -> None:
    with pytest.raises(ValueError):
        HTTPConfig(max_header_size=100)
    with pytest.raises(ValueError):
        HTTPConfig(read_size=0)
    with pytest.raises(ValueError):
        HTTPConfig(min_body_rate=0)


# Timeouts ---------------------------------------------------------------------


async def test_slow_request_head_gets_408_and_close(autojump_clock: MockClock) -> None:
    config = HTTPConfig(header_timeout=4)
    async with open_memory_connection(make_app(), config) as client:
        await client.send(b"GET / HTTP/1.1\r\nHo")
        response = await client.read_response()
        assert response.status == 408
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_first_request_head_must_be_complete_within_header_timeout_of_accept(
    autojump_clock: MockClock,
) -> None:
    """A client cannot double its allowance by sending one byte just before the
    timeout: the first head's deadline runs from the accept."""
    config = HTTPConfig(header_timeout=4)
    async with open_memory_connection(make_app(), config) as client:
        await trio.sleep(3)
        await client.send(b"G")
        await trio.sleep(2)  # 5 s after accept, 2 s after the first byte
        response = await client.read_response()
        assert response.status == 408


async def test_head_arriving_slowly_within_header_timeout_is_served(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(header_timeout=4)
    async with open_memory_connection(make_app(), config) as client:
        for piece in (b"GET / HT", b"TP/1.1\r\nHost: a\r\n", b"\r\n"):
            await trio.sleep(1)
            await client.send(piece)
        response = await client.read_response()
    assert response.status == 200


async def test_silent_new_connection_is_closed_after_header_timeout_without_answer(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(header_timeout=4)
    async with open_memory_connection(make_app(), config) as client:
        await client.assert_closed()
        assert trio.current_time() >= 4


async def test_idle_keep_alive_connection_closes_after_keepalive_timeout(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(keepalive_timeout=5, header_timeout=60)
    async with open_memory_connection(make_app(), config) as client:
        await client.request("GET", "/")
        await trio.sleep(4)
        assert (await client.request("GET", "/")).status == 200
        start = trio.current_time()
        await client.assert_closed()
        assert trio.current_time() - start >= 5


async def test_timeouts_of_none_mean_no_limit(autojump_clock: MockClock) -> None:
    config = HTTPConfig(header_timeout=None, keepalive_timeout=None, body_timeout=None)
    async with open_memory_connection(make_app(), config) as client:
        await trio.sleep(10_000)
        await client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n")
        await trio.sleep(10_000)
        await client.send(b"ok")
        assert (await client.read_response()).body == b"ok"
        await trio.sleep(10_000)
        assert (await client.request("GET", "/")).status == 200


async def test_write_timeout_drops_a_client_that_stops_reading(
    autojump_clock: MockClock,
) -> None:
    async def app(request: Request) -> Response:
        return Response(b"x" * 100_000)

    config = HTTPConfig(write_timeout=2)
    async with open_memory_connection(app, config, lockstep=True) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        # Never read: the server's send_all cannot complete.
        await client.finished.wait()
        assert trio.current_time() >= 2


async def test_write_timeout_drops_a_client_that_stops_reading_on_a_socket(
    autojump_clock: MockClock,
) -> None:
    """On a real socket the loop writes the descriptor itself; a write the kernel
    cannot take whole still ends at write_timeout."""
    server_sock, client_sock = socket.socketpair()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(server_sock))
    client = trio.socket.from_stdlib_socket(client_sock)

    async def app(request: Request) -> Response:
        return Response(b"x" * (16 * 1024 * 1024))

    config = HTTPConfig(write_timeout=2)
    with client:
        async with trio.open_nursery() as nursery:
            conn = Connection(stream, nursery, client=("127.0.0.1", 1), server=("127.0.0.1", 2))
            await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            # Never read: the server waits for room until the deadline.
            await serve_http_connection(conn, app, config)
        assert trio.current_time() >= 2
        await stream.aclose()


async def test_client_going_away_mid_response_ends_the_connection_quietly() -> None:
    """After a failed write the connection is dead (``ServerProtocol.response_failed``): no
    exception escapes, the body iterator is closed."""
    closed: list[str] = []

    async def app(request: Request) -> Response:
        async def forever() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 1024
                    await trio.lowlevel.checkpoint()
            finally:
                closed.append("closed")

        return Response(forever())

    async with open_memory_connection(app) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.reader.read_head()
        await client.stream.aclose()
        await client.finished.wait()
    assert closed == ["closed"]


async def test_nothing_more_is_written_after_a_failed_write() -> None:
    """A failed write leaves the connection dead (``ServerProtocol.response_failed``): the rest of
    the streamed body, and the pipelined request behind it, get no bytes."""
    streams: list[FailingSendStream] = []
    closed: list[str] = []

    def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        streams.append(FailingSendStream(stream, fail_at=2))
        return streams[0]

    async def app(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            try:
                for part in (b"a", b"b", b"c"):
                    yield part
            finally:
                closed.append("closed")

        return Response(parts())

    async with open_memory_connection(app, wrap=wrap) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        await client.finished.wait()
    (stream,) = streams
    assert len(stream.sends) == 2  # the head, then the failed first chunk
    assert closed == ["closed"]


async def test_response_after_a_failed_100_continue_is_not_written() -> None:
    """Even if the handler swallows the failure of the ``100 Continue`` write and
    answers, the dead connection is not written to again."""
    streams: list[FailingSendStream] = []

    def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        streams.append(FailingSendStream(stream, fail_at=1))
        return streams[0]

    async def app(request: Request) -> Response:
        with contextlib.suppress(Exception):
            await request.read()
        return Response.text("too late")

    async with open_memory_connection(app, wrap=wrap) as client:
        await client.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        await client.finished.wait()
    (stream,) = streams
    assert stream.sends == [b"HTTP/1.1 100 \r\n\r\n"]


async def test_handler_setting_connection_close_closes_after_the_response() -> None:
    async def app(request: Request) -> Response:
        return Response.text("bye", headers={"Connection": "close"})

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
        assert response.body == b"bye"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


# Connection-level limits and logging ------------------------------------------


async def test_max_requests_per_connection_closes_after_the_last(
    autojump_clock: MockClock,
) -> None:
    config = HTTPConfig(max_requests_per_connection=2)
    async with open_memory_connection(make_app(), config) as client:
        first = await client.request("GET", "/")
        second = await client.request("GET", "/")
        assert "connection" not in first.headers
        assert second.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_access_log_has_one_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    config = HTTPConfig(access_log=True)
    with caplog.at_level(logging.INFO, logger="trio_upgrade.access"):
        async with open_memory_connection(make_app(), config) as client:
            await client.request("GET", "/?q=1")
            await client.request("GET", "/missing")
    lines = [r.getMessage() for r in caplog.records if r.name == "trio_upgrade.access"]
    assert len(lines) == 2
    assert lines[0].startswith('127.0.0.1:40000 "GET /?q=1 HTTP/1.1" 200 5 ')
    assert lines[0].endswith("ms")
    assert lines[1].startswith('127.0.0.1:40000 "GET /missing HTTP/1.1" 404 ')


async def test_access_log_is_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trio_upgrade.access"):
        async with open_memory_connection(make_app()) as client:
            await client.request("GET", "/")
    assert not [r for r in caplog.records if r.name == "trio_upgrade.access"]


# Graceful shutdown (more in test_http_shutdown.py) ---------------------------


async def test_drain_lets_the_request_in_flight_finish_with_connection_close() -> None:
    shutdown = Shutdown()
    started = trio.Event()
    release = trio.Event()

    async def app(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response.text("done")

    async with open_memory_connection(app, shutdown=shutdown) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await started.wait()
        shutdown.begin()
        release.set()
        response = await client.read_response()
        assert response.body == b"done"
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_connection_accepted_during_drain_is_closed_without_waiting(
    autojump_clock: MockClock,
) -> None:
    shutdown = Shutdown()
    shutdown.begin()
    async with open_memory_connection(make_app(), shutdown=shutdown) as client:
        await client.assert_closed()


async def test_request_timeout_error_raised_by_a_handler_is_a_408() -> None:
    async def app(request: Request) -> Response:
        raise RequestTimeout()

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert response.status == 408


# Responses refused before writing, and headers the handler already set ------


async def test_a_refused_response_becomes_a_raw_500_and_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A header value with CR/LF is refused before anything is written: the
    client still gets a 500 (``simple_response``) and the connection closes."""

    async def app(request: Request) -> Response:
        return Response.text("x", headers={"x-bad": "a\r\nb"})

    with caplog.at_level(logging.ERROR, logger="trio_upgrade"):
        async with open_memory_connection(app) as client:
            response = await client.request("GET", "/")
            assert response.status == 500
            assert response.headers.get_tokens("connection") == ["close"]
            await client.assert_closed()
    assert "invalid response" in caplog.text


async def test_handler_date_and_server_headers_are_not_duplicated() -> None:
    """A response that already has Date and Server (a proxied one) keeps exactly those."""

    async def app(request: Request) -> Response:
        return Response.text(
            "x", headers={"Date": "Thu, 01 Jan 1970 00:00:00 GMT", "Server": "backend"}
        )

    async with open_memory_connection(app, config=HTTPConfig(server_header="ours")) as client:
        response = await client.request("GET", "/")
    assert response.headers.get_all("date") == ["Thu, 01 Jan 1970 00:00:00 GMT"]
    assert response.headers.get_all("server") == ["backend"]


# Responses of every kind, checked by an h11 client ----------------------------


async def test_responses_of_every_kind_interleave_on_one_connection() -> None:
    """Bytes responses, streamed ones, 204s and HEADs alternate on one keep-alive
    connection; an h11 client parses every one of them."""
    async with open_memory_connection(make_app()) as client:
        peer = h11.Connection(h11.CLIENT)
        targets = ["/", "/stream", "/status/204", "/", "/status/304", "/path/x", "/stream"]
        methods = ["GET", "GET", "GET", "HEAD", "GET", "GET", "HEAD"]
        wire = b""
        for method, target in zip(methods * 3, targets * 3, strict=True):
            wire += peer.send(h11.Request(method=method, target=target, headers=[("Host", "a")]))
            wire += peer.send(h11.EndOfMessage())
            await client.send(wire)
            wire = b""
            events: list[object] = []
            while not events or type(events[-1]) is not h11.EndOfMessage:
                event = peer.next_event()
                if event is h11.NEED_DATA:
                    peer.receive_data(await client.stream.receive_some(65536))
                else:
                    events.append(event)
            response = events[0]
            assert isinstance(response, h11.Response)
            body = b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))
            if method == "HEAD" or response.status_code in (204, 304):
                assert body == b""
            elif target == "/":
                assert (response.status_code, body) == (200, b"hello")
                assert dict(response.headers)[b"content-length"] == b"5"
            elif target == "/stream":
                assert body == b"one two three"
            peer.start_next_cycle()
        assert not client.finished.is_set()


async def test_request_and_eof_in_one_write_is_answered_then_closed() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await client.stream.send_eof()
        response = await client.read_response()
        assert response.body == b"hello"
        await client.assert_closed()


async def test_connection_close_is_found_among_other_tokens_in_any_case() -> None:
    async with open_memory_connection(make_app()) as client:
        response = await client.request("GET", "/", headers="Connection: Keep-Alive, CLOSE\r\n")
        assert response.headers.get_tokens("connection") == ["close"]
        await client.assert_closed()


async def test_pipelined_request_after_a_read_body_is_answered_from_the_leftover() -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nping"
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /pa"
        )
        first = await client.read_response()
        second = await client.read_response()
        await client.send(b"th/y HTTP/1.1\r\nHost: a\r\n\r\n")
        third = await client.read_response()
    assert (first.body, second.body) == (b"ping", b"hello")
    assert json.loads(third.body)["rest"] == "y"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-bad", "a\nb"),
        ("x-bad", "a\x00b"),
        ("x-bad", " leading"),
        ("x-bad", "trailing\t"),
        ("bad name", "v"),
        ("bad:name", "v"),
        ("", "v"),
    ],
)
async def test_invalid_response_header_becomes_a_raw_500_on_either_path(
    name: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whether the body is bytes or streamed, a header that could split or
    corrupt the head is refused."""

    async def empty() -> AsyncIterator[bytes]:
        yield b"x"

    for streamed in (False, True):

        async def app(request: Request, streamed: bool = streamed) -> Response:
            body = empty() if streamed else b"x"
            return Response(body, headers=Headers.from_raw([(name.encode(), value.encode())]))

        with caplog.at_level(logging.ERROR, logger="trio_upgrade"):
            async with open_memory_connection(app) as client:
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                raw = await receive_until_eof(client.stream)
        assert raw.startswith(b"HTTP/1.1 500 ")
        assert b"\n" + name.encode() + b":" not in raw


async def test_obs_text_and_inner_whitespace_in_header_values_are_sent_as_is() -> None:
    async def app(request: Request) -> Response:
        return Response.text("x", headers=Headers.from_raw([(b"x-v", b"caf\xe9 \t au lait")]))

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
    assert b"\r\nx-v: caf\xe9 \t au lait\r\n" in response.head


@pytest.mark.parametrize("version", [b"2.0", b"9.9", b"0.9"])
async def test_request_with_another_major_http_version_gets_505_and_close(version: bytes) -> None:
    async with open_memory_connection(make_app()) as client:
        await client.send(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")
        response = await client.read_response()
        assert response.status == 505
        await client.assert_closed()


async def test_a_later_http_1_minor_version_is_answered_as_1_1_and_kept_alive() -> None:
    """RFC 9110 §6.2: a server answers with the highest minor version it supports."""
    async with open_memory_connection(make_app()) as client:
        for _ in range(2):
            await client.send(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n")
            response = await client.read_response()
            assert (response.http_version, response.body) == (b"HTTP/1.1", b"hello")
        assert not client.finished.is_set()


@pytest.mark.parametrize(
    ("fields", "body", "expect"),
    [
        ([(b"content-length", b"5")], b"hello", (200, b"hello")),
        ([(b"content-length", b"4")], b"hello", (500, None)),
        ([(b"content-length", b"5"), (b"content-length", b"5")], b"hello", (200, b"hello")),
        ([(b"content-length", b"05")], b"hello", (200, b"hello")),
    ],
)
async def test_a_content_length_set_by_the_handler_must_match_the_body(
    fields: list[tuple[bytes, bytes]], body: bytes, expect: tuple[int, bytes | None]
) -> None:
    """A matching length (a proxied response's) is sent once, as given; a wrong one is
    a 500 before anything is written, never a response that lies about its size."""

    async def app(request: Request) -> Response:
        return Response(body, headers=Headers.from_raw(list(fields)))

    async with open_memory_connection(app) as client:
        response = await client.request("GET", "/")
        assert response.status == expect[0]
        if expect[1] is not None:
            assert response.body == expect[1]
            assert len(response.headers.get_all("content-length")) == len(set(fields))
            assert not client.finished.is_set()


@pytest.mark.parametrize(
    ("method", "status", "fields", "body"),
    [
        ("GET", 200, [(b"content-type", b"text/plain")], b"hello"),
        (
            "GET",
            201,
            [(b"X-Mixed-Case", b"v"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
            b"",
        ),
        ("GET", 404, [(b"x-obs", b"caf\xe9 au lait")], b"x" * 100_000),
        ("HEAD", 200, [(b"content-type", b"text/html")], b"<p>hi</p>"),
        ("GET", 599, [], b"unknown status"),
    ],
)
async def test_a_directly_written_response_is_byte_for_byte_what_h11_writes(
    method: str, status: int, fields: list[tuple[bytes, bytes]], body: bytes
) -> None:
    async def app(request: Request) -> Response:
        return Response(body, status=status, headers=Headers.from_raw(list(fields)))

    config = HTTPConfig(date_header=False, server_header=None)
    async with open_memory_connection(app, config=config) as client:
        await client.send(f"{method} / HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        await client.stream.send_eof()
        wire = await receive_until_eof(client.stream)

    h = h11.Connection(h11.SERVER)
    h.receive_data(f"{method} / HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    h.next_event()
    h.next_event()
    expected = h.send(
        h11.Response(
            status_code=status,
            headers=[*fields, (b"content-length", b"%d" % len(body))],
            reason=reason_phrase(status).encode(),
        )
    )
    assert expected is not None
    if method != "HEAD":
        expected += h.send(h11.Data(data=body)) or b""
    expected += h.send(h11.EndOfMessage()) or b""
    assert wire == expected
