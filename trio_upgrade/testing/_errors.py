"""Errors of the test harness.

::

    TrioUpgradeError (trio_upgrade.core)   the root of every exception trio_upgrade defines
    ├── ServerDisconnected (also the builtin ConnectionError)
    │                                  the server closed the connection before a complete
    │                                  response (or closed a keep-alive connection we reused)
    └── ... WebSocketError ─ HandshakeError ─ HandshakeRejected (trio_upgrade.ws)
            └── WebSocketRejected(response)
                                       the app answered a WebSocket handshake with
                                       something other than 101; ``response`` is that answer

An app's own exception (a handler that raised instead of answering) is re-raised
as itself by the client after the 500 it caused has been received; see
``AppClient(raise_server_exceptions=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import TrioUpgradeError
from ..ws import HandshakeRejected

if TYPE_CHECKING:
    from ._response import ClientResponse

__all__ = ["ServerDisconnected", "WebSocketRejected"]


class ServerDisconnected(TrioUpgradeError, ConnectionError):
    """The server closed the connection before the response was complete."""


class WebSocketRejected(HandshakeRejected):
    """The app refused a WebSocket handshake (middleware, ``ws.reject()``, 404, 426...).

    :attr:`response` is the HTTP response it sent instead of the 101, body read;
    :attr:`status`, :attr:`headers` (lower-cased byte pairs) and :attr:`body`
    are the same answer in the form the ws layer's client uses.
    """

    def __init__(self, response: ClientResponse) -> None:
        super().__init__(response.status_code, list(response.headers.raw), response.content)
        self.response = response
