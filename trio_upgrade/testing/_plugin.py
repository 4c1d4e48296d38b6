"""pytest plugin of trio_upgrade, registered through the ``pytest11`` entry point.

pytest loads it in every project where trio_upgrade is installed, so it imports
nothing but pytest until one of its fixtures is used, and defines nothing with
side effects. Its fixtures are async: they need pytest-trio (``trio_mode =
true``, or tests marked ``@pytest.mark.trio``).

- ``app_client``: an :class:`~trio_upgrade.testing.AppClient` for the
  ``app`` fixture, which the project defines (``@pytest.fixture def app():
  return my_app``);
- ``app_server``: the same ``app`` served on ``127.0.0.1`` at an ephemeral
  port, as a :class:`~trio_upgrade.testing.LiveServer` (``.url``,
  ``.ws_url``, ``.port``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._client import AppClient
    from ._live import LiveServer

__all__ = ["app_client", "app_server"]


@pytest.fixture
async def app_client(app: Any) -> AsyncIterator[AppClient]:
    """An in-memory client of the ``app`` fixture (define ``app`` in your conftest.py)."""
    from ._client import AppClient

    async with AppClient(app) as client:
        yield client


@pytest.fixture
async def app_server(app: Any) -> AsyncIterator[LiveServer]:
    """The ``app`` fixture served on 127.0.0.1 at an ephemeral port (real sockets)."""
    from ._live import open_live_server

    async with open_live_server(app) as server:
        yield server
