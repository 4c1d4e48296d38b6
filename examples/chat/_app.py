"""The App: the page and its files over HTTP, the chat over a WebSocket at ``/ws``."""

from __future__ import annotations

from pathlib import Path

from trio_upgrade.bridge import App, ServerWebSocket, check_origin
from trio_upgrade.http import Request, Response
from trio_upgrade.ws import WebSocketConfig

from ._config import ChatConfig
from ._hub import Hub
from ._session import ChatSession

__all__ = ["create_app"]

STATIC = Path(__file__).resolve().parent / "static"

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/static/chat.css": ("chat.css", "text/css; charset=utf-8"),
}

# The page loads nothing from elsewhere; connect-src names ws:/wss: because
# not every browser lets 'self' cover a WebSocket to the page's own host.
_HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


def create_app(hub: Hub, config: ChatConfig | None = None) -> App:
    """The chat server as an :class:`~trio_upgrade.bridge.App` over *hub*.

    - ``GET /``, ``/static/chat.js``, ``/static/chat.css``: the page;
    - ``GET /api/rooms``: the room list as JSON (``[{"name", "count"}]``);
    - ``/ws``: the chat WebSocket, behind an origin check (same origin plus
      ``config.allowed_origins``) and with ``config.max_frame`` as its
      message size limit.
    """
    config = config or ChatConfig()
    app = App()
    # Small files, read once: the example has no build step and no cache to bust.
    files = {
        path: ((STATIC / name).read_bytes(), content_type)
        for path, (name, content_type) in _FILES.items()
    }

    async def static(request: Request) -> Response:
        body, content_type = files[request.path]
        return Response(body, content_type=content_type, headers=_HEADERS)

    for path in files:
        app.route(path, methods=("GET", "HEAD"))(static)

    @app.get("/api/rooms")
    async def rooms(request: Request) -> Response:
        return Response.json([{"name": n, "count": c} for n, c in await hub.rooms()])

    origin = check_origin(allowed=config.allowed_origins, allow_missing=config.allow_missing_origin)
    ws_config = WebSocketConfig(
        max_message_size=config.max_frame,
        # Chat messages are short: compression would cost a zlib context
        # (hundreds of KiB) per connection for little gain.
        compression=None,
        close_timeout=config.close_timeout,
        ping_interval=config.ping_interval,
    )

    @app.websocket("/ws", middleware=[origin], config=ws_config)
    async def chat(ws: ServerWebSocket) -> None:
        await ChatSession(ws, hub, config).run()

    return app
