"""What the http scope carries, alone, behind a root_path and under mounts."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from _asgi_helpers import base_url

from trio_upgrade.asgi import ASGIHandler, is_asgi_app
from trio_upgrade.http import Request, Response, Router, serve


async def scope_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    shown = {
        key: (value.decode("latin-1") if isinstance(value, bytes) else value)
        for key, value in scope.items()
        if key not in ("headers", "state", "extensions")
    }
    shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
    body = json.dumps(shown).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _get(app: Any, target: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve(app, "127.0.0.1:0", task_status=task_status)
        )
        async with httpx.AsyncClient(base_url=base_url(server)) as client:
            response = await client.get(target, headers=headers)
        await server.aclose()
    result: dict[str, Any] = response.json()
    result["_server"] = list(server.addresses[0])
    return result


async def test_http_scope_fields() -> None:
    scope = await _get(ASGIHandler(scope_app), "/a%20b/c?x=1&y=%20", {"X-Custom": "Value"})
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == "/a%20b/c"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert ["x-custom", "Value"] in scope["headers"]
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == scope["_server"]


async def test_root_path_and_mounts_make_path_include_root_path() -> None:
    """ASGI 2.4 / Starlette: path is the full path; root_path the part mounts consumed."""
    inner = Router()
    inner.mount("/v1", ASGIHandler(scope_app, root_path="/proxy"))
    outer = Router()
    outer.mount("/api", inner)
    scope = await _get(outer, "/api/v1/users/7?z=1")
    assert scope["root_path"] == "/proxy/api/v1"
    assert scope["path"] == "/proxy/api/v1/users/7"
    assert scope["raw_path"] == "/api/v1/users/7"
    assert scope["query_string"] == "z=1"


def test_asgi_apps_are_told_from_native_handlers() -> None:
    async def native(request: Request) -> Response:
        return Response.text("hi")

    class ClassApp:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    from starlette.applications import Starlette

    assert is_asgi_app(scope_app)
    assert is_asgi_app(ClassApp())
    assert is_asgi_app(Starlette())
    assert not is_asgi_app(native)
    assert not is_asgi_app(Router())
    assert not is_asgi_app(ASGIHandler(scope_app))
    assert not is_asgi_app("not callable")


async def test_a_handler_called_without_a_connection_collects_the_response() -> None:
    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    response = await ASGIHandler(streaming)(Request("GET", "/"))
    assert isinstance(response, Response)
    assert (response.status, response.body, response.headers.get("x-a")) == (201, b"abc", "1")


async def test_tls_connections_carry_the_tls_extension(
    server_ssl_context: Any, client_ssl_context: Any
) -> None:
    from trio_upgrade.asgi import serve as serve_asgi

    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan")
        seen.append(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_asgi(
                app, "127.0.0.1:0", ssl_context=server_ssl_context, task_status=task_status
            )
        )
        async with httpx.AsyncClient(
            base_url=base_url(server, "https"), verify=client_ssl_context
        ) as client:
            assert (await client.get("/")).status_code == 204
        await server.aclose()
    scope = seen[0]
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] in (0x0303, 0x0304)
    assert tls["client_cert_chain"] == []
