"""Serve an HTTP application on listeners: ``serve`` (async) and ``run`` (blocking)."""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
from collections.abc import Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from .._wire import simple_response
from ..core import (
    Bind,
    Connection,
    Observer,
    Server,
    configure_logging,
    open_listeners,
    run_until_signal,
)
from ._config import HTTPConfig
from ._connection import serve_http_connection
from ._router import Handler

__all__ = ["app_lifespan", "create_server", "run", "serve"]

logger = logging.getLogger("trio_upgrade.http")

# What a client past a connection limit hears (RFC 9110 §15.6.4, §10.2.3): a
# fresh Date each time, hence a function.
_OVERLOAD_FIELDS = ((b"retry-after", b"1"),)
_overload_response = functools.partial(simple_response, 503, _OVERLOAD_FIELDS)


def _head_complete(data: bytes) -> bool:
    """Whether *data* holds the blank line that ends a request head (a bare LF too, as h11
    accepts): at a full server, only such a newcomer makes room by shedding another."""
    return b"\n\r\n" in data or b"\n\n" in data


def app_lifespan(app: object) -> AbstractAsyncContextManager[Any]:
    """The lifespan to run around a server of *app*: ``app.lifespan_context()``
    when the app has one (an :class:`~trio_upgrade.bridge.App` does), else
    nothing. :func:`serve` and :func:`run` enter it before the first
    connection and leave it after the drain; code that builds its own server
    with :func:`create_server` does the same::

        async with app_lifespan(app):
            server = await create_server(app, "127.0.0.1:8000")
            await server.serve()
    """
    hook = getattr(app, "lifespan_context", None)
    if hook is None:
        return contextlib.nullcontext()
    manager: AbstractAsyncContextManager[Any] = hook()
    return manager


async def create_server(
    app: Handler,
    *binds: str | Bind,
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    grace_period: float = 10.0,
    unix_mode: int | None = None,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = (),
    observer: Observer | None = None,
) -> Server:
    """Open listeners for *binds* and return a :class:`~trio_upgrade.core.Server`
    serving *app* on them (not yet running: ``await nursery.start(server.serve)``).

    Connection limits are the Server's (*max_connections*: ``None`` derives it
    from the file-descriptor limit; *max_connections_per_client*); a client past
    one gets ``503 Service Unavailable`` with ``Retry-After: 1`` and a close.
    While full, a connection waiting for a request head makes room for a new one
    that has sent its whole request head (or nothing yet).

    *observer* (:class:`~trio_upgrade.core.Observer`) is told of every request
    answered and, through the bridge and the ASGI layer, of WebSocket sessions
    and messages: the hooks that metrics count with.
    """
    config = config or HTTPConfig()
    opened = list(listeners)
    if binds:
        opened += await open_listeners(*binds, ssl_context=ssl_context, unix_mode=unix_mode)
    if not opened:
        raise ValueError("nothing to listen on: give at least one bind or listener")

    def handle(conn: Connection) -> Coroutine[Any, Any, None]:
        # Returns the connection loop's coroutine (no frame of its own).
        return serve_http_connection(conn, app, config)

    return Server(
        handle,
        opened,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        overload_response=_overload_response,
        shed_for=_head_complete,
        grace_period=grace_period,
        observer=observer,
    )


async def serve(
    app: Handler,
    *binds: str | Bind,
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    grace_period: float = 10.0,
    unix_mode: int | None = None,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]] = (),
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *app* (a Router, an App, or any ``async def app(request)``) on *binds*.

    Follows the :func:`trio.serve_listeners` contract: with
    ``server = await nursery.start(serve, app, "127.0.0.1:0")`` it returns once
    listening, and ``server.addresses`` tells the bound ports. Runs until
    cancelled or ``await server.aclose()``; both shut down gracefully (stop
    accepting, close idle keep-alive connections, let requests in flight finish
    within *grace_period* seconds, then cancel the rest).

    An app with a lifespan (:func:`app_lifespan`) has its startup run before
    the listeners open and its shutdown after the drain.
    """
    async with app_lifespan(app):
        server = await create_server(
            app,
            *binds,
            config=config,
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            grace_period=grace_period,
            unix_mode=unix_mode,
            listeners=listeners,
        )
        await server.serve(task_status=task_status)


def run(
    app: Handler,
    bind: str | Sequence[str] = "127.0.0.1:8000",
    *,
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_connections: int | None = None,
    max_connections_per_client: int | None = None,
    grace_period: float = 10.0,
    unix_mode: int | None = None,
    log_level: int | None = logging.INFO,
) -> None:
    """Run *app* until SIGINT or SIGTERM, then shut down gracefully. Blocks.

    Sets up logging (:func:`trio_upgrade.core.configure_logging`, the format the
    command uses) at *log_level* when the program has configured none.
    An app's lifespan (:func:`app_lifespan`) runs around the server.
    """
    if log_level is not None:
        configure_logging(log_level)
    binds = [bind] if isinstance(bind, str) else list(bind)

    async def main() -> None:
        async with app_lifespan(app):
            server = await create_server(
                app,
                *binds,
                config=config,
                ssl_context=ssl_context,
                max_connections=max_connections,
                max_connections_per_client=max_connections_per_client,
                grace_period=grace_period,
                unix_mode=unix_mode,
            )
            scheme = "https" if ssl_context is not None else "http"
            for address in server.addresses:
                logger.info("serving on %s", _url(scheme, address))
            await run_until_signal(server)
            logger.info("stopped")

    trio.run(main)


@functools.cache
def _url(scheme: str, address: tuple[str, int] | str) -> str:
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"
