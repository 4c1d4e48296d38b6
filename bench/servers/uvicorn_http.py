"""Uvicorn serving the ASGI hello app (``_asgi.py``) with its default settings.

``http="auto"`` and ``loop="auto"``: httptools and uvloop when they are
installed, h11 and asyncio otherwise (the benchmark prints which). No access
log, like every other server compared; no lifespan (the app needs none).
"""

from __future__ import annotations

from _common import HOST, parse_port, unavailable

try:
    import uvicorn
except ImportError as exc:
    unavailable(f"uvicorn is not installed ({exc}); run bench/setup")

from _asgi import app


def main() -> None:
    config = uvicorn.Config(
        app, host=HOST, port=parse_port(), access_log=False, log_level="warning", lifespan="off"
    )
    # Uvicorn handles SIGTERM/SIGINT itself and shuts down gracefully.
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
