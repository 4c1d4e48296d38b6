"""Markers for the ASGI tests (the same ``autobahn`` marker as tests/ws registers)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "autobahn: runs the Autobahn TestSuite through kosoku (minutes; part of the default run)",
    )
