"""Raw ASGI apps that misbehave, stream, or wait: clear answers, bounded memory, the
server keeps serving. Real sockets: what a client sees on the wire is the point."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio
from _asgi_helpers import base_url, raw_exchange, serving

from trio_upgrade.asgi import Disconnected

GET = b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"
OK_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain")],
}


async def ok_body(send: Any, body: bytes = b"ok") -> None:
    await send(OK_START)
    await send({"type": "http.response.body", "body": body})


def routes(table: dict[str, Any]) -> Any:
    """A raw ASGI app dispatching on the path; '/ok' always answers 200."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")
        handler = table.get(scope["path"])
        if handler is None:
            await ok_body(send)
            return
        await handler(scope, receive, send)

    return app


async def fails_before_start(scope: Any, receive: Any, send: Any) -> None:
    raise ValueError("boom before the response")


async def fails_after_start(scope: Any, receive: Any, send: Any) -> None:
    await send(OK_START)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise ValueError("boom while streaming")


async def returns_without_response(scope: Any, receive: Any, send: Any) -> None:
    await trio.lowlevel.checkpoint()


async def returns_mid_stream(scope: Any, receive: Any, send: Any) -> None:
    await send(OK_START)
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})


async def body_before_start(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.body", "body": b"no head"})


async def start_twice(scope: Any, receive: Any, send: Any) -> None:
    await send(OK_START)
    await send(OK_START)


async def bad_status(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 101})


APP = routes(
    {
        "/before": fails_before_start,
        "/after": fails_after_start,
        "/nothing": returns_without_response,
        "/midstream": returns_mid_stream,
        "/body-first": body_before_start,
        "/start-twice": start_twice,
        "/bad-status": bad_status,
    }
)


@pytest.fixture
async def server() -> Any:
    async with serving(APP) as server:
        yield server


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/before", "boom before the response"),
        ("/nothing", "returned without sending a response"),
        ("/body-first", "expected 'http.response.start', the app sent 'http.response.body'"),
        ("/start-twice", "expected 'http.response.body', the app sent 'http.response.start'"),
        ("/bad-status", "invalid status 101"),
    ],
)
async def test_failure_before_the_response_is_a_500_and_a_logged_reason(
    server: Any, caplog: pytest.LogCaptureFixture, path: str, logged: str
) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        response = await client.get(path)
        assert response.status_code == 500
        # The same connection, and the server, go on serving.
        assert (await client.get("/ok")).text == "ok"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        logged in r.getMessage() or (r.exc_info and logged in str(r.exc_info[1])) for r in errors
    ), [r.getMessage() for r in errors]
    if path == "/before":
        assert any(r.exc_info is not None for r in errors)  # the traceback


@pytest.mark.parametrize("path", ["/after", "/midstream"])
async def test_failure_after_the_start_closes_the_connection_without_a_final_chunk(
    server: Any, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    request = f"GET {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode()
    received = await raw_exchange(server, request + GET)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding: chunked" in head.lower()
    # The chunk that was sent, then EOF: no terminating 0-chunk (the client
    # cannot mistake it for a complete body) and no answer to the second request.
    assert b"partial" in body
    assert not body.endswith(b"0\r\n\r\n")
    assert received.count(b"HTTP/1.1") == 1
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


async def test_a_failing_app_never_reaches_other_connections(server: Any) -> None:
    async with httpx.AsyncClient(base_url=base_url(server)) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(client.get, "/before")
                nursery.start_soon(raw_exchange, server, b"GET /after HTTP/1.1\r\nhost: t\r\n\r\n")
        assert (await client.get("/ok")).status_code == 200


async def test_request_body_arrives_in_messages_with_more_body() -> None:
    messages: list[tuple[int, bool]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            messages.append((len(message["body"]), message["more_body"]))
            if not message["more_body"]:
                break
        await ok_body(send, b"%d" % sum(n for n, _ in messages))

    def chunks() -> Any:
        for _ in range(8):
            yield b"x" * 100_000

    def post(url: str) -> httpx.Response:
        with httpx.Client(base_url=url) as client:
            return client.post("/", content=chunks())

    async with serving(app) as server:
        response = await trio.to_thread.run_sync(post, base_url(server))
    assert response.text == "800000"
    assert len(messages) > 1
    assert all(more for _, more in messages[:-1]) and not messages[-1][1]


async def test_body_past_the_limit_is_a_413() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        while (await receive()).get("more_body"):
            pass
        await ok_body(send)

    from trio_upgrade.http import HTTPConfig

    async with (
        serving(app, config=HTTPConfig(max_body_size=1000)) as server,
        httpx.AsyncClient(base_url=base_url(server)) as client,
    ):
        response = await client.post("/", content=b"x" * 5000)
    assert response.status_code == 413


async def test_a_slow_client_slows_the_apps_send() -> None:
    """Backpressure: with the client not reading, the app's send blocks after a bounded
    number of chunks (socket buffers plus two), instead of queueing the whole body."""
    sent = 0
    chunk = b"x" * (1 << 20)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send(OK_START)
        try:
            for _ in range(1024):  # 1 GiB if nothing pushed back
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += 1
            await send({"type": "http.response.body"})
        except Disconnected:
            pass

    async with serving(app) as server:
        host, port = server.addresses[0]  # type: ignore[misc]
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(GET)
            # Wait until the app is stuck in send (progress stops).
            last = -1
            while sent != last:
                last = sent
                await trio.sleep(0.3)
            assert sent < 64
            stalled_at = sent
            # Reading lets it go on.
            for _ in range(20):
                await stream.receive_some(1 << 20)
            await trio.sleep(0.3)
            assert sent > stalled_at


async def test_disconnect_reaches_an_app_waiting_in_a_long_response() -> None:
    got: list[Any] = []
    done = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send(OK_START)
        await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        got.append(await receive())  # the empty request body
        got.append(await receive())  # waits: the response is not over
        done.set()

    async with serving(app) as server:
        host, port = server.addresses[0]  # type: ignore[misc]
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(GET)
        data = b""
        while b"tick" not in data:
            data += await stream.receive_some(1024)
        await stream.aclose()
        with trio.fail_after(10):
            await done.wait()
    assert got == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_send_after_the_client_left_raises_an_oserror() -> None:
    raised: list[BaseException] = []
    done = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send(OK_START)
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                await trio.sleep(0.01)
        except OSError as exc:
            raised.append(exc)
        finally:
            done.set()

    async with serving(app) as server:
        host, port = server.addresses[0]  # type: ignore[misc]
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(GET)
        await stream.receive_some(1024)
        await stream.aclose()
        with trio.fail_after(10):
            await done.wait()
    assert len(raised) == 1 and isinstance(raised[0], Disconnected)


async def test_receive_after_the_response_is_a_disconnect_and_background_work_finishes() -> None:
    after: list[Any] = []
    finished = trio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await ok_body(send)
        after.append(await receive())
        finished.set()

    async with serving(app) as server:
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/")).text == "ok"
            assert (await client.get("/")).text == "ok"  # same connection, next request
        with trio.fail_after(10):
            await finished.wait()
    assert after[0] == {"type": "http.disconnect"}


async def test_pipelined_requests_are_answered_in_order_around_a_waiting_app() -> None:
    """The disconnect watch only peeks: a pipelined request is not lost."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        if scope["path"] == "/slow":
            await send(OK_START)
            await send({"type": "http.response.body", "body": b"slow", "more_body": True})
            async with trio.open_nursery() as nursery:

                async def finish() -> None:
                    await trio.sleep(0.2)
                    await send({"type": "http.response.body", "body": b"-done"})

                nursery.start_soon(finish)
                message = await receive()
                assert message["type"] == "http.request"
                message = await receive()  # the watch sees the pipelined bytes, or the end
                assert message == {"type": "http.disconnect"}
            return
        await ok_body(send, b"fast")

    async with serving(app) as server:
        received = await raw_exchange(
            server,
            b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n"
            b"GET /fast HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        )
    assert received.count(b"HTTP/1.1 200") == 2
    assert received.index(b"slow") < received.index(b"-done") < received.index(b"fast")


async def test_full_duplex_echo_streams_the_body_back_while_reading_it() -> None:
    """The app reads the request body and streams the response at the same time."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await send(OK_START)
        while True:
            message = await receive()
            await send(
                {
                    "type": "http.response.body",
                    "body": message["body"],
                    "more_body": message["more_body"],
                }
            )
            if not message["more_body"]:
                return

    payload = bytes(range(256)) * 4096  # 1 MiB

    def post(url: str) -> bytes:
        def pieces() -> Any:
            for start in range(0, len(payload), 65536):
                yield payload[start : start + 65536]

        with httpx.Client(base_url=url) as client:
            return client.post("/", content=pieces()).content

    async with serving(app) as server:
        echoed = await trio.to_thread.run_sync(post, base_url(server))
    assert echoed == payload


async def test_expect_100_continue_is_answered_when_the_app_reads_the_body() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        body = b""
        while True:
            message = await receive()
            body += message["body"]
            if not message["more_body"]:
                break
        await ok_body(send, b"got " + body)

    async with serving(app) as server:
        host, port = server.addresses[0]  # type: ignore[misc]
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(
                b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n"
                b"expect: 100-continue\r\nconnection: close\r\n\r\n"
            )
            interim = await stream.receive_some(1024)
            assert interim.startswith(b"HTTP/1.1 100 ")
            await stream.send_all(b"hello")
            rest = b""
            while data := await stream.receive_some(1024):
                rest += data
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"got hello")
