"""examples/gateway.py: the gateway serves the HTTP service and tunnels the WebSocket one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import trio
from _proxy_helpers import fetch
from websockets.trio.client import connect

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


async def test_gateway_example_routes_http_and_websocket(
    nursery: trio.Nursery, sock_dir: str
) -> None:
    gateway = load_example()
    running = await gateway.start_gateway(nursery, "127.0.0.1:0", sock_dir)
    async with running.proxy:
        await nursery.start(running.gateway.serve)
        address = running.gateway.addresses[0]

        page = await fetch(address, "GET", "/")
        assert page.status == 200
        assert b"<title>trio_upgrade gateway</title>" in page.body

        added = await fetch(address, "POST", "/api/notes", body=b"buy milk")
        assert (added.status, json.loads(added.body)[-1]) == (201, "buy milk")

        counted = await fetch(address, "GET", "/api/count?to=2")
        assert (counted.body, counted.header(b"transfer-encoding")) == (b"1\n2\n", b"chunked")
        refused = await fetch(address, "GET", "/api/count?to=many")
        assert (refused.status, refused.body) == (400, b"to must be a whole number\n")

        host, port = address
        async with connect(f"ws://{host}:{port}/echo", proxy=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "echo: hello"
            await ws.send(b"\x00binary")
            assert await ws.recv() == b"\x00binary"
