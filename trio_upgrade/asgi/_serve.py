"""Serve an ASGI app with its lifespan: ``serve`` (async) and ``run`` (blocking)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from typing import Any

import trio

from ..core import Bind, Server, configure_logging, run_until_signal
from ..http import HTTPConfig, create_server
from ..http import serve as serve_http
from ..ws import WebSocketConfig
from ._errors import LifespanFailure
from ._handler import ASGIHandler
from ._http import ASGIApp
from ._lifespan import Lifespan, LifespanMode

__all__ = ["run", "serve"]

logger = logging.getLogger("trio_upgrade.asgi")


async def serve(
    app: ASGIApp,
    *binds: str | Bind,
    lifespan: LifespanMode = "auto",
    root_path: str = "",
    websocket_config: WebSocketConfig | None = None,
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    grace_period: float = 10.0,
    unix_mode: int | None = None,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = (),
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI 3 *app* on *binds*, with its lifespan around the server.

    The lifespan startup completes before the first connection is accepted
    (:class:`LifespanFailure` if it fails: nothing is served); the shutdown
    runs after the graceful drain. Otherwise as :func:`trio_upgrade.http.serve`
    (``server = await nursery.start(serve, app, "127.0.0.1:0")``).
    """
    async with Lifespan(app, mode=lifespan) as state:
        handler = ASGIHandler(
            app, root_path=root_path, state=state, websocket_config=websocket_config
        )
        await serve_http(
            handler,
            *binds,
            config=config,
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            grace_period=grace_period,
            unix_mode=unix_mode,
            listeners=listeners,
            task_status=task_status,
        )


def run(
    app: ASGIApp,
    bind: str | Sequence[str] = "127.0.0.1:8000",
    *,
    lifespan: LifespanMode = "auto",
    root_path: str = "",
    websocket_config: WebSocketConfig | None = None,
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    grace_period: float = 10.0,
    unix_mode: int | None = None,
    log_level: int | None = logging.INFO,
) -> None:
    """Run the ASGI 3 *app* until SIGINT or SIGTERM, then drain and shut the app down.

    A failed lifespan startup logs the app's message and exits with status 3
    (``SystemExit``), as uvicorn does. Blocks.
    """
    if log_level is not None:
        configure_logging(log_level)
    binds = [bind] if isinstance(bind, str) else list(bind)

    async def main() -> None:
        await serve_until_signal(
            app,
            binds,
            lifespan=lifespan,
            root_path=root_path,
            websocket_config=websocket_config,
            config=config,
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            grace_period=grace_period,
            unix_mode=unix_mode,
        )

    try:
        trio.run(main)
    except LifespanFailure as exc:
        logger.error("%s", exc)
        raise SystemExit(3) from None


async def serve_until_signal(
    app: ASGIApp,
    binds: Sequence[str | Bind],
    *,
    lifespan: LifespanMode = "auto",
    root_path: str = "",
    websocket_config: WebSocketConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **server_options: Any,
) -> None:
    """Startup, serve until SIGINT or SIGTERM (logging the addresses), drain, shutdown.

    What :func:`run` and ``trio-upgrade serve`` run inside ``trio.run``;
    *server_options* go to :func:`trio_upgrade.http.create_server`.
    """
    async with Lifespan(app, mode=lifespan) as state:
        handler = ASGIHandler(
            app, root_path=root_path, state=state, websocket_config=websocket_config
        )
        server = await create_server(handler, *binds, ssl_context=ssl_context, **server_options)
        scheme = "https" if ssl_context is not None else "http"
        for address in server.addresses:
            if isinstance(address, str):
                logger.info("serving on unix:%s", address)
            else:
                host = f"[{address[0]}]" if ":" in address[0] else address[0]
                logger.info("serving on %s://%s:%d/", scheme, host, address[1])
        await run_until_signal(server)
        logger.info("stopped")
