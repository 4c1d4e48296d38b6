"""docs/bridge.md stays true: its code compiles, its examples run, its names exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
from _bridge_helpers import handshake, open_memory_connection, open_ws

import trio_upgrade.bridge

DOC = Path(__file__).resolve().parents[2] / "docs" / "bridge.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def run_block(marker: str) -> dict[str, Any]:
    (block,) = [b for b in python_blocks() if marker in b]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(block, namespace)
    return namespace


def test_every_python_block_compiles() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        compile(block, str(DOC), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_exports_are_exactly_the_documented_api() -> None:
    assert sorted(trio_upgrade.bridge.__all__) == [
        "App",
        "Origin",
        "ServerWebSocket",
        "WebSocketHandler",
        "WebSocketRoute",
        "WebSocketRouter",
        "check_origin",
        "parse_origin",
    ]
    text = DOC.read_text()
    for name in trio_upgrade.bridge.__all__:
        assert hasattr(trio_upgrade.bridge, name), name
        assert f"`{name}" in text, f"{name} is not documented in {DOC.name}"


async def test_quick_start_serves_the_page_and_echoes() -> None:
    app = run_block("async def echo(ws")["app"]
    async with open_memory_connection(app) as client:
        page = await client.get("/")
        assert page.status == 200
        assert b"new WebSocket" in page.body
        await open_ws(client, headers="Origin: http://test\r\n")
        await client.send_frame(0x1, b"ping?")
        assert await client.reader.next_message() == "ping?"


AUTH_OK = {
    "header": ("/private", "Authorization: Bearer s3cret-token\r\n"),
    "query": ("/private?token=s3cret-token", ""),
    "cookie": ("/private", "Cookie: theme=dark; token=s3cret-token\r\n"),
    "header beats a bad query": ("/private?token=nope", "Authorization: bearer s3cret-token\r\n"),
}


@pytest.mark.parametrize("case", list(AUTH_OK))
async def test_auth_example_accepts_a_token_in_header_query_or_cookie(case: str) -> None:
    path, headers = AUTH_OK[case]
    app = run_block("def token_auth(")["app"]
    async with open_memory_connection(app) as client:
        await open_ws(client, path, headers=headers)
        assert await client.reader.next_message() == "hello ada"


AUTH_REFUSED = {
    "no token": ("/private", ""),
    "wrong header token": ("/private", "Authorization: Bearer wrong\r\n"),
    "not a bearer token": ("/private", "Authorization: Basic czNjcmV0LXRva2Vu\r\n"),
    "empty query token": ("/private?token=", ""),
    "wrong cookie": ("/private", "Cookie: token=wrong\r\n"),
    "malformed cookie": ("/private", 'Cookie: token="s3cret-token\r\n'),
}


@pytest.mark.parametrize("case", list(AUTH_REFUSED))
async def test_auth_example_answers_401_otherwise(case: str) -> None:
    path, headers = AUTH_REFUSED[case]
    app = run_block("def token_auth(")["app"]
    async with open_memory_connection(app) as client:
        response = await client.request(handshake(path, headers=headers))
        assert response.status == 401
        assert response.headers["www-authenticate"] == 'Bearer realm="websocket"'
        assert response.body == b"401 Unauthorized: a valid token is required\n"
        await client.assert_closed()


async def test_auth_example_checks_the_origin_before_the_cookie() -> None:
    """A cross-site page's handshake carries the victim's cookie: refused by origin, 403."""
    app = run_block("def token_auth(")["app"]
    async with open_memory_connection(app) as client:
        cross_site = "Origin: https://evil.example\r\nCookie: token=s3cret-token\r\n"
        response = await client.request(handshake("/private", headers=cross_site))
        assert response.status == 403
    async with open_memory_connection(app) as client:
        same_site = "Origin: http://test\r\nCookie: token=s3cret-token\r\n"
        await open_ws(client, "/private", headers=same_site)
        assert await client.reader.next_message() == "hello ada"


async def test_auth_example_leaves_plain_requests_alone() -> None:
    app = run_block("def token_auth(")["app"]
    async with open_memory_connection(app) as client:
        assert (await client.get("/private")).status == 426
