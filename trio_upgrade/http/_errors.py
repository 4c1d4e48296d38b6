"""Errors of the HTTP layer.

::

    TrioUpgradeError (trio_upgrade._wire)   the root of every exception trio_upgrade defines
    ├── HTTPError                 raise from a handler to answer with its status
    │   ├── RequestBodyTooLarge   413: the body passed the request's size limit
    │   ├── RequestTimeout        408: the client stopped sending the body, or sends it
    │   │                         slower than ``min_body_rate``
    │   └── MalformedBody         400: the body is not what the handler asked for (e.g. JSON)
    └── ClientDisconnected        the client went away while the body was being read

A handler that raises :class:`HTTPError` gets a short response with that
status; any other exception becomes a 500 and is logged. Reading a body whose
chunked framing is malformed raises a plain :class:`HTTPError` with status
400, after which the connection closes.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._wire import reason_phrase
from .._wire._errors import TrioUpgradeError

__all__ = [
    "ClientDisconnected",
    "HTTPError",
    "MalformedBody",
    "RequestBodyTooLarge",
    "RequestTimeout",
]


class HTTPError(TrioUpgradeError):
    """Answer the request with *status*, a short plain-text *detail* and extra *headers*."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.detail = detail if detail is not None else reason_phrase(status)
        self.headers = list(headers)
        super().__init__(status, self.detail)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"


class RequestBodyTooLarge(HTTPError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body larger than {limit} bytes")
        self.limit = limit


class RequestTimeout(HTTPError):
    def __init__(self, detail: str = "Timed out reading the request") -> None:
        super().__init__(408, detail)


class MalformedBody(HTTPError):
    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


class ClientDisconnected(TrioUpgradeError):
    """The client closed the connection before sending the whole request body."""
