"""Errors of the WebSocket layer.

::

    TrioUpgradeError (trio_upgrade._wire)    the root of every exception trio_upgrade defines
    └── WebSocketError
        ├── ConnectionClosed(code, reason)   the session is over; sending/receiving is impossible
        │   ├── ConnectionClosedOK           closed normally: 1000, 1001 (going away),
        │   │                                or a Close frame without a code (1005)
        │   └── ConnectionClosedError        anything else: a protocol error (1002, 1007,
        │                                    1009 ...), a keepalive timeout (1011), or an
        │                                    abrupt disconnect without a Close frame (1006)
        └── HandshakeError                   the client's opening handshake failed (bad URL,
            │                                timeout, malformed or non-conforming response)
            └── HandshakeRejected(status, headers, body)
                                             the server answered with something other than 101

Raw trio or wsproto exceptions never escape a session: a broken stream is a
:class:`ConnectionClosedError` with code 1006.
"""

from __future__ import annotations

from .._wire._errors import TrioUpgradeError

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "HandshakeRejected",
    "WebSocketError",
]

# RFC 6455 section 7.4.1: codes that end a session normally.
NORMAL_CLOSE_CODES = frozenset({1000, 1001, 1005})


class WebSocketError(TrioUpgradeError):
    """Base class of every error this layer raises."""


class ConnectionClosed(WebSocketError):
    """The session is closed; *code* and *reason* tell how (RFC 6455 section 7.4).

    Raised by ``receive``/``send``/``ping`` once the session has ended, whoever ended it.
    Use :func:`closed_error` to get the right subclass for a code.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed with code {self.code}" + (
            f" ({self.reason})" if self.reason else ""
        )


class ConnectionClosedOK(ConnectionClosed):
    """Closed normally: 1000, 1001, or a Close frame without a code (1005)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed abnormally: protocol error, policy, timeout, or 1006 (no Close frame)."""


def closed_error(code: int, reason: str = "") -> ConnectionClosed:
    """The :class:`ConnectionClosed` subclass instance that matches *code*."""
    if code in NORMAL_CLOSE_CODES:
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)


class HandshakeError(WebSocketError):
    """The opening handshake could not be completed (client side)."""


class HandshakeRejected(HandshakeError):
    """The server refused the upgrade: it answered *status* with *headers* and *body*.

    *headers* is a list of ``(name, value)`` byte pairs, names lower-cased;
    *body* is at most the client's response-body limit.
    """

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        super().__init__(f"server rejected the WebSocket handshake with status {status}")
        self.status = status
        self.headers = headers
        self.body = body
