"""Ours: trio_upgrade.ws's standalone server echoing every message.

Until ``trio_upgrade.ws`` exists the script exits as unavailable.
"""

from __future__ import annotations

import functools
from typing import Any

from _common import HOST, parse_port, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.ws import serve_websocket
except ImportError as exc:
    unavailable(f"trio_upgrade.ws is not importable yet ({type(exc).__name__})")


async def echo(ws: Any) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(serve_websocket, echo, f"{HOST}:{port}"))
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
