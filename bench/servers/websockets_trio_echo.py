"""websockets' Trio server (``websockets.trio``, websockets >= 17) echoing every message.

Default settings except a 16 MiB message limit (the default is 1 MiB).
"""

from __future__ import annotations

import functools

from _common import HOST, MAX_MESSAGE, keepalive, parse_port, trio_wait_for_signal, unavailable

try:
    import trio
    from websockets.trio.server import ServerConnection, serve
except ImportError as exc:
    unavailable(f"websockets >= 17 with its Trio server is not installed ({exc})")


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve,
                echo,
                port,
                host=HOST,
                max_size=MAX_MESSAGE,
                ping_interval=20.0 if keepalive() else None,
            )
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
