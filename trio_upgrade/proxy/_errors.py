"""Errors of the reverse proxy.

::

    TrioUpgradeError (trio_upgrade._wire)   the root of every exception trio_upgrade defines
    └── ProxyError               a request could not be forwarded; .status is the answer
        ├── BackendUnreachable   502: the connection to the backend could not be opened
        ├── BadBackendResponse   502: the backend closed early or did not speak HTTP/1.1
        └── BackendTimeout       504: no connection, response head or progress in time

Before the backend's response head has been relayed, the client gets a short
response with :attr:`ProxyError.status`. After it, the error ends the client
connection (the body cannot be finished honestly) and is logged.
"""

from __future__ import annotations

from .._wire._errors import TrioUpgradeError

__all__ = ["BackendTimeout", "BackendUnreachable", "BadBackendResponse", "ProxyError"]


class ProxyError(TrioUpgradeError):
    """Forwarding failed; the client is answered with :attr:`status`."""

    status = 502

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BackendUnreachable(ProxyError):
    """Connecting to the backend failed (refused, no such socket, no route)."""

    status = 502


class BadBackendResponse(ProxyError):
    """The backend closed the connection early or sent something that is not HTTP/1.1."""

    status = 502


class BackendTimeout(ProxyError):
    """The backend did not connect, answer, read or write in time."""

    status = 504
