"""The package's log format: one for ``trio_upgrade.run()`` and the command."""

from __future__ import annotations

import logging

__all__ = ["LOG_FORMAT", "configure_logging"]

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
"""Timestamp, process id (workers share a terminal), level, logger name, message.
Every logger of the package is ``trio_upgrade.<layer>`` (``trio_upgrade.http``,
``trio_upgrade.ws``...), and the access log is ``trio_upgrade.access``."""


def configure_logging(level: int | str = logging.INFO) -> None:
    """Log to stderr in :data:`LOG_FORMAT` at *level* (``logging.INFO`` or ``"info"``),
    unless the program has configured logging already (the root logger has a
    handler): then nothing changes. ``trio_upgrade.run()`` and the
    ``trio-upgrade`` command (without ``--log-config``) both call this."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)
