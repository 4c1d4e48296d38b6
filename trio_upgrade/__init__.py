"""trio_upgrade: HTTP/1.1 and WebSocket servers on Trio, with connection takeover.

The everyday names are re-exported here; each layer's package
(:mod:`trio_upgrade.core`, :mod:`trio_upgrade.http`, ...) has the rest.
"""

from __future__ import annotations

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

__version__ = "0.1.0.dev0"

__all__ = [
    "Connection",
    "HTTPConfig",
    "HTTPError",
    "Headers",
    "PrefixedStream",
    "Request",
    "Response",
    "Router",
    "Server",
    "Takeover",
    "__version__",
    "current_connection",
    "open_listeners",
    "run",
    "serve",
]
