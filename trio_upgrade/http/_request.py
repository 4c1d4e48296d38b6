"""The request a handler receives: head fields plus a streamed body."""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, final
from urllib.parse import parse_qsl, unquote

import trio

from .._wire import Address
from ._errors import MalformedBody, RequestBodyTooLarge
from ._headers import Headers, HeadersLike
from ._state import State

if TYPE_CHECKING:
    from ..core import Connection

__all__ = ["BodySource", "QueryParams", "Request", "RequestBody", "parse_cookies"]

# Request._upgrade before the Upgrade header has been looked at.
_UNKNOWN = object()


class BodySource(Protocol):
    """Where a request body comes from (the connection loop, or bytes in tests)."""

    async def receive_body(self) -> bytes:
        """Return the next piece of the body, or ``b""`` once it is complete."""
        ...


@final
class _BytesBody:
    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def receive_body(self) -> bytes:
        await trio.lowlevel.checkpoint()
        data, self._data = self._data, b""
        return data


@final
class QueryParams:
    """Query-string parameters: ``get`` gives the first value, ``get_all`` every one."""

    __slots__ = ("_items",)

    def __init__(self, query_string: str = "") -> None:
        self._items = parse_qsl(query_string, keep_blank_values=True)

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._items:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(key for key, _ in self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


@final
class RequestBody:
    """The request body as an async iterator of ``bytes`` chunks.

    Iterating reads from the connection as the handler asks for data, so a large
    upload is never held whole. The body can be iterated once; after
    :meth:`Request.read` it replays the collected bytes. The size limit
    (:attr:`Request.max_body_size`) is enforced as chunks arrive:
    :class:`RequestBodyTooLarge` (413).
    """

    __slots__ = ("_consumed", "_request", "_size")

    def __init__(self, request: Request) -> None:
        self._request = request
        self._size = 0
        self._consumed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    def __call__(self) -> Coroutine[Any, Any, bytes]:
        """``await request.body()``, as in Starlette: the whole body, the same as
        ``await request.read()``."""
        return self._request.read()

    async def _iterate(self) -> AsyncIterator[bytes]:
        request = self._request
        if request._cached is not None:
            if request._cached:
                yield request._cached
            return
        if self._consumed:
            raise RuntimeError("the request body was already consumed")
        self._consumed = True
        limit = request.max_body_size
        if limit is not None:
            # A declared length past the limit fails before the first read, so a
            # client waiting for "100 Continue" gets 413 instead and never sends
            # the body (RFC 9110 §10.1.1).
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await trio.lowlevel.checkpoint()
                raise RequestBodyTooLarge(limit)
        while True:
            chunk = await request._source.receive_body()
            if not chunk:
                return
            self._size += len(chunk)
            limit = request.max_body_size
            if limit is not None and self._size > limit:
                raise RequestBodyTooLarge(limit)
            yield chunk


@final
class Request:
    """One HTTP request.

    Head fields are plain attributes; the body is streamed
    (``async for chunk in request.body``) or collected (``await request.read()``,
    :meth:`text`, :meth:`json`, :meth:`form`).

    Attributes:
      method: ``"GET"``, ``"POST"``, ... (upper case as sent).
      target: the raw request target, e.g. ``"/a%20b?x=1"``.
      path: the percent-decoded path, e.g. ``"/a b"``.
      query_string: the raw query, without ``?``.
      headers: :class:`Headers`, case-insensitive and multi-valued.
      http_version: ``"1.1"`` or ``"1.0"``.
      client, server: peer and local address: ``(host, port)``, a Unix path, or ``None``.
      scheme: ``"https"`` on TLS connections, else ``"http"``.
      path_params: values captured by the route pattern (converted: ``{id:int}`` → ``int``).
      root_path: the prefix of routers this request was mounted under.
      max_body_size: the body limit for this request; a handler may change it before reading.
      connection: the :class:`trio_upgrade.core.Connection`, when served by a server.
      state: a :class:`State` for middleware to pass values to handlers
        (``request.state.user = ...`` or ``request.state["user"] = ...``); an
        App's lifespan state is copied into it (shallow) before routing.
    """

    __slots__ = (
        "_body",
        "_cached",
        "_cookies",
        "_query",
        "_source",
        "_state",
        "_upgrade",
        "client",
        "connection",
        "headers",
        "http_version",
        "max_body_size",
        "method",
        "path",
        "path_params",
        "query_string",
        "root_path",
        "scheme",
        "server",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: str,
        *,
        headers: HeadersLike | None = None,
        body: bytes | BodySource = b"",
        http_version: str = "1.1",
        client: Address | None = None,
        server: Address | None = None,
        scheme: str = "http",
        max_body_size: int | None = None,
        connection: Connection | None = None,
    ) -> None:
        self._set_fields(
            method,
            target,
            headers if isinstance(headers, Headers) else Headers(headers),
            _BytesBody(body) if isinstance(body, bytes) else body,
            http_version,
            client,
            server,
            scheme,
            max_body_size,
            connection,
            _UNKNOWN,
        )

    def _set_fields(
        self,
        method: str,
        target: str,
        headers: Headers,
        source: BodySource,
        http_version: str,
        client: Address | None,
        server: Address | None,
        scheme: str,
        max_body_size: int | None,
        connection: Connection | None,
        upgrade: str | object | None,
    ) -> None:
        """Set every field: the one place that does, for both ways a Request is made.

        ``__init__`` calls it with its arguments converted; the connection loop,
        on the hot path, calls it on ``Request.__new__(Request)`` with values
        already in shape, positionally (a request's cost is mostly fixed
        overhead: no keyword handling, no conversions, no second call).
        """
        self.method = method
        self.target = target
        if "?" in target:
            path, _, self.query_string = target.partition("?")
        else:
            path = target
            self.query_string = ""
        if path[:1] != "/" and "://" in path:
            # absolute-form, as sent to proxies; servers must accept it too
            # (RFC 9112 §3.2.2): route on its path component.
            path = "/" + path.partition("://")[2].partition("/")[2]
        self.path = unquote(path) if "%" in path else path
        self.headers = headers
        self.http_version = http_version
        self.client = client
        self.server = server
        self.scheme = scheme
        self.path_params: dict[str, Any] = {}
        self.root_path = ""
        self.max_body_size = max_body_size
        self.connection = connection
        # request.state, made on first use (most requests never touch it).
        self._state: State | None = None
        self._source = source
        self._body: RequestBody | None = None
        self._cached: bytes | None = None
        self._query: QueryParams | None = None
        self._cookies: dict[str, str] | None = None
        # The Upgrade header's protocols, parsed on first use (_UNKNOWN: not yet).
        self._upgrade = upgrade

    @property
    def state(self) -> State:
        """Values for this request, by attribute or by key (see :class:`State`)."""
        state = self._state
        if state is None:
            state = self._state = State()
        return state

    @state.setter
    def state(self, value: Mapping[str, Any]) -> None:
        self._state = value if isinstance(value, State) else State(value)

    @property
    def query(self) -> QueryParams:
        """Parsed query parameters (parsed on first use)."""
        if self._query is None:
            self._query = QueryParams(self.query_string)
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        """The cookies of the ``Cookie`` header(s), by name (parsed on first use).

        A name sent twice keeps its first value: browsers send the cookie with
        the longest matching path first (RFC 6265 §5.4). Values are as sent,
        without surrounding double quotes; pairs without ``=`` are skipped.
        """
        cookies = self._cookies
        if cookies is None:
            cookies = self._cookies = parse_cookies(self.headers.get_all("cookie"))
        return cookies

    @property
    def upgrade(self) -> str | None:
        """The protocols of the ``Upgrade`` header, lower-case (``"websocket"``), or ``None``.

        Only the header is read: whether ``Connection: upgrade`` came along is
        for the protocol's own handshake check to judge.
        """
        upgrade = self._upgrade
        if upgrade is _UNKNOWN:
            tokens = self.headers.get_tokens("upgrade")
            upgrade = self._upgrade = ", ".join(tokens) if tokens else None
        return upgrade  # type: ignore[return-value]

    @property
    def body(self) -> RequestBody:
        """The body as an async iterator of chunks (see :class:`RequestBody`)."""
        if self._body is None:
            self._body = RequestBody(self)
        return self._body

    @property
    def host(self) -> str | None:
        """The ``Host`` header (for HTTP/1.1, always present)."""
        return self.headers.get("host")

    @property
    def url(self) -> str:
        """The absolute URL as the client asked for it (scheme, Host, target)."""
        return f"{self.scheme}://{self.host or 'localhost'}{self.target}"

    async def read(self) -> bytes:
        """The whole body as bytes (respecting :attr:`max_body_size`); cached."""
        if self._cached is None:
            chunks = [chunk async for chunk in self.body]
            self._cached = b"".join(chunks)
        else:
            await trio.lowlevel.checkpoint()
        return self._cached

    async def text(self) -> str:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 by default)."""
        data = await self.read()
        charset = "utf-8"
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return data.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            raise MalformedBody(f"Body is not valid {charset}: {exc}") from None

    async def json(self) -> Any:
        """The body parsed as JSON; malformed JSON is a 400 (:class:`MalformedBody`)."""
        data = await self.read()
        try:
            return _json.loads(data)
        except ValueError as exc:
            raise MalformedBody(f"Body is not valid JSON: {exc}") from None

    async def form(self) -> QueryParams:
        """An ``application/x-www-form-urlencoded`` body, parsed."""
        data = await self.read()
        try:
            return QueryParams(data.decode("ascii"))
        except UnicodeDecodeError:
            raise MalformedBody("Form body is not ASCII") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


def parse_cookies(values: list[str]) -> dict[str, str]:
    """The ``name=value`` pairs of ``Cookie`` field values (RFC 6265 §4.2.1), leniently:
    whitespace around pairs is dropped, a pair without ``=`` or a name is skipped,
    the first of a repeated name wins."""
    cookies: dict[str, str] = {}
    for value in values:
        for pair in value.split(";"):
            name, eq, content = pair.partition("=")
            name = name.strip()
            if not eq or not name:
                continue
            content = content.strip()
            if len(content) >= 2 and content[0] == content[-1] == '"':
                content = content[1:-1]
            cookies.setdefault(name, content)
    return cookies
