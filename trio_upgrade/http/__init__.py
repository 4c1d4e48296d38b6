"""Layer 1: the HTTP/1.1 server on h11 — requests, responses, routing, takeover.

Imports ``core`` and h11; knows nothing about WebSocket.
"""

from __future__ import annotations

from ._config import HTTPConfig
from ._connection import ResponseWriter, serve_http_connection
from ._errors import (
    ClientDisconnected,
    HTTPError,
    MalformedBody,
    RequestBodyTooLarge,
    RequestTimeout,
)
from ._headers import Headers, HeadersLike
from ._middleware import CORSMiddleware, GZipMiddleware
from ._request import BodySource, QueryParams, Request, RequestBody
from ._response import DirectResponse, Response
from ._router import (
    Handler,
    Match,
    MethodNotAllowed,
    Middleware,
    NotFound,
    Route,
    RouteMatch,
    Router,
)
from ._serve import app_lifespan, create_server, run, serve
from ._state import State
from ._takeover import Takeover, TakeoverOutcome

__all__ = [
    "BodySource",
    "CORSMiddleware",
    "ClientDisconnected",
    "DirectResponse",
    "HTTPConfig",
    "HTTPError",
    "Handler",
    "GZipMiddleware",
    "Headers",
    "HeadersLike",
    "MalformedBody",
    "Match",
    "MethodNotAllowed",
    "Middleware",
    "NotFound",
    "QueryParams",
    "Request",
    "RequestBody",
    "RequestBodyTooLarge",
    "RequestTimeout",
    "Response",
    "ResponseWriter",
    "Route",
    "RouteMatch",
    "Router",
    "State",
    "Takeover",
    "TakeoverOutcome",
    "app_lifespan",
    "create_server",
    "run",
    "serve",
    "serve_http_connection",
]
