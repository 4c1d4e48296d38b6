"""The package's exception root, and the errors of the wire layer.

Every exception class trio_upgrade defines derives from :class:`TrioUpgradeError`,
so ``except TrioUpgradeError`` catches whatever the package raises of its own
(and nothing from trio, h11 or wsproto). Classes that also mean a builtin
error keep that base too (``InvalidField`` is a ``ValueError``). The tree,
with each layer's own errors module for its branch::

    TrioUpgradeError                      also trio_upgrade.TrioUpgradeError
    ├── InvalidField (ValueError)         _wire: a header field that must not be written
    ├── FramingError (ValueError)         _wire: framing faulty or ambiguous; .status is the answer
    ├── BindError (ValueError)            core: a bind string could not be understood
    ├── HTTPError                         http: answer the request with .status
    │   ├── RequestBodyTooLarge           413
    │   ├── RequestTimeout                408
    │   └── MalformedBody                 400
    ├── ClientDisconnected                http: the client left while the body was read
    ├── WebSocketError                    ws
    │   ├── ConnectionClosed(code, reason)
    │   │   ├── ConnectionClosedOK
    │   │   └── ConnectionClosedError
    │   └── HandshakeError
    │       └── HandshakeRejected(status, headers, body)
    │           └── WebSocketRejected     testing: the app refused an in-memory handshake
    ├── ProxyError                        proxy: forwarding failed; .status is the answer
    │   ├── BackendUnreachable            502
    │   ├── BadBackendResponse            502
    │   └── BackendTimeout                504
    └── ServerDisconnected (ConnectionError)
                                          testing: the server closed before a whole response

This module is the ground floor (no trio): every layer may import it.
"""

from __future__ import annotations

__all__ = ["FramingError", "InvalidField", "TrioUpgradeError"]


class TrioUpgradeError(Exception):
    """Base class of every exception trio_upgrade defines."""


class InvalidField(TrioUpgradeError, ValueError):
    """A header field that must not be written: a non-token name, or a value with
    a control character (CR, LF, NUL, ...) or surrounding whitespace."""


class FramingError(TrioUpgradeError, ValueError):
    """A message whose framing is faulty or ambiguous; *status* is the answer
    (400 or 501 for a request, 502 for a response the proxy read)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status
