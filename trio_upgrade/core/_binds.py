"""Bind strings and the listeners they open.

A bind string names one place to listen:

- ``"127.0.0.1:8000"``, ``"localhost:8000"``, ``"0.0.0.0:0"`` (port 0: ephemeral)
- ``"[::1]:8000"``, ``"[::]:0"`` (IPv6, in brackets as in URLs)
- ``"unix:/path/to.sock"`` (a Unix-domain stream socket)

Parsing is pure (:func:`parse_bind`); opening is :func:`open_listeners`.
Any listener can be wrapped in TLS by passing an :class:`ssl.SSLContext`.
"""

from __future__ import annotations

import errno
import os
import socket as _stdlib_socket
import ssl
import stat
from dataclasses import dataclass

import trio

from ._errors import BindError

__all__ = [
    "Bind",
    "BindError",
    "listener_address",
    "open_listeners",
    "open_unix_listener",
    "parse_bind",
]

# Kernel default on Linux caps this at net.core.somaxconn anyway.
DEFAULT_BACKLOG = 1024


@dataclass(frozen=True, slots=True)
class Bind:
    """Where to listen: a TCP host and port, or a Unix socket path."""

    host: str | None = None
    """Host name or address for TCP (``None`` for Unix sockets)."""
    port: int = 0
    """TCP port; 0 asks the OS for a free one."""
    path: str | None = None
    """Filesystem path of a Unix socket (``None`` for TCP)."""

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        assert self.host is not None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_bind(spec: str) -> Bind:
    """Parse a bind string into a :class:`Bind`; raise :class:`BindError` if malformed."""
    if spec.startswith("unix:"):
        path = spec[len("unix:") :]
        if not path:
            raise BindError(f"{spec!r}: empty Unix socket path")
        return Bind(path=path)
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep or not host or not rest.startswith(":"):
            raise BindError(f"{spec!r}: expected [ipv6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = spec.rpartition(":")
        if not sep or not host:
            raise BindError(f"{spec!r}: expected host:port or unix:/path")
        if ":" in host:
            raise BindError(f"{spec!r}: IPv6 addresses go in brackets, e.g. [::1]:8000")
    # Plain ASCII digits only: int() would also take " 80", "+80", "8_000" and
    # non-ASCII digits, none of which is a port in a bind string.
    if not (port_text.isascii() and port_text.isdigit()):
        raise BindError(f"{spec!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise BindError(f"{spec!r}: port {port} out of range")
    return Bind(host=host, port=port)


async def open_unix_listener(
    path: str, *, mode: int | None = None, backlog: int = DEFAULT_BACKLOG
) -> trio.SocketListener:
    """Listen on a Unix-domain stream socket at *path*.

    A stale socket file left by an earlier process is removed first; a socket
    file some live process still listens on raises ``OSError(EADDRINUSE)``, and
    any other kind of file at *path* raises :class:`FileExistsError` (we never
    delete a regular file). *mode* (e.g. ``0o660``) is applied to the socket
    file after binding and before listening, so no client connects earlier.
    The socket file is left in place when the listener closes (the next bind
    removes it as stale).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "not a socket, refusing to replace", path)
        if await _unix_socket_in_use(path):
            raise OSError(errno.EADDRINUSE, "a server is listening on this socket", path)
        os.unlink(path)
    sock = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def _unix_socket_in_use(path: str) -> bool:
    """Whether a process listens on the socket file at *path* (probe by connecting).

    Unlinking a live server's socket file would silently steal its future
    clients, so only a socket nobody answers on counts as stale.
    """
    probe = trio.socket.socket(_stdlib_socket.AF_UNIX, _stdlib_socket.SOCK_STREAM)
    with probe:
        try:
            await probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
    return True


async def open_listeners(
    *binds: str | Bind,
    ssl_context: ssl.SSLContext | None = None,
    unix_mode: int | None = None,
    backlog: int = DEFAULT_BACKLOG,
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Open one or more listeners for each bind (a host name may resolve to several).

    With *ssl_context*, every listener is wrapped in :class:`trio.SSLListener`
    (``https_compatible=True``: peers that close without ``close_notify`` are
    treated as a normal EOF, as HTTP clients do).
    On failure, listeners opened so far are closed.
    """
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    try:
        for item in binds:
            bind = parse_bind(item) if isinstance(item, str) else item
            raw: list[trio.SocketListener]
            if bind.path is not None:
                raw = [await open_unix_listener(bind.path, mode=unix_mode, backlog=backlog)]
            else:
                host = bind.host
                if host in ("", "*"):
                    host = None
                raw = await trio.open_tcp_listeners(bind.port, host=host, backlog=backlog)
            for sock_listener in raw:
                if ssl_context is not None:
                    listeners.append(
                        trio.SSLListener(sock_listener, ssl_context, https_compatible=True)
                    )
                else:
                    listeners.append(sock_listener)
    except BaseException:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(listener)
        raise
    return listeners


def listener_address(listener: trio.abc.Listener[trio.abc.Stream]) -> tuple[str, int] | str:
    """The address a listener is bound to: ``(host, port)`` for TCP, a path for Unix."""
    inner: object = listener
    while isinstance(inner, trio.SSLListener):
        inner = inner.transport_listener
    if not isinstance(inner, trio.SocketListener):
        raise TypeError(f"cannot tell the address of {listener!r}")
    name = inner.socket.getsockname()
    if isinstance(name, str):
        return name
    if isinstance(name, bytes):
        return name.decode()
    return (str(name[0]), int(name[1]))
