"""``--access-log-format json``: one JSON object per access-log line."""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JSONAccessFormatter", "use_json_access_log"]

# The arguments of the HTTP layer's access-log record, in order: peer,
# method, target, HTTP version, status, bytes sent, milliseconds; a session's
# record (an accepted WebSocket: status 101, size "-") adds its close code.
FIELDS = ("client", "method", "target", "http_version", "status", "size", "duration_ms")
SESSION_FIELDS = (*FIELDS, "close_code")


class JSONAccessFormatter(logging.Formatter):
    """Formats ``trio_upgrade.access`` records as JSON objects; a record of
    another shape keeps its text in ``"message"``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "pid": record.process,
        }
        args = record.args
        if isinstance(args, tuple) and len(args) in (len(FIELDS), len(SESSION_FIELDS)):
            entry.update(zip(SESSION_FIELDS, args, strict=False))
            if isinstance(entry["duration_ms"], float):
                entry["duration_ms"] = round(entry["duration_ms"], 3)
            if entry["size"] == "-":
                entry["size"] = None
        else:
            entry["message"] = record.getMessage()
        return json.dumps(entry, ensure_ascii=False)


def use_json_access_log() -> None:
    """Send ``trio_upgrade.access`` records to stderr as JSON, and only there."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONAccessFormatter())
    access = logging.getLogger("trio_upgrade.access")
    access.addHandler(handler)
    access.propagate = False
