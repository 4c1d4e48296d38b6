"""``serve`` on real loopback sockets: httpx as the client, raw sockets where bytes matter.

TCP (IPv4 and, where the machine has it, IPv6), Unix sockets and TLS. Nothing
here leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from _http_helpers import ResponseReader
from _wire import has_ipv6_loopback

from trio_upgrade.core import Connection, PrefixedStream, Server, current_connection
from trio_upgrade.http import HTTPConfig, Request, Response, Router, Takeover, serve


@asynccontextmanager
async def running(app: Any, *binds: str, **kwargs: Any) -> AsyncIterator[Server]:
    """Serve *app* for the duration of the block, then shut down gracefully."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve(app, *binds, task_status=task_status, **kwargs)
        )
        try:
            yield server
        finally:
            await server.aclose()


@asynccontextmanager
async def serving(
    app: Any, *binds: str, client: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncIterator[tuple[Server, httpx.AsyncClient]]:
    """A running server (first bind TCP unless *client* says otherwise) and an httpx client."""
    async with running(app, *binds, **kwargs) as server:
        options = client if client is not None else {"base_url": base_url(server)}
        async with httpx.AsyncClient(**options) as http:
            yield server, http


def tcp_address(server: Server) -> tuple[str, int]:
    """The first bind's (host, port); the tests bind TCP first."""
    address = server.addresses[0]
    assert isinstance(address, tuple)
    return address


def base_url(server: Server, scheme: str = "http") -> str:
    host, port = tcp_address(server)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


async def open_raw(server: Server) -> tuple[trio.SocketStream, ResponseReader]:
    host, port = tcp_address(server)
    stream = await trio.open_tcp_stream(host, port)
    return stream, ResponseReader(stream)


def make_app() -> Router:
    router = Router()

    @router.get("/")
    async def index(request: Request) -> Response:
        return Response.text("hello")

    @router.get("/info")
    async def info(request: Request) -> Response:
        return Response.json(
            {
                "scheme": request.scheme,
                "client": request.client,
                "server": request.server,
                "current": current_connection() is request.connection,
            }
        )

    @router.post("/json")
    async def echo_json(request: Request) -> Response:
        return Response.json({"got": await request.json()}, status=201)

    @router.put("/count")
    async def count(request: Request) -> Response:
        total = 0
        async for chunk in request.body:
            total += len(chunk)
        return Response.json({"bytes": total})

    @router.get("/boom")
    async def boom(request: Request) -> Response:
        raise ZeroDivisionError("deliberate")

    return router


# Basic HTTP over TCP ----------------------------------------------------------


async def test_serve_reports_its_bound_port_and_answers_httpx() -> None:
    async with running(make_app(), "127.0.0.1:0") as server:
        host, port = tcp_address(server)
        assert host == "127.0.0.1" and port > 0
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            response = await client.get("/")
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_json_round_trip_and_request_addresses() -> None:
    async with serving(make_app(), "127.0.0.1:0") as (server, client):
        posted = await client.post("/json", json={"a": [1, "é"]})
        info = (await client.get("/info")).json()
        address = server.addresses[0]
    assert posted.status_code == 201
    assert posted.json() == {"got": {"a": [1, "é"]}}
    assert info["scheme"] == "http"
    assert info["client"][0] == "127.0.0.1"
    assert info["server"] == list(address)
    assert info["current"] is True


async def test_keep_alive_reuses_one_connection() -> None:
    async with serving(make_app(), "127.0.0.1:0") as (_server, client):
        ports = {(await client.get("/info")).json()["client"][1] for _ in range(3)}
    assert len(ports) == 1


async def test_404_and_405_with_allow() -> None:
    async with serving(make_app(), "127.0.0.1:0") as (_server, client):
        missing = await client.get("/nope")
        wrong = await client.delete("/json")
    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"


async def test_head_has_length_but_no_body() -> None:
    async with serving(make_app(), "127.0.0.1:0") as (_server, client):
        response = await client.head("/")
        after = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-length"] == "5"
    assert response.content == b""
    assert after.text == "hello"


async def test_handler_exception_is_500_with_traceback_logged_and_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(make_app(), "127.0.0.1:0") as (_server, client):
        failed = await client.get("/boom")
        ok = await client.get("/")
    assert failed.status_code == 500
    assert ok.status_code == 200
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.name == "trio_upgrade.http"
    assert isinstance(record.exc_info[1], ZeroDivisionError)  # type: ignore[index]
    assert "Traceback" in caplog.text and "deliberate" in caplog.text


async def test_upload_past_max_body_size_gets_413() -> None:
    # httpx's sync client in a thread: its async client leaves the request-body
    # generator unfinished when the server answers before the upload ends,
    # which surfaces here as a ResourceWarning.
    config = HTTPConfig(max_body_size=1000)

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"y" * 100

    def upload(url: str) -> list[httpx.Response]:
        with httpx.Client(base_url=url) as client:
            return [
                client.put("/count", content=b"x" * 1000),
                client.put("/count", content=b"x" * 2_000_000),
                client.put("/count", content=chunks()),
            ]

    async with running(make_app(), "127.0.0.1:0", config=config) as server:
        small, large, streamed = await trio.to_thread.run_sync(upload, base_url(server))
    assert small.json() == {"bytes": 1000}
    assert large.status_code == 413
    assert streamed.status_code == 413


async def test_streamed_download_reaches_the_client_before_the_response_ends() -> None:
    first_seen = trio.Event()

    async def app(request: Request) -> Response:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first;"
            # Only continues once the client holds the first chunk: a buffered
            # response would deadlock here (and hit the test timeout).
            await first_seen.wait()
            yield b"second"

        return Response(parts(), content_type="text/plain")

    async with (
        serving(app, "127.0.0.1:0") as (_, client),
        client.stream("GET", "/") as response,
    ):
        assert response.headers["transfer-encoding"] == "chunked"
        received = b""
        async for chunk in response.aiter_raw():
            received += chunk
            if received == b"first;":
                first_seen.set()
    assert received == b"first;second"


async def test_streamed_upload_is_read_by_the_handler_as_it_arrives() -> None:
    first_read = trio.Event()
    pieces: list[bytes] = []

    async def app(request: Request) -> Response:
        async for chunk in request.body:
            pieces.append(chunk)
            first_read.set()
        return Response.json({"pieces": len(pieces)})

    async def upload() -> AsyncIterator[bytes]:
        yield b"a" * 10
        # The handler must see the first piece while the upload is in progress.
        await first_read.wait()
        yield b"b" * 10

    async with serving(app, "127.0.0.1:0") as (_server, client):
        response = await client.post("/", content=upload())
    assert response.status_code == 200
    assert b"".join(pieces) == b"a" * 10 + b"b" * 10


async def test_file_response_over_the_network(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 1000)

    async def app(request: Request) -> Response:
        return await Response.file(path, filename="data.bin")

    async with serving(app, "127.0.0.1:0") as (_server, client):
        response = await client.get("/")
    assert response.content == path.read_bytes()
    assert response.headers["content-length"] == str(256_000)
    assert response.headers["content-disposition"].startswith("attachment;")


async def test_access_log_line_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    config = HTTPConfig(access_log=True)
    with caplog.at_level(logging.INFO, logger="trio_upgrade.access"):
        async with serving(make_app(), "127.0.0.1:0", config=config) as (_server, client):
            await client.get("/?x=1")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "trio_upgrade.access"]
    assert line.startswith("127.0.0.1:")
    assert '"GET /?x=1 HTTP/1.1" 200 5 ' in line


# Other transports -------------------------------------------------------------


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_ipv6_loopback() -> None:
    async with serving(make_app(), "[::1]:0") as (_server, client):
        info = (await client.get("/info")).json()
    assert info["client"][0] == "::1"


async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    async with running(make_app(), f"unix:{path}") as server:
        assert server.addresses == [path]
        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            hello = await client.get("/")
            info = (await client.get("/info")).json()
    assert hello.text == "hello"
    assert info["scheme"] == "http"
    assert info["server"] == path


async def test_tls_sets_https_scheme(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with running(make_app(), "127.0.0.1:0", ssl_context=server_ssl_context) as server:
        url = base_url(server, "https")
        async with httpx.AsyncClient(base_url=url, verify=client_ssl_context) as client:
            info = (await client.get("/info")).json()
            posted = await client.post("/json", json=[1, 2])
    assert info["scheme"] == "https"
    assert info["client"][0] == "127.0.0.1"
    assert posted.json() == {"got": [1, 2]}


async def test_several_binds_serve_the_same_app(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    async with running(make_app(), "127.0.0.1:0", f"unix:{path}") as server:
        assert len(server.addresses) == 2
        async with httpx.AsyncClient(base_url=base_url(server)) as tcp:
            assert (await tcp.get("/")).text == "hello"
        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as unix:
            assert (await unix.get("/")).text == "hello"


# Raw sockets ------------------------------------------------------------------


async def test_pipelined_requests_in_one_write_on_a_socket() -> None:
    async with running(make_app(), "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n"
                b"POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n[42]"
            )
            first = await reader.read_response()
            second = await reader.read_response()
            third = await reader.read_response()
    assert (first.status, second.status, third.status) == (200, 404, 201)
    assert json.loads(third.body) == {"got": [42]}


async def test_pipelined_requests_of_two_connections_take_turns_on_a_socket() -> None:
    """A response written at once is no schedule point, so the loop yields before
    answering a pipelined request it already holds: one client's burst cannot
    keep another's waiting until it is all answered."""
    order: list[str] = []
    router = Router()

    @router.get("/{name}")
    async def record(request: Request) -> Response:
        order.append(request.path_params["name"])
        return Response.text("ok")

    burst = 20
    async with running(router, "127.0.0.1:0") as server:
        first, first_reader = await open_raw(server)
        second, second_reader = await open_raw(server)
        async with first, second:
            await first.send_all(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n" * burst)
            await second.send_all(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n" * burst)
            for _ in range(burst):
                assert (await first_reader.read_response()).body == b"ok"
                assert (await second_reader.read_response()).body == b"ok"
    assert sorted(order) == ["a"] * burst + ["b"] * burst
    # Taking turns: the other connection's requests come between one's.
    changes = sum(1 for before, after in itertools.pairwise(order) if before != after)
    assert changes > 2


async def test_response_larger_than_the_socket_buffers_reaches_a_slow_reader_whole() -> None:
    """A write the kernel takes in parts goes on as the client makes room."""
    body = bytes(range(256)) * (64 * 1024)  # 16 MiB
    router = Router()

    @router.get("/big")
    async def big(request: Request) -> Response:
        return Response(body, headers={"content-type": "application/octet-stream"})

    async with running(router, "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(
                b"GET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /big HTTP/1.1\r\nHost: a\r\n\r\n"
            )
            # The server fills the buffers and waits for room before the client reads.
            await trio.testing.wait_all_tasks_blocked()
            responses = [await reader.read_response(), await reader.read_response()]
    assert [(r.status, r.body == body) for r in responses] == [(200, True), (200, True)]


async def test_malformed_request_line_gets_400_and_close_on_a_socket() -> None:
    async with running(make_app(), "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
            response = await reader.read_response()
            assert response.status == 400
            assert response.headers.get_tokens("connection") == ["close"]
            assert await reader.at_eof()
        # The server is fine.
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/")).status_code == 200


async def test_oversized_headers_get_431_on_a_socket() -> None:
    async with running(make_app(), "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20_000)
            response = await reader.read_response()
            assert response.status == 431
            assert await reader.at_eof()


class Upgrader:
    """Answers 101 and echoes the protocol's bytes back, upper-cased."""

    def __init__(self) -> None:
        self.prefetched: list[bytes] = []
        self.connection: Connection | None = None

    async def take_over(self, stream: trio.abc.Stream, prefetched: bytes, request: Request) -> None:
        self.prefetched.append(prefetched)
        self.connection = current_connection()
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\n\r\n")
        wire = PrefixedStream(stream, prefetched)
        while data := await wire.receive_some():
            await stream.send_all(data.upper())


def upgrade_app(takeover: Takeover) -> Router:
    router = make_app()

    @router.get("/shout")
    async def shout(request: Request) -> Takeover:
        return takeover

    return router


SHOUT_HEAD = b"GET /shout HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\n"


async def test_takeover_on_a_socket_gets_the_extra_bytes_of_the_same_write_once() -> None:
    upgrader = Upgrader()
    async with running(upgrade_app(upgrader), "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(SHOUT_HEAD + b"hello")
            head = await reader.read_head()
            assert head.status == 101
            assert await reader.read_exactly(5) == b"HELLO"
            await stream.send_all(b" world")
            assert await reader.read_exactly(6) == b" WORLD"
            await stream.send_eof()
            assert await reader.at_eof()
    assert upgrader.prefetched == [b"hello"]
    assert upgrader.connection is not None


async def test_raising_takeover_does_not_take_the_server_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        async def take_over(
            self, stream: trio.abc.Stream, prefetched: bytes, request: Request
        ) -> None:
            await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            raise OSError("backend vanished")

    async with running(upgrade_app(Broken()), "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(SHOUT_HEAD)
            assert (await reader.read_head()).status == 101
            assert await reader.at_eof()
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/")).text == "hello"
    assert any("takeover for GET /shout failed" in r.getMessage() for r in caplog.records)


async def test_connect_tunnel_on_a_socket() -> None:
    class Tunnel:
        async def take_over(
            self, stream: trio.abc.Stream, prefetched: bytes, request: Request
        ) -> None:
            await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            wire = PrefixedStream(stream, prefetched)
            while data := await wire.receive_some():
                await stream.send_all(data[::-1])

    async def app(request: Request) -> Takeover | Response:
        if request.method == "CONNECT":
            return Tunnel()
        return Response(status=404)

    async with running(app, "127.0.0.1:0") as server:
        stream, reader = await open_raw(server)
        async with stream:
            await stream.send_all(b"CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\nabc")
            assert (await reader.read_head()).status == 200
            assert await reader.read_exactly(3) == b"cba"


# Graceful shutdown ------------------------------------------------------------


async def test_graceful_shutdown_finishes_in_flight_request_and_closes_idle_ones() -> None:
    started = trio.Event()
    release = trio.Event()
    slow_outcome: list[str] = []

    async def app(request: Request) -> Response:
        if request.path == "/slow":
            started.set()
            try:
                await release.wait()
            except trio.Cancelled:
                slow_outcome.append("cancelled")
                raise
            slow_outcome.append("released")
            return Response.text("slow done")
        return Response.text("fast")

    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", grace_period=30, task_status=task_status)
        )
        host, port = tcp_address(server)
        idle, idle_reader = await open_raw(server)
        busy, busy_reader = await open_raw(server)
        await idle.send_all(b"GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await idle_reader.read_response()).body == b"fast"
        await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        await started.wait()

        nursery.start_soon(server.aclose)
        # The idle keep-alive connection is closed at once, while the slow
        # request is still running.
        assert await idle_reader.at_eof()
        # ... and the slow request is still running: shutting down neither
        # cancelled it nor waited for it before closing the idle connection.
        await trio.testing.wait_all_tasks_blocked()
        assert slow_outcome == []
        # No new connections are accepted.
        with pytest.raises(OSError):
            await trio.open_tcp_stream(host, port)
        release.set()
        response = await busy_reader.read_response()
        assert response.body == b"slow done"
        assert slow_outcome == ["released"]
        assert response.headers.get_tokens("connection") == ["close"]
        assert await busy_reader.at_eof()
        await idle.aclose()
        await busy.aclose()


async def test_cancelling_the_serve_scope_shuts_down_gracefully() -> None:
    started = trio.Event()
    release = trio.Event()

    async def app(request: Request) -> Response:
        started.set()
        await release.wait()
        return Response.text("finished")

    serve_scope = trio.CancelScope()

    async def serve_until_cancelled(task_status: trio.TaskStatus[Server]) -> None:
        with serve_scope:
            await serve(app, "127.0.0.1:0", task_status=task_status)

    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve_until_cancelled)
        stream, reader = await open_raw(server)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await started.wait()
        serve_scope.cancel()
        await server.shutdown.wait()
        release.set()
        response = await reader.read_response()
        assert response.body == b"finished"
        assert response.headers.get_tokens("connection") == ["close"]
        await stream.aclose()


async def test_requests_still_running_after_the_grace_period_are_cancelled() -> None:
    started = trio.Event()
    cancelled: list[bool] = []

    async def app(request: Request) -> Response:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", grace_period=0, task_status=task_status)
        )
        stream, reader = await open_raw(server)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        await started.wait()
        await server.aclose()
        assert cancelled == [True]
        assert await reader.at_eof()
        await stream.aclose()
