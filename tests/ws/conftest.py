"""The WebSocket tests' autobahn marker (the TLS fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "autobahn: runs the Autobahn TestSuite through kosoku (minutes; part of the default run)",
    )
