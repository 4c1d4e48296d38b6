"""The Starlette hello app the ASGI benchmark serves: ``GET /`` says hello, others 404.

The same answer as ``_asgi.py``'s raw app (body, content type), through
Starlette's router and response classes: what a Starlette user's hello costs.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


app = Starlette(routes=[Route("/", hello)])
