"""trio_upgrade: HTTP/1.1 and WebSocket servers on Trio, with connection takeover.

The everyday names are re-exported here; each layer's package
(:mod:`trio_upgrade.core`, :mod:`trio_upgrade.http`, ...) has the rest.

Every exception the package defines derives from :class:`TrioUpgradeError`.

The re-exports are lazy (PEP 562): ``import trio_upgrade.http`` loads the HTTP
layer and what it needs, not wsproto, the bridge or the proxy. A name is
imported from its layer the first time it is looked up here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._entry import run, serve
    from .bridge import App, ServerWebSocket, WebSocketRouter, check_origin
    from .core import (
        Connection,
        PrefixedStream,
        Server,
        TrioUpgradeError,
        current_connection,
        open_listeners,
    )
    from .http import (
        Headers,
        HTTPConfig,
        HTTPError,
        Request,
        Response,
        Router,
        Takeover,
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

# Where each re-exported name lives.
_EXPORTS: dict[str, str] = {
    "App": "bridge",
    "ServerWebSocket": "bridge",
    "WebSocketRouter": "bridge",
    "check_origin": "bridge",
    "Connection": "core",
    "PrefixedStream": "core",
    "Server": "core",
    "TrioUpgradeError": "core",
    "current_connection": "core",
    "open_listeners": "core",
    "Headers": "http",
    "HTTPConfig": "http",
    "HTTPError": "http",
    "Request": "http",
    "Response": "http",
    "Router": "http",
    "Takeover": "http",
    # Dispatchers: a native handler goes to http, an ASGI 3 app to asgi.
    "run": "_entry",
    "serve": "_entry",
    "Proxy": "proxy",
    "ProxyConfig": "proxy",
    "ConnectionClosed": "ws",
    "WebSocket": "ws",
    "WebSocketConfig": "ws",
    "open_websocket": "ws",
    "serve_websocket": "ws",
}

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
    "TrioUpgradeError",
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


def __getattr__(name: str) -> Any:
    layer = _EXPORTS.get(name)
    if layer is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{layer}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
