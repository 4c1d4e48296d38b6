"""Errors of the ASGI layer.

::

    TrioUpgradeError               the package's root
    ├── ASGIError                  base of what this layer raises
    │   ├── ProtocolError          the app sent a message of the wrong type, or in the wrong order
    │   │                          (also a RuntimeError, as the ASGI spec asks)
    │   └── LifespanFailure        the app reported (or raised) a failed startup or shutdown
    └── Disconnected               send() after the client went away (also an OSError, ASGI 2.4)

:class:`ProtocolError` is raised into the app by ``send()``; the server logs it
with the traceback when it escapes the app, names the message it did not
expect, and answers or closes the connection as for any other failure.
"""

from __future__ import annotations

from .._wire._errors import TrioUpgradeError

__all__ = ["ASGIError", "Disconnected", "LifespanFailure", "ProtocolError"]


class ASGIError(TrioUpgradeError):
    """Base class of the ASGI layer's errors (except :class:`Disconnected`)."""


class ProtocolError(ASGIError, RuntimeError):
    """The app broke the ASGI message protocol: the message says which message and why."""


class LifespanFailure(ASGIError):
    """Startup or shutdown failed; *message* is the app's own (``lifespan.startup.failed``)."""

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(f"ASGI lifespan {phase} failed" + (f": {message}" if message else ""))
        self.phase = phase
        self.message = message


class Disconnected(TrioUpgradeError, OSError):
    """The client is gone: raised by ``send()`` (ASGI spec 2.4, "a server-specific
    subclass of OSError"). Frameworks turn it into their own disconnect signal."""
