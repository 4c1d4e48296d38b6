"""Ours: trio_upgrade.http with routing and one (pass-through) middleware in the path.

This is the configuration the HTTP target is stated for: a ``Router`` with
one route and one middleware, served by ``trio_upgrade.http.serve``.
Until ``trio_upgrade.http`` exists the script exits as unavailable.
"""

from __future__ import annotations

import functools

from _common import HOST, parse_port, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.http import Handler, Request, Response, Router, Takeover, serve
except ImportError as exc:
    unavailable(f"trio_upgrade.http is not importable yet ({type(exc).__name__})")


def make_router() -> Router:
    router = Router()

    @router.route("/")
    async def hello(request: Request) -> Response:
        return Response.text("Hello, world!")

    async def passthrough(request: Request, call_next: Handler) -> Response | Takeover:
        return await call_next(request)

    router.add_middleware(passthrough)
    return router


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(serve, make_router(), f"{HOST}:{port}"))
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
