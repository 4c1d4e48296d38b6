"""pytest plugin of trio_upgrade (registered through the ``pytest11`` entry point)."""

from __future__ import annotations
