"""trio_upgrade: HTTP/1.1 and WebSocket servers on Trio, with connection takeover.

The everyday names are re-exported here; each layer's package
(:mod:`trio_upgrade.core`, :mod:`trio_upgrade.http`, ...) has the rest.
"""

from __future__ import annotations

from .core import PrefixedStream, Server, open_listeners

__version__ = "0.1.0.dev0"

__all__ = [
    "PrefixedStream",
    "Server",
    "__version__",
    "open_listeners",
]
