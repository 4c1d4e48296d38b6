"""Layer 2: a streaming reverse proxy with Upgrade (WebSocket) tunnels.

Imports ``http`` and ``core``; an upgraded connection is tunnelled as raw bytes.
"""

from __future__ import annotations

from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BackendUnreachable, BadBackendResponse, ProxyError
from ._proxy import Proxy, ProxyStatistics
from ._rewrite import (
    HOP_BY_HOP,
    connection_options,
    forward_target,
    is_upgrade_request,
    rewrite_request_headers,
    rewrite_response_headers,
)
from ._routes import ProxyRoute, match_route
from ._tunnel import Tunnel, pump

__all__ = [
    "HOP_BY_HOP",
    "Backend",
    "BackendTimeout",
    "BackendUnreachable",
    "BadBackendResponse",
    "ProxyConfig",
    "Proxy",
    "ProxyError",
    "ProxyRoute",
    "ProxyStatistics",
    "Tunnel",
    "connection_options",
    "forward_target",
    "is_upgrade_request",
    "match_route",
    "pump",
    "rewrite_request_headers",
    "rewrite_response_headers",
]
