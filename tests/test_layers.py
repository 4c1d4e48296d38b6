"""The import rules of docs/architecture.md ("Layers and import rules"), checked by
reading the imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_upgrade"

# For each layer: the trio_upgrade layers and the third-party distributions it may import.
# The standard library is always allowed.
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    # The sans-I/O wire formats: no trio, no wsproto; importable by every layer.
    "_wire": (set(), {"h11"}),
    "core": ({"_wire"}, {"trio"}),
    # httptools: the optional C request parser (the speedups extra).
    "http": ({"_wire", "core"}, {"trio", "h11", "httptools"}),
    # h11 only through _wire's head parsing; wsproto for framing.
    "ws": ({"_wire", "core"}, {"trio", "wsproto"}),
    "bridge": ({"_wire", "core", "http", "ws"}, {"trio", "h11", "wsproto"}),
    "proxy": ({"_wire", "core", "http"}, {"trio", "h11"}),
    # The other composition of HTTP and WebSocket, for ASGI apps: never the bridge.
    "asgi": ({"_wire", "core", "http", "ws"}, {"trio"}),
    "testing": ({"core", "http", "ws", "bridge", "proxy", "asgi"}, {"trio", "h11", "pytest"}),
    "cli": ({"_cli", "core", "http", "ws", "bridge", "proxy", "asgi"}, {"trio"}),
    # The command's parts: settings, inherited sockets, workers, --proxy-headers;
    # prometheus-client (the metrics extra) for --metrics-bind and watchfiles (the
    # reload extra) for --reload, each imported only then.
    "_cli": (
        {"core", "http", "ws", "bridge", "proxy", "asgi"},
        {"trio", "prometheus_client", "watchfiles"},
    ),
}
# Layers that must use other layers' public API only (no `_private` modules).
PUBLIC_ONLY = {"testing", "cli", "_cli"}


def _layer_of(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) == 1:
        stem = rel.stem
        return stem if stem in ALLOWED else None
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute module names imported by *path*, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    # The package a module (or an __init__) belongs to: its parent folders.
    package_parts = list(rel.parts[:-1])
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
                if node.module is None:
                    found.extend((f"{module}.{alias.name}", node.lineno) for alias in node.names)
                    continue
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return found


def _violations(path: Path) -> list[str]:
    layer = _layer_of(path)
    if layer is None:
        return []
    own_layers, third_party = ALLOWED[layer]
    problems = []
    for module, line in _imports(path):
        top = module.split(".")[0]
        where = f"{path.relative_to(PACKAGE.parent)}:{line}"
        if top == "trio_upgrade":
            parts = module.split(".")
            if len(parts) == 1:
                problems.append(f"{where}: imports the top-level package")
                continue
            target = parts[1]
            if target == layer:
                continue
            if target not in own_layers:
                problems.append(f"{where}: {layer} must not import {module}")
            elif layer in PUBLIC_ONLY and any(p.startswith("_") for p in parts[2:]):
                problems.append(f"{where}: {layer} must use public API, not {module}")
        elif top in sys.stdlib_module_names or top == "__future__":
            continue
        elif top not in third_party:
            problems.append(f"{where}: {layer} must not import {module}")
    return problems


def test_every_module_respects_its_layer() -> None:
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in _violations(path)]
    assert problems == []


@pytest.mark.parametrize(
    ("layer", "source", "bad"),
    [
        ("http", "import wsproto\n", True),
        ("http", "from ..ws import WebSocket\n", True),
        ("http", "from ..core import PrefixedStream\n", False),
        ("ws", "import h11\n", True),
        ("ws", "from trio_upgrade.http import Request\n", True),
        ("core", "import h11\n", True),
        ("core", "import socket, ssl\n", False),
        ("proxy", "import wsproto\n", True),
        ("proxy", "from ..bridge import App\n", True),
        ("testing", "from ..http._connection import serve_connection\n", True),
        ("testing", "from ..http import Request\n", False),
        ("_wire", "import trio\n", True),
        ("_wire", "import wsproto\n", True),
        ("_wire", "from ..core import Server\n", True),
        ("_wire", "import h11\n", False),
        ("http", "from .._wire import response_head\n", False),
        ("testing", "from .._wire import response_head\n", True),
        ("asgi", "from ..bridge import App\n", True),
        ("asgi", "import h11\n", True),
        ("asgi", "from ..ws import websocket_session\n", False),
        ("cli", "from ..asgi import ASGIHandler\n", False),
        ("cli", "from ..asgi._http import HTTPCycle\n", True),
        ("cli", "from .._cli import resolve\n", False),
        ("_cli", "from ..http import Request\n", False),
        ("_cli", "from ..http._request import Request\n", True),
        ("_cli", "import h11\n", True),
    ],
)
def test_checker_catches_forbidden_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layer: str, source: str, bad: bool
) -> None:
    """The checker itself: a forbidden import in a throwaway layer module is reported."""
    fake = tmp_path / "trio_upgrade"
    (fake / layer).mkdir(parents=True)
    module = fake / layer / "_mod.py"
    module.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert bool(_violations(module)) is bad


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("trio_upgrade", {"wsproto", "h11", "trio_upgrade.http", "trio_upgrade.ws"}),
        ("trio_upgrade._wire", {"trio", "wsproto"}),
        ("trio_upgrade.core", {"wsproto", "h11", "trio_upgrade.http", "trio_upgrade.ws"}),
        ("trio_upgrade.http", {"wsproto", "trio_upgrade.ws", "trio_upgrade.bridge"}),
        ("trio_upgrade.ws", {"trio_upgrade.http", "trio_upgrade.bridge"}),
        ("trio_upgrade.proxy", {"wsproto", "trio_upgrade.ws", "trio_upgrade.bridge"}),
        ("trio_upgrade.asgi", {"trio_upgrade.bridge", "trio_upgrade.proxy"}),
    ],
)
def test_importing_a_layer_loads_only_what_it_needs(module: str, absent: set[str]) -> None:
    """HTTP users do not pay for WebSocket: the top-level package re-exports lazily."""
    import subprocess

    code = f"import sys, {module}; print(sorted(m for m in {sorted(absent)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lazy_exports_resolve() -> None:
    import trio_upgrade

    for name in trio_upgrade.__all__:
        assert getattr(trio_upgrade, name) is not None
    assert set(trio_upgrade.__all__) <= set(dir(trio_upgrade))
    with pytest.raises(AttributeError):
        _ = trio_upgrade.nothing_here  # type: ignore[attr-defined]
