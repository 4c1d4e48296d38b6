"""A WebSocket-only echo server: no HTTP router, just serve_websocket.

    python examples/ws_echo.py                 # ws://127.0.0.1:8765/
    python examples/ws_echo.py 0.0.0.0:9000 unix:/tmp/echo.sock

Clients must ask for the "echo" subprotocol (or none). A browser page may
connect only from this machine: an ``Origin`` whose host is not exactly
``localhost``, ``127.0.0.1`` or ``::1`` (any port) is refused with 403 before
any WebSocket traffic, and so is a malformed one; clients that send no
``Origin`` (scripts, ``python -m websockets``) carry no browser cookies and
are let in. Stop with Ctrl+C: open sessions are closed with 1001 and given a
few seconds to finish.

The origin is parsed with the library's :func:`~trio_upgrade.bridge.parse_origin`
and its host compared whole: a prefix test such as
``origin.startswith("http://localhost")`` would let a page on
``http://localhost.evil.example`` in. (An :class:`~trio_upgrade.bridge.App`
has :func:`~trio_upgrade.bridge.check_origin` as WebSocket middleware; a
standalone server checks in its handshake hook, as here.)
"""

from __future__ import annotations

import logging
import signal
import sys

import trio

from trio_upgrade.bridge import parse_origin
from trio_upgrade.core import Server
from trio_upgrade.ws import (
    Accept,
    HandshakeRequest,
    Reject,
    WebSocket,
    WebSocketConfig,
    serve_websocket,
)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def origin_allowed(request: HandshakeRequest) -> bool:
    """No ``Origin`` (not a browser), or exactly one naming a host on this machine."""
    values = request.get_all("origin")
    if not values:
        return True
    if len(values) > 1:
        return False
    origin = parse_origin(values[0])  # None when malformed, including "null"
    return origin is not None and origin.host in LOCAL_HOSTS


async def handshake(request: HandshakeRequest) -> Accept | Reject:
    if not origin_allowed(request):
        return Reject(403, [(b"content-type", b"text/plain")], b"origin not allowed\n")
    return Accept(subprotocol="echo" if "echo" in request.subprotocols else None)


async def echo(ws: WebSocket) -> None:
    async for message in ws:  # ends when the client closes normally
        await ws.send(message)


async def main(binds: list[str]) -> None:
    config = WebSocketConfig(max_message_size=4 * 1024 * 1024, ping_interval=30)
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve_websocket(
                echo,
                *binds,
                handshake=handshake,
                config=config,
                grace_period=5,
                task_status=task_status,
            )
        )
        for address in server.addresses:
            logging.info("listening on %s", address)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        await server.aclose()  # graceful: sessions get 1001, then grace_period
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trio.run(main, sys.argv[1:] or ["127.0.0.1:8765"])
