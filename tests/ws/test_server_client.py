"""serve_websocket and open_websocket over real loopback sockets (TCP, IPv6, Unix, TLS)."""

from __future__ import annotations

import logging
import re
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
from _wire import has_ipv6_loopback, receive_until_eof

from trio_upgrade.core import Observer, Server
from trio_upgrade.ws import (
    Accept,
    ConnectionClosedOK,
    HandshakeError,
    HandshakeRejected,
    HandshakeRequest,
    Reject,
    WebSocket,
    WebSocketConfig,
    open_websocket,
    serve_websocket,
)

# Keepalive off; compression stays at its default (on), unlike _wire.QUIET, so
# the real-socket tests run the configuration users get.
NO_PINGS = WebSocketConfig(ping_interval=None)


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@asynccontextmanager
async def running(handler: Any = echo, *binds: str, **kwargs: Any) -> AsyncIterator[Server]:
    kwargs.setdefault("config", NO_PINGS)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, *(binds or ("127.0.0.1:0",)), task_status=task_status, **kwargs
            )
        )
        yield server
        nursery.cancel_scope.cancel()


def url_of(server: Server, path: str = "/", scheme: str = "ws") -> str:
    host, port = server.addresses[0]  # type: ignore[misc]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{path}"


async def test_echo_over_tcp_with_compression_by_default() -> None:
    async with running(config=WebSocketConfig()) as server:
        async with open_websocket(url_of(server, "/echo?x=1")) as ws:
            assert ws.extensions == ("permessage-deflate",)
            await ws.send("text " * 1000)
            assert await ws.receive() == "text " * 1000
            await ws.send(b"\x00" * 100_000)
            assert await ws.receive() == b"\x00" * 100_000
            assert ws.request.path == "/echo?x=1"
        assert ws.close_code == 1000


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
async def test_echo_over_ipv6() -> None:
    # Only a machine that cannot bind ::1 skips; a connection error fails.
    async with running(echo, "[::1]:0") as server, open_websocket(url_of(server)) as ws:
        await ws.send("v6")
        assert await ws.receive() == "v6"


async def test_echo_over_a_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with (
        running(echo, f"unix:{path}") as server,
        open_websocket("ws://localhost/u", unix_socket=path) as ws,
    ):
        assert server.addresses == [path]
        await ws.send(b"unix")
        assert await ws.receive() == b"unix"


async def test_echo_over_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    async with running(echo, "127.0.0.1:0", ssl_context=server_ssl_context) as server:
        url = url_of(server, scheme="wss").replace("127.0.0.1", "localhost")
        async with open_websocket(url, ssl_context=client_ssl_context) as ws:
            await ws.send("secret")
            assert await ws.receive() == "secret"


async def test_handler_sees_the_handshake_request() -> None:
    seen: list[HandshakeRequest] = []

    async def handler(ws: WebSocket) -> None:
        seen.append(ws.request)
        await ws.send(ws.subprotocol or "-")

    async with running(handler) as server:
        address = server.addresses[0]
        async with open_websocket(url_of(server, "/p?q=2"), headers=[("X-Token", "abc")]) as ws:
            assert await ws.receive() == "-"
    (request,) = seen
    assert request.path == "/p?q=2"
    assert request.get("x-token") == "abc"
    assert isinstance(request.client, tuple) and request.client[0] == "127.0.0.1"
    assert request.server == address


async def test_hook_accepts_with_a_subprotocol_and_extra_headers() -> None:
    async def hook(request: HandshakeRequest) -> Accept | Reject:
        assert request.subprotocols == ["v1", "v2"]
        return Accept(subprotocol="v2", headers=[(b"x-hello", b"yes")])

    async def handler(ws: WebSocket) -> None:
        await ws.send(ws.subprotocol or "-")

    async with (
        running(handler, handshake=hook) as server,
        open_websocket(url_of(server), subprotocols=["v1", "v2"]) as ws,
    ):
        assert ws.subprotocol == "v2"
        assert await ws.receive() == "v2"


async def test_hook_rejection_reaches_the_client_with_status_headers_and_body() -> None:
    async def hook(request: HandshakeRequest) -> Accept | Reject:
        return Reject(401, [(b"www-authenticate", b"Bearer")], b"who are you?")

    async with running(echo, handshake=hook) as server:
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket(url_of(server)):
                pass  # pragma: no cover
    assert info.value.status == 401
    assert (b"www-authenticate", b"Bearer") in info.value.headers
    assert info.value.body == b"who are you?"


async def raw_exchange(server: Server, request: bytes) -> bytes:
    host, port = server.addresses[0]  # type: ignore[misc]
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        return await receive_until_eof(stream)


async def test_plain_get_gets_400_and_wrong_version_426() -> None:
    async with running() as server:
        plain = await raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 400 ")
        assert b"Upgrade" in plain
        old = await raw_exchange(
            server,
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        assert old.startswith(b"HTTP/1.1 426 ")
        assert b"sec-websocket-version: 13\r\n" in old


async def test_malformed_and_oversized_heads_are_refused() -> None:
    async with running(max_head_size=1024) as server:
        garbage = await raw_exchange(server, b"\x16\x03\x01 not http\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        huge = await raw_exchange(server, b"GET / HTTP/1.1\r\nX: " + b"a" * 4000 + b"\r\n\r\n")
        assert huge.startswith(b"HTTP/1.1 431 ")


async def test_silent_connection_is_dropped_after_the_handshake_timeout() -> None:
    async with running(handshake_timeout=0.05) as server:
        assert await raw_exchange(server, b"") == b""


async def test_server_shutdown_closes_sessions_with_1001_and_waits_for_handlers() -> None:
    finished = trio.Event()

    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)
        finished.set()

    async with running(handler) as server, open_websocket(url_of(server)) as ws:
        await ws.send("hi")
        assert await ws.receive() == "hi"
        await server.aclose()
        with pytest.raises(ConnectionClosedOK) as info:
            await ws.receive()
        assert info.value.code == 1001
        assert finished.is_set()


async def test_client_reports_unreachable_servers_and_bad_urls() -> None:
    with pytest.raises(HandshakeError, match="not a WebSocket URL"):
        async with open_websocket("http://127.0.0.1/"):
            pass  # pragma: no cover
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(HandshakeError, match="cannot connect"):
        async with open_websocket(f"ws://127.0.0.1:{port}/"):
            pass  # pragma: no cover


async def test_client_times_out_on_a_server_that_never_answers() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def mute(stream: trio.abc.Stream) -> None:
            await trio.sleep_forever()

        nursery.start_soon(trio.serve_listeners, mute, listeners)
        with pytest.raises(HandshakeError, match="timed out"):
            async with open_websocket(f"ws://127.0.0.1:{port}/", connect_timeout=0.05):
                pass  # pragma: no cover
        nursery.cancel_scope.cancel()


async def test_client_rejects_a_non_websocket_server_response() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def http(stream: trio.abc.Stream) -> None:
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )

        nursery.start_soon(trio.serve_listeners, http, listeners)
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket(f"ws://127.0.0.1:{port}/"):
                pass  # pragma: no cover
        assert (info.value.status, info.value.body) == (200, b"hello")
        nursery.cancel_scope.cancel()


async def test_handler_exception_closes_with_1011_and_server_keeps_serving() -> None:
    async def handler(ws: WebSocket) -> None:
        if await ws.receive() == "boom":
            raise RuntimeError("handler bug")
        await ws.send("fine")

    async with running(handler) as server:
        async with open_websocket(url_of(server)) as ws:
            await ws.send("boom")
            with pytest.raises(Exception) as info:
                await ws.receive()
            assert getattr(info.value, "code", None) == 1011
        async with open_websocket(url_of(server)) as ws:
            await ws.send("ok")
            assert await ws.receive() == "fine"


async def test_large_messages_within_configured_limits() -> None:
    config = replace(NO_PINGS, max_message_size=8 << 20)
    async with (
        running(config=config) as server,
        open_websocket(url_of(server), config=config) as ws,
    ):
        payload = bytes(range(256)) * 16384  # 4 MiB
        await ws.send(payload)
        assert await ws.receive() == payload


HANDSHAKE_HEAD = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def test_a_head_with_too_many_fields_gets_431_and_the_connection_closes() -> None:
    async with running(max_header_fields=10) as server:
        extra = b"".join(b"X-%d: v\r\n" % i for i in range(6))
        # raw_exchange reads to EOF: the server closed after its answer.
        answer = await raw_exchange(server, HANDSHAKE_HEAD + extra + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert b"connection: close\r\n" in answer
        # Within the limit, the same handshake opens a session.
        five = b"".join(b"X-%d: v\r\n" % i for i in range(5))
        ok = await raw_exchange(server, HANDSHAKE_HEAD + five + b"\r\n" + b"\x88\x80abcd")
        assert ok.startswith(b"HTTP/1.1 101 ")


async def test_the_default_field_cap_is_100() -> None:
    async with running() as server:
        extra = b"".join(b"X-%d: v\r\n" % i for i in range(100))
        answer = await raw_exchange(server, HANDSHAKE_HEAD + extra + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 ")


async def test_a_handshake_that_frames_a_body_is_refused() -> None:
    async with running() as server:
        for framing in (b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"):
            answer = await raw_exchange(server, HANDSHAKE_HEAD + framing + b"\r\nhello")
            assert answer.startswith(b"HTTP/1.1 400 "), answer


async def test_a_hook_rejection_with_an_unwritable_header_becomes_a_500() -> None:
    async def hook(request: HandshakeRequest) -> Accept | Reject:
        return Reject(403, [(b"x-a", b"1\r\nset-cookie: evil=1")], b"no")

    async with running(echo, handshake=hook) as server:
        answer = await raw_exchange(server, HANDSHAKE_HEAD + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 500 ")
        assert b"evil" not in answer


async def test_client_reads_a_chunked_refusal_sent_in_pieces_with_repeated_fields() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def refuse(stream: trio.abc.Stream) -> None:
            await stream.receive_some(65536)
            for piece in (
                b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n",
                b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n7\r\nnot yo",
                b"u\r\n1;ext=1\r\n!\r\n0\r\n\r\n",
            ):
                await stream.send_all(piece)
                await trio.sleep(0.01)
            await trio.sleep_forever()  # the body's framing, not EOF, ends it

        nursery.start_soon(trio.serve_listeners, refuse, listeners)
        with pytest.raises(HandshakeRejected) as info:
            async with open_websocket(f"ws://127.0.0.1:{port}/"):
                pass  # pragma: no cover
        assert info.value.status == 403
        assert info.value.body == b"not you!"
        assert [v for n, v in info.value.headers if n == b"set-cookie"] == [b"a=1", b"b=2"]
        nursery.cancel_scope.cancel()


async def test_client_refuses_a_refusal_whose_framing_is_not_chunked_alone() -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]

        async def refuse(stream: trio.abc.Stream) -> None:
            await stream.receive_some(65536)
            await stream.send_all(
                b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: xchunked\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n"
            )

        nursery.start_soon(trio.serve_listeners, refuse, listeners)
        with pytest.raises(HandshakeError, match="malformed handshake response") as info:
            async with open_websocket(f"ws://127.0.0.1:{port}/"):
                pass  # pragma: no cover
        assert not isinstance(info.value, HandshakeRejected)
        nursery.cancel_scope.cancel()


async def test_client_refuses_an_unwritable_header_before_connecting() -> None:
    with pytest.raises(ValueError):
        async with open_websocket("ws://127.0.0.1:9/", headers=[("x-a", "1\r\nx-b: 2")]):
            pass  # pragma: no cover


class _Counting(Observer):
    """An observer that writes down what it is told."""

    __slots__ = ("done", "events")

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.done = trio.Event()

    def request_done(self, method: str, status: int, seconds: float, upgrade: str | None) -> None:
        self.events.append(("request", method, status, upgrade))
        self.done.set()

    def session_opened(self) -> None:
        self.events.append(("opened",))

    def session_closed(self) -> None:
        self.events.append(("closed",))

    def message_received(self, size: int) -> None:
        self.events.append(("in", size))

    def message_sent(self, size: int) -> None:
        self.events.append(("out", size))


async def test_sessions_reach_the_access_log_and_the_observer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    observer = _Counting()
    caplog.set_level(logging.INFO, logger="trio_upgrade.access")
    async with running(echo, access_log=True, observer=observer) as server:
        async with open_websocket(url_of(server, "/room?x=1"), config=NO_PINGS) as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
            await ws.aclose(4001)
        with trio.fail_after(10):
            await observer.done.wait()  # told after the line was written
    (line,) = [r.getMessage() for r in caplog.records if r.name == "trio_upgrade.access"]
    assert re.fullmatch(
        r'127\.0\.0\.1:\d+ "GET /room\?x=1 HTTP/1\.1" 101 - [\d.]+ms close 4001', line
    )
    assert observer.events == [
        ("opened",),
        ("in", 2),
        ("out", 2),
        ("closed",),
        ("request", "GET", 101, "websocket"),
    ]


async def test_the_observer_counts_every_way_of_sending_and_receiving() -> None:
    async def handler(ws: WebSocket) -> None:
        chunks = [chunk async for chunk in ws.receive_chunks()]  # one message, in chunks
        await ws.send_fragments(["é", "tê"])  # 2 + 3 bytes in UTF-8
        await ws.send_json({"n": len(chunks)})  # {"n":1}
        assert await ws.receive_json() == [1]

    observer = _Counting()
    async with running(handler, observer=observer) as server:
        async with open_websocket(url_of(server), config=NO_PINGS) as ws:
            await ws.send(b"x" * 70_000)
            assert await ws.receive() == "étê"
            assert await ws.receive() == '{"n":1}'
            await ws.send("[1]")
        with trio.fail_after(10):
            await observer.done.wait()
    assert observer.events[1:-2] == [("in", 70_000), ("out", 5), ("out", 7), ("in", 3)]


async def test_no_access_log_unless_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_upgrade.access")
    async with running(echo) as server:
        async with open_websocket(url_of(server), config=NO_PINGS) as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
        await trio.sleep(0.1)
    assert not [r for r in caplog.records if r.name == "trio_upgrade.access"]
