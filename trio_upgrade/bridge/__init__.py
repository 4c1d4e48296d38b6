"""Layer 2: HTTP and WebSocket on one port — the only layer that knows both.

- :class:`App`: an HTTP :class:`~trio_upgrade.http.Router` plus a
  :class:`WebSocketRouter`; upgrade requests go only to the latter.
- :class:`ServerWebSocket`: what a WebSocket route handler gets — accept or
  reject with any HTTP response before the 101, then send and receive.
- :func:`check_origin`: WebSocket middleware against cross-site WebSocket hijacking;
  :func:`parse_origin` and :class:`Origin` for checks of one's own.
"""

from __future__ import annotations

from ._app import App
from ._origin import Origin, check_origin, parse_origin
from ._router import WebSocketHandler, WebSocketRoute, WebSocketRouter
from ._websocket import ServerWebSocket

__all__ = [
    "App",
    "Origin",
    "ServerWebSocket",
    "WebSocketHandler",
    "WebSocketRoute",
    "WebSocketRouter",
    "check_origin",
    "parse_origin",
]
