"""One client's response never reaches another, and a request that may have
been acted on is never sent twice (RFC 9110 §9.2.2)."""

from __future__ import annotations

import pytest
import trio
from _proxy_env import start_proxy
from _proxy_helpers import Client, RecordingBackend, fetch, response

from trio_upgrade.proxy import Proxy

# What a confused or hostile backend sends past the end of its first response;
# with the connection pooled, it would be read as the next client's response.
POISON = response(200, b"EVIL!", b"x-poison: 1\r\n")

# (method of the first request, first answer). The poison follows each answer.
SURPLUS = {
    "body-to-head": ("HEAD", response(200, b"hello")),
    "body-with-204": ("GET", b"HTTP/1.1 204 No Content\r\n\r\nhello"),
    "body-with-304": ("GET", b"HTTP/1.1 304 Not Modified\r\n\r\nhello"),
    "204-declaring-a-length": ("GET", b"HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
    "length-too-short": ("GET", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhello"),
    "second-response": ("GET", response(200, b"first")),
}


@pytest.mark.parametrize("case", sorted(SURPLUS))
async def test_bytes_past_a_response_never_reach_the_next_client(
    nursery: trio.Nursery, case: str
) -> None:
    method, first_answer = SURPLUS[case]

    def script(conn: int, request: int, head: bytes) -> bytes:
        if conn == 0 and request == 0:
            return first_answer + POISON
        return response(200, b"mine %d" % conn)

    backend = RecordingBackend(script)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        first = await fetch(address, method, "/first")
        second = await fetch(address, "GET", "/second")
        stats = proxy.statistics()
    assert first.status == int(first_answer.split(b" ")[1])
    assert b"EVIL" not in first.body
    assert (second.status, second.body) == (200, b"mine 1")
    assert second.header(b"x-poison") is None
    assert stats.connections_opened == 2


async def test_a_clean_connection_is_still_reused(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(
        lambda conn, request, head: response(200, b"%d.%d" % (conn, request))
    )
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        replies = [(await fetch(address, "GET", "/")).body for _ in range(3)]
        stats = proxy.statistics()
    assert replies == [b"0.0", b"0.1", b"0.2"]
    assert (stats.connections_opened, stats.connections_reused) == (1, 2)


def drop_the_second_request(conn: int, request: int, head: bytes) -> bytes | None:
    """Answers the first request of the first connection, then hangs up on the
    next request it receives there (after acting on it); answers every request
    on later connections."""
    if conn == 0 and request == 1:
        return None
    return response(200, b"done")


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", b""), ("PATCH", b""), ("POST", b"data"), ("PUT", b"data")],
)
async def test_a_request_the_backend_may_have_acted_on_is_not_sent_again(
    nursery: trio.Nursery, method: str, body: bytes
) -> None:
    """POST and PATCH are not idempotent; a request with a body is never sent
    twice either (its body is gone). The client gets 502; the backend saw the
    request once."""
    backend = RecordingBackend(drop_the_second_request)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        client = await Client.open(address)
        try:
            assert (await client.request("GET", "/warm")).status == 200
            reply = await client.request(method, "/act", body=body)
        finally:
            await client.aclose()
    assert reply.status == 502
    acted = [head for head in backend.heads if head.startswith(method.encode() + b" /act ")]
    assert len(acted) == 1


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE", "PUT"])
async def test_an_idempotent_request_without_a_body_is_retried_once(
    nursery: trio.Nursery, method: str
) -> None:
    backend = RecordingBackend(drop_the_second_request)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        assert (await fetch(address, "GET", "/warm")).status == 200
        reply = await fetch(address, method, "/again")
    assert reply.status == 200
    acted = [head for head in backend.heads if head.startswith(method.encode() + b" /again ")]
    assert len(acted) == 2
    assert len(backend.connections) == 2


async def test_a_body_for_an_unreachable_backend_is_502(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    async with Proxy(f"unix:{sock_dir}/missing.sock") as proxy:
        address = await start_proxy(nursery, proxy)
        reply = await fetch(address, "POST", "/", body=b"data")
        chunked = await fetch(
            address, "POST", "/", headers=[("transfer-encoding", "chunked")], body=b"data"
        )
    assert (reply.status, chunked.status) == (502, 502)
