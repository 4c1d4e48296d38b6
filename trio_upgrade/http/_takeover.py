"""The Takeover hand-off: a handler takes the connection away from HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

import trio

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["Takeover", "TakeoverOutcome"]


@final
@dataclass(frozen=True, slots=True)
class TakeoverOutcome:
    """What a takeover may return, for the access log and metrics: how the
    request it took over was answered. A takeover that returns ``None`` is not
    logged."""

    status: int
    """The status it answered: 101 for an accepted upgrade, else a refusal's."""
    sent: int = 0
    """Bytes of a refusal's response (0 for an upgrade)."""
    close_code: int | None = None
    """For a protocol that has one (WebSocket), the code the session closed with."""


@runtime_checkable
class Takeover(Protocol):
    """What a handler returns, instead of a Response, to own the connection.

    The HTTP layer stops parsing once the request is complete and calls
    ``take_over(stream, prefetched, request)``:

    - *stream* is the raw connection (TLS already unwrapped into plaintext);
    - *prefetched* holds every byte the client sent after the request (h11's
      ``trailing_data``): not one is lost or will be read twice — read these
      first, then the stream (:class:`trio_upgrade.core.PrefixedStream` helps);
    - the takeover writes whatever answer it wants (a 101, a backend's reply).

    When ``take_over`` returns or raises, the HTTP layer closes the stream; an
    exception is logged and ends this connection only. The takeover runs in the
    connection's task, so tasks it starts belong in a nursery it opens itself
    (or :attr:`trio_upgrade.core.Connection.nursery`).

    It may return a :class:`TakeoverOutcome`: the HTTP layer then writes the
    request's access-log line (and tells the connection's observer) when the
    takeover ends, with that status and the whole time it ran.
    """

    async def take_over(
        self, stream: trio.abc.Stream, prefetched: bytes, request: Request
    ) -> TakeoverOutcome | None: ...
