"""Ours: trio_upgrade.ws's standalone server echoing every message.

Default settings except, like the peers: a 16 MiB message limit, and room
for the idle workload's 3000 connections (``max_connections`` defaults to 1000).
Until ``trio_upgrade.ws`` exists the script exits as unavailable.
"""

from __future__ import annotations

import functools

from _common import HOST, MAX_MESSAGE, keepalive, parse_port, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.ws import WebSocket, WebSocketConfig, serve_websocket
except ImportError as exc:
    unavailable(f"trio_upgrade.ws is not importable yet ({type(exc).__name__})")

MAX_CONNECTIONS = 10_000


async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    config = WebSocketConfig(
        max_message_size=MAX_MESSAGE, ping_interval=20.0 if keepalive() else None
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve_websocket,
                echo,
                f"{HOST}:{port}",
                config=config,
                max_connections=MAX_CONNECTIONS,
            )
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
