"""Test harness: drive an app in memory, or serve it on loopback for real clients."""

from __future__ import annotations

__all__: list[str] = []
