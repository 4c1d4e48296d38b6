"""Proxy routes: a path prefix and the backend it forwards to; longest prefix wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import final

from .._wire import is_token
from ._backend import Backend

__all__ = ["ProxyRoute", "match_route"]


@final
@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """Forward every path under *prefix* to *backend*.

    *prefix* starts with ``/`` and does not end with one (``/`` alone matches
    everything); it matches at segment boundaries: ``/api`` takes ``/api`` and
    ``/api/x``, not ``/apix``. With *strip_prefix* the backend sees the path
    without it (``/api/x`` → ``/x``), together with the prefix of any router
    the proxy is mounted under. With *preserve_host* the client's ``Host`` is
    forwarded; otherwise the backend's own authority is sent.

    *upgrades* names the protocols an ``Upgrade`` request may switch to through
    this route (case-insensitive, compared without a ``/version``); the default
    is WebSocket only. An upgrade to anything else (``h2c``, say) is forwarded
    as an ordinary request without its ``Upgrade`` field, as nginx does: the
    backend can never answer it with a ``101`` the proxy would tunnel.
    """

    prefix: str
    backend: Backend
    strip_prefix: bool = True
    preserve_host: bool = True
    upgrades: tuple[str, ...] = ("websocket",)

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or (self.prefix != "/" and self.prefix.endswith("/")):
            raise ValueError(
                f"proxy prefix {self.prefix!r} must start with '/' and not end with one"
            )
        if isinstance(self.upgrades, str):
            raise TypeError("upgrades is a tuple of protocol names, e.g. ('websocket',)")
        names = tuple(name.lower() for name in self.upgrades)
        for name in names:
            if not is_token(name.encode("latin-1")):
                raise ValueError(f"upgrade protocol {name!r} is not a token")
        object.__setattr__(self, "upgrades", names)

    def matches(self, path: str) -> bool:
        """Whether *path* (decoded) lies under this route's prefix."""
        prefix = self.prefix
        if prefix == "/":
            return True
        return path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/")

    def allowed_upgrades(self, offered: Iterable[bytes]) -> list[bytes]:
        """The protocols of an ``Upgrade`` field (lower-cased list elements, as
        ``_wire.list_tokens`` gives them) that this route tunnels."""
        allowed = {name.encode("latin-1") for name in self.upgrades}
        return [p for p in offered if p.partition(b"/")[0].strip() in allowed]


def match_route(routes: Iterable[ProxyRoute], path: str) -> ProxyRoute | None:
    """The route with the longest prefix that *path* lies under, or ``None``."""
    best: ProxyRoute | None = None
    for route in routes:
        if route.matches(path) and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best
