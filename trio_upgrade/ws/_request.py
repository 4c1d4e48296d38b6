"""The opening-handshake request, as a frozen value a session carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .._wire import Address, split_list

__all__ = ["Address", "HandshakeRequest", "split_header_tokens"]

Headers = tuple[tuple[bytes, bytes], ...]


def split_header_tokens(values: Iterable[bytes]) -> list[str]:
    """Comma-separated list elements of every value, stripped, empties dropped (RFC 9110 §5.6.1)."""
    return [element.decode("latin-1") for element in split_list(values)]


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The HTTP request that opened a WebSocket session (RFC 6455 §4.1).

    On the server it is what the client sent; on the client it is what we sent
    (then *client* is our address and *server* the peer's).
    """

    path: str
    """Request target: path and query, e.g. ``"/chat?room=1"``."""
    headers: Headers = ()
    """Header fields in order, as ``(name, value)`` bytes with lower-case names."""
    client: Address | None = None
    """The client's address, when known."""
    server: Address | None = None
    """The server's address, when known."""
    method: str = "GET"

    @property
    def query(self) -> str:
        """The part of :attr:`path` after ``?`` (empty if none)."""
        return self.path.partition("?")[2]

    def get(self, name: str | bytes, default: str | None = None) -> str | None:
        """The value of header *name* (case-insensitive), several joined with ``", "``."""
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    def get_all(self, name: str | bytes) -> list[str]:
        """Every value of header *name* (case-insensitive), decoded as Latin-1."""
        key = (name.encode("latin-1") if isinstance(name, str) else name).lower()
        return [v.decode("latin-1") for n, v in self.headers if n == key]

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered (``Sec-WebSocket-Protocol``), in its order."""
        return split_header_tokens(v for n, v in self.headers if n == b"sec-websocket-protocol")
