"""Ours through the bridge: a trio_upgrade.bridge ``App`` with one WebSocket route.

The same echo as ``ours_ws.py``, but the handshake goes through the HTTP
server, the App's WebSocket router and a takeover, as in an application that
serves pages and WebSockets on one port. Same limits as ``ours_ws.py``.
Until ``trio_upgrade.bridge`` exists the script exits as unavailable.
"""

from __future__ import annotations

import functools

from _common import HOST, MAX_MESSAGE, parse_port, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.bridge import App, ServerWebSocket
    from trio_upgrade.http import serve
    from trio_upgrade.ws import WebSocketConfig
except ImportError as exc:
    unavailable(f"trio_upgrade.bridge is not importable yet ({type(exc).__name__})")

MAX_CONNECTIONS = 10_000


def make_app() -> App:
    app = App(websocket_config=WebSocketConfig(max_message_size=MAX_MESSAGE))

    @app.websocket("/")
    async def echo(ws: ServerWebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(serve, make_app(), f"{HOST}:{port}", max_connections=MAX_CONNECTIONS)
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
