"""The Takeover hand-off over in-memory streams: exactly the bytes after the request, once."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from _http_helpers import CLIENT, SERVER, open_memory_connection, receive_until_eof

from trio_upgrade.core import Connection, PrefixedStream
from trio_upgrade.http import (
    HTTPConfig,
    Request,
    Response,
    Router,
    Takeover,
    serve_http_connection,
)


class Recorder:
    """A takeover that records what it was given and reads the rest of the wire."""

    def __init__(self, answer: bytes = b"HTTP/1.1 101 Switching Protocols\r\n\r\n") -> None:
        self.answer = answer
        self.prefetched: bytes | None = None
        self.request: Request | None = None
        self.received = b""

    async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, request: Request) -> None:
        self.prefetched = prefetched
        self.request = request
        await stream.send_all(self.answer)
        wire = PrefixedStream(stream, prefetched)
        while data := await wire.receive_some(1024):
            self.received += data
            if self.received.endswith(b"END"):
                break


def takeover_app(takeover: Takeover) -> Router:
    router = Router()

    @router.route("/up", methods=["GET", "POST", "CONNECT"])
    async def up(request: Request) -> Takeover:
        return takeover

    @router.get("/")
    async def index(request: Request) -> Response:
        return Response.text("plain")

    return router


UPGRADE_HEAD = b"GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: thing\r\n\r\n"


async def test_bytes_sent_with_the_head_in_one_write_are_prefetched_exactly_once() -> None:
    recorder = Recorder()
    async with open_memory_connection(takeover_app(recorder)) as client:
        await client.send(UPGRADE_HEAD + b"first bytes")
        assert await client.reader.read_until(b"\r\n\r\n") == recorder.answer
        await client.send(b" and later END")
        await client.finished.wait()
        # The stream is closed when take_over returns.
        assert await client.reader.at_eof()
    assert recorder.prefetched == b"first bytes"
    assert recorder.received == b"first bytes and later END"


async def test_bytes_arriving_after_the_head_reach_the_takeover_through_the_stream() -> None:
    recorder = Recorder()
    async with open_memory_connection(takeover_app(recorder)) as client:
        await client.send(UPGRADE_HEAD)
        await client.reader.read_until(b"\r\n\r\n")
        await client.send(b"abc")
        await trio.testing.wait_all_tasks_blocked()
        await client.send(b"END")
        await client.finished.wait()
    assert recorder.prefetched == b""
    assert recorder.received == b"abcEND"


async def test_takeover_after_a_request_body_gets_only_what_follows_the_body() -> None:
    recorder = Recorder()
    async with open_memory_connection(takeover_app(recorder)) as client:
        await client.send(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nBODY!tunnel END"
        )
        await client.finished.wait()
    assert recorder.prefetched == b"tunnel END"
    assert recorder.received == b"tunnel END"


async def test_takeover_gets_the_request_with_its_head() -> None:
    recorder = Recorder()
    async with open_memory_connection(takeover_app(recorder)) as client:
        await client.send(UPGRADE_HEAD + b"END")
        await client.finished.wait()
    assert recorder.request is not None
    assert recorder.request.path == "/up"
    assert recorder.request.headers.get_tokens("upgrade") == ["thing"]


async def test_pipelined_request_after_a_takeover_belongs_to_the_takeover() -> None:
    recorder = Recorder()
    pipelined = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    async with open_memory_connection(takeover_app(recorder)) as client:
        await client.send(UPGRADE_HEAD + pipelined + b"END")
        await client.finished.wait()
        rest = await receive_until_eof(client.stream)
    # Only the takeover's answer: the HTTP layer did not parse the next request.
    assert rest == recorder.answer
    assert recorder.prefetched == pipelined + b"END"


async def test_connect_can_be_taken_over_as_an_echo_tunnel() -> None:
    class EchoTunnel:
        async def take_over(
            self, stream: trio.abc.Stream, prefetched: bytes, request: Request
        ) -> None:
            assert request.method == "CONNECT"
            assert request.target == "backend.test:443"
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            wire = PrefixedStream(stream, prefetched)
            while data := await wire.receive_some():
                await stream.send_all(data.upper())

    async def app(request: Request) -> Takeover | Response:
        if request.method == "CONNECT":
            return EchoTunnel()
        return Response(status=404)

    async with open_memory_connection(app) as client:
        await client.send(b"CONNECT backend.test:443 HTTP/1.1\r\nHost: backend.test:443\r\n\r\nhi")
        response = await client.reader.read_head()
        assert response.status == 200
        assert await client.reader.read_exactly(2) == b"HI"
        await client.send(b"there")
        assert await client.reader.read_exactly(5) == b"THERE"
        await client.stream.send_eof()
        await client.finished.wait()


async def test_takeover_that_raises_is_logged_and_closes_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        async def take_over(
            self, stream: trio.abc.Stream, prefetched: bytes, request: Request
        ) -> None:
            raise RuntimeError("takeover exploded")

    async with open_memory_connection(takeover_app(Broken())) as client:
        await client.send(UPGRADE_HEAD)
        await client.assert_closed()
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "takeover for GET /up failed" in record.getMessage()
    assert isinstance(record.exc_info[1], RuntimeError)  # type: ignore[index]


async def test_upgrade_request_answered_with_a_response_keeps_http_going() -> None:
    """A client asking for an upgrade that the app declines gets a normal answer and
    the connection stays HTTP (RFC 9110 §7.8: the server may ignore Upgrade)."""

    async def app(request: Request) -> Response:
        return Response.text("no upgrade for you")

    async with open_memory_connection(app) as client:
        await client.send(UPGRADE_HEAD)
        declined = await client.read_response()
        assert declined.status == 200
        assert (await client.request("GET", "/")).status == 200


async def test_takeover_with_a_body_too_large_to_drain_is_refused_with_413(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    config = HTTPConfig(max_drain_size=10)
    async with open_memory_connection(takeover_app(recorder), config) as client:
        await client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        await client.send(b"x" * 100)
        response = await client.read_response()
        assert response.status == 413
        await client.assert_closed()
    assert recorder.prefetched is None


async def test_takeover_is_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    """A takeover is not an error: nothing is logged at WARNING or above."""
    recorder = Recorder()
    with caplog.at_level(logging.DEBUG):
        async with open_memory_connection(takeover_app(recorder)) as client:
            await client.send(UPGRADE_HEAD + b"END")
            await client.finished.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_http_layer_closes_the_stream_when_take_over_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The caller of serve_http_connection does not close anything here: the EOF
    the client sees comes from the HTTP layer itself."""

    class Goodbye:
        async def take_over(
            self, stream: trio.abc.Stream, prefetched: bytes, request: Request
        ) -> None:
            await stream.send_all(b"bye")

    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        conn = Connection(server_stream, nursery, client=CLIENT, server=SERVER)
        await client_stream.send_all(UPGRADE_HEAD)
        await serve_http_connection(conn, takeover_app(Goodbye()))
    with trio.fail_after(60):  # a missing close would block here forever
        assert await receive_until_eof(client_stream) == b"bye"
