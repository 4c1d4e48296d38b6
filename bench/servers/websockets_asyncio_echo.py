"""websockets' asyncio server echoing every message: a reference row outside Trio.

Default settings except a 16 MiB message limit (the default is 1 MiB).
"""

from __future__ import annotations

import asyncio
import signal

from _common import HOST, MAX_MESSAGE, keepalive, parse_port, unavailable

try:
    from websockets.asyncio.server import ServerConnection, serve
except ImportError as exc:
    unavailable(f"websockets is not installed ({exc})")


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ping_interval = 20.0 if keepalive() else None
    async with serve(echo, HOST, port, max_size=MAX_MESSAGE, ping_interval=ping_interval):
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(parse_port()))
