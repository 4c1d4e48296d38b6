"""Layer 1: WebSocket sessions on wsproto, a standalone server and a client.

Imports :mod:`trio_upgrade.core`, :mod:`trio_upgrade._wire`, trio and wsproto only
(never the HTTP layer).

- :func:`websocket_session`: run a session over a stream after a handshake done
  elsewhere (the bridge); :func:`serve_websocket` and :func:`open_websocket` do
  their own handshake.
- :class:`WebSocket`: ``receive``, ``async for``, ``send``, ``send_fragments``,
  ``receive_chunks``, ``ping``, ``aclose``.
- A handshake done elsewhere, sans I/O: :func:`validate_request` (a
  :class:`ClientOffer` or a :class:`Rejection`, whose ``response()`` is the
  refusal to send), :func:`accept` (an :class:`Accepted`, whose ``head()`` is
  the 101 to send); for a client: :func:`client_request`,
  :func:`offered_extensions`, :func:`check_response`. Heads are parsed and
  written by :mod:`trio_upgrade._wire`.
"""

from __future__ import annotations

from ._client import open_websocket
from ._config import Deflate, WebSocketConfig
from ._errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    HandshakeRejected,
    WebSocketError,
)
from ._handshake import (
    Accepted,
    ClientOffer,
    Rejection,
    accept,
    check_response,
    client_request,
    offered_extensions,
    validate_request,
)
from ._request import HandshakeRequest
from ._server import Accept, HandshakeHook, Reject, WebSocketHandler, serve_websocket
from ._session import MessageChunks, WebSocket, websocket_session

__all__ = [
    "Accept",
    "Accepted",
    "ClientOffer",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Deflate",
    "HandshakeError",
    "HandshakeHook",
    "HandshakeRejected",
    "HandshakeRequest",
    "MessageChunks",
    "Reject",
    "Rejection",
    "WebSocket",
    "WebSocketConfig",
    "WebSocketError",
    "WebSocketHandler",
    "accept",
    "check_response",
    "client_request",
    "offered_extensions",
    "open_websocket",
    "serve_websocket",
    "validate_request",
    "websocket_session",
]
