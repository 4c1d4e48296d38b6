"""Timeouts, limits and header policy of the reverse proxy, all with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProxyConfig"]


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """How a :class:`Proxy` talks to its backends. Times are in seconds; ``None`` means no limit."""

    connect_timeout: float | None = 5.0
    """Longest wait to open a connection to a backend; past it: 504."""
    response_timeout: float | None = 60.0
    """Longest wait for the backend's response head once the request (body
    included) has been sent; past it: 504."""
    read_timeout: float | None = 60.0
    """Longest wait for each piece of a response body; past it the client
    connection is cut (the head has already been relayed)."""
    write_timeout: float | None = 60.0
    """Longest wait for one write to a backend (a backend that stops reading an
    upload); past it: 504, or the connection is cut if the head was relayed."""
    pool_size: int = 32
    """Idle keep-alive connections kept per backend; the oldest beyond it are closed."""
    pool_idle_timeout: float = 4.0
    """An idle pooled connection older than this is closed instead of reused.
    Keep it below the backends' own keep-alive timeout (5 s for trio_upgrade)."""
    max_body_size: int | None = None
    """Largest request body forwarded (checked as it streams; past it: 413).
    ``None``: no limit here, the backend decides. Replaces the HTTP server's
    ``HTTPConfig.max_body_size`` for proxied requests."""
    max_response_head_size: int = 64 * 1024
    """Largest response head accepted from a backend; past it: 502."""
    read_size: int = 64 * 1024
    """Bytes asked of a socket per read when relaying a response body."""
    tunnel_read_size: int = 256 * 1024
    """Bytes asked of a socket per read in an upgrade tunnel: each read is
    passed on with one write, so large reads keep bulk transfers cheap
    (about 20% less proxy CPU for 1 MiB WebSocket messages than 64 KiB reads)."""
    half_close_timeout: float | None = 30.0
    """Once one direction of a tunnel has ended (its sender half-closed), how
    long the other direction may go on before the tunnel is closed."""
    x_forwarded: bool = True
    """Add ``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``
    (and ``X-Forwarded-Prefix`` when a prefix is stripped)."""
    forwarded: bool = False
    """Add an RFC 7239 ``Forwarded`` header."""
    trust_forwarded: bool = False
    """Keep the forwarding headers the client sent and append to them (for a
    proxy behind another trusted proxy). When false they are removed first, so
    a client cannot forge them."""

    def __post_init__(self) -> None:
        if self.pool_size < 0:
            raise ValueError("pool_size must not be negative")
        if self.read_size < 1 or self.tunnel_read_size < 1:
            raise ValueError("read_size and tunnel_read_size must be positive")
        if self.max_response_head_size < 1024:
            raise ValueError("max_response_head_size must be at least 1024 bytes")
