"""Which calling convention an application speaks, judged without importing it.

``trio_upgrade.run``/``serve`` and the CLI take either a native handler
(``handler(request)``) or an ASGI 3 application (``app(scope, receive, send)``);
this tells them apart by the signature alone, so that serving a native app
never loads the ASGI or WebSocket layers.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["takes_three_arguments"]


def takes_three_arguments(obj: object) -> bool:
    """Whether *obj* looks like an ASGI 3 application: callable with
    ``(scope, receive, send)`` rather than a native handler's ``(request)``.

    Judged by the signature, as uvicorn's ``--interface auto`` does; an
    object whose signature cannot be read is taken as native.
    """
    if not callable(obj):
        return False
    target: Any = obj
    if not inspect.isroutine(obj) and not inspect.isclass(obj):
        target = type(obj).__call__
        try:
            params = list(inspect.signature(target).parameters.values())[1:]
        except (TypeError, ValueError):
            return False
    else:
        try:
            params = list(inspect.signature(target).parameters.values())
        except (TypeError, ValueError):
            return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return len(positional) != 1
    return len(positional) == 3
