"""What the in-memory client returns: a status, headers and a body read or streamed."""

from __future__ import annotations

import codecs
import json as _json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, final

import trio

from ..http import Headers

__all__ = ["ClientResponse"]


@final
class ClientResponse:
    """One HTTP response as the client received it.

    A response from ``client.get()`` and friends is read whole: :attr:`content`,
    :attr:`text` and :meth:`json` are ready. One from ``client.stream()`` is
    read as you go: ``async for chunk in response.iter_bytes()`` yields the body
    chunk by chunk as the app sends it (each ``Data`` event of the wire), and
    :meth:`aread` reads the rest; :attr:`content` is available after either
    finished.
    """

    __slots__ = (
        "_content",
        "_next_chunk",
        "_parts",
        "headers",
        "http_version",
        "method",
        "reason",
        "status_code",
        "target",
    )

    def __init__(
        self,
        status_code: int,
        headers: Headers,
        *,
        reason: str = "",
        http_version: str = "1.1",
        method: str = "GET",
        target: str = "/",
        content: bytes | None = None,
        next_chunk: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        """Response headers (case-insensitive look-ups; ``.raw`` has the byte pairs)."""
        self.reason = reason
        self.http_version = http_version
        self.method = method
        """Method of the request this answers."""
        self.target = target
        """Request target (path and query) of the request this answers."""
        # The whole body once read; None while (part of) it is still on the wire.
        self._content = content
        # Returns the next body chunk, b"" at the end; None once the body is read.
        self._next_chunk = next_chunk if content is None else None
        # Chunks received so far (streamed responses).
        self._parts: list[bytes] = []

    @property
    def status(self) -> int:
        """Same as :attr:`status_code`."""
        return self.status_code

    @property
    def is_stream_consumed(self) -> bool:
        """True once the whole body has been received."""
        return self._next_chunk is None

    @property
    def content(self) -> bytes:
        """The whole body. On a streamed response, only after it has been read."""
        if self._content is None:
            raise RuntimeError(
                "the body of a streamed response is not read yet: "
                "`await response.aread()` or iterate `response.iter_bytes()` first"
            )
        return self._content

    @property
    def charset(self) -> str:
        """The ``charset`` of the Content-Type, or ``"utf-8"``."""
        content_type = self.headers.get("content-type", "")
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                name = value.strip().strip('"')
                try:
                    return codecs.lookup(name).name
                except LookupError:
                    break
        return "utf-8"

    @property
    def text(self) -> str:
        """The body decoded with :attr:`charset` (undecodable bytes replaced)."""
        return self.content.decode(self.charset, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (:func:`json.loads` keyword arguments allowed)."""
        return _json.loads(self.content, **kwargs)

    async def aread(self) -> bytes:
        """Receive the rest of the body and return all of it."""
        async for _ in self.iter_bytes():
            pass
        assert self._content is not None
        return self._content

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, as it arrives (empty chunks skipped).

        On a response already read, yields the whole body once; after a partial
        iteration, a new one continues where it stopped. Raises
        :class:`~trio_upgrade.testing.ServerDisconnected` if the server closes
        the connection before the body is complete.
        """
        # An iterator object rather than an async generator: a loop that stops
        # early (``break``) leaves nothing behind to be finalized.
        return _Chunks(self)

    async def _next(self) -> bytes | None:
        """The next chunk, or None at the end of the body."""
        next_chunk = self._next_chunk
        if next_chunk is None:
            return None
        chunk = await next_chunk()
        if not chunk:
            self._next_chunk = None
            self._content = b"".join(self._parts)
            self._parts = []
            return None
        self._parts.append(chunk)
        return chunk

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code} {self.reason}]>"


@final
class _Chunks:
    __slots__ = ("_response", "_whole")

    def __init__(self, response: ClientResponse) -> None:
        self._response = response
        # A body already read is handed out once, whole.
        self._whole = response._content if response._next_chunk is None else None

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        whole = self._whole
        if whole is not None:
            self._whole = None
            await trio.lowlevel.checkpoint()
            if whole:
                return whole
            raise StopAsyncIteration
        chunk = await self._response._next()
        if chunk is None:
            raise StopAsyncIteration
        return chunk
