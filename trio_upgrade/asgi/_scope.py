"""Scopes built from a :class:`~trio_upgrade.http.Request` (ASGI 3.0, spec 2.4)."""

from __future__ import annotations

from typing import Any

from ..http import Request

__all__ = ["ASGI_VERSION", "Scope", "address_pair", "http_scope", "raw_path"]

Scope = dict[str, Any]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
"""The ``asgi`` key of every scope (a fresh dict each time: apps may change scopes)."""


def raw_path(target: str) -> bytes:
    """The path part of a request target as sent, still percent-encoded."""
    path = target.partition("?")[0]
    if path[:1] != "/" and "://" in path:
        # absolute-form (RFC 9112 §3.2.2): the path component.
        path = "/" + path.partition("://")[2].partition("/")[2]
    return path.encode("latin-1")


def address_pair(address: tuple[str, int] | str | None, *, server: bool) -> Any:
    """``[host, port]`` for TCP; for a Unix socket ``[path, None]`` as the server
    address and ``None`` as the client's (ASGI spec, "HTTP connection scope")."""
    if address is None:
        return None
    if isinstance(address, str):
        return (address, None) if server else None
    return address


def http_scope(
    request: Request,
    kind: str,
    root_path: str,
    state: dict[str, Any] | None,
    extensions: dict[str, Any] | None,
) -> Scope:
    """The ``http`` or ``websocket`` scope of *request*.

    ``root_path`` is the handler's own prefix followed by the prefix of every
    mount the request crossed; ``path`` is the full path, ``root_path``
    included (ASGI spec 2.4 and Starlette, which strips ``root_path`` from
    ``path`` to route). ``state`` is a shallow copy of the lifespan state.
    """
    scheme = request.scheme
    if kind == "websocket":
        scheme = "wss" if scheme == "https" else "ws"
    target = request.target
    client = request.client
    server = request.server
    scope: Scope = {
        "type": kind,
        "asgi": {**ASGI_VERSION},
        "http_version": request.http_version,
        "method": request.method,
        "scheme": scheme,
        "path": root_path + request.path if root_path else request.path,
        # origin-form without a query (the common case) is its own raw path.
        "raw_path": (
            target.encode("latin-1")
            if target[:1] == "/" and "?" not in target
            else raw_path(target)
        ),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": root_path + request.root_path,
        "headers": list(request.headers.raw),
        # TCP addresses (tuples) are the scope's as they are.
        "client": client if type(client) is tuple else address_pair(client, server=False),
        "server": server if type(server) is tuple else address_pair(server, server=True),
    }
    if state is not None:
        scope["state"] = dict(state)
    if extensions is not None:
        scope["extensions"] = extensions
    return scope
