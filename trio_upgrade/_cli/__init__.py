"""The parts of the ``trio-upgrade`` command (:mod:`trio_upgrade.cli`): its
settings, the sockets it inherits, the worker supervisor, ``--proxy-headers``,
``--log-config`` and ``--metrics-bind``.

Like the command, uses every layer's public API only.
"""

from __future__ import annotations

from ._access import JSONAccessFormatter, use_json_access_log
from ._forwarded import TrustedProxies, forwarded_headers
from ._logconfig import load_log_config
from ._metrics import PrometheusObserver, metrics_app, require_prometheus
from ._settings import OPTIONS, CLIError, Option, Resolved, add_arguments, resolve
from ._sockets import fd_listener, fd_listeners, parse_fd_bind, systemd_fds
from ._workers import FDS_ENV, LIFELINE_ENV, READY_ENV, RETIRE_SIGNAL, Supervisor

__all__ = [
    "FDS_ENV",
    "LIFELINE_ENV",
    "OPTIONS",
    "READY_ENV",
    "RETIRE_SIGNAL",
    "CLIError",
    "JSONAccessFormatter",
    "Option",
    "PrometheusObserver",
    "Resolved",
    "Supervisor",
    "TrustedProxies",
    "add_arguments",
    "fd_listener",
    "fd_listeners",
    "forwarded_headers",
    "load_log_config",
    "metrics_app",
    "parse_fd_bind",
    "require_prometheus",
    "resolve",
    "systemd_fds",
    "use_json_access_log",
]
