"""Serving ASGI apps on loopback for the tests, and small raw ASGI apps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from trio_upgrade.asgi import serve
from trio_upgrade.core import Server


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[Server]:
    """*app* served by :func:`trio_upgrade.asgi.serve` on an ephemeral loopback port."""
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", task_status=task_status, **options)
        )
        try:
            yield server
        finally:
            await server.aclose()


def base_url(server: Server, scheme: str = "http") -> str:
    host, port = server.addresses[0]  # type: ignore[misc]
    return f"{scheme}://{host}:{port}"


async def raw_exchange(server: Server, request: bytes, *, read_until_eof: bool = True) -> bytes:
    """Send *request* on a fresh connection; what came back until the server closed."""
    host, port = server.addresses[0]  # type: ignore[misc]
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.move_on_after(10):
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                received += data
                if not read_until_eof and b"\r\n\r\n" in received:
                    break
        return received
