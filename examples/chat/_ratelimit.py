"""A token bucket, sans I/O: the caller passes the clock."""

from __future__ import annotations

from typing import final

__all__ = ["TokenBucket"]


@final
class TokenBucket:
    """Allows *rate* events per second on average and bursts of up to *burst*.

    Starts full. ``allow(now)`` takes one token if there is one; *now* is any
    monotonic clock in seconds (``trio.current_time()`` in the server, plain
    numbers in tests).
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("need rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        # None until the first call, so the bucket does not depend on the clock's origin.
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
