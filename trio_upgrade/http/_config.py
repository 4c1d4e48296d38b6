"""Limits and timeouts of the HTTP server, all with safe defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ._parsers import resolve_parser

__all__ = ["HTTPConfig"]

PARSER_ENV = "TRIO_UPGRADE_HTTP_PARSER"


@dataclass(frozen=True, slots=True)
class HTTPConfig:
    """How one HTTP/1.1 connection is served. Times are in seconds; ``None`` means no limit."""

    max_header_size: int = 16 * 1024
    """Largest request head (request line + headers) in bytes; past it: 431."""
    max_body_size: int | None = 10 * 1024 * 1024
    """Default limit on a request body, checked as it is read; past it: 413.
    A handler can change it for one request (``request.max_body_size``) before reading."""
    header_timeout: float | None = 10.0
    """Time a client has to send a complete request head once it has started
    (and, for the first request, from accept); past it: 408 and close."""
    keepalive_timeout: float | None = 5.0
    """How long an idle keep-alive connection waits for the next request."""
    body_timeout: float | None = 30.0
    """Longest wait for each piece of a request body while a handler reads it; past it: 408."""
    min_body_rate: float | None = 500.0
    """Slowest rate, in bytes per second, at which a request body may arrive: the
    whole body must be in ``body_timeout`` seconds after the handler first asks
    for it, plus one second per ``min_body_rate`` bytes received, or the read
    ends with 408 (a body trickled a byte at a time never trips the per-read
    ``body_timeout``). The rule of Apache's ``RequestReadTimeout
    body=20,MinRate=500``; a rate rather than a fixed deadline, so that a large
    upload on a slow but honest link still gets through. Only applies when
    ``body_timeout`` is set."""
    write_timeout: float | None = 30.0
    """Longest wait for one write to the client; past it the connection is dropped."""
    max_drain_size: int = 64 * 1024
    """A body the handler did not read is discarded, up to this many bytes, to keep
    the connection alive; a longer one closes the connection instead."""
    read_size: int = 64 * 1024
    """Bytes asked of the socket per read."""
    max_requests_per_connection: int | None = None
    """Close a keep-alive connection after this many requests."""
    access_log: bool = False
    """Log one line per request to the ``trio_upgrade.access`` logger (INFO)."""
    server_header: str | None = None
    """Value of the ``Server`` header, or ``None`` to send none."""
    date_header: bool = True
    """Send a ``Date`` header (RFC 9110 §6.6.1 asks origin servers with a clock to)."""

    parser: str = field(default_factory=lambda: os.environ.get(PARSER_ENV, "auto"))
    """Which request parser reads the wire: ``"httptools"`` (llhttp, C; the
    ``speedups`` extra), ``"h11"`` (pure Python), or ``"auto"``: httptools when
    it is installed, h11 otherwise. Both give the same behaviour (framing,
    limits, errors are decided above the parser). ``"httptools"`` without it
    installed raises ``RuntimeError`` here. The default comes from the
    ``TRIO_UPGRADE_HTTP_PARSER`` environment variable when it is set."""
    resolved_parser: str = field(init=False, repr=False, compare=False)
    """The parser *parser* names on this machine: ``"h11"`` or ``"httptools"``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolved_parser", resolve_parser(self.parser))
        if self.max_header_size < 1024:
            raise ValueError("max_header_size must be at least 1024 bytes")
        if self.min_body_rate is not None and self.min_body_rate <= 0:
            raise ValueError("min_body_rate must be positive")
        if self.read_size < 1:
            raise ValueError("read_size must be positive")
