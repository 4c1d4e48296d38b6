"""Backends: where a route forwards to, a TCP ``host:port`` or a Unix socket."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import final
from urllib.parse import urlsplit

import trio

from ._errors import BackendTimeout, BackendUnreachable

__all__ = ["Backend"]


@final
@dataclass(frozen=True, slots=True)
class Backend:
    """A backend server: ``Backend.parse("http://127.0.0.1:8001")`` or
    ``Backend.parse("unix:/run/app.sock")``.

    Exactly one of ``host`` (with ``port``) and ``unix_path`` is set.
    *base_path* (``"/v1"``, no trailing slash) is put before every forwarded
    path; ``http://host:port/v1`` sets it. Backends are plain HTTP/1.1 (no TLS):
    they live on the same machine or network as the proxy. Hashable: the
    connection pool is keyed by it.
    """

    host: str | None = None
    port: int = 80
    unix_path: str | None = None
    base_path: str = ""

    def __post_init__(self) -> None:
        if (self.host is None) == (self.unix_path is None):
            raise ValueError("a backend has either a host or a unix_path")
        if self.host is not None and not self.host:
            raise ValueError("empty backend host")
        if self.unix_path is not None and not self.unix_path:
            raise ValueError("empty backend Unix socket path")
        if not 0 < self.port < 65536:
            raise ValueError(f"backend port {self.port} out of range")
        if self.base_path and (not self.base_path.startswith("/") or self.base_path.endswith("/")):
            raise ValueError("a backend base_path starts with '/' and does not end with one")

    @classmethod
    def parse(cls, url: str) -> Backend:
        """``http://host[:port][/base]`` (IPv6 as ``[::1]``) or ``unix:/path/to.sock``."""
        if url.startswith("unix:"):
            path = url[len("unix:") :]
            if not path:
                raise ValueError(f"no socket path in backend {url!r}")
            return cls(unix_path=path)
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(
                f"backend {url!r}: expected 'http://host:port' or 'unix:/path.sock'"
                + (" (TLS to backends is not supported)" if parts.scheme == "https" else "")
            )
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"backend {url!r} may not have a query, fragment or credentials")
        host = parts.hostname
        if not host:
            raise ValueError(f"no host in backend {url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError(f"bad port in backend {url!r}") from None
        return cls(host=host, port=port, base_path=parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        """``host:port`` for the ``Host`` header (``localhost`` for a Unix socket)."""
        if self.host is None:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    async def connect(self, connect_timeout: float | None = None) -> trio.SocketStream:
        """Open a connection to the backend.

        Raises :class:`BackendUnreachable` when the connection is refused or the
        socket does not exist, :class:`BackendTimeout` after *connect_timeout* seconds.
        """
        with trio.move_on_after(math.inf if connect_timeout is None else connect_timeout) as scope:
            try:
                if self.unix_path is not None:
                    return await trio.open_unix_socket(self.unix_path)
                assert self.host is not None
                return await trio.open_tcp_stream(self.host, self.port)
            except OSError as exc:
                raise BackendUnreachable(f"cannot connect to {self}: {exc}") from exc
        assert scope.cancelled_caught
        raise BackendTimeout(f"connecting to {self} took longer than {connect_timeout} s")

    def __str__(self) -> str:
        if self.unix_path is not None:
            where = f"unix:{self.unix_path}"
        else:
            where = f"http://{self.authority}"
        return where + self.base_path
