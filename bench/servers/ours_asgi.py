"""Ours: trio_upgrade.asgi serving an ASGI app (``--app raw|starlette``).

``raw``: the raw ASGI hello/echo app of ``_asgi.py`` (HTTP hello, WebSocket
echo); ``starlette``: the Starlette hello of ``_starlette_app.py``. Lifespan
off (the apps need none), no access log, room for many connections.
"""

from __future__ import annotations

import argparse
import functools

from _common import HOST, raise_nofile_limit, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.asgi import serve
    from trio_upgrade.ws import WebSocketConfig
except ImportError as exc:
    unavailable(f"trio_upgrade.asgi is not importable ({type(exc).__name__})")

from _common import MAX_MESSAGE


def load(name: str) -> object:
    if name == "starlette":
        try:
            from _starlette_app import app
        except ImportError as exc:
            unavailable(f"starlette is not installed ({exc})")
        return app
    from _asgi import app as raw

    return raw


async def main(port: int, app: object) -> None:
    config = WebSocketConfig(max_message_size=MAX_MESSAGE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve,
                app,  # type: ignore[arg-type]
                f"{HOST}:{port}",
                lifespan="off",
                websocket_config=config,
                max_connections=10_000,
            )
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", choices=["raw", "starlette"], default="raw")
    args = parser.parse_args()
    raise_nofile_limit()
    trio.run(main, args.port, load(args.app))
