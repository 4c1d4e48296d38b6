"""``trio_upgrade.run`` and ``trio_upgrade.serve``: one entry point for native
handlers and ASGI 3 applications.

A native handler (a Router, an App, ``async def app(request)``) is served by
:mod:`trio_upgrade.http`; an ASGI 3 application (``app(scope, receive, send)``,
told apart by its signature, as uvicorn's ``--interface auto`` does) by
:mod:`trio_upgrade.asgi`, with its lifespan around the server. The ASGI layer
(and with it wsproto) is imported only when an ASGI app is served.
"""

from __future__ import annotations

from typing import Any

import trio

from .core import Server
from .core._interface import takes_three_arguments

__all__ = ["run", "serve"]


async def serve(
    app: Any,
    *binds: Any,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve *app* on *binds*: :func:`trio_upgrade.http.serve` for a native
    handler, :func:`trio_upgrade.asgi.serve` for an ASGI 3 application (which
    also takes ``lifespan=``, ``root_path=`` and ``websocket_config=``)."""
    if takes_three_arguments(app):
        from .asgi import serve as serve_asgi

        await serve_asgi(app, *binds, task_status=task_status, **options)
    else:
        from .http import serve as serve_http

        await serve_http(app, *binds, task_status=task_status, **options)


def run(app: Any, bind: Any = "127.0.0.1:8000", **options: Any) -> None:
    """Run *app* until SIGINT or SIGTERM, then shut down gracefully. Blocks.

    :func:`trio_upgrade.http.run` for a native handler,
    :func:`trio_upgrade.asgi.run` for an ASGI 3 application."""
    if takes_three_arguments(app):
        from .asgi import run as run_asgi

        run_asgi(app, bind, **options)
    else:
        from .http import run as run_http

        run_http(app, bind, **options)
