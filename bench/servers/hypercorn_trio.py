"""Hypercorn with its Trio worker serving the ASGI hello/echo app (``_asgi.py``).

Hypercorn's defaults, except: no access log (none of the servers compared
logs requests), and a 16 MiB WebSocket message limit (the default).
"""

from __future__ import annotations

import functools
from typing import Any

from _common import HOST, MAX_MESSAGE, parse_port, trio_wait_for_signal, unavailable

try:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve
except ImportError as exc:
    unavailable(f"hypercorn[trio] is not installed ({exc}); run bench/setup")

from _asgi import app


def main() -> None:
    config = Config()
    config.bind = [f"{HOST}:{parse_port()}"]
    config.accesslog = None
    config.errorlog = "-"
    config.websocket_max_message_size = MAX_MESSAGE
    # hypercorn types scopes as its own TypedDicts; the app takes plain mappings.
    asgi_app: Any = app
    trio.run(
        functools.partial(
            serve, asgi_app, config, shutdown_trigger=trio_wait_for_signal, mode="asgi"
        )
    )


if __name__ == "__main__":
    main()
