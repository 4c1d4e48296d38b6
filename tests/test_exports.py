"""The top-level package re-exports the everyday names, each real and documented;
each layer exports exactly what its page in docs/ documents."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

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

    for name in EVERYDAY - {"__version__", "run", "serve"}:
        owners = [m for m in (core, http, ws, bridge, proxy) if name in m.__all__]
        assert len(owners) == 1, (name, owners)
        assert getattr(trio_upgrade, name) is getattr(owners[0], name)


def test_every_top_level_name_appears_in_the_docs() -> None:
    text = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))
    )
    missing = [n for n in EVERYDAY - {"__version__"} if n not in text]
    assert missing == []


# Each layer's page in docs/ and the names it documents.
LAYER_PAGES = {
    "core": "core.md",
    "http": "http.md",
    "ws": "websocket.md",
    "bridge": "bridge.md",
    "proxy": "proxy.md",
    "testing": "testing.md",
}

# Exported but not yet on their layer's page: each must either be documented
# or leave __all__ (then it leaves this list too; a stale entry fails below).
UNDOCUMENTED: dict[str, set[str]] = {
    "ws": {
        "HandshakeHook",
        "MessageChunks",
        "WebSocketHandler",
        "offered_extensions",
    },
}

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)


def _code_of(page: str) -> str:
    """The code on a docs page: fenced blocks and inline spans (which may wrap)."""
    text = (ROOT / "docs" / page).read_text()
    blocks = _FENCE.findall(text)
    spans = re.findall(r"`([^`]+)`", _FENCE.sub("", text))
    return "\n".join(blocks + spans)


def _mentions(code: str, name: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}\b", code) is not None


@pytest.mark.parametrize("layer", sorted(LAYER_PAGES))
def test_every_layer_export_is_documented_on_its_page(layer: str) -> None:
    module = importlib.import_module(f"trio_upgrade.{layer}")
    code = _code_of(LAYER_PAGES[layer])
    pending = UNDOCUMENTED.get(layer, set())
    missing = sorted(n for n in module.__all__ if not _mentions(code, n) and n not in pending)
    assert missing == [], f"in trio_upgrade.{layer}.__all__ but not in docs/{LAYER_PAGES[layer]}"
    documented_now = sorted(n for n in pending if _mentions(code, n) or n not in module.__all__)
    assert documented_now == [], "documented or no longer exported: drop from UNDOCUMENTED"


@pytest.mark.parametrize("layer", sorted(LAYER_PAGES))
def test_every_name_a_page_imports_from_its_layer_is_exported(layer: str) -> None:
    """Code on the page uses only public names (``from trio_upgrade.ws import ...``,
    ``trio_upgrade.ws.Name``); private modules named on purpose start with ``_``."""
    module = importlib.import_module(f"trio_upgrade.{layer}")
    code = _code_of(LAYER_PAGES[layer])
    used: set[str] = set()
    for found in re.finditer(rf"from trio_upgrade\.{layer} import (\([^)]*\)|[^\n]*)", code):
        for item in found.group(1).strip("()").replace("\n", ",").split(","):
            item = item.split("#")[0].strip()
            if item:
                used.add(item.split(" as ")[0].strip())
    used |= set(re.findall(rf"trio_upgrade\.{layer}\.(\w+)", code))
    assert used, f"docs/{LAYER_PAGES[layer]} shows no import from trio_upgrade.{layer}"
    assert sorted(n for n in used if not n.startswith("_") and n not in module.__all__) == []
