"""trio_upgrade: HTTP/1.1 and WebSocket servers on Trio, with connection takeover.

The everyday names are re-exported here; each layer's package
(:mod:`trio_upgrade.core`, :mod:`trio_upgrade.http`, ...) has the rest.
"""

from __future__ import annotations

from .bridge import App, ServerWebSocket, WebSocketRouter, check_origin
from .core import Connection, PrefixedStream, Server, current_connection, open_listeners
from .http import (
    Headers,
    HTTPConfig,
    HTTPError,
    Request,
    Response,
    Router,
    Takeover,
    run,
    serve,
)
from .proxy import Proxy, ProxyConfig
from .ws import (
    ConnectionClosed,
    WebSocket,
    WebSocketConfig,
    open_websocket,
    serve_websocket,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "App",
    "Connection",
    "ConnectionClosed",
    "HTTPConfig",
    "HTTPError",
    "Headers",
    "PrefixedStream",
    "Proxy",
    "ProxyConfig",
    "Request",
    "Response",
    "Router",
    "Server",
    "ServerWebSocket",
    "Takeover",
    "WebSocket",
    "WebSocketConfig",
    "WebSocketRouter",
    "__version__",
    "check_origin",
    "current_connection",
    "open_listeners",
    "open_websocket",
    "run",
    "serve",
    "serve_websocket",
]
