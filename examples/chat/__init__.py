"""A browser chat server on trio_upgrade: the example to run first.

Run it from the repository root (``scripts/run`` does the same, setting up a
virtualenv first)::

    python -m examples.chat                       # http://127.0.0.1:8000/
    python -m examples.chat --bind 0.0.0.0:8000 --redis redis://127.0.0.1:6379

One port serves the page (plain HTML, CSS and JavaScript) and a WebSocket at
``/ws`` speaking JSON (see :mod:`examples.chat._protocol` and docs/chat.md).

- :func:`create_app` builds the :class:`trio_upgrade.bridge.App` over a hub;
- :class:`Hub` is the interface of rooms, presence, history and fan-out;
  :class:`MemoryHub` keeps them in this process, :class:`RedisHub` (with
  ``--redis``) in Redis so that several processes share them;
- :class:`ChatConfig` holds every limit and policy;
- :func:`serve_chat` serves until SIGINT/SIGTERM and shuts down gracefully.

Only trio_upgrade's public API is used.
"""

from __future__ import annotations

from ._app import create_app
from ._cli import main, serve_chat
from ._config import ChatConfig
from ._hub import (
    Hub,
    HubUnavailable,
    JoinRefused,
    Member,
    MemoryHub,
    Snapshot,
    Subscriber,
    open_hub,
)
from ._protocol import ProtocolError, parse_client_message

__all__ = [
    "ChatConfig",
    "Hub",
    "HubUnavailable",
    "JoinRefused",
    "Member",
    "MemoryHub",
    "ProtocolError",
    "Snapshot",
    "Subscriber",
    "create_app",
    "main",
    "open_hub",
    "parse_client_message",
    "serve_chat",
]


def __getattr__(name: str) -> object:
    # RedisHub needs coredis, which the in-memory chat does not: import it on demand.
    if name == "RedisHub":
        from ._redis import RedisHub

        return RedisHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
