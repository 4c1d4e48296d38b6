"""Request and response framing through the proxy (RFC 9112 §6.3, §11.2): what
is framed two ways is refused before anything is forwarded, what is forwarded
carries exactly one framing the proxy chose, and a doubtful response is relayed
by one framing on a connection that is never reused."""

from __future__ import annotations

import pytest
import trio
from _proxy_env import start_proxy
from _proxy_helpers import (
    Client,
    RecordingBackend,
    assert_one_framing,
    fields_of,
    response,
)

from trio_upgrade.proxy import Proxy

OK = response(200, b"ok")


async def talk(address: tuple[str, int], data: bytes) -> bytes:
    """Send *data* on a new connection; everything the proxy answered, to EOF."""
    stream = await trio.open_tcp_stream(*address)
    received = b""
    async with stream:
        await stream.send_all(data)
        with trio.fail_after(30):  # a hang guard, not a timing assertion
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                received += chunk
    return received


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def recording_proxy(
    nursery: trio.Nursery, backend: RecordingBackend
) -> tuple[Proxy, tuple[str, int]]:
    url = await backend.start(nursery)
    proxy = Proxy(url)
    return proxy, await start_proxy(nursery, proxy)


SMUGGLED = b"GET /admin HTTP/1.1\r\nhost: h\r\n\r\n"

# Each: the framing part of a request head, and the body bytes after it. The
# body always ends with a request that a reader taking the other framing sees.
TWO_WAY = {
    "cl-then-te": (
        b"content-length: 5\r\ntransfer-encoding: chunked\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "te-then-cl": (
        b"transfer-encoding: chunked\r\ncontent-length: 40\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "chunked-identity": (
        b"transfer-encoding: chunked, identity\r\ncontent-length: 5\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "te-twice": (
        b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "xchunked-with-cl": (
        b"transfer-encoding: xchunked\r\ncontent-length: 5\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "two-lengths": (
        b"content-length: 5\r\ncontent-length: 40\r\n",
        b"hello" + SMUGGLED,
    ),
    "space-before-colon": (
        b"content-length : 40\r\ntransfer-encoding: chunked\r\n",
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "signed-length": (b"content-length: +5\r\n", b"hello" + SMUGGLED),
    "bare-cr": (b"x-a: 1\rcontent-length: 40\r\ncontent-length: 5\r\n", b"hello" + SMUGGLED),
}


@pytest.mark.parametrize("case", sorted(TWO_WAY))
async def test_a_request_framed_two_ways_never_reaches_the_backend(
    nursery: trio.Nursery, case: str
) -> None:
    """Refused (4xx or 501) and the connection closed; the backend receives
    nothing at all, so it cannot read the request differently."""
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    framing, body = TWO_WAY[case]
    async with proxy:
        answer = await talk(address, b"POST /x HTTP/1.1\r\nhost: h\r\n" + framing + b"\r\n" + body)
    assert 400 <= status_of(answer) < 600, answer
    assert b"/admin" not in answer
    assert_one_framing(backend)
    assert backend.connections == []


async def test_cl_and_te_together_is_400_and_closes(nursery: trio.Nursery) -> None:
    """h11 alone would read CL+TE by the chunked coding; it is refused (by the
    proxy if the HTTP server let it through): 400 with ``Connection: close``."""
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    framing, body = TWO_WAY["cl-then-te"]
    async with proxy:
        answer = await talk(address, b"POST /x HTTP/1.1\r\nhost: h\r\n" + framing + b"\r\n" + body)
    head = answer.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 400 ")
    assert (b"connection", b"close") in fields_of(head)
    assert answer.count(b"HTTP/1.1") == 1
    assert backend.connections == []


async def test_chunked_in_an_http_10_request_is_400(nursery: trio.Nursery) -> None:
    """RFC 9112 §6.1: an HTTP/1.0 peer cannot have meant chunked; a backend
    reading it as 1.0 would take the body for the next request."""
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(
            address,
            b"POST /x HTTP/1.0\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + SMUGGLED,
        )
    assert status_of(answer) == 400
    assert backend.connections == []


async def test_a_length_with_leading_zeros_goes_out_as_one_plain_length(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(
            address,
            b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: 0005\r\nconnection: close\r\n\r\n"
            b"hello",
        )
    assert status_of(answer) == 200
    assert_one_framing(backend)
    [head] = backend.heads
    assert [v for n, v in fields_of(head) if n == b"content-length"] == [b"5"]
    assert backend.connections[0].data.endswith(b"\r\n\r\nhello")


async def test_a_chunked_request_goes_out_chunked_without_a_length(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(
            address,
            b"POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: Chunked\r\n"
            b"connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
    assert status_of(answer) == 200
    assert_one_framing(backend)
    [head] = backend.heads
    fields = fields_of(head)
    assert [v for n, v in fields if n == b"transfer-encoding"] == [b"chunked"]
    assert not [v for n, v in fields if n == b"content-length"]
    assert backend.connections[0].data.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


# Malformed chunked framing --------------------------------------------------------


async def test_a_body_malformed_from_its_first_chunk_is_not_forwarded(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(
            address,
            b"POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n"
            b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
        )
    assert answer == b"" or 400 <= status_of(answer) < 500
    assert backend.connections == []


async def test_a_body_malformed_later_is_cut_and_never_completed(
    nursery: trio.Nursery,
) -> None:
    """The backend sees a request that never ends (no last chunk), on a
    connection the proxy closes: it cannot act on it, nor read what follows."""
    backend = RecordingBackend(lambda *_: OK)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(
                b"POST /x HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
            )
            with trio.fail_after(30):
                while not backend.connections or not backend.connections[0].data.endswith(
                    b"hello\r\n"
                ):
                    await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            await stream.send_all(b"zz\r\nworld\r\n0\r\n\r\n" + SMUGGLED)
            with trio.fail_after(30):
                await backend.connections[0].closed.wait()
    [conn] = backend.connections
    assert conn.heads == []  # never a complete request
    assert b"0\r\n\r\n" not in bytes(conn.data)
    assert b"/admin" not in bytes(conn.data)


# Responses ------------------------------------------------------------------------


async def test_a_response_with_length_and_chunked_is_relayed_once_and_not_reused(
    nursery: trio.Nursery,
) -> None:
    def script(conn: int, request: int, head: bytes) -> bytes:
        if conn == 0:
            return (
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
            )
        return response(200, b"second")

    backend = RecordingBackend(script)
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        client = await Client.open(address)
        try:
            first = await client.request("GET", "/one")
            second = await client.request("GET", "/two")
        finally:
            await client.aclose()
    assert (first.status, first.body) == (200, b"hello")
    assert first.header(b"content-length") in (None, b"5")
    assert (second.status, second.body) == (200, b"second")
    assert len(backend.connections) == 2


async def test_a_response_length_with_leading_zeros_is_relayed_plain(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(lambda *_: b"HTTP/1.1 200 OK\r\ncontent-length: 0005\r\n\r\nhello")
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(address, b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert [v for n, v in fields_of(head) if n == b"content-length"] == [b"5"]
    assert body == b"hello"


async def test_a_response_with_two_lengths_is_502(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(
        lambda *_: b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
    )
    proxy, address = await recording_proxy(nursery, backend)
    async with proxy:
        answer = await talk(address, b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
    assert status_of(answer) == 502
    assert b"hello" not in answer
