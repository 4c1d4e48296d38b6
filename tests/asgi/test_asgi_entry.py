"""``trio_upgrade.serve``/``run`` take a native handler or an ASGI 3 app alike."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import trio

import trio_upgrade
from trio_upgrade.http import Request, Response

shutdowns: list[str] = []


async def native(request: Request) -> Response:
    return Response.text("native")


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "asgi with state"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                shutdowns.append(scope["state"]["greeting"])
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = scope["state"]["greeting"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _get(app: Any) -> str:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_upgrade.serve, app, "127.0.0.1:0")
        host, port = server.addresses[0]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{host}:{port}/")
        nursery.cancel_scope.cancel()
    return response.text


async def test_serve_takes_a_native_handler() -> None:
    assert await _get(native) == "native"


async def test_serve_takes_an_asgi_app_with_its_lifespan() -> None:
    """Startup before serving; a server stopped by cancellation still sends the shutdown."""
    shutdowns.clear()
    assert await _get(asgi_app) == "asgi with state"
    assert shutdowns == ["asgi with state"]


def test_serving_a_native_app_never_loads_the_asgi_or_websocket_layers() -> None:
    code = (
        "import sys, trio, trio_upgrade\n"
        "async def app(request): ...\n"
        "async def main():\n"
        "    async with trio.open_nursery() as n:\n"
        "        await n.start(trio_upgrade.serve, app, '127.0.0.1:0')\n"
        "        n.cancel_scope.cancel()\n"
        "trio.run(main)\n"
        "print(sorted(m for m in ('wsproto', 'trio_upgrade.asgi', 'trio_upgrade.ws')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
