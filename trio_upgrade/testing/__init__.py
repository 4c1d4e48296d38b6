"""Test harness: drive an app in memory, or serve it on loopback for real clients.

- :class:`AppClient`: runs an app (``App``, ``Router`` or any handler) in
  process over memory streams, through the same server code a socket goes
  through; ``await client.get(...)``, ``client.stream(...)``,
  ``client.websocket(...)``, ``client.connect()`` for keep-alive,
  ``client.shutdown()`` to rehearse a graceful drain.
- :class:`ClientResponse`: status, headers, body (whole or streamed), text, JSON.
- :func:`open_live_server` / :class:`LiveServer`: the app on an ephemeral
  loopback port, for third-party clients.
- The pytest plugin (loaded automatically): fixtures ``app_client`` and
  ``app_server`` for a user-provided ``app`` fixture.

Names are imported on first use, so that the pytest plugin, which pytest loads
in every project where trio_upgrade is installed, costs next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import AppClient, ClientConnection, RequestContent
    from ._errors import ServerDisconnected, WebSocketRejected
    from ._live import LiveServer, open_live_server
    from ._response import ClientResponse

__all__ = [
    "AppClient",
    "ClientConnection",
    "ClientResponse",
    "LiveServer",
    "RequestContent",
    "ServerDisconnected",
    "WebSocketRejected",
    "open_live_server",
]

_MODULES = {
    "AppClient": "._client",
    "ClientConnection": "._client",
    "RequestContent": "._client",
    "ClientResponse": "._response",
    "LiveServer": "._live",
    "open_live_server": "._live",
    "ServerDisconnected": "._errors",
    "WebSocketRejected": "._errors",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
