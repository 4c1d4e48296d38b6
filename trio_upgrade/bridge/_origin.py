"""Origin checking for WebSocket handshakes (cross-site WebSocket hijacking).

Browsers attach cookies and other ambient credentials to a WebSocket handshake
whatever page opened it, and the same-origin policy does not apply to
WebSockets. A page on ``https://evil.example`` can therefore open a socket to
your server *as your logged-in user* unless the server checks the ``Origin``
header the browser sets (RFC 6455 §10.2). :func:`check_origin` does that check.

Non-browser clients usually send no ``Origin`` at all; whether that is allowed
is the ``allow_missing`` option, which has to be chosen.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio

from ..http import DirectResponse, Handler, Middleware, Request, Response, Takeover
from ..http._router import error_response

__all__ = ["Origin", "check_origin", "parse_origin", "request_host"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    """A serialised origin: scheme, host (lower-case) and port (default filled in)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == _DEFAULT_PORTS.get(self.scheme):
            return f"{self.scheme}://{host}"
        return f"{self.scheme}://{host}:{self.port}"


def parse_origin(value: str) -> Origin | None:
    """Parse an ``Origin`` value (``scheme://host[:port]``); ``None`` if malformed.

    ``"null"`` (sandboxed frames, ``file:`` pages) and anything with a path,
    query, fragment or credentials is malformed for this purpose.
    """
    value = value.strip()
    if not value or value == "null" or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def _split_host(value: str, scheme: str) -> tuple[str, int] | None:
    value = value.strip().lower()
    if not value:
        return None
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.username:
        return None
    return parts.hostname, port or _DEFAULT_PORTS.get(scheme, 80)


def _forwarded_host(request: Request) -> str | None:
    # RFC 7239: the first (client-most) element's host= parameter.
    forwarded = request.headers.get("forwarded")
    if forwarded:
        first = forwarded.split(",")[0]
        for pair in first.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.lower() == "host" and val:
                return val.strip('"')
    x_host = request.headers.get("x-forwarded-host")
    if x_host:
        return x_host.split(",")[0].strip()
    return None


def _forwarded_proto(request: Request) -> str | None:
    forwarded = request.headers.get("forwarded")
    if forwarded:
        first = forwarded.split(",")[0]
        for pair in first.split(";"):
            key, _, val = pair.strip().partition("=")
            if key.lower() == "proto" and val:
                return val.strip('"').lower()
    x_proto = request.headers.get("x-forwarded-proto")
    if x_proto:
        return x_proto.split(",")[0].strip().lower()
    return None


def request_host(request: Request, *, trust_proxy: bool = False) -> tuple[str, str, int] | None:
    """The (scheme, host, port) the client addressed, from ``Host``.

    With *trust_proxy*, ``Forwarded`` (``host=``, ``proto=``) and then
    ``X-Forwarded-Host``/``X-Forwarded-Proto`` take precedence: only set it when
    a proxy you control overwrites those headers.
    """
    scheme = request.scheme
    host_value = request.headers.get("host")
    if trust_proxy:
        scheme = _forwarded_proto(request) or scheme
        host_value = _forwarded_host(request) or host_value
    if not host_value:
        return None
    found = _split_host(host_value, scheme)
    if found is None:
        return None
    return scheme, found[0], found[1]


def check_origin(
    *,
    allowed: Iterable[str] = (),
    allow_same_origin: bool = True,
    allow_missing: bool,
    trust_proxy: bool = False,
    status: int = 403,
) -> Middleware:
    """WebSocket middleware that refuses handshakes from origins it does not trust.

    - Same origin (``allow_same_origin``): the ``Origin`` host and port equal the
      host and port the request was addressed to (``Host``, or with
      *trust_proxy* the forwarded host). ``http`` pages may open ``ws`` and
      ``https`` pages ``wss``; the scheme is not compared beyond that.
    - *allowed*: exact origins (``"https://app.example.com"``, default port
      optional), shell-style patterns (``"https://*.example.com"``) or ``"*"``
      for any well-formed origin.
    - ``allow_missing``: whether a request without ``Origin`` (non-browser
      clients) passes. Required: decide it explicitly.

    A malformed ``Origin`` (including ``null``) always fails. Failures get
    *status* (403) with a short reason.
    """
    patterns: list[str] = []
    exact: set[Origin] = set()
    any_origin = False
    for item in allowed:
        if item == "*":
            any_origin = True
        elif any(c in item for c in "*?["):
            patterns.append(item.lower())
        else:
            parsed = parse_origin(item)
            if parsed is None:
                raise ValueError(f"not an origin: {item!r} (expected scheme://host[:port])")
            exact.add(parsed)

    def verdict(request: Request) -> str | None:
        values = request.headers.get_all("origin")
        if not values:
            return None if allow_missing else "missing Origin header"
        if len(values) > 1:
            return "more than one Origin header"
        origin = parse_origin(values[0])
        if origin is None:
            return "malformed Origin header"
        if any_origin or origin in exact:
            return None
        text = str(origin)
        if any(fnmatch.fnmatchcase(text, p) for p in patterns):
            return None
        if allow_same_origin:
            target = request_host(request, trust_proxy=trust_proxy)
            if target is not None and (origin.host, origin.port) == (target[1], target[2]):
                return None
        return f"origin {text} is not allowed"

    async def origin_middleware(
        request: Request, call_next: Handler
    ) -> Response | DirectResponse | Takeover:
        reason = verdict(request)
        if reason is not None:
            await trio.lowlevel.checkpoint()  # a refusal is a checkpoint too, like a pass
            return error_response(status, f"Forbidden: {reason}")
        return await call_next(request)

    return origin_middleware
