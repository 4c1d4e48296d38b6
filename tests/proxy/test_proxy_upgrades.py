"""Which upgrades the proxy tunnels: only the protocols a route allows
(WebSocket by default). Anything else, ``h2c`` above all (h2c smuggling: raw
HTTP/2 to the backend past every rule of the proxy), goes as a plain request."""

from __future__ import annotations

import pytest
import trio
from _proxy_env import start_proxy
from _proxy_helpers import RecordingBackend, fields_of, response

from trio_upgrade.proxy import Backend, Proxy, ProxyRoute

H2C = (
    b"GET /x HTTP/1.1\r\nhost: h\r\nconnection: Upgrade, HTTP2-Settings\r\n"
    b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)
WEBSOCKET = (
    b"GET /x HTTP/1.1\r\nhost: h\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def switch_when_asked(conn: int, request: int, head: bytes) -> bytes:
    """A backend that switches to whatever it is asked for, and answers
    plainly otherwise."""
    upgrade = [v for n, v in fields_of(head) if n == b"upgrade"]
    if upgrade:
        return b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: %s\r\n\r\n" % (
            upgrade[0].split(b",")[0].strip()
        )
    return response(200, b"plain")


async def exchange(address: tuple[str, int], data: bytes, *, to_eof: bool = False) -> bytes:
    """Send *data*; what came back: the first head (and its body, with
    *to_eof* everything up to the close)."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(30):  # a hang guard
            while to_eof or b"\r\n\r\n" not in received:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not chunk:
                    break
                received += chunk
            head, _, body = received.partition(b"\r\n\r\n")
            lengths = [v for n, v in fields_of(head) if n == b"content-length"]
            while lengths and len(body) < int(lengths[0]):
                chunk = await stream.receive_some(65536)
                assert chunk, received
                body += chunk
                received += chunk
        return received


async def test_h2c_is_forwarded_as_a_plain_request_without_upgrade(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(switch_when_asked)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        # The preface that follows is then the client's next request, to the
        # proxy's own HTTP server: refused there, never forwarded.
        answer = await exchange(address, H2C + PREFACE, to_eof=True)
        stats = proxy.statistics()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.partition(b"\r\n\r\n")[2].startswith(b"plain")
    [head] = backend.heads
    names = [n for n, _ in fields_of(head)]
    assert b"upgrade" not in names and b"http2-settings" not in names
    assert b"upgrade" not in b"".join(v for n, v in fields_of(head) if n == b"connection")
    assert PREFACE not in bytes(backend.connections[0].data)
    assert stats.open_tunnels == 0


async def test_websocket_is_tunnelled_by_default(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(switch_when_asked)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await exchange(address, WEBSOCKET)
    assert answer.startswith(b"HTTP/1.1 101 ")
    [head] = backend.heads
    assert (b"upgrade", b"websocket") in fields_of(head)


async def test_a_route_can_allow_another_protocol(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(switch_when_asked)
    url = await backend.start(nursery)
    route = ProxyRoute("/", Backend.parse(url), upgrades=("h2c",))
    async with Proxy([route]) as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await exchange(address, H2C)
        refused = await exchange(address, WEBSOCKET)
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert refused.startswith(b"HTTP/1.1 200 ")


async def test_only_allowed_protocols_are_offered_to_the_backend(
    nursery: trio.Nursery,
) -> None:
    backend = RecordingBackend(switch_when_asked)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await exchange(
            address, WEBSOCKET.replace(b"upgrade: websocket", b"upgrade: h2c, WebSocket")
        )
    assert answer.startswith(b"HTTP/1.1 101 ")
    [head] = backend.heads
    assert [v for n, v in fields_of(head) if n == b"upgrade"] == [b"websocket"]


async def test_a_101_to_a_protocol_not_offered_is_502(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(
        lambda *_: (
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
            + PREFACE
        )
    )
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await exchange(address, WEBSOCKET)
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert PREFACE not in answer


@pytest.mark.parametrize("upgrades", [("web socket",), ("",)])
def test_upgrade_names_are_tokens(upgrades: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="not a token"):
        ProxyRoute("/", Backend.parse("http://127.0.0.1:1"), upgrades=upgrades)


def test_upgrades_is_not_a_bare_string() -> None:
    with pytest.raises(TypeError):
        ProxyRoute("/", Backend.parse("http://127.0.0.1:1"), upgrades="websocket")  # type: ignore[arg-type]


async def test_tunnel_heads_are_written_by_the_proxy(nursery: trio.Nursery) -> None:
    """The 101 and a refusal get the proxy's own status lines (through the one
    head writer), not the backend's reason phrases."""

    def odd_reasons(conn: int, request: int, head: bytes) -> bytes:
        if conn == 0:
            return b"HTTP/1.1 101 Sure Thing\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
        return b"HTTP/1.1 403 Go Away\r\ncontent-length: 2\r\n\r\nno"

    backend = RecordingBackend(odd_reasons)
    url = await backend.start(nursery)
    async with Proxy(url) as proxy:
        address = await start_proxy(nursery, proxy)
        switched = await exchange(address, WEBSOCKET)
        refused = await exchange(address, WEBSOCKET, to_eof=True)
    assert switched.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert refused.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert refused.endswith(b"\r\n\r\nno")


async def test_a_tunnel_error_is_a_complete_response(nursery: trio.Nursery, sock_dir: str) -> None:
    async with Proxy(f"unix:{sock_dir}/missing.sock") as proxy:
        address = await start_proxy(nursery, proxy)
        answer = await exchange(address, WEBSOCKET, to_eof=True)
    head, _, body = answer.partition(b"\r\n\r\n")
    fields = dict(fields_of(head))
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert fields[b"content-length"] == b"%d" % len(body)
    assert fields[b"connection"] == b"close"
    assert b"date" in fields
