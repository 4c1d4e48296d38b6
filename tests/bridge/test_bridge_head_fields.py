"""A handler's header can never split a head: the bridge's 101 and refusals go through _wire."""

from __future__ import annotations

import pytest
from _bridge_helpers import handshake, open_memory_connection
from _wire import QUIET

from trio_upgrade.bridge import App, ServerWebSocket
from trio_upgrade.http import Response

BAD_FIELDS = [
    ("x-a", "1\r\nset-cookie: evil=1"),
    ("x-a", "1\nevil: 1"),
    ("x-a", "1\revil: 1"),
    ("x-a", "1\x00evil"),
    ("x evil", "v"),
    ("x\r\nevil", "v"),
]


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS)
async def test_reject_with_an_unwritable_header_raises_and_sends_nothing_of_it(
    name: str, value: str
) -> None:
    raised: list[BaseException] = []
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        try:
            await ws.reject(Response.text("no", status=403, headers=[(name, value)]))
        except ValueError as exc:
            raised.append(exc)
            # Nothing was sent: the handshake is still undecided.
            assert ws.state == "pending"
            raise

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        # The handler's exception before deciding: the bridge's own 500.
        assert response.status == 500
        assert b"evil" not in response.head + response.body
        await client.assert_closed()
    assert len(raised) == 1


@pytest.mark.parametrize(("name", "value"), BAD_FIELDS)
async def test_accept_with_an_unwritable_header_raises_before_the_101(
    name: str, value: str
) -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        with pytest.raises(ValueError):
            await ws.accept(headers=[(name, value)])
        assert ws.state == "pending"
        await ws.reject(409)

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.status == 409
        assert b"evil" not in response.head + response.body
        await client.assert_closed()


async def test_a_rejection_carries_one_date() -> None:
    app = App(websocket_config=QUIET)

    @app.websocket("/ws")
    async def handler(ws: ServerWebSocket) -> None:
        await ws.reject(Response.text("no", status=403, headers=[("date", "x")]))

    async with open_memory_connection(app) as client:
        response = await client.request(handshake())
        assert response.headers.get_all("date") == ["x"]
        await client.assert_closed()
