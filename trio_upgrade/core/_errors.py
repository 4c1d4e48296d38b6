"""Errors of the core layer.

::

    TrioUpgradeError (trio_upgrade._wire)   the root of every exception trio_upgrade defines
    └── BindError (also ValueError)         a bind string could not be understood

Network failures while listening or serving are trio's and the OS's own
(``OSError``, ``trio.BrokenResourceError``); core does not wrap them.
"""

from __future__ import annotations

from .._wire._errors import TrioUpgradeError

__all__ = ["BindError", "TrioUpgradeError"]


class BindError(TrioUpgradeError, ValueError):
    """A bind string could not be understood."""
