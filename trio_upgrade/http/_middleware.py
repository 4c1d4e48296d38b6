"""HTTP middleware people expect from other frameworks: CORS and GZip.

Both have the Router's middleware shape (``async def mw(request, call_next)``)
and answer plain HTTP only: under an :class:`~trio_upgrade.bridge.App` they
never see a WebSocket handshake (the browser sends no preflight for one, and a
101 has no body to compress).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import final

import trio

from .._wire import is_token
from ._headers import Headers
from ._request import Request
from ._response import DirectResponse, Response
from ._router import Handler, Result

__all__ = ["CORSMiddleware", "GZipMiddleware"]


def _add_vary(headers: Headers, name: str) -> None:
    """Add *name* to ``Vary`` unless it (or ``*``) is there already."""
    present = headers.get_tokens("vary")
    if "*" in present or name.lower() in present:
        return
    headers.set("vary", ", ".join([*headers.get_all("vary"), name]))


@final
class CORSMiddleware:
    """Cross-Origin Resource Sharing (the Fetch standard's CORS protocol).

    ::

        app.add_middleware(CORSMiddleware(
            allow_origins=["https://app.example"],
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization"],
            allow_credentials=True,
        ))

    *allow_origins*: exact origins (``"https://app.example"``, scheme and host
    and any port, no path), or ``["*"]`` for every origin;
    *allow_origin_regex* a regular expression an origin must match in full
    (``r"https://.*\\.example\\.org"``). A preflight (``OPTIONS`` with
    ``Origin`` and ``Access-Control-Request-Method``) is answered here, the
    handlers never see it: ``200`` with the allowed methods and headers and
    ``Access-Control-Max-Age`` (*max_age* seconds), or ``400`` naming what is
    not allowed. Other requests from an allowed origin go to the handler and
    get ``Access-Control-Allow-Origin`` (and *expose_headers*) on the response.

    With *allow_credentials* (cookies, ``Authorization``) the answer never
    says ``*``: browsers refuse ``*`` on credentialed requests, so the
    request's origin is echoed instead, with ``Vary: Origin`` so that caches
    keep one answer per origin. ``allow_headers=["*"]`` echoes the headers the
    preflight asks for; ``allow_methods=["*"]`` allows every method.
    """

    __slots__ = (
        "_allow_all_headers",
        "_allow_all_methods",
        "_allow_all_origins",
        "_origin_regex",
        "_origins",
        "_preflight_fields",
        "allow_credentials",
        "allow_headers",
        "allow_methods",
        "expose_headers",
        "max_age",
    )

    def __init__(
        self,
        *,
        allow_origins: Iterable[str] = (),
        allow_origin_regex: str | None = None,
        allow_methods: Iterable[str] = ("GET",),
        allow_headers: Iterable[str] = (),
        allow_credentials: bool = False,
        expose_headers: Iterable[str] = (),
        max_age: int = 600,
    ) -> None:
        if isinstance(allow_origins, str) or isinstance(allow_methods, str):
            raise TypeError("allow_origins and allow_methods take a list of strings")
        origins = [o.rstrip("/") for o in allow_origins]
        self._allow_all_origins = "*" in origins
        self._origins = frozenset(o.lower() for o in origins if o != "*")
        self._origin_regex = re.compile(allow_origin_regex) if allow_origin_regex else None
        methods = [m.upper() for m in allow_methods]
        self._allow_all_methods = "*" in methods
        for name in [*methods, *allow_headers, *expose_headers]:
            if name != "*" and not (name.isascii() and is_token(name.encode())):
                raise ValueError(f"{name!r} is not a method or header name")
        self.allow_methods = tuple(m for m in methods if m != "*")
        headers = [h.lower() for h in allow_headers]
        self._allow_all_headers = "*" in headers
        self.allow_headers = tuple(h for h in headers if h != "*")
        self.allow_credentials = allow_credentials
        self.expose_headers = tuple(expose_headers)
        if max_age < 0:
            raise ValueError("max_age must be >= 0")
        self.max_age = max_age
        # The fields every successful preflight carries, built once.
        fields = [("access-control-max-age", str(max_age))]
        if not self._allow_all_methods:
            fields.append(("access-control-allow-methods", ", ".join(self.allow_methods)))
        if self.allow_headers and not self._allow_all_headers:
            fields.append(("access-control-allow-headers", ", ".join(self.allow_headers)))
        if allow_credentials:
            fields.append(("access-control-allow-credentials", "true"))
        self._preflight_fields = tuple(fields)

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether a request from *origin* (the ``Origin`` header's value) is allowed."""
        if self._allow_all_origins:
            return True
        if origin.lower() in self._origins:
            return True
        regex = self._origin_regex
        return regex is not None and regex.fullmatch(origin) is not None

    def _allow_origin_value(self, origin: str) -> str:
        # "*" only when it is true for everyone and no credentials are involved.
        if self._allow_all_origins and not self.allow_credentials:
            return "*"
        return origin

    async def __call__(self, request: Request, call_next: Handler) -> Result:
        origin = request.headers.get("origin")
        if origin is None:
            # Not a CORS request (same-origin, or not from a browser).
            return await call_next(request)
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            await trio.lowlevel.checkpoint()
            return self._preflight(request, origin)
        result = await call_next(request)
        if isinstance(result, (Response, DirectResponse)):
            # A response the handler writes itself (a DirectResponse, as an ASGI
            # app's) gets its headers too; a Takeover passes as it is.
            self._decorate(result, origin)
        return result

    def _preflight(self, request: Request, origin: str) -> Response:
        method = (request.headers.get("access-control-request-method") or "").strip().upper()
        asked = request.headers.get_tokens("access-control-request-headers")
        problems = []
        if not self.is_allowed_origin(origin):
            problems.append("origin")
        if not (self._allow_all_methods or method in self.allow_methods):
            problems.append("method")
        if not self._allow_all_headers:
            refused = [h for h in asked if h not in self.allow_headers]
            if refused:
                problems.append("headers " + ", ".join(refused))
        response = Response.text(
            "Disallowed CORS " + "; ".join(problems) + "\n" if problems else "OK\n",
            status=400 if problems else 200,
        )
        headers = response.headers
        headers.set("vary", "Origin")
        if problems:
            return response
        headers.set("access-control-allow-origin", self._allow_origin_value(origin))
        for name, value in self._preflight_fields:
            headers.add(name, value)
        if self._allow_all_methods:
            headers.set("access-control-allow-methods", method)
        if self._allow_all_headers and asked:
            headers.set("access-control-allow-headers", ", ".join(asked))
        return response

    def _decorate(self, response: Response | DirectResponse, origin: str) -> None:
        headers = response.headers
        if self._origins or self._origin_regex is not None or self.allow_credentials:
            # The answer depends on the origin: caches must not share it.
            _add_vary(headers, "Origin")
        if not self.is_allowed_origin(origin):
            return
        headers.set("access-control-allow-origin", self._allow_origin_value(origin))
        if self.allow_credentials:
            headers.set("access-control-allow-credentials", "true")
        if self.expose_headers:
            headers.set("access-control-expose-headers", ", ".join(self.expose_headers))


def _accepts_gzip(request: Request) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (RFC 9110 §12.5.3: ``q=0`` refuses it)."""
    for element in request.headers.get_tokens("accept-encoding"):
        coding, _, params = element.partition(";")
        coding = coding.strip()
        if coding not in ("gzip", "x-gzip", "*"):
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


@final
class GZipMiddleware:
    """Compress responses with gzip for clients that accept it.

    ::

        app.add_middleware(GZipMiddleware(minimum_size=500))

    A response is compressed when the request's ``Accept-Encoding`` allows
    gzip, it has no ``Content-Encoding`` yet, its status carries a body (not
    1xx, 204, 304) and it is no partial range (206, ``Content-Range``). A body
    given as bytes is compressed when it has at least *minimum_size* bytes; a
    streamed body (with no ``Content-Length`` below *minimum_size*) is
    compressed as it streams, each chunk flushed to the client when the
    handler yields it, so server-sent events and long polls still arrive on
    time. Every response that could be compressed gets ``Vary:
    Accept-Encoding``, whether this client took gzip or not, and a strong
    ``ETag`` becomes weak (the bytes differ from the uncompressed ones).
    """

    __slots__ = ("compresslevel", "minimum_size")

    def __init__(self, *, minimum_size: int = 500, compresslevel: int = 6) -> None:
        if minimum_size < 0:
            raise ValueError("minimum_size must be >= 0")
        if not 1 <= compresslevel <= 9:
            raise ValueError("compresslevel must be between 1 and 9")
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel

    async def __call__(self, request: Request, call_next: Handler) -> Result:
        result = await call_next(request)
        if not isinstance(result, Response):
            return result
        response = result
        status = response.status
        headers = response.headers
        if (
            status < 200
            or status in (204, 206, 304)
            or "content-encoding" in headers
            or "content-range" in headers
        ):
            return response
        body = response.body
        if isinstance(body, (bytes, bytearray, memoryview)):
            if len(body) < self.minimum_size:
                return response
        else:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) < self.minimum_size:
                return response
        _add_vary(headers, "Accept-Encoding")
        if not _accepts_gzip(request):
            return response
        headers.set("content-encoding", "gzip")
        etag = headers.get("etag")
        if etag is not None and not etag.startswith("W/"):
            headers.set("etag", "W/" + etag)
        if isinstance(body, (bytes, bytearray, memoryview)):
            compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 31)
            data = compressor.compress(body) + compressor.flush()
            response.body = data
            headers.set("content-length", str(len(data)))
        else:
            headers.remove("content-length")
            response.body = _GzipStream(body, self.compresslevel)
        return response


@final
class _GzipStream:
    """A streamed body, gzip-compressed chunk by chunk; closing it closes the body.

    A class rather than an async generator: a response to ``HEAD`` is closed
    without being iterated, and an unstarted generator's ``finally`` never
    runs, so the body under it would never be closed.
    """

    __slots__ = ("_chunks", "_compressor", "_done", "_iterator")

    def __init__(self, chunks: AsyncIterable[bytes], level: int) -> None:
        self._chunks = chunks
        self._iterator: AsyncIterator[bytes] | None = None
        # wbits 31: the gzip wrapper (header and CRC trailer) around deflate.
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        self._done = False

    def __aiter__(self) -> _GzipStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        if self._iterator is None:
            self._iterator = self._chunks.__aiter__()
        while True:
            try:
                chunk = await self._iterator.__anext__()
            except StopAsyncIteration:
                self._done = True
                return self._compressor.flush()
            if chunk:
                # Flushed, so the client can decode this chunk before the next one exists.
                return self._compressor.compress(chunk) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    async def aclose(self) -> None:
        self._done = True
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            await trio.lowlevel.checkpoint()
