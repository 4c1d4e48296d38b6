"""docs/asgi.md stays true: its code compiles, its mount example runs, its names exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import trio_upgrade.asgi
from trio_upgrade.testing import AppClient

DOC = Path(__file__).resolve().parents[2] / "docs" / "asgi.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_every_python_block_compiles() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_exports_are_exactly_the_documented_api() -> None:
    assert sorted(trio_upgrade.asgi.__all__) == [
        "ASGIApp",
        "ASGIError",
        "ASGIHandler",
        "Disconnected",
        "Lifespan",
        "LifespanFailure",
        "LifespanMode",
        "Message",
        "ProtocolError",
        "Receive",
        "Scope",
        "Send",
        "is_asgi_app",
        "run",
        "serve",
        "serve_until_signal",
    ]
    text = DOC.read_text()
    for name in trio_upgrade.asgi.__all__:
        assert f"`{name}" in text, f"{name} is not documented in {DOC.name}"


async def test_the_mount_example_serves_fastapi_beside_native_routes() -> None:
    (block,) = [b for b in python_blocks() if 'app.mount("/api"' in b]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(block, namespace)
    async with AppClient(namespace["app"]) as client:
        assert (await client.get("/")).text == "native"
        assert (await client.get("/api/items/3")).json() == {"item_id": 3}
        assert "/api/openapi.json" in (await client.get("/api/docs")).text
        async with client.websocket("/live") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"
