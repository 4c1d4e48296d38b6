"""Layer 2: a streaming reverse proxy with Upgrade (WebSocket) tunnels.

Imports ``http`` and ``core`` (and h11 for its client side); an upgraded
connection is tunnelled as raw bytes, so no WebSocket code is involved.

::

    from trio_upgrade.http import serve
    from trio_upgrade.proxy import Proxy, ProxyConfig

    proxy = Proxy(
        {"/": "unix:/run/site.sock", "/api": "http://127.0.0.1:8001"},
        config=ProxyConfig(pool_size=64),
    )
    async with proxy:                          # closes pooled connections at the end
        await serve(proxy, "0.0.0.0:8080")     # or: router.mount("/svc", proxy)

- :class:`Proxy`: the HTTP handler (``await proxy(request)`` returns a
  ``Response`` streamed from the backend, or a :class:`Tunnel` takeover for an
  upgrade the route allows); ``add_route``, ``statistics()``, ``aclose()``.
- :class:`ProxyRoute` (prefix, backend, ``strip_prefix``, ``preserve_host``,
  ``upgrades``: the protocols it tunnels, WebSocket by default),
  :class:`Backend` (``http://host:port[/base]`` or ``unix:/path.sock``),
  :class:`ProxyConfig` (timeouts, pool, limits, forwarding headers),
  :class:`ProxyStatistics`.
- :class:`Tunnel`: the Upgrade takeover (two tasks pumping bytes).
- Errors (:class:`ProxyError` tree): 502 :class:`BackendUnreachable` and
  :class:`BadBackendResponse`, 504 :class:`BackendTimeout`.

See ``docs/proxy.md``.
"""

from __future__ import annotations

from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BackendUnreachable, BadBackendResponse, ProxyError
from ._proxy import Proxy, ProxyStatistics
from ._routes import ProxyRoute
from ._tunnel import Tunnel

__all__ = [
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
]
