"""The ASGI peers serving the benchmark's apps: ``--peer hypercorn|uvicorn-h11|uvicorn``
and ``--app raw|starlette`` (see ``ours_asgi.py`` for the apps).

- ``hypercorn``: hypercorn's Trio worker, defaults, no access log;
- ``uvicorn-h11``: uvicorn forced to h11 on the asyncio loop (pure Python, as ours);
- ``uvicorn``: uvicorn's defaults (httptools and uvloop when installed): the reference
  of what asyncio users get.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

from _common import HOST, MAX_MESSAGE, raise_nofile_limit, trio_wait_for_signal, unavailable


def load(name: str) -> Any:
    if name == "starlette":
        try:
            from _starlette_app import app
        except ImportError as exc:
            unavailable(f"starlette is not installed ({exc})")
        return app
    from _asgi import app as raw

    return raw


def run_hypercorn(port: int, app: Any) -> None:
    try:
        import trio
        from hypercorn.config import Config
        from hypercorn.trio import serve
    except ImportError as exc:
        unavailable(f"hypercorn[trio] is not installed ({exc}); run bench/setup")
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.websocket_max_message_size = MAX_MESSAGE
    trio.run(
        functools.partial(serve, app, config, shutdown_trigger=trio_wait_for_signal, mode="asgi")
    )


def run_uvicorn(port: int, app: Any, *, h11: bool) -> None:
    try:
        import uvicorn
    except ImportError as exc:
        unavailable(f"uvicorn is not installed ({exc}); run bench/setup")
    options: dict[str, Any] = {"http": "h11", "loop": "asyncio"} if h11 else {}
    config = uvicorn.Config(
        app,
        host=HOST,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="off",
        ws_max_size=MAX_MESSAGE,
        **options,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peer", choices=["hypercorn", "uvicorn-h11", "uvicorn"], required=True)
    parser.add_argument("--app", choices=["raw", "starlette"], default="raw")
    args = parser.parse_args()
    raise_nofile_limit()
    app = load(args.app)
    if args.peer == "hypercorn":
        run_hypercorn(args.port, app)
    else:
        run_uvicorn(args.port, app, h11=args.peer == "uvicorn-h11")
