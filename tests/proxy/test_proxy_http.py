"""Plain HTTP through the proxy: routing, streaming, headers, pooling, failures."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from _proxy_env import Env, start_proxy
from _proxy_helpers import Client, fetch, pattern, pattern_digest, read_request_head, start_raw

from trio_upgrade.http import Request, Response, Router
from trio_upgrade.proxy import Backend, Proxy, ProxyConfig

LONG = 600.0  # timeouts under test: far beyond any real wait; the clock jumps past them


async def jump_when_blocked(clock: trio.testing.MockClock, seconds: float) -> None:
    """Jump the ``manual_clock`` once every task waits (for a timeout, here)."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    clock.jump(seconds)


def seen(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    return data


def header(data: dict[str, Any], name: str) -> str | None:
    values = [v for k, v in data["headers"] if k == name]
    assert len(values) <= 1, values
    return values[0] if values else None


async def test_get_reaches_unix_and_tcp_backends_with_prefix_stripped(env: Env) -> None:
    a = await fetch(env.address, "GET", "/a/echo?x=1")
    b = await fetch(env.address, "GET", "/b/echo")
    assert (a.status, seen(a.body)["backend"], seen(a.body)["target"]) == (200, "a", "/echo?x=1")
    assert (b.status, seen(b.body)["backend"], seen(b.body)["target"]) == (200, "b", "/echo")


async def test_route_without_stripping_forwards_the_whole_path(env: Env) -> None:
    reply = await fetch(env.address, "GET", "/keep/a%20b?q=2")
    assert seen(reply.body)["target"] == "/keep/a%20b?q=2"
    assert header(seen(reply.body), "x-forwarded-prefix") is None


async def test_unmatched_path_is_404(env: Env) -> None:
    reply = await fetch(env.address, "GET", "/nowhere")
    assert reply.status == 404


async def test_longest_prefix_wins(nursery: trio.Nursery, env: Env) -> None:
    routes: dict[str, str | Backend] = {
        "/": env.proxy.routes[0].backend,
        "/x": "http://127.0.0.1:1",
    }
    proxy = Proxy(routes, config=ProxyConfig())
    proxy.add_route("/x/y", env.proxy.routes[-1].backend)
    async with proxy:
        address = await start_proxy(nursery, proxy)
        deep = await fetch(address, "GET", "/x/y/echo")
        root = await fetch(address, "GET", "/echo")
    assert seen(deep.body)["target"] == "/echo"
    assert root.status == 200


async def test_mounted_in_a_router_next_to_ordinary_routes(nursery: trio.Nursery, env: Env) -> None:
    app = Router()

    @app.get("/own")
    async def own(request: Request) -> Response:
        return Response.text("local\n")

    async with Proxy({"/api": env.proxy.routes[-1].backend}) as proxy:
        app.mount("/svc", proxy)
        address = await start_proxy(nursery, app)
        local = await fetch(address, "GET", "/own")
        remote = await fetch(address, "GET", "/svc/api/echo?z")
        missing = await fetch(address, "GET", "/svc/other")
    assert local.body == b"local\n"
    data = seen(remote.body)
    assert data["target"] == "/echo?z"
    assert header(data, "x-forwarded-prefix") == "/svc/api"
    assert missing.status == 404


async def test_hop_by_hop_headers_are_removed_on_both_legs(env: Env) -> None:
    request = await fetch(
        env.address,
        "GET",
        "/a/echo",
        headers=[
            ("connection", "keep-alive, x-hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("x-end", "kept"),
        ],
    )
    names = {k for k, _ in seen(request.body)["headers"]}
    assert names.isdisjoint({"x-hop", "keep-alive", "te", "proxy-connection", "upgrade"})
    assert "x-end" in names
    assert header(seen(request.body), "connection") in (None, "keep-alive")

    response = await fetch(env.address, "GET", "/a/hop")
    names_back = {k for k, _ in response.headers}
    assert names_back.isdisjoint({b"x-internal", b"keep-alive", b"proxy-connection"})
    assert response.header(b"x-end") == b"kept"
    assert response.header(b"date") is not None  # exactly one: the proxy's server adds it


async def test_x_forwarded_headers_are_added_and_forgeries_replaced(env: Env) -> None:
    reply = await fetch(
        env.address,
        "GET",
        "/a/echo",
        headers=[("host", "public.test:8443"), ("x-forwarded-for", "6.6.6.6")],
    )
    data = seen(reply.body)
    assert header(data, "x-forwarded-for") == "127.0.0.1"
    assert header(data, "x-forwarded-proto") == "http"
    assert header(data, "x-forwarded-host") == "public.test:8443"
    assert header(data, "x-forwarded-prefix") == "/a"
    assert header(data, "host") == "public.test:8443"


async def test_keep_alive_connections_to_the_backend_are_reused(env: Env) -> None:
    client = await Client.open(env.address)
    try:
        peers = {seen((await client.request("GET", "/b/echo")).body)["client"][1] for _ in range(3)}
    finally:
        await client.aclose()
    # Three requests (and more on other client connections) share one backend connection.
    other = await fetch(env.address, "GET", "/b/echo")
    peers.add(seen(other.body)["client"][1])
    assert len(peers) == 1
    stats = env.proxy.statistics()
    assert (stats.connections_opened, stats.connections_reused) == (1, 3)
    assert stats.idle_connections == 1


async def test_backend_connection_close_is_not_pooled(env: Env) -> None:
    reply = await fetch(env.address, "GET", "/a/close")
    assert reply.body == b"bye\n"
    assert reply.header(b"connection") is None
    assert env.proxy.statistics().idle_connections == 0


async def test_head_request_keeps_the_content_length(env: Env) -> None:
    reply = await fetch(env.address, "HEAD", "/a/stream?size=1000")
    assert (reply.status, reply.body, reply.header(b"content-length")) == (200, b"", b"1000")
    assert env.proxy.statistics().idle_connections == 1


@pytest.mark.parametrize("chunked", [False, True])
async def test_download_is_passed_through_byte_for_byte(env: Env, chunked: bool) -> None:
    size = 3 * 1024 * 1024 + 17
    query = "&chunked=1" if chunked else ""
    reply = await fetch(env.address, "GET", f"/a/stream?size={size}&chunk=50000{query}")
    assert reply.status == 200
    assert reply.body == pattern(0, size)
    assert reply.header(b"content-length") == (None if chunked else str(size).encode())
    assert reply.header(b"transfer-encoding") == (b"chunked" if chunked else None)
    assert env.proxy.statistics().idle_connections == 1


async def generate(size: int, counter: list[int] | None = None) -> AsyncIterator[bytes]:
    for offset in range(0, size, 65536):
        data = pattern(offset, min(65536, size - offset))
        if counter is not None:
            counter[0] += len(data)
        yield data


@pytest.mark.parametrize("chunked", [False, True])
async def test_upload_is_passed_through_byte_for_byte(env: Env, chunked: bool) -> None:
    size = 5 * 1024 * 1024 + 3
    headers = [] if chunked else [("content-length", str(size))]
    reply = await fetch(env.address, "POST", "/b/upload", headers=headers, body=generate(size))
    assert reply.status == 200
    assert seen(reply.body) == {"size": size, "sha256": pattern_digest(size)}


# Bounded memory: with the reader stopped, how far can the writer get ahead?
# Socket buffers on two hops (Unix + TCP loopback, autotuned) plus one chunk in
# the proxy — a few MiB; the stream is 256 MiB.
AHEAD_LIMIT = 24 * 1024 * 1024
BIG = 256 * 1024 * 1024


async def test_large_download_streams_in_bounded_memory(env: Env) -> None:
    client = await Client.open(env.address)
    try:
        await client.send_request("GET", f"/a/stream?size={BIG}")
        head = await client.read_head()
        assert head.status_code == 200
        chunks = client.body_chunks()
        received = 0
        checked = b""
        async for chunk in chunks:
            if received == 0:
                checked = chunk
            received += len(chunk)
            if received >= 1024 * 1024:
                break
        # The client stops reading: backpressure must stop the backend.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert env.state.produced - received < AHEAD_LIMIT
        async for chunk in chunks:
            received += len(chunk)
        assert received == BIG
        assert checked == pattern(0, len(checked))
    finally:
        await client.aclose()
    assert env.proxy.statistics().idle_connections == 1


async def test_large_upload_streams_in_bounded_memory(env: Env) -> None:
    sent = [0]
    reply: list[Any] = []

    async def upload() -> None:
        reply.append(
            await fetch(
                env.address,
                "POST",
                "/b/upload?pause=1048576",
                headers=[("content-length", str(BIG))],
                body=generate(BIG, sent),
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        # The backend stops reading after 1 MiB: backpressure must stop the client.
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert env.state.consumed >= 1024 * 1024
        assert sent[0] - env.state.consumed < AHEAD_LIMIT
        env.state.upload_gate.set()
    assert seen(reply[0].body) == {"size": BIG, "sha256": pattern_digest(BIG)}


async def test_client_leaving_mid_download_discards_the_backend_connection(env: Env) -> None:
    client = await Client.open(env.address)
    await client.send_request("GET", f"/a/stream?size={BIG}")
    assert (await client.read_head()).status_code == 200
    await client.stream.receive_some(65536)
    await client.aclose()
    with trio.fail_after(30):  # a hang guard, not a timing assertion
        await env.state.stream_ended.wait()
    assert env.state.produced < BIG
    assert env.proxy.statistics().idle_connections == 0
    # The next request works, on a new connection.
    assert (await fetch(env.address, "GET", "/a/echo")).status == 200
    assert env.proxy.statistics().connections_opened == 2


async def test_backend_answering_before_reading_the_body(env: Env) -> None:
    size = 8 * 1024 * 1024
    client = await Client.open(env.address)
    try:
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                # The proxy may close once it has answered.
                with contextlib.suppress(trio.BrokenResourceError):
                    await client.send_request(
                        "POST",
                        "/a/reject",
                        headers=[("content-length", str(size))],
                        body=generate(size),
                    )

            nursery.start_soon(send)
            head = await client.read_head()
            body = b"".join([c async for c in client.body_chunks()])
            nursery.cancel_scope.cancel()
    finally:
        await client.aclose()
    assert (head.status_code, body) == (413, b"too large\n")
    assert env.proxy.statistics().idle_connections == 0


async def test_unreachable_backend_is_502_with_a_log_line(
    nursery: trio.Nursery, sock_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    proxy = Proxy({"/unix": f"unix:{sock_dir}/missing.sock", "/tcp": f"http://127.0.0.1:{port}"})
    async with proxy:
        address = await start_proxy(nursery, proxy)
        with caplog.at_level(logging.WARNING, logger="trio_upgrade"):
            unix = await fetch(address, "GET", "/unix/x")
            tcp = await fetch(address, "GET", "/tcp/x")
    assert (unix.status, unix.body) == (502, b"502 Bad Gateway\n")
    assert (tcp.status, tcp.body) == (502, b"502 Bad Gateway\n")
    messages = [r.getMessage() for r in caplog.records if r.name == "trio_upgrade.proxy"]
    assert any("/unix/x" in m and "502" in m and "missing.sock" in m for m in messages)


async def test_backend_silent_past_the_response_timeout_is_504(
    manual_clock: trio.testing.MockClock,
    env: Env,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = Proxy(env.proxy.routes, config=ProxyConfig(response_timeout=LONG))
    async with proxy:
        address = await start_proxy(nursery, proxy)
        nursery.start_soon(jump_when_blocked, manual_clock, LONG + 1)
        with caplog.at_level(logging.WARNING, logger="trio_upgrade"):
            reply = await fetch(address, "GET", "/a/hang")
    assert (reply.status, reply.body) == (504, b"504 Gateway Timeout\n")
    assert any("504" in r.getMessage() for r in caplog.records if r.name == "trio_upgrade.proxy")
    assert proxy.statistics().idle_connections == 0


async def test_backend_dying_mid_body_cuts_the_client_connection(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def dying(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 1000)

    backend = await start_raw(nursery, dying, f"{sock_dir}/dying.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        client = await Client.open(address)
        try:
            await client.send_request("GET", "/")
            head = await client.read_head()
            received = b""
            with pytest.raises(Exception, match="complete message body"):
                async for chunk in client.body_chunks():
                    received += chunk
        finally:
            await client.aclose()
        assert head.status_code == 200
        assert received == b"x" * len(received)
        assert proxy.statistics().idle_connections == 0


async def test_backend_closing_before_answering_is_502(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def rude(stream: trio.SocketStream) -> None:
        await read_request_head(stream)

    backend = await start_raw(nursery, rude, f"{sock_dir}/rude.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
    assert reply.status == 502


async def test_malformed_backend_response_is_502(nursery: trio.Nursery, sock_dir: str) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"SSH-2.0-OpenSSH\r\n\r\n")

    backend = await start_raw(nursery, garbage, f"{sock_dir}/garbage.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
    assert reply.status == 502


async def test_idle_connection_closed_by_the_backend_is_retried_on_a_new_one(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    """A pooled connection the backend drops when our next request arrives: the
    bodiless request is sent again on a fresh connection, invisibly to the client."""
    connections = [0]

    async def one_answer_per_connection(stream: trio.SocketStream) -> None:
        connections[0] += 1
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        # Wait for the next request, then hang up without answering it.
        await stream.receive_some(65536)

    backend = await start_raw(nursery, one_answer_per_connection, f"{sock_dir}/once.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        first = await fetch(address, "GET", "/")
        second = await fetch(address, "GET", "/")
        stats = proxy.statistics()
    assert (first.body, second.body) == (b"ok", b"ok")
    assert connections[0] == 2
    assert (stats.connections_opened, stats.connections_reused) == (2, 1)


async def test_idle_connection_the_backend_closed_is_not_reused(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def answer_and_close(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    backend = await start_raw(nursery, answer_and_close, f"{sock_dir}/close.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        assert (await fetch(address, "GET", "/")).body == b"ok"
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert (await fetch(address, "GET", "/")).body == b"ok"
        stats = proxy.statistics()
    assert (stats.connections_opened, stats.connections_reused) == (2, 0)


async def test_pooled_connection_idle_too_long_is_not_reused(
    manual_clock: trio.testing.MockClock, env: Env, nursery: trio.Nursery
) -> None:
    proxy = Proxy(env.proxy.routes, config=ProxyConfig(pool_idle_timeout=LONG))
    async with proxy:
        address = await start_proxy(nursery, proxy)
        await fetch(address, "GET", "/b/echo")
        await fetch(address, "GET", "/b/echo")
        manual_clock.jump(LONG + 1)
        await fetch(address, "GET", "/b/echo")
        stats = proxy.statistics()
    assert (stats.connections_opened, stats.connections_reused) == (2, 1)


async def test_pool_keeps_at_most_pool_size_idle_connections(
    env: Env, nursery: trio.Nursery
) -> None:
    proxy = Proxy(env.proxy.routes, config=ProxyConfig(pool_size=2))
    async with proxy:
        address = await start_proxy(nursery, proxy)
        clients = [await Client.open(address) for _ in range(4)]
        try:
            for client in clients:
                await client.send_request("GET", "/a/hang")
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert proxy.statistics().connections_opened == 4
        finally:
            for client in clients:
                await client.aclose()
        # Hanging requests are not reusable; four fresh exchanges in parallel are.
        async with trio.open_nursery() as inner:
            for _ in range(4):
                inner.start_soon(fetch, address, "GET", "/a/stream?size=1000000")
        assert proxy.statistics().idle_connections == 2


async def test_informational_responses_from_the_backend_are_not_relayed(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async def hints(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        )

    backend = await start_raw(nursery, hints, f"{sock_dir}/hints.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
    assert (reply.status, reply.body) == (200, b"ok")


async def test_host_is_rewritten_when_not_preserved(env: Env, nursery: trio.Nursery) -> None:
    backend = env.proxy.routes[-1].backend
    proxy = Proxy(preserve_host=False)
    proxy.add_route("/", backend)
    async with proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/echo", headers=[("host", "public.test")])
    data = seen(reply.body)
    assert header(data, "host") == backend.authority
    assert header(data, "x-forwarded-host") == "public.test"


async def test_client_body_past_max_body_size_is_413(env: Env, nursery: trio.Nursery) -> None:
    proxy = Proxy(env.proxy.routes, config=ProxyConfig(max_body_size=1000))
    async with proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "POST", "/b/upload", body=b"x" * 5000)
    assert reply.status == 413


async def test_connect_is_refused_with_405(env: Env) -> None:
    reply = await fetch(env.address, "CONNECT", "/a/echo")
    assert reply.status == 405


def test_a_prefix_can_have_one_route_only() -> None:
    proxy = Proxy({"/a": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="exists already"):
        proxy.add_route("/a", "unix:/elsewhere.sock")


async def test_backend_not_reading_the_upload_is_504(
    manual_clock: trio.testing.MockClock, env: Env, nursery: trio.Nursery
) -> None:
    proxy = Proxy(env.proxy.routes, config=ProxyConfig(write_timeout=LONG))
    async with proxy:
        address = await start_proxy(nursery, proxy)
        client = await Client.open(address)
        try:
            async with trio.open_nursery() as inner:

                async def send() -> None:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await client.send_request(
                            "POST",
                            "/a/upload?pause=0",  # the backend reads nothing, ever
                            headers=[("content-length", str(BIG))],
                            body=generate(BIG),
                        )

                inner.start_soon(send)
                # Blocked once every socket buffer between client and backend is full.
                inner.start_soon(jump_when_blocked, manual_clock, LONG + 1)
                reply = await client.read_response()
                inner.cancel_scope.cancel()
        finally:
            await client.aclose()
    assert (reply.status, reply.body) == (504, b"504 Gateway Timeout\n")
    assert proxy.statistics().idle_connections == 0


async def test_client_leaving_mid_upload_discards_the_backend_connection(env: Env) -> None:
    client = await Client.open(env.address)
    await client.stream.send_all(
        b"POST /b/upload HTTP/1.1\r\nhost: h\r\ncontent-length: 1000000\r\n\r\n" + b"x" * 5000
    )
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert env.state.consumed == 5000
    await client.aclose()
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    stats = env.proxy.statistics()
    assert (stats.connections_opened, stats.idle_connections) == (1, 0)
    assert (await fetch(env.address, "POST", "/b/upload", body=b"abc")).status == 200
    assert env.proxy.statistics().connections_opened == 2


async def test_head_of_a_chunked_resource_gets_no_invented_length(env: Env) -> None:
    reply = await fetch(env.address, "HEAD", "/a/stream?size=1000&chunked=1")
    assert (reply.status, reply.body) == (200, b"")
    assert reply.header(b"content-length") is None
    assert reply.header(b"transfer-encoding") == b"chunked"


@pytest.mark.parametrize("status", [204, 304])
async def test_bodiless_statuses_get_no_content_length(
    nursery: trio.Nursery, sock_dir: str, status: int
) -> None:
    async def bodiless(stream: trio.SocketStream) -> None:
        await read_request_head(stream)
        await stream.send_all(b'HTTP/1.1 %d Nothing\r\netag: "v1"\r\n\r\n' % status)
        await stream.receive_some(65536)

    backend = await start_raw(nursery, bodiless, f"{sock_dir}/bodiless.sock")
    async with Proxy(backend) as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "GET", "/")
        assert proxy.statistics().idle_connections == 1
    assert (reply.status, reply.body, reply.header(b"etag")) == (status, b"", b'"v1"')
    assert reply.header(b"content-length") is None
