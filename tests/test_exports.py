"""The top-level package re-exports the everyday names, each real and documented."""

from __future__ import annotations

from pathlib import Path

import trio_upgrade

ROOT = Path(__file__).resolve().parent.parent
EVERYDAY = {
    "App",
    "Connection",
    "ConnectionClosed",
    "HTTPConfig",
    "HTTPError",
    "Headers",
    "PrefixedStream",
    "Proxy",
    "ProxyConfig",
    "Request",
    "Response",
    "Router",
    "Server",
    "ServerWebSocket",
    "Takeover",
    "TrioUpgradeError",
    "WebSocket",
    "WebSocketConfig",
    "WebSocketRouter",
    "__version__",
    "check_origin",
    "current_connection",
    "open_listeners",
    "open_websocket",
    "run",
    "serve",
    "serve_websocket",
}


def test_top_level_all_is_exactly_the_everyday_names() -> None:
    assert set(trio_upgrade.__all__) == EVERYDAY
    for name in trio_upgrade.__all__:
        assert hasattr(trio_upgrade, name), name


def test_every_top_level_name_is_the_layer_object() -> None:
    """Re-exports are the layers' own objects, not copies or wrappers."""
    from trio_upgrade import bridge, core, http, proxy, ws

    for name in EVERYDAY - {"__version__"}:
        owners = [m for m in (core, http, ws, bridge, proxy) if name in m.__all__]
        assert len(owners) == 1, (name, owners)
        assert getattr(trio_upgrade, name) is getattr(owners[0], name)


def test_every_top_level_name_appears_in_the_docs() -> None:
    text = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))
    )
    missing = [n for n in EVERYDAY - {"__version__"} if n not in text]
    assert missing == []
