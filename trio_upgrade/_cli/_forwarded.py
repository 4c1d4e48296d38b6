"""``--proxy-headers``: take the client address and scheme from ``X-Forwarded-For``
and ``X-Forwarded-Proto``, but only on connections from trusted proxies.

A handler wrapper (public API only): it rewrites ``request.client`` and
``request.scheme`` before the app sees the request, so native handlers, the
ASGI scope built from the request and the reverse proxy's own
``X-Forwarded-For`` all see the original client. A request from anyone not in
``--forwarded-allow-ips`` passes unchanged: nobody else can forge an address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

from ..http import Request

__all__ = ["TrustedProxies", "forwarded_headers"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The ``--forwarded-allow-ips`` list: addresses, networks, ``*`` (all), and
    ``unix`` (peers on Unix sockets, which have no address)."""

    def __init__(self, spec: str) -> None:
        self.everyone = False
        self.unix = False
        self.networks: list[Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.everyone = True
            elif item == "unix":
                self.unix = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        if not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def trusts(self, client: object) -> bool:
        if isinstance(client, tuple):
            return client[0] in self
        return self.unix or self.everyone


def forwarded_headers(
    app: Callable[[Request], Awaitable[Any]], trusted: TrustedProxies
) -> Callable[[Request], Awaitable[Any]]:
    """Wrap handler *app*: requests from *trusted* proxies get their forwarded
    client and scheme. ``X-Forwarded-For`` is read right to left, skipping
    trusted proxies: the first untrusted address is the client (the left part
    of the list is what the client itself claimed)."""

    async def handler(request: Request) -> Any:
        if trusted.trusts(request.client):
            _rewrite(request, trusted)
        return await app(request)

    return handler


def _rewrite(request: Request, trusted: TrustedProxies) -> None:
    proto = request.headers.get("x-forwarded-proto")
    if proto is not None:
        # The last value is the nearest proxy's.
        scheme = proto.split(",")[-1].strip().lower()
        if scheme in ("http", "https"):
            request.scheme = scheme
    forwarded_for = request.headers.get_all("x-forwarded-for")
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if not hops:
        return
    client = hops[0]
    for hop in reversed(hops):
        client = hop
        if hop not in trusted:
            break
    host = client.strip("[]") if client.startswith("[") else client
    request.client = (host, 0)
