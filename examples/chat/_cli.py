"""``python -m examples.chat``: parse the command line, open the hub, serve until a signal."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Sequence

import trio

from trio_upgrade.core import run_until_signal
from trio_upgrade.http import create_server

from ._app import create_app
from ._config import ChatConfig
from ._hub import HubUnavailable, open_hub

__all__ = ["main", "serve_chat"]

logger = logging.getLogger("examples.chat")


def _url(address: tuple[str, int] | str) -> str:
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address[0], address[1]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


async def serve_chat(
    binds: Sequence[str],
    config: ChatConfig,
    *,
    redis_url: str | None = None,
    grace_period: float = 5.0,
) -> None:
    """Serve the chat on *binds* until SIGINT/SIGTERM, then shut down gracefully:
    browsers get 1001 and reconnect once the server is back."""
    async with open_hub(config, redis_url) as hub:
        server = await create_server(create_app(hub, config), *binds, grace_period=grace_period)
        hub_name = f"Redis at {redis_url}" if redis_url else "in memory"
        for address in server.addresses:
            # Printed (not only logged): it is the line people look for.
            print(f"chat: serving on {_url(address)} (rooms {hub_name})", flush=True)
        await run_until_signal(server)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m examples.chat",
        description="A browser chat server on trio_upgrade: rooms, presence, history.",
    )
    parser.add_argument(
        "--bind",
        action="append",
        help="address to listen on: HOST:PORT, [::1]:PORT or unix:PATH "
        "(repeatable; default 127.0.0.1:8000)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share rooms with other processes through Redis, e.g. redis://127.0.0.1:6379",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept WebSocket connections from pages on ORIGIN "
        "(e.g. https://chat.example.com; the page's own origin is always accepted)",
    )
    parser.add_argument(
        "--allow-no-origin",
        action="store_true",
        help="accept WebSocket clients that send no Origin header (command-line tools)",
    )
    parser.add_argument(
        "--grace", type=float, default=5.0, help="seconds to let connections close on shutdown"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ChatConfig(
        allowed_origins=tuple(args.allow_origin), allow_missing_origin=args.allow_no_origin
    )
    try:
        trio.run(
            functools.partial(
                serve_chat,
                args.bind or ["127.0.0.1:8000"],
                config,
                redis_url=args.redis,
                grace_period=args.grace,
            )
        )
    except HubUnavailable as exc:
        sys.exit(f"chat: cannot reach Redis: {exc}")
    except OSError as exc:
        sys.exit(f"chat: {exc}")
