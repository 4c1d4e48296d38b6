"""Layer 2: ASGI 3 applications (Starlette, FastAPI, Quart-trio...) on our HTTP and WebSocket.

Imports ``core``, ``http``, ``ws`` and ``_wire``; never ``bridge`` (the other
composition of HTTP and WebSocket, for native apps).

- :class:`ASGIHandler`: an ASGI app as an ordinary HTTP handler (``http`` and
  ``websocket`` scopes), to serve, mount in a Router or an App;
- :class:`Lifespan`: the ``lifespan`` scope around a server;
- :func:`serve` / :func:`run`: both together, like uvicorn;
- :func:`is_asgi_app`: tell an ASGI 3 app from a native handler.
"""

from __future__ import annotations

from ._errors import ASGIError, Disconnected, LifespanFailure, ProtocolError
from ._handler import ASGIHandler, is_asgi_app
from ._http import ASGIApp, Message, Receive, Send
from ._lifespan import Lifespan, LifespanMode
from ._scope import Scope
from ._serve import run, serve, serve_until_signal

__all__ = [
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
