"""WebSocket values on the HTTP/1.1 wire (RFC 6455 §4): no framing, no wsproto.

The opening handshake's key exchange, shared by the WebSocket server, the
client and the test client's checks.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["WEBSOCKET_GUID", "accept_key"]

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""The GUID appended to a client's key (RFC 6455 §1.3)."""


def accept_key(key: bytes | str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 step 5.4)."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + WEBSOCKET_GUID).digest()).decode("ascii")
