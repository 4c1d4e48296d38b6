"""docs/http.md stays true: its code compiles, its examples run, its names exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from _http_helpers import open_memory_connection

import trio_upgrade.http

DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def block_with(marker: str) -> str:
    (block,) = [b for b in python_blocks() if marker in b]
    return block


def test_every_python_block_compiles() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# What a user writing an app, a handler, a middleware or a test needs; the
# routing and error helpers other layers share stay in private modules.
EXPORTED = {
    "BodySource",
    "CORSMiddleware",
    "ClientDisconnected",
    "DirectResponse",
    "GZipMiddleware",
    "HTTPConfig",
    "HTTPError",
    "Handler",
    "Headers",
    "HeadersLike",
    "MalformedBody",
    "Match",
    "MethodNotAllowed",
    "Middleware",
    "NotFound",
    "QueryParams",
    "Request",
    "RequestBody",
    "RequestBodyTooLarge",
    "RequestTimeout",
    "Response",
    "ResponseWriter",
    "Route",
    "RouteMatch",
    "Router",
    "State",
    "Takeover",
    "TakeoverOutcome",
    "app_lifespan",
    "create_server",
    "run",
    "serve",
    "serve_http_connection",
}


def test_exports_are_exactly_the_public_api() -> None:
    assert set(trio_upgrade.http.__all__) == EXPORTED
    assert len(trio_upgrade.http.__all__) == len(EXPORTED)


def test_every_public_name_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in trio_upgrade.http.__all__ if f"`{name}" not in text]
    assert missing == []


def test_every_exported_name_exists() -> None:
    for name in trio_upgrade.http.__all__:
        assert hasattr(trio_upgrade.http, name), name


async def test_first_example_serves_hello_and_typed_parameters() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(block_with("def user(request"), namespace)
    async with open_memory_connection(namespace["router"]) as client:
        hello = await client.request("GET", "/")
        user = await client.request("GET", "/users/3")
    assert hello.body == b"hello\n"
    assert user.body == b'{"id":3}'


async def test_takeover_example_upgrades_and_shouts() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(block_with("class Shout"), namespace)
    async with open_memory_connection(namespace["router"]) as client:
        refused = await client.request("GET", "/shout")
        assert refused.status == 426
        await client.send(
            b"GET /shout HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\nhi"
        )
        assert (await client.reader.read_head()).status == 101
        assert await client.reader.read_exactly(2) == b"HI"
        await client.send(b"there")
        assert await client.reader.read_exactly(5) == b"THERE"
        await client.stream.send_eof()
        await client.finished.wait()
