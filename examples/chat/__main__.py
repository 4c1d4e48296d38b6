"""Run the chat server: ``python -m examples.chat`` (from the repository root)."""

from __future__ import annotations

from ._cli import main

main()
