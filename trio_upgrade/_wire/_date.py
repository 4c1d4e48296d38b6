"""The ``Date`` field value (RFC 9110 §6.6.1), built once a second."""

from __future__ import annotations

import time
from email.utils import formatdate

__all__ = ["http_date"]

_cache: tuple[int, bytes] = (0, b"")


def http_date(now: float | None = None) -> bytes:
    """``IMF-fixdate`` for *now* (default: the current time), e.g.
    ``b"Sun, 06 Nov 1994 08:49:37 GMT"``. The current second's value is cached."""
    global _cache
    if now is not None:
        return formatdate(now, usegmt=True).encode("ascii")
    second = int(time.time())
    if _cache[0] != second:
        _cache = (second, formatdate(second, usegmt=True).encode("ascii"))
    return _cache[1]
