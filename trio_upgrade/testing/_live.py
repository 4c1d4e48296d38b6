"""A real server on an ephemeral loopback port, for clients that need sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, final

import trio

from ..asgi import ASGIHandler, Lifespan, is_asgi_app
from ..core import Server
from ..http import Handler, HTTPConfig, serve

__all__ = ["LiveServer", "open_live_server"]


@final
class LiveServer:
    """Where a live server listens: :attr:`url` for HTTP clients, :attr:`ws_url` for WebSocket ones.

    Both end without a slash: ``f"{server.url}/items"``.
    """

    __slots__ = ("host", "port", "server", "tls")

    def __init__(self, server: Server, *, tls: bool = False) -> None:
        self.server = server
        """The running :class:`trio_upgrade.core.Server`."""
        address = server.addresses[0]
        assert isinstance(address, tuple), "a live server listens on TCP"
        self.host, self.port = address
        self.tls = tls

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with TLS)."""
        return f"{'https' if self.tls else 'http'}://{self._netloc}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss://`` with TLS)."""
        return f"{'wss' if self.tls else 'ws'}://{self._netloc}"

    def __repr__(self) -> str:
        return f"<LiveServer {self.url}>"


@asynccontextmanager
async def open_live_server(
    app: Handler | Any,
    *,
    host: str = "127.0.0.1",
    config: HTTPConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
    grace_period: float = 10.0,
) -> AsyncIterator[LiveServer]:
    """Serve *app* on *host* (a loopback address) at a port the OS picks, for the block.

    This is :func:`trio_upgrade.http.serve` on real sockets, for tests that
    drive the app with third-party clients (httpx, websockets, a browser) or
    need the OS in the loop. Leaving the block shuts the server down
    gracefully; if the block raised, at once. An ASGI 3 application is
    served through :class:`trio_upgrade.asgi.ASGIHandler`, inside its lifespan.
    """
    if is_asgi_app(app):
        async with Lifespan(app) as state:
            handler = ASGIHandler(app, state=state)
            async with open_live_server(
                handler,
                host=host,
                config=config,
                ssl_context=ssl_context,
                grace_period=grace_period,
            ) as live:
                yield live
        return
    bind = f"[{host}]:0" if ":" in host else f"{host}:0"
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            partial(
                serve,
                app,
                bind,
                config=config,
                ssl_context=ssl_context,
                grace_period=grace_period,
            )
        )
        try:
            yield LiveServer(server, tls=ssl_context is not None)
        except BaseException as exc:
            # Raised after the nursery, as itself rather than in an exception group.
            error = exc
            server.cancel_connections()
            nursery.cancel_scope.cancel()
        else:
            await server.aclose()
    if error is not None:
        raise error
