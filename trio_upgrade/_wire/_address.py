"""The address of one end of a connection."""

from __future__ import annotations

__all__ = ["Address", "normalize_address"]

Address = tuple[str, int] | str
"""``(host, port)`` for TCP (IPv4 or IPv6, without brackets), a path for Unix sockets."""


def normalize_address(name: object) -> Address:
    """The :data:`Address` of a ``getsockname``/``getpeername`` result: IPv6's
    4-tuple becomes ``(host, port)``, a Unix socket's path is decoded, an unnamed
    Unix socket is ``""``."""
    if isinstance(name, tuple) and len(name) >= 2:
        return (str(name[0]), int(name[1]))
    if isinstance(name, bytes):
        return name.decode("utf-8", "surrogateescape")
    return str(name) if name is not None else ""
