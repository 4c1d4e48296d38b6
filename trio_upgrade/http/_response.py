"""Responses: a status, headers, and a body given as bytes or streamed."""

from __future__ import annotations

import json as _json
import mimetypes
import os
import time as _time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from email.utils import format_datetime, formatdate
from typing import TYPE_CHECKING, Any, Literal, final
from urllib.parse import quote

import trio

from .._wire import is_token
from ._headers import Headers, HeadersLike

if TYPE_CHECKING:
    from ._connection import ResponseWriter

__all__ = ["DirectResponse", "Response"]

_FILE_CHUNK = 64 * 1024

# RFC 6265 §4.1.1 cookie-octet: visible ASCII except DQUOTE, comma, semicolon, backslash.
_COOKIE_OCTETS = frozenset(chr(c) for c in range(0x21, 0x7F) if chr(c) not in {'"', ",", ";", "\\"})
# Attribute values (Path, Domain): any visible ASCII or space but ";" (§4.1.1 av-octet).
_ATTRIBUTE_OCTETS = frozenset(chr(c) for c in range(0x20, 0x7F) if chr(c) != ";")
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@final
class Response:
    """An HTTP response.

    *body* is either ``bytes`` (sent with ``Content-Length``) or an async
    iterable of ``bytes`` chunks, streamed as the handler produces them:
    with ``Transfer-Encoding: chunked`` when no ``Content-Length`` header is
    given (for HTTP/1.0 clients, by closing the connection at the end). An
    iterable with an ``aclose`` method is closed when the response ends,
    however it ends. For ``HEAD`` requests the headers are sent and the body is
    not.
    """

    __slots__ = ("body", "headers", "status")

    status: int
    headers: Headers
    body: bytes | AsyncIterable[bytes]

    def __init__(
        self,
        body: bytes | AsyncIterable[bytes] = b"",
        *,
        status: int = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = None,
    ) -> None:
        if not 200 <= status <= 999:
            raise ValueError(f"invalid final status {status} (the server sends 1xx itself)")
        if headers is None:
            # The common case, kept cheap: no copying, no searching.
            fields = Headers.from_raw(
                [] if content_type is None else [(b"content-type", content_type.encode("latin-1"))]
            )
        else:
            fields = headers if isinstance(headers, Headers) else Headers(headers)
            if content_type is not None:
                fields.set("content-type", content_type)
        _set_fields(self, status, fields, body)

    # Helpers -----------------------------------------------------------------

    @classmethod
    def text(cls, text: str, *, status: int = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/plain; charset=utf-8`` response."""
        return _typed(cls, text.encode(), status, headers, b"text/plain; charset=utf-8")

    @classmethod
    def html(cls, html: str, *, status: int = 200, headers: HeadersLike | None = None) -> Response:
        """A ``text/html; charset=utf-8`` response."""
        return _typed(cls, html.encode(), status, headers, b"text/html; charset=utf-8")

    @classmethod
    def json(
        cls,
        data: Any,
        *,
        status: int = 200,
        headers: HeadersLike | None = None,
        indent: int | None = None,
    ) -> Response:
        """*data* serialised as compact UTF-8 JSON (``application/json``)."""
        separators = (",", ":") if indent is None else None
        body = _json.dumps(data, ensure_ascii=False, indent=indent, separators=separators)
        return _typed(cls, body.encode(), status, headers, b"application/json")

    @classmethod
    def redirect(
        cls, location: str, *, status: int = 307, headers: HeadersLike | None = None
    ) -> Response:
        """A redirect to *location* (307 by default: the method and body are kept)."""
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"{status} is not a redirect status")
        response = cls(status=status, headers=headers)
        response.headers.set("location", quote(location, safe=":/%#?=@[]!$&'()*+,;~"))
        return response

    @classmethod
    def stream(
        cls,
        chunks: AsyncIterable[bytes],
        *,
        status: int = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = None,
    ) -> Response:
        """A streamed response (same as passing an async iterable as *body*)."""
        return cls(chunks, status=status, headers=headers, content_type=content_type)

    @classmethod
    async def file(
        cls,
        path: str | os.PathLike[str],
        *,
        status: int = 200,
        headers: HeadersLike | None = None,
        content_type: str | None = None,
        filename: str | None = None,
    ) -> Response:
        """Stream a file from disk in chunks, with ``Content-Length``, ``Content-Type``
        (guessed from the name) and ``Last-Modified``.

        *filename* adds ``Content-Disposition: attachment``. A missing file raises
        :class:`FileNotFoundError`; the file is opened when the body is sent.
        """
        fspath = os.fspath(path)
        st = await trio.Path(fspath).stat()
        if headers is not None and not isinstance(headers, Headers):
            headers = Headers(headers)  # once: *headers* may be a one-shot iterator
        if content_type is None and (headers is None or "content-type" not in headers):
            guessed, _ = mimetypes.guess_type(fspath)
            content_type = guessed or "application/octet-stream"
            if content_type.startswith("text/"):
                content_type += "; charset=utf-8"
        response = cls(
            _file_chunks(fspath), status=status, headers=headers, content_type=content_type
        )
        response.headers.set("content-length", str(st.st_size))
        response.headers.setdefault("last-modified", formatdate(st.st_mtime, usegmt=True))
        if filename is not None:
            response.headers.set(
                "content-disposition", f"attachment; filename*=UTF-8''{quote(filename)}"
            )
        return response

    # Cookies ------------------------------------------------------------------

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: datetime | int | float | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
        partitioned: bool = False,
    ) -> None:
        """Add a ``Set-Cookie`` field (RFC 6265 §4.1).

        *max_age* in seconds (0 or less: expire now); *expires* an aware
        :class:`~datetime.datetime` or a number of seconds from now (both may
        be given: browsers prefer ``Max-Age``). *samesite* ``"none"`` and
        *partitioned* need *secure*, as browsers require. Checked before
        anything is added, with a ``ValueError`` that says what is wrong:
        *key* must be a token, *value* cookie-octets only (no space, ``"``,
        ``,``, ``;``, ``\\`` or control characters — encode anything else,
        e.g. with :func:`urllib.parse.quote`), *path* and *domain* no ``;``
        or control characters.
        """
        if not key.isascii() or not is_token(key.encode()):
            raise ValueError(f"cookie name {key!r} is not a token (RFC 6265 §4.1.1)")
        bad = [c for c in value if c not in _COOKIE_OCTETS]
        if bad:
            raise ValueError(
                f"cookie value for {key!r} may not contain {bad[0]!r}; encode it first, "
                "e.g. urllib.parse.quote(value)"
            )
        parts = [f"{key}={value}"]
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if expires is not None:
            if isinstance(expires, datetime):
                if expires.tzinfo is None:
                    raise ValueError("expires must be an aware datetime (tzinfo=timezone.utc)")
                when = expires
            else:
                when = datetime.fromtimestamp(_time.time() + expires, timezone.utc)
            parts.append("Expires=" + format_datetime(when.astimezone(timezone.utc), usegmt=True))
        for name, attribute in (("Domain", domain), ("Path", path)):
            if attribute is None:
                continue
            if not attribute or any(c not in _ATTRIBUTE_OCTETS for c in attribute):
                raise ValueError(
                    f"cookie {name.lower()} {attribute!r} must be non-empty, without ';' "
                    "or control characters"
                )
            parts.append(f"{name}={attribute}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        if samesite is not None:
            spelled = _SAMESITE.get(samesite.lower())
            if spelled is None:
                raise ValueError(
                    f"samesite must be 'lax', 'strict', 'none' or None, not {samesite!r}"
                )
            if spelled == "None" and not secure:
                raise ValueError("samesite='none' needs secure=True (browsers refuse it otherwise)")
            parts.append(f"SameSite={spelled}")
        if partitioned:
            if not secure:
                raise ValueError("partitioned=True needs secure=True")
            parts.append("Partitioned")
        self.headers.add("set-cookie", "; ".join(parts))

    def delete_cookie(
        self,
        key: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        """Tell the browser to drop cookie *key*: an empty value, ``Max-Age=0``, an
        ``Expires`` in 1970. *path* and *domain* must be those it was set with."""
        self.set_cookie(
            key,
            "",
            max_age=0,
            expires=_EPOCH,
            path=path,
            domain=domain,
            secure=secure,
            httponly=httponly,
            samesite=samesite,
        )

    def __repr__(self) -> str:
        return f"<Response {self.status}>"


def _typed(
    cls: type[Response], body: bytes, status: int, headers: HeadersLike | None, content_type: bytes
) -> Response:
    # The helpers' common case (no extra headers) without __init__'s keyword
    # handling and header conversion: these run once per request.
    if headers is not None or status < 200 or status > 999:
        return cls(body, status=status, headers=headers, content_type=content_type.decode())
    response = cls.__new__(cls)
    _set_fields(response, status, Headers.from_raw([(b"content-type", content_type)]), body)
    return response


def _set_fields(
    response: Response, status: int, headers: Headers, body: bytes | AsyncIterable[bytes]
) -> None:
    # The one place every field of a Response is set, for __init__ and _typed.
    response.status = status
    response.headers = headers
    response.body = body


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(_FILE_CHUNK):
            yield chunk


@final
class DirectResponse:
    """What a handler returns to write its response itself, from the connection's task.

    ``DirectResponse(write)`` makes the connection loop call ``await
    write(writer)`` with a :class:`~trio_upgrade.http.ResponseWriter` once
    the handler has returned; *write* sends the head, then the body piece by
    piece, as it produces it: server-sent events, long polling, a body relayed
    from elsewhere, an ASGI app. Each ``send`` writes straight to the socket
    (backpressure: it returns once the bytes are handed to the kernel), while
    the loop keeps the framing, keep-alive, the request body, drain and
    timeouts.

    What the loop does with the outcome:

    - *write* raises before the head was sent: a 500 (an
      :class:`HTTPError`: its own status), as for a handler that raises;
    - *write* raises after the head, or returns before :meth:`ResponseWriter.end`:
      the error is logged and the connection closed (never a truncated body
      on a kept-alive connection); :meth:`ResponseWriter.abort` closes it
      without a log;
    - *write* returns without sending anything: logged, and a 500.

    *headers* (and whatever middleware adds to :attr:`headers` on the way
    out: CORS, a request id) go into the head the writer sends, each name
    only when the writer's own headers lack it.
    """

    __slots__ = ("headers", "write")

    def __init__(
        self,
        write: Callable[[ResponseWriter], Awaitable[None]],
        *,
        headers: HeadersLike | None = None,
    ) -> None:
        self.write = write
        if headers is None:
            self.headers = Headers.from_raw([])
        else:
            self.headers = headers if isinstance(headers, Headers) else Headers(headers)

    def __repr__(self) -> str:
        return f"<DirectResponse {self.write!r}>"
