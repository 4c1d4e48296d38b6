"""The plain backend app of the proxy tests and the environment the ``env`` fixture builds.

Kept out of conftest.py so tests can import it by a name no other test
directory uses.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio
from _proxy_helpers import pattern, start_http

from trio_upgrade.core import Server
from trio_upgrade.http import Handler, Request, Response, Router
from trio_upgrade.proxy import Proxy


@dataclass
class BackendState:
    """What the backend apps did, for tests to check flow control and cleanup."""

    # Bytes the /stream handlers have produced so far.
    produced: int = 0
    # Bytes /upload handlers have consumed so far.
    consumed: int = 0
    # /upload?pause=N waits for this after N bytes.
    upload_gate: trio.Event = field(default_factory=trio.Event)
    # Set when a /stream body generator has ended (finished or closed).
    stream_ended: trio.Event = field(default_factory=trio.Event)


def backend_app(state: BackendState, name: str) -> Router:
    """An ordinary trio_upgrade HTTP app, the plain backend of these tests."""
    app = Router()

    async def echo(request: Request) -> Response:
        body = await request.read()
        return Response.json(
            {
                "backend": name,
                "method": request.method,
                "target": request.target,
                "headers": [[k, v] for k, v in request.headers.items()],
                "client": request.client,
                "body_size": len(body),
            }
        )

    app.add_route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    app.add_route("/{rest:path}", echo, methods=["GET"])

    @app.get("/stream")
    async def stream(request: Request) -> Response:
        size = int(request.query["size"])
        chunk = int(request.query.get("chunk", "65536") or 65536)

        async def chunks() -> AsyncIterator[bytes]:
            try:
                for offset in range(0, size, chunk):
                    data = pattern(offset, min(chunk, size - offset))
                    state.produced += len(data)
                    yield data
            finally:
                state.stream_ended.set()

        headers = {} if request.query.get("chunked") else {"content-length": str(size)}
        return Response(chunks(), headers=headers, content_type="application/octet-stream")

    @app.post("/upload")
    async def upload(request: Request) -> Response:
        request.max_body_size = None
        pause = int(request.query.get("pause", "-1") or -1)
        digest = hashlib.sha256()
        size = 0
        chunks = aiter(request.body)
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                state.consumed += len(chunk)
                if 0 <= pause <= size:
                    pause = -1
                    await state.upload_gate.wait()
        finally:
            # Cancelled while paused (at teardown): close the body's generator here.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        return Response.json({"size": size, "sha256": digest.hexdigest()})

    @app.post("/reject")
    async def reject(request: Request) -> Response:
        return Response.text("too large\n", status=413)

    @app.get("/hang")
    async def hang(request: Request) -> Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    @app.get("/hop")
    async def hop(request: Request) -> Response:
        return Response.text(
            "hop\n",
            headers=[
                ("connection", "x-internal"),
                ("x-internal", "secret"),
                ("keep-alive", "timeout=99"),
                ("proxy-connection", "keep-alive"),
                ("x-end", "kept"),
            ],
        )

    @app.get("/close")
    async def close(request: Request) -> Response:
        return Response.text("bye\n", headers=[("connection", "close")])

    return app


@dataclass
class Env:
    """Backend "a" on a Unix socket, "b" on TCP, a proxy in front on TCP."""

    state: BackendState
    a: Server
    b: Server
    proxy: Proxy
    front: Server

    @property
    def address(self) -> tuple[str, int]:
        address = self.front.addresses[0]
        assert isinstance(address, tuple)
        return address


async def start_proxy(
    nursery: trio.Nursery, proxy: Handler, bind: str = "127.0.0.1:0"
) -> tuple[str, int]:
    front = await start_http(nursery, proxy, bind)
    address = front.addresses[0]
    assert isinstance(address, tuple)
    return address
