"""Layer 0: listeners, the serve loop, connection limits, graceful shutdown, prefetched-bytes
streams.

Imports only trio and the standard library.
"""

from __future__ import annotations

from ._binds import (
    Bind,
    BindError,
    listener_address,
    open_listeners,
    open_unix_listener,
    parse_bind,
)
from ._errors import TrioUpgradeError
from ._logging import configure_logging
from ._observe import Observer
from ._prefixed import PrefixedStream
from ._run import run_until_signal
from ._server import (
    Connection,
    ConnectionHandler,
    OverloadResponse,
    Server,
    Shutdown,
    current_connection,
)

__all__ = [
    "Bind",
    "BindError",
    "Connection",
    "ConnectionHandler",
    "Observer",
    "OverloadResponse",
    "PrefixedStream",
    "Server",
    "Shutdown",
    "TrioUpgradeError",
    "configure_logging",
    "current_connection",
    "listener_address",
    "open_listeners",
    "open_unix_listener",
    "parse_bind",
    "run_until_signal",
]
