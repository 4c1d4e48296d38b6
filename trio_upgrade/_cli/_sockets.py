"""Listening sockets the command did not bind itself: ``fd://N`` binds, systemd
socket activation (``LISTEN_FDS``/``LISTEN_PID``), and the fds a supervising
parent hands its workers."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import MutableMapping, Sequence

import trio

from ._settings import CLIError

__all__ = ["SD_LISTEN_FDS_START", "fd_listener", "parse_fd_bind", "systemd_fds"]

# sd_listen_fds(3): the first passed descriptor is always 3.
SD_LISTEN_FDS_START = 3


def parse_fd_bind(spec: str) -> int | None:
    """The descriptor of an ``fd://N`` bind, or ``None`` for any other bind."""
    if not spec.startswith("fd://"):
        return None
    number = spec[len("fd://") :]
    if not (number.isascii() and number.isdigit()):
        raise CLIError(f"{spec!r}: expected fd://N with N a file descriptor number")
    return int(number)


def systemd_fds(environ: MutableMapping[str, str]) -> list[int]:
    """The descriptors systemd passed this process, as sd_listen_fds(3) reads them.

    Only when ``LISTEN_PID`` is this process (the variables may have been
    inherited by mistake); the variables are then removed, as
    ``sd_listen_fds(1)`` does, so that children do not take them for theirs.
    """
    pid, fds = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if pid is None or fds is None:
        return []
    if not (pid.isdigit() and int(pid) == os.getpid()):
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not fds.isdigit():
        raise CLIError(f"LISTEN_FDS={fds!r} is not a number")
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(fds)))


def check_listening(fd: int) -> None:
    """Raise CLIError unless *fd* is a listening stream socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise CLIError(f"fd://{fd}: not a socket ({exc.strerror or exc})") from None
    try:
        kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    finally:
        sock.detach()
    if kind != socket.SOCK_STREAM or not listening:
        raise CLIError(f"fd://{fd}: not a listening stream socket")


def fd_listener(
    fd: int, ssl_context: ssl.SSLContext | None = None
) -> trio.abc.Listener[trio.abc.Stream]:
    """A trio listener on the inherited listening socket *fd* (TLS with *ssl_context*)."""
    check_listening(fd)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(socket.socket(fileno=fd)))
    if ssl_context is None:
        return listener
    return trio.SSLListener(listener, ssl_context, https_compatible=True)


def fd_listeners(
    fds: Sequence[int], ssl_context: ssl.SSLContext | None = None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    return [fd_listener(fd, ssl_context) for fd in fds]
