"""Capacity under attack, over real loopback sockets with real clients.

A client past the limit hears 503 at once; connections still sending their
head make room for served ones (slowloris cannot crowd a server out); the
per-client limit refuses one address only; requests in progress and WebSocket
sessions are never shed. The ``security`` tests repeat the attacks at the
scale of thousands of connections (run with ``TRIO_UPGRADE_SECURITY=1``).
"""

from __future__ import annotations

import httpx
import pytest
import trio
from _security_helpers import (
    port_of,
    read_to_eof,
    reconnecting_slowloris,
    serving,
    slowloris,
    wait_for_connections,
)
from websockets.trio.client import connect as websockets_connect

from trio_upgrade.bridge import App, ServerWebSocket
from trio_upgrade.http import Request, Response
from trio_upgrade.ws import WebSocketConfig


class Held:
    """An app with ``/`` (answers at once), ``/held`` (answers when released) and ``/ws`` (echo)."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.holding = 0
        self.app = App(websocket_config=WebSocketConfig(ping_interval=None, compression=None))
        self.app.route("/")(self.index)
        self.app.route("/held")(self.held)
        self.app.websocket("/ws")(self.echo)

    async def index(self, request: Request) -> Response:
        return Response.text("ok")

    async def held(self, request: Request) -> Response:
        self.holding += 1
        await self.release.wait()
        return Response.text("held")

    async def echo(self, ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)


def _client(**options: object) -> httpx.AsyncClient:
    # Never through a proxy: only loopback traffic in tests.
    return httpx.AsyncClient(trust_env=False, timeout=30, **options)  # type: ignore[arg-type]


async def _held_request(port: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /held HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    return stream


async def test_client_past_max_connections_gets_503_with_retry_after_and_a_close() -> None:
    held = Held()
    async with serving(held.app, max_connections=2) as server:
        port = port_of(server)
        busy = [await _held_request(port) for _ in range(2)]
        await wait_for_connections(server, 2)
        async with _client() as http:
            response = await http.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["connection"] == "close"
        # The requests in progress were not disturbed.
        held.release.set()
        for stream in busy:
            answer = await read_to_eof(stream)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert answer.endswith(b"held")
            await stream.aclose()


async def test_slowloris_connections_filling_the_server_do_not_stop_normal_clients() -> None:
    async with serving(Held().app, max_connections=8) as server:
        port = port_of(server)
        attackers = []
        for _ in range(8):
            attackers.append(await slowloris(port))
            # One at a time, so that "oldest" is well defined.
            await wait_for_connections(server, len(attackers))
        # Three clients that keep their connections: each takes a place.
        async with _client() as a, _client() as b, _client() as c:
            for http in (a, b, c):
                response = await http.get(f"http://127.0.0.1:{port}/")
                assert (response.status_code, response.text) == (200, "ok")
        # The three oldest attackers made room, and only they.
        for stream in attackers[:3]:
            assert await read_to_eof(stream) == b""
        with trio.move_on_after(0.2):
            await attackers[3].receive_some()
            pytest.fail("a younger slowloris connection was shed before an older one")
        for stream in attackers:
            await stream.aclose()


async def test_an_idle_keep_alive_connection_makes_room_for_a_new_client() -> None:
    async with serving(Held().app, max_connections=1) as server:
        url = f"http://127.0.0.1:{port_of(server)}/"
        async with _client() as first, _client() as second:
            assert (await first.get(url)).status_code == 200
            assert (await second.get(url)).status_code == 200
            # The first client's connection was closed; it reconnects (taking
            # the place of the second's, idle now).
            assert (await first.get(url)).status_code == 200


async def test_requests_in_progress_and_websocket_sessions_are_never_shed() -> None:
    held = Held()
    async with serving(held.app, max_connections=2) as server:
        port = port_of(server)
        async with websockets_connect(f"ws://127.0.0.1:{port}/ws", proxy=None) as ws:
            busy = await _held_request(port)
            await wait_for_connections(server, 2)
            async with _client() as http:
                for _ in range(3):
                    response = await http.get(f"http://127.0.0.1:{port}/")
                    assert response.status_code == 503
            await ws.send("still here")
            assert await ws.recv() == "still here"
            held.release.set()
            answer = await read_to_eof(busy)
            await busy.aclose()
            assert answer.startswith(b"HTTP/1.1 200 ")


async def test_per_client_limit_refuses_only_that_address() -> None:
    async with serving(Held().app, max_connections_per_client=1) as server:
        port = port_of(server)
        url = f"http://127.0.0.1:{port}/"
        attacker = await slowloris(port)
        await wait_for_connections(server, 1)
        async with _client() as same:
            response = await same.get(url)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with _client(transport=other) as neighbour:
            assert (await neighbour.get(url)).status_code == 200
        await attacker.aclose()


# --------------------------------------------------------------- at scale


@pytest.mark.security
async def test_thousands_of_reconnecting_slowloris_connections_do_not_stop_normal_clients() -> None:
    async with serving(Held().app, max_connections=500) as server:
        port = port_of(server)
        async with trio.open_nursery() as attack:
            for _ in range(1000):
                attack.start_soon(reconnecting_slowloris, port)
            await wait_for_connections(server, 500)
            statuses = []
            async with _client() as http:
                for _ in range(20):
                    response = await http.get(
                        f"http://127.0.0.1:{port}/", headers={"connection": "close"}
                    )
                    statuses.append(response.status_code)
            attack.cancel_scope.cancel()
        assert statuses == [200] * 20


@pytest.mark.security
async def test_the_client_past_a_limit_of_thousands_of_requests_in_progress_gets_503() -> None:
    held = Held()
    async with serving(held.app, max_connections=2000) as server:
        port = port_of(server)
        busy = [await _held_request(port) for _ in range(2000)]
        await wait_for_connections(server, 2000)
        async with _client() as http:
            for _ in range(20):
                response = await http.get(f"http://127.0.0.1:{port}/")
                assert response.status_code == 503
        held.release.set()
        for stream in busy:
            await stream.aclose()
