"""Reading HTTP/1.1 heads off a byte stream, on h11 (RFC 9112 §2-§5), sans I/O.

For the peers that parse a head themselves rather than through the HTTP
server: the standalone WebSocket server (request heads) and the WebSocket
client (the handshake response, and the body of a refused handshake).

- :class:`RequestParser` and :class:`ResponseParser` take bytes as they arrive
  and return the parsed head once it is complete; the bytes read past it stay
  in ``rest`` (after a handshake, the peer's first frames: never lost).
- A head over ``max_size`` bytes, or with more than ``max_fields`` header
  fields, is refused with 431; obsolete line folding, a bare CR and every other
  malformed line with 400; an HTTP version other than 1.x with 505. The status
  a server should answer is :attr:`HeadError.status`.
- Repeated fields are kept, in order, as ``(name, value)`` pairs with
  lower-case names.
- A refused handshake's body is framed as :func:`~._framing.response_framing`
  decides (Content-Length validated, ``chunked`` only as the sole coding) and
  read up to a bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import h11

from ._errors import TrioUpgradeError
from ._framing import Framing, FramingError, response_framing

__all__ = [
    "DEFAULT_MAX_FIELDS",
    "DEFAULT_MAX_HEAD_SIZE",
    "HeadError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
]

DEFAULT_MAX_HEAD_SIZE = 16 * 1024
"""Largest head accepted, in bytes, its final blank line included."""
DEFAULT_MAX_FIELDS = 100
"""Most header fields accepted in one head (h11 and uvicorn-like servers allow about 100)."""

Fields = list[tuple[bytes, bytes]]

# The blank line that ends a head; a bare LF ends a line too (RFC 9112 §2.2).
_END = re.compile(rb"\n\r?\n")
# A line that starts with a space or a tab: obsolete line folding, which a
# server must refuse or unfold (RFC 9112 §5.2); h11 unfolds, we refuse.
_FOLD = re.compile(rb"\n[ \t]")

# Header names and values that most handshakes carry, shared by every head that
# has them: a WebSocket session keeps its request's fields for its whole life,
# and a bytes object per name and value per idle connection adds up (~0.3 KiB).
_SHARED: dict[bytes, bytes] = {
    value: value
    for value in (
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"user-agent",
        b"pragma",
        b"cache-control",
        b"accept-encoding",
        b"accept-language",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"websocket",
        b"Upgrade",
        b"keep-alive, Upgrade",
        b"13",
        b"no-cache",
        b"gzip, deflate, br",
        b"gzip, deflate, br, zstd",
        b"permessage-deflate; client_max_window_bits",
    )
}


class HeadError(TrioUpgradeError, ValueError):
    """A head that cannot be accepted; *status* is what a server should answer
    (400 malformed, 431 too large or too many fields, 505 not HTTP/1.x; 502 for
    a response whose framing is faulty)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request head."""

    method: bytes
    target: bytes
    http_version: bytes
    """``b"1.1"`` or ``b"1.0"``."""
    fields: Fields
    """``(name, value)`` pairs in order, names lower-cased, repeated fields kept."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A parsed response head."""

    status: int
    reason: bytes
    http_version: bytes
    fields: Fields
    """``(name, value)`` pairs in order, names lower-cased, repeated fields kept."""


def _shared(pairs: Iterable[tuple[bytes, bytes]]) -> Fields:
    shared = _SHARED
    return [(shared.get(n, n), shared.get(v, v)) for n, v in pairs]


def _h11_error(exc: h11.ProtocolError) -> HeadError:
    return HeadError(str(exc), exc.error_status_hint)


class _Splitter:
    """Finds the end of one head in the bytes fed to it, within *max_size*."""

    __slots__ = ("_buf", "_max_fields", "_max_size", "_searched")

    def __init__(self, max_size: int, max_fields: int) -> None:
        self._buf = bytearray()
        self._max_size = max_size
        self._max_fields = max_fields
        # How far the buffer has been searched for the blank line.
        self._searched = 0

    @property
    def read_size(self) -> int:
        """How many bytes to read next: never enough to go past the limit by more than one."""
        return max(self._max_size - len(self._buf), 1)

    def feed(self, data: bytes | bytearray) -> tuple[bytes, bytes] | None:
        """``(head, rest)`` once the head is complete, else ``None``."""
        buf = self._buf
        buf += data
        found = _END.search(buf, max(self._searched - 2, 0))
        if found is None:
            self._searched = len(buf)
            if len(buf) > self._max_size:
                raise HeadError("head too large", 431)
            return None
        end = found.end()
        if end > self._max_size:
            raise HeadError("head too large", 431)
        head = bytes(buf[:end])
        rest = bytes(buf[end:])
        self._buf = bytearray()
        # Every line but the start line and the final blank one is a field
        # (folding is refused below), so this counts them before h11 works.
        if head.count(b"\n") - 2 > self._max_fields:
            raise HeadError(f"more than {self._max_fields} header fields", 431)
        if _FOLD.search(head) is not None:
            raise HeadError("obsolete line folding in the head")
        return head, rest


class RequestParser:
    """Reads one request head (a WebSocket opening handshake) from the bytes fed to it.

    ``feed(data)`` until it returns the :class:`RequestHead`; then :attr:`rest`
    holds what came after the head. Raises :class:`HeadError`.
    """

    __slots__ = ("_splitter", "rest")

    def __init__(
        self, *, max_size: int = DEFAULT_MAX_HEAD_SIZE, max_fields: int = DEFAULT_MAX_FIELDS
    ) -> None:
        self._splitter = _Splitter(max_size, max_fields)
        self.rest = b""
        """Bytes received after the head (valid once the head is returned)."""

    @property
    def read_size(self) -> int:
        """The most bytes worth reading next."""
        return self._splitter.read_size

    def feed(self, data: bytes | bytearray) -> RequestHead | None:
        split = self._splitter.feed(data)
        if split is None:
            return None
        head, self.rest = split
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _h11_error(exc) from None
        if not isinstance(event, h11.Request):  # pragma: no cover - a complete head is an event
            raise HeadError("incomplete request head")
        if not event.http_version.startswith(b"1."):
            raise HeadError("unsupported HTTP version", 505)
        return RequestHead(event.method, event.target, event.http_version, _shared(event.headers))


class ResponseParser:
    """Reads a WebSocket handshake response from the bytes fed to it.

    ``feed(data)`` until it returns the :class:`ResponseHead`. After a 101,
    :attr:`rest` holds the server's first frames. After any other status the
    body follows: ``feed_body(data)`` (``b""`` at EOF) until it returns true,
    then :attr:`body` holds its first *max_body_size* bytes. Raises
    :class:`HeadError` for a malformed head or body.
    """

    __slots__ = ("_conn", "_done", "_max_body_size", "_splitter", "body", "rest")

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_HEAD_SIZE,
        max_fields: int = DEFAULT_MAX_FIELDS,
        max_body_size: int = 64 * 1024,
    ) -> None:
        self._splitter = _Splitter(max_size, max_fields)
        self._max_body_size = max_body_size
        # h11 parses the head and decodes the body; a client connection must
        # have sent a request (with an upgrade offer, or a 101 is refused)
        # before it reads a response, so it is told about one.
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_size)
        self._conn.send(
            h11.Request(
                method=b"GET",
                target=b"/",
                headers=[(b"host", b"-"), (b"upgrade", b"websocket"), (b"connection", b"upgrade")],
            )
        )
        self._conn.send(h11.EndOfMessage())
        self._done = False
        self.rest = b""
        """Bytes received after the head (after a 101: the first frames)."""
        self.body = bytearray()
        """The body of a non-101 response, at most *max_body_size* bytes."""

    @property
    def read_size(self) -> int:
        """The most bytes worth reading next while the head is incomplete."""
        return self._splitter.read_size

    @property
    def body_complete(self) -> bool:
        return self._done

    def feed(self, data: bytes | bytearray) -> ResponseHead | None:
        split = self._splitter.feed(data)
        if split is None:
            return None
        head, self.rest = split
        conn = self._conn
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _h11_error(exc) from None
        if not isinstance(event, (h11.Response, h11.InformationalResponse)):  # pragma: no cover
            raise HeadError("incomplete response head")
        parsed = ResponseHead(
            event.status_code, bytes(event.reason), event.http_version, _shared(event.headers)
        )
        if parsed.status == 101:
            self._done = True
            return parsed
        try:
            framing = response_framing(
                parsed.status,
                parsed.fields,
                request_method=b"GET",
                http_version=parsed.http_version,
            )
        except FramingError as exc:
            raise HeadError(str(exc), exc.status) from None
        if framing.kind == Framing.NONE or parsed.status < 200:
            self._done = True
        elif self.rest:
            self._absorb(self.rest, eof=False)
        return parsed

    def feed_body(self, data: bytes | bytearray) -> bool:
        """Take more of a refused handshake's body (``b""``: the peer closed).

        Returns whether the body is complete (or *max_body_size* bytes of it
        are in :attr:`body`); a body cut short by the close is kept as is.
        """
        if not self._done:
            self._absorb(data, eof=not data)
        return self._done

    def _absorb(self, data: bytes | bytearray, *, eof: bool) -> None:
        conn = self._conn
        conn.receive_data(bytes(data))
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if eof:
                    # Cut short by the close: what arrived is the body.
                    self._done = True
                    return
                raise _h11_error(exc) from None
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Data):
                room = self._max_body_size - len(self.body)
                self.body += event.data[:room]
                if len(self.body) >= self._max_body_size:
                    self._done = True
                    return
            else:
                # EndOfMessage, or the close after a body read to EOF.
                self._done = True
                return
