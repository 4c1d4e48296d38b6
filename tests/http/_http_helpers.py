"""The HTTP tests' test doubles, which live in ``tests/_wire.py`` (shared with the bridge tests).

This directory has no ``__init__.py`` on purpose: as a package it would be
called ``http`` and shadow the standard library's ``http`` (which httpx
imports). Its modules are therefore imported by their own names.
"""

from __future__ import annotations

from _wire import (
    CLIENT,
    SERVER,
    FailingSendStream,
    MemoryClient,
    RawResponse,
    ResponseReader,
    open_memory_connection,
    receive_until_eof,
)

__all__ = [
    "CLIENT",
    "SERVER",
    "FailingSendStream",
    "MemoryClient",
    "RawResponse",
    "ResponseReader",
    "open_memory_connection",
    "receive_until_eof",
]
