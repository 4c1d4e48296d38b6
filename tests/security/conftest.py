"""The ``security`` marker: tests that need seconds or thousands of connections.

They run only with ``TRIO_UPGRADE_SECURITY=1`` in the environment; the figures
(latencies under attack) come from ``bench/slowloris.py``, not from tests.
"""

from __future__ import annotations

import os

import pytest

ENABLED = os.environ.get("TRIO_UPGRADE_SECURITY") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "security: needs seconds or thousands of connections (TRIO_UPGRADE_SECURITY=1)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="set TRIO_UPGRADE_SECURITY=1 to run")
    for item in items:
        if item.get_closest_marker("security") is not None:
            item.add_marker(skip)
