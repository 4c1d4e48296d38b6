"""The proxy package exports exactly what docs/proxy.md and its docstring promise."""

from __future__ import annotations

from pathlib import Path

import trio_upgrade.proxy as proxy

DOCS = Path(__file__).resolve().parents[2] / "docs" / "proxy.md"

PUBLIC = {
    "Backend",
    "BackendTimeout",
    "BackendUnreachable",
    "BadBackendResponse",
    "Proxy",
    "ProxyConfig",
    "ProxyError",
    "ProxyRoute",
    "ProxyStatistics",
    "Tunnel",
}


def test_all_lists_the_public_names_and_they_exist() -> None:
    assert set(proxy.__all__) == PUBLIC
    assert len(proxy.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert getattr(proxy, name) is not None


def test_every_public_name_is_documented() -> None:
    docs = DOCS.read_text()
    docstring = proxy.__doc__ or ""
    for name in PUBLIC:
        assert f"`{name}" in docs, f"{name} missing from docs/proxy.md"
        assert name in docstring, f"{name} missing from the package docstring"
