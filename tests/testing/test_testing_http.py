"""AppClient over HTTP: round trips, bodies, streaming, keep-alive, timeouts and shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_upgrade.bridge import App
from trio_upgrade.http import HTTPConfig, HTTPError, Request, Response, Router
from trio_upgrade.testing import AppClient, ServerDisconnected


def make_app() -> App:
    app = App()

    @app.route("/", methods=["GET", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS", "PURGE"])
    async def index(request: Request) -> Response:
        return Response.json(
            {
                "method": request.method,
                "target": request.target,
                "client": list(request.client) if isinstance(request.client, tuple) else None,
                "server": list(request.server) if isinstance(request.server, tuple) else None,
                "host": request.host,
                "scheme": request.scheme,
                "x-test": request.headers.get("x-test"),
                "q": request.query.get_all("q"),
            }
        )

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(
            await request.read(),
            headers={
                "content-type": request.headers.get("content-type", "none"),
                "x-framing": "chunked"
                if "transfer-encoding" in request.headers
                else request.headers.get("content-length", "none"),
            },
        )

    @app.post("/pieces")
    async def pieces(request: Request) -> Response:
        return Response.json([len(piece) async for piece in request.body])

    @app.post("/form")
    async def form(request: Request) -> Response:
        fields = await request.form()
        return Response.json(fields.items())

    @app.get("/latin1")
    async def latin1(request: Request) -> Response:
        return Response("café".encode("latin-1"), content_type="text/plain; charset=ISO-8859-1")

    @app.get("/teapot")
    async def teapot(request: Request) -> Response:
        raise HTTPError(418, "short and stout")

    @app.get("/boom")
    async def boom(request: Request) -> Response:
        raise LookupError("the app's own bug")

    @app.get("/bye")
    async def bye(request: Request) -> Response:
        return Response.text("bye", headers={"connection": "close"})

    return app


@pytest.fixture
async def client() -> AsyncIterator[AppClient]:
    async with AppClient(make_app()) as client:
        yield client


async def test_get_round_trip_gives_status_headers_and_json(client: AppClient) -> None:
    response = await client.get("/", headers={"X-Test": "yes"}, params={"q": ["a", "b"]})
    assert response.status_code == response.status == 200
    assert response.reason == "OK"
    assert response.http_version == "1.1"
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    seen = response.json()
    assert seen["method"] == "GET"
    assert seen["target"] == "/?q=a&q=b"
    assert seen["x-test"] == "yes"
    assert seen["q"] == ["a", "b"]
    assert seen["host"] == "testserver"
    assert seen["scheme"] == "http"


async def test_every_method_reaches_the_app(client: AppClient) -> None:
    for call, method in [
        (client.delete, "DELETE"),
        (client.put, "PUT"),
        (client.patch, "PATCH"),
        (client.options, "OPTIONS"),
    ]:
        assert (await call("/")).json()["method"] == method
    assert (await client.request("PURGE", "/")).json()["method"] == "PURGE"


async def test_head_has_the_headers_and_no_body(client: AppClient) -> None:
    response = await client.head("/")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


async def test_each_request_gets_its_own_connection_with_its_own_client_port(
    client: AppClient,
) -> None:
    first = (await client.get("/")).json()
    second = (await client.get("/")).json()
    assert first["client"][0] == "127.0.0.1"
    assert first["client"][1] != second["client"][1]
    assert first["server"] == ["127.0.0.1", 80]


async def test_base_url_sets_host_and_https_scheme() -> None:
    async with AppClient(make_app(), base_url="https://example.test:8443") as client:
        seen = (await client.get("/")).json()
    assert seen["host"] == "example.test:8443"
    assert seen["scheme"] == "https"


async def test_absolute_url_sets_the_host_header(client: AppClient) -> None:
    seen = (await client.get("http://other.test/?q=1")).json()
    assert seen["host"] == "other.test"
    assert seen["target"] == "/?q=1"


def test_base_url_must_be_http_or_https() -> None:
    with pytest.raises(ValueError, match="base_url"):
        AppClient(make_app(), base_url="ftp://x")


async def test_json_body_is_sent_with_its_content_type(client: AppClient) -> None:
    response = await client.post("/echo", json={"a": [1, 2]})
    assert response.json() == {"a": [1, 2]}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-framing"] == str(len(response.content))


async def test_text_content_is_sent_as_utf8_with_a_length(client: AppClient) -> None:
    response = await client.post("/echo", content="né", headers={"content-type": "text/plain"})
    assert response.content == "né".encode()
    assert response.headers["x-framing"] == "3"


async def test_form_data_is_url_encoded(client: AppClient) -> None:
    response = await client.post("/form", data={"name": "a b", "tag": ["x", "y"]})
    assert response.json() == [["name", "a b"], ["tag", "x"], ["tag", "y"]]


async def test_giving_two_bodies_is_an_error(client: AppClient) -> None:
    with pytest.raises(TypeError):
        await client.post("/echo", json=1, content=b"1")


async def test_iterable_bodies_are_sent_chunked_piece_by_piece(client: AppClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"ab", b"", b"cde"):
            yield piece
            await trio.lowlevel.checkpoint()

    response = await client.post("/echo", content=chunks())
    assert response.content == b"abcde"
    assert response.headers["x-framing"] == "chunked"

    def sync_chunks() -> Iterator[bytes]:
        yield b"xy"
        yield b"z"

    response = await client.post("/echo", content=sync_chunks())
    assert response.content == b"xyz"


async def test_the_app_reads_a_streamed_upload_as_it_arrives() -> None:
    """The second piece is produced only after the app has received the first."""
    got_first = trio.Event()
    router = Router()

    @router.post("/up")
    async def up(request: Request) -> Response:
        seen = []
        async for piece in request.body:
            seen.append(piece)
            got_first.set()
        return Response.json([p.decode() for p in seen])

    async def chunks() -> AsyncIterator[bytes]:
        yield b"one"
        await got_first.wait()
        yield b"two"

    async with AppClient(router) as client:
        response = await client.post("/up", content=chunks())
    assert response.json() == ["one", "two"]


async def test_text_uses_the_declared_charset(client: AppClient) -> None:
    response = await client.get("/latin1")
    assert response.charset == "iso8859-1"
    assert response.text == "café"


async def test_http_errors_are_ordinary_responses(client: AppClient) -> None:
    response = await client.get("/teapot")
    assert response.status_code == 418
    assert "short and stout" in response.text


async def test_a_handler_exception_is_raised_in_the_test(
    client: AppClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL, "trio_upgrade"), pytest.raises(LookupError):
        await client.get("/boom")


async def test_without_raise_server_exceptions_the_500_is_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with AppClient(make_app(), raise_server_exceptions=False) as client:
        with caplog.at_level(logging.CRITICAL, "trio_upgrade"):
            response = await client.get("/boom")
    assert response.status_code == 500


async def test_unknown_path_is_404(client: AppClient) -> None:
    assert (await client.get("/nowhere")).status_code == 404


# Streaming ---------------------------------------------------------------------


async def test_streamed_response_arrives_chunk_by_chunk() -> None:
    """The app sends its second chunk only after the test has received the first."""
    received_first = trio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first"
        await received_first.wait()
        yield b"second"

    router = Router()

    @router.get("/big")
    async def big(request: Request) -> Response:
        return Response(body())

    async with AppClient(router) as client, client.stream("GET", "/big") as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert not response.is_stream_consumed
        with pytest.raises(RuntimeError, match="not read yet"):
            _ = response.content
        chunks = []
        async for chunk in response.iter_bytes():
            chunks.append(chunk)
            received_first.set()
        assert chunks == [b"first", b"second"]
        assert response.content == b"firstsecond"
        assert response.is_stream_consumed


async def test_aread_after_a_partial_iteration_returns_the_whole_body() -> None:
    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield b"%d" % i
            await trio.lowlevel.checkpoint()

    async def handler(request: Request) -> Response:
        return Response(body())

    async with AppClient(handler) as client, client.stream("GET", "/") as response:
        async for chunk in response.iter_bytes():
            assert chunk == b"0"
            break
        assert await response.aread() == b"012"
        assert [c async for c in response.iter_bytes()] == [b"012"]


async def test_leaving_a_stream_early_closes_the_connection_and_ends_the_body(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The app's endless body iterator is closed once the client goes away."""
    closed = trio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await trio.sleep(1)
        finally:
            closed.set()

    async def handler(request: Request) -> Response:
        return Response(endless())

    async with AppClient(handler) as client:
        async with client.stream("GET", "/") as response:
            async for chunk in response.iter_bytes():
                assert chunk == b"tick"
                break
        with trio.fail_after(5):
            await closed.wait()


async def test_a_body_failing_midway_is_a_server_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise OSError("disk gone")

    async def handler(request: Request) -> Response:
        return Response(broken())

    async with AppClient(handler) as client:
        with (
            caplog.at_level(logging.CRITICAL, "trio_upgrade"),
            pytest.raises(ServerDisconnected, match="before the response was complete"),
        ):
            await client.get("/")


async def test_an_early_answer_stops_the_upload(autojump_clock: trio.testing.MockClock) -> None:
    """A handler that refuses without reading gets its answer through; the rest is not sent."""
    sent: list[int] = []

    async def upload() -> AsyncIterator[bytes]:
        for i in range(100):
            sent.append(i)
            yield b"x" * 1000
            await trio.sleep(1)

    async def handler(request: Request) -> Response:
        return Response.text("no thanks", status=401)

    async with AppClient(handler) as client:
        response = await client.post("/", content=upload())
    assert response.status_code == 401
    assert response.text == "no thanks"
    assert len(sent) < 100


# Keep-alive and timeouts ----------------------------------------------------------


async def test_connect_keeps_one_connection_for_several_requests(client: AppClient) -> None:
    async with client.connect() as conn:
        first = (await conn.get("/")).json()
        second = (await conn.request("POST", "/echo", content=b"hi")).content
        third = (await conn.get("/")).json()
    assert second == b"hi"
    assert first["client"] == third["client"] == list(conn.client_address)


async def test_after_connection_close_the_connection_cannot_be_reused(
    client: AppClient,
) -> None:
    async with client.connect() as conn:
        response = await conn.get("/bye")
        assert response.headers["connection"] == "close"
        assert conn.closed
        with pytest.raises(ServerDisconnected):
            await conn.get("/")


async def test_max_requests_per_connection_closes_after_the_last() -> None:
    config = HTTPConfig(max_requests_per_connection=2)
    async with AppClient(make_app(), config=config) as client, client.connect() as conn:
        assert "connection" not in (await conn.get("/")).headers
        assert (await conn.get("/")).headers["connection"] == "close"
        with pytest.raises(ServerDisconnected):
            await conn.get("/")


async def test_idle_keepalive_connection_closes_after_keepalive_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = HTTPConfig(keepalive_timeout=30, header_timeout=60)
    async with AppClient(make_app(), config=config) as client, client.connect() as conn:
        await conn.get("/")
        start = trio.current_time()
        assert await conn.wait_closed() == b""
        assert trio.current_time() - start == pytest.approx(30)
        assert conn.closed


async def test_a_slow_request_head_gets_408_after_header_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = HTTPConfig(header_timeout=7)
    async with AppClient(make_app(), config=config) as client, client.connect() as conn:
        await conn.raw_stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = await conn.wait_closed()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert trio.current_time() == pytest.approx(7)


async def test_a_stalled_upload_gets_408_after_body_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"start"
        await trio.sleep_forever()

    router = Router()

    @router.post("/")
    async def read_all(request: Request) -> Response:
        return Response(await request.read())

    async with AppClient(router, config=HTTPConfig(body_timeout=12)) as client:
        response = await client.post("/", content=stalls())
    assert response.status_code == 408
    assert trio.current_time() == pytest.approx(12)


# Shutdown -------------------------------------------------------------------------


async def test_shutdown_answers_the_request_in_flight_with_connection_close() -> None:
    entered = trio.Event()
    release = trio.Event()
    router = Router()

    @router.get("/slow")
    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response.text("done")

    responses = []
    async with AppClient(router) as client:

        async def fetch() -> None:
            responses.append(await client.get("/slow"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            await entered.wait()
            client.begin_shutdown()
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(ConnectionRefusedError):
                await client.get("/slow")
            release.set()
    assert responses[0].text == "done"
    assert responses[0].headers["connection"] == "close"


async def test_shutdown_closes_idle_keepalive_connections_at_once(client: AppClient) -> None:
    async with client.connect() as conn:
        await conn.get("/")
        await client.shutdown()
        assert await conn.wait_closed() == b""
    assert client.server.connection_count == 0


async def test_a_request_still_running_after_the_grace_period_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hangs(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with AppClient(hangs, grace_period=3) as client:
        async with trio.open_nursery() as nursery:

            async def fetch() -> None:
                with pytest.raises(ServerDisconnected):
                    await client.get("/")

            nursery.start_soon(fetch)
            await trio.testing.wait_all_tasks_blocked()
            await client.shutdown()
        assert trio.current_time() == pytest.approx(3)


# The client itself ----------------------------------------------------------------


async def test_a_client_not_entered_refuses_to_connect() -> None:
    client = AppClient(make_app())
    with pytest.raises(RuntimeError, match="not running"):
        await client.get("/")
    with pytest.raises(RuntimeError, match="not running"):
        client.begin_shutdown()


async def test_an_error_in_the_block_propagates_as_itself() -> None:
    with pytest.raises(KeyError):
        async with AppClient(make_app()) as client, client.connect():
            raise KeyError("from the test")


async def test_a_connection_serves_one_request_at_a_time(client: AppClient) -> None:
    async with client.connect() as conn, conn.stream("GET", "/") as response:
        with pytest.raises(RuntimeError, match="busy"):
            await conn.get("/")
        await response.aread()


def test_pytest_does_not_collect_the_client_class() -> None:
    assert AppClient.__test__ is False


async def test_an_interim_100_continue_is_skipped(autojump_clock: trio.testing.MockClock) -> None:
    """The app reads the body of an `Expect: 100-continue` request: 100 first, then the answer."""

    async def later() -> AsyncIterator[bytes]:
        await trio.sleep(1)  # the server sends its 100 meanwhile
        yield b"payload"

    async with AppClient(make_app()) as client:
        response = await client.post("/echo", content=later(), headers={"expect": "100-continue"})
    assert response.status_code == 200
    assert response.content == b"payload"


async def test_a_failing_upload_iterator_raises_its_own_error(client: AppClient) -> None:
    async def fails() -> AsyncIterator[bytes]:
        yield b"start"
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await client.post("/echo", content=fails())


async def test_bytearray_content_and_an_unknown_charset(client: AppClient) -> None:
    response = await client.post(
        "/echo", content=bytearray(b"abc"), headers={"content-type": "text/plain; charset=nope"}
    )
    assert response.content == b"abc"
    assert response.charset == "utf-8"
    assert response.text == "abc"


async def test_upgraded_stream_needs_a_101(client: AppClient) -> None:
    async with client.connect() as conn:
        await conn.get("/")
        with pytest.raises(RuntimeError, match="not switched"):
            conn.upgraded_stream()


async def test_a_client_can_be_entered_once() -> None:
    client = AppClient(make_app())
    async with client:
        with pytest.raises(RuntimeError, match="only once"):
            await client.__aenter__()
