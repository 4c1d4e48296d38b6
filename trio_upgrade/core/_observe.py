"""The observer: what a server tells about its traffic, for metrics.

A :class:`~trio_upgrade.core.Server` made with ``observer=`` hands it to every
:class:`~trio_upgrade.core.Connection` (``conn.observer``); each protocol layer
calls the methods it knows. Without one the attribute is ``None`` and nothing is
counted: the only cost is that test.
"""

from __future__ import annotations

__all__ = ["Observer"]


class Observer:
    """Receives counts from every layer; subclass it and override what you need.

    Every method here does nothing. The methods are called in the
    connection's task, synchronously: they must return quickly and never
    raise (an exception would end that connection).
    """

    __slots__ = ()

    def request_done(self, method: str, status: int, seconds: float, upgrade: str | None) -> None:
        """An HTTP request was answered with *status* in *seconds* (from its head to
        the end of its response). *upgrade* is the request's ``Upgrade`` header,
        lower-case, or ``None``. A request a takeover answered (a WebSocket
        handshake) is reported when the takeover ends, with the status it
        answered: 101 for an accepted WebSocket, whose *seconds* span the session.
        """

    def session_opened(self) -> None:
        """A WebSocket session started (after its 101)."""

    def session_closed(self) -> None:
        """A WebSocket session that :meth:`session_opened` reported has ended."""

    def message_received(self, size: int) -> None:
        """The application received a WebSocket message of *size* bytes (UTF-8 for text)."""

    def message_sent(self, size: int) -> None:
        """The application sent a WebSocket message of *size* bytes (UTF-8 for text)."""
