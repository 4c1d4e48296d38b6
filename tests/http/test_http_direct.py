"""DirectResponse and ResponseWriter: a handler writes its response itself, in the
connection's task, while the loop keeps framing, keep-alive, drain and timeouts.

In-memory streams: what goes on the wire is parsed by ``ResponseReader`` (no h11).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from _http_helpers import FailingSendStream, open_memory_connection, receive_until_eof

from trio_upgrade.http import (
    ClientDisconnected,
    DirectResponse,
    Headers,
    HTTPConfig,
    HTTPError,
    Request,
    ResponseWriter,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"

Write = Callable[[ResponseWriter], Awaitable[None]]


def direct(write: Write) -> Callable[[Request], Awaitable[DirectResponse]]:
    """A handler answering every request with DirectResponse(write)."""

    async def handler(request: Request) -> DirectResponse:
        await trio.lowlevel.checkpoint()
        return DirectResponse(write)

    return handler


async def test_respond_sends_a_whole_response_with_content_length_and_keeps_alive() -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.respond(201, [("x-a", "1")], b"made")
        assert writer.started and writer.ended and writer.sent == 4

    async with open_memory_connection(direct(write)) as client:
        for _ in range(2):
            response = await client.request()
            assert (response.status, response.body) == (201, b"made")
            assert response.headers["content-length"] == "4"
            assert response.headers["x-a"] == "1"


async def test_start_send_end_streams_a_chunked_body_as_it_is_written() -> None:
    steps: list[str] = []

    async def write(writer: ResponseWriter) -> None:
        await writer.start(200, Headers([("content-type", "text/event-stream")]))
        for i in range(3):
            await writer.send(f"data: {i}\n\n".encode())
            steps.append(f"sent {i}")
        await writer.send(b"")  # nothing: no empty chunk that would end the body
        await writer.end()

    async with open_memory_connection(direct(write)) as client:
        response = await client.request()
        assert response.chunked
        assert response.body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert (await client.request()).status == 200  # kept alive
    assert steps == ["sent 0", "sent 1", "sent 2"] * 2


async def test_the_head_goes_out_before_the_first_chunk_is_written() -> None:
    """Server-sent events: the client sees the head while the handler still waits."""
    release = trio.Event()

    async def write(writer: ResponseWriter) -> None:
        await writer.start(200, [("content-type", "text/event-stream")])
        await release.wait()
        await writer.send(b"data: late\n\n")
        await writer.end()

    async with open_memory_connection(direct(write)) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await client.reader.read_head()
        assert head.status == 200
        release.set()
        assert await client.reader.read_until(b"0\r\n\r\n") == b"c\r\ndata: late\n\n\r\n0\r\n\r\n"


async def test_a_declared_length_is_kept_and_a_short_body_is_an_error() -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.start(200, [("content-length", "5")])
        await writer.send(b"abc")
        await writer.end()  # two bytes short: ValueError

    async with open_memory_connection(direct(write)) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await client.reader.read_head()
        assert head.headers["content-length"] == "5"
        assert not head.chunked
        assert await client.reader.read_to_eof() == b"abc"  # then closed


async def test_head_requests_get_the_head_and_the_body_is_discarded() -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.start(200, [("content-type", "text/plain")])
        await writer.send(b"not sent")
        await writer.end()

    async with open_memory_connection(direct(write)) as client:
        response = await client.request("HEAD")
        assert response.status == 200 and response.body == b""
        assert (await client.request()).body == b"not sent"


async def test_http_10_stream_is_delimited_by_closing() -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)
        await writer.send(b"one ")
        await writer.send(b"two")
        await writer.end()

    async with open_memory_connection(direct(write)) as client:
        await client.send(b"GET / HTTP/1.0\r\n\r\n")
        received = await receive_until_eof(client.stream)
    assert received.endswith(b"\r\n\r\none two")
    assert b"transfer-encoding" not in received.lower()


@pytest.mark.parametrize(
    ("misuse", "message"),
    [
        ("head twice", "head was already sent"),
        ("send first", "start() the response"),
        ("send after end", "already complete"),
        ("respond after start", "head was already sent"),
    ],
)
async def test_misuse_raises_a_clear_runtime_error(misuse: str, message: str) -> None:
    raised: list[BaseException] = []

    async def write(writer: ResponseWriter) -> None:
        try:
            if misuse == "send first":
                await writer.send(b"x")
            await writer.start(200)
            if misuse == "head twice":
                await writer.start(200)
            if misuse == "respond after start":
                await writer.respond(200, None, b"x")
            await writer.end()
            if misuse == "send after end":
                await writer.send(b"x")
        except RuntimeError as exc:
            raised.append(exc)
            raise

    async with open_memory_connection(direct(write)) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        received = await receive_until_eof(client.stream)  # the misuse closes the connection
    assert len(raised) == 1 and message in str(raised[0])
    if misuse == "send first":
        assert received.startswith(b"HTTP/1.1 500 ")  # nothing was sent yet: an honest 500
    elif misuse == "send after end":
        assert received.endswith(b"\r\n0\r\n\r\n")  # the complete response stands
    else:
        assert received.startswith(b"HTTP/1.1 200 ") and not received.endswith(b"0\r\n\r\n")


async def test_a_writer_kept_past_its_coroutine_refuses_to_write() -> None:
    kept: list[ResponseWriter] = []

    async def write(writer: ResponseWriter) -> None:
        kept.append(writer)
        await writer.respond(200, None, b"ok")

    async with open_memory_connection(direct(write)) as client:
        assert (await client.request()).body == b"ok"
    with pytest.raises(RuntimeError, match="only valid while"):
        await kept[0].send(b"late")


async def test_two_tasks_writing_at_once_is_refused() -> None:
    errors: list[BaseException] = []

    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)

        async def send_big() -> None:
            try:
                await writer.send(b"x" * 100_000)
            except RuntimeError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_big)
            nursery.start_soon(send_big)
        await writer.end()

    async with open_memory_connection(direct(write)) as client:
        response = await client.request()
        assert len(response.body) == 100_000
    assert len(errors) == 1 and "another task" in str(errors[0])


async def test_an_exception_before_the_head_is_a_logged_500_and_the_next_request_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def write(writer: ResponseWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom before the head")
        await writer.respond(200, None, b"fine")

    async with open_memory_connection(direct(write)) as client:
        response = await client.request()
        assert response.status == 500
        assert (await client.request()).body == b"fine"  # the same connection
    assert any(r.exc_info and "boom before the head" in str(r.exc_info[1]) for r in caplog.records)


async def test_an_http_error_before_the_head_is_answered_with_its_status() -> None:
    async def write(writer: ResponseWriter) -> None:
        raise HTTPError(409, "taken")

    async with open_memory_connection(direct(write)) as client:
        response = await client.request()
        assert (response.status, response.body) == (409, b"taken\n")


async def test_an_exception_after_the_head_closes_without_a_last_chunk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)
        await writer.send(b"partial")
        raise ValueError("boom mid-body")

    async with open_memory_connection(direct(write)) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\nGET / HTTP/1.1\r\nhost: t\r\n\r\n")
        received = await receive_until_eof(client.stream)
    assert received.count(b"HTTP/1.1 200") == 1
    assert received.endswith(b"7\r\npartial\r\n")  # no 0-chunk: it cannot look complete
    assert any(r.exc_info and "boom mid-body" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize("how", ["return", "abort"])
async def test_returning_before_end_or_aborting_closes_the_connection(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)
        await writer.send(b"partial")
        if how == "abort":
            writer.abort()
            with pytest.raises(ClientDisconnected):
                await writer.send(b"more")

    with caplog.at_level(logging.ERROR):
        async with open_memory_connection(direct(write)) as client:
            await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            received = await receive_until_eof(client.stream)
    assert received.endswith(b"7\r\npartial\r\n")
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    if how == "return":
        assert any("returned before ending its response" in m for m in logged), logged
    else:
        assert logged == []


async def test_returning_without_a_response_is_a_logged_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def write(writer: ResponseWriter) -> None:
        await trio.lowlevel.checkpoint()

    async with open_memory_connection(direct(write)) as client:
        assert (await client.request()).status == 500
    assert any("without writing a response" in r.getMessage() for r in caplog.records)


async def test_a_failed_write_raises_client_disconnected_and_ends_the_connection() -> None:
    raised: list[BaseException] = []

    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)
        try:
            await writer.send(b"lost")
        except ClientDisconnected as exc:
            raised.append(exc)
            with pytest.raises(ClientDisconnected):
                await writer.send(b"again")
            raise

    def wrap(stream: trio.abc.Stream) -> trio.abc.Stream:
        return FailingSendStream(stream, fail_at=2)

    async with open_memory_connection(direct(write), wrap=wrap) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        await client.finished.wait()
    assert len(raised) == 1


async def test_the_body_can_be_read_while_the_response_is_written() -> None:
    async def handler(request: Request) -> DirectResponse:
        async def echo(writer: ResponseWriter) -> None:
            await writer.start(200)
            async for chunk in request.body:
                await writer.send(chunk.upper())
            await writer.end()

        await trio.lowlevel.checkpoint()
        return DirectResponse(echo)

    async with open_memory_connection(handler) as client:
        await client.send(
            b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        assert (await client.reader.read_head()).status == 200
        assert await client.reader.read_until(b"abc".upper() + b"\r\n") == b"3\r\nABC\r\n"
        await client.send(b"2\r\nde\r\n0\r\n\r\n")
        assert await client.reader.read_until(b"0\r\n\r\n") == b"2\r\nDE\r\n0\r\n\r\n"
        assert (await client.request("GET")).status == 200  # kept alive


async def test_an_unread_body_is_drained_after_the_response_and_the_connection_kept() -> None:
    async def write(writer: ResponseWriter) -> None:
        await writer.respond(200, None, b"ignored it")

    async with open_memory_connection(direct(write)) as client:
        response = await client.request("POST", body=b"x" * 1000)
        assert response.body == b"ignored it"
        assert "connection" not in response.headers
        assert (await client.request()).body == b"ignored it"


async def test_a_slow_client_times_out_a_blocked_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Backpressure: send waits for the client; write_timeout ends the connection."""
    reached: list[int] = []

    async def write(writer: ResponseWriter) -> None:
        await writer.start(200)
        for i in range(1000):
            await writer.send(b"x" * 65536)
            reached.append(i)

    config = HTTPConfig(write_timeout=5)
    async with open_memory_connection(direct(write), config, lockstep=True) as client:
        await client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        await client.reader.read_head()
        await client.finished.wait()  # nobody reads the body: the write times out
    assert len(reached) < 5


async def test_the_docs_server_sent_events_example_streams_three_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    (block,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
        if "/events" in b
    ]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(block, namespace)
    async with open_memory_connection(namespace["router"]) as client:
        response = await client.request("GET", "/events")
    assert response.headers["content-type"] == "text/event-stream"
    assert response.body == b"data: tick 0\n\ndata: tick 1\n\ndata: tick 2\n\n"


async def test_headers_added_to_the_direct_response_reach_the_head_unless_the_writer_set_them() -> (
    None
):
    """Middleware decorates a DirectResponse through its headers (CORS, a request id)."""

    async def write(writer: ResponseWriter) -> None:
        await writer.respond(200, [("x-own", "writer"), ("x-both", "writer")], b"ok")

    async def handler(request: Request) -> DirectResponse:
        await trio.lowlevel.checkpoint()
        return DirectResponse(write, headers={"x-both": "middleware"})

    async def middleware(request: Request) -> Any:
        result = await handler(request)
        result.headers.set("x-added", "middleware")
        return result

    async with open_memory_connection(middleware) as client:
        response = await client.request()
    assert response.headers.get_all("x-both") == ["writer"]
    assert response.headers["x-own"] == "writer"
    assert response.headers["x-added"] == "middleware"
