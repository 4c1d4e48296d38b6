"""The two request parsers behind :class:`~._protocol.ServerProtocol`: h11 (pure
Python, always there) and httptools (llhttp, the parser of Node and uvicorn; the
``speedups`` extra).

A parser only tokenises: it turns bytes into request heads, body pieces and the
end of each request, and says where the bytes of one request end. Every
decision about what those mean (keep-alive, the framing policy, limits on the
whole head, the status of each error) is the protocol object's, made once for
both. Each parser raises :class:`ParseError` with the status owed for what it
refuses itself (a malformed line, a head still incomplete past the limit) and
:class:`IncompleteBody` when the peer closed in the middle of a body.

Events (from :meth:`next_head` and :meth:`next_body`): a head as
``(method, target, headers, http_version)`` with lower-cased field names;
body bytes; ``b""`` at the end of the body; :data:`NEED_DATA`; ``None`` from
:meth:`next_head` when the peer closed cleanly between requests.
"""

from __future__ import annotations

import enum
import importlib.util
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, NoReturn, Protocol, final

import h11

from .._wire._errors import TrioUpgradeError

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = [
    "NEED_DATA",
    "IncompleteBody",
    "ParseError",
    "RequestParser",
    "have_httptools",
    "make_parser",
    "resolve_parser",
]


class _NeedData(enum.Enum):
    NEED_DATA = enum.auto()


NEED_DATA: Final = _NeedData.NEED_DATA
"""Returned when more bytes must be fed before anything can be said."""

Head: TypeAlias = "tuple[bytes, bytes, Sequence[tuple[bytes, bytes]], bytes]"

PARSERS: Final = ("auto", "h11", "httptools")


class ParseError(TrioUpgradeError):
    """The parser refused the bytes; *status* is the answer owed."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class IncompleteBody(TrioUpgradeError):
    """The peer closed the connection before the end of the request body."""


def _closed_mid_body() -> NoReturn:
    raise IncompleteBody("the connection closed before the end of the request body")


def have_httptools() -> bool:
    """Whether httptools can be imported (without importing it)."""
    return importlib.util.find_spec("httptools") is not None


def resolve_parser(name: str) -> str:
    """``"h11"`` or ``"httptools"`` for a configured *name*; ``"auto"`` picks
    httptools when it is installed. Raises ``ValueError`` for an unknown name
    and ``RuntimeError`` for ``"httptools"`` when it is not installed."""
    if name not in PARSERS:
        raise ValueError(f"parser must be one of {', '.join(PARSERS)}, not {name!r}")
    if name == "h11":
        return name
    if have_httptools():
        return "httptools"
    if name == "auto":
        return "h11"
    raise RuntimeError(
        'parser="httptools" needs the httptools package: pip install "trio-upgrade[speedups]"'
    )


class RequestParser(Protocol):
    """What :class:`~._protocol.ServerProtocol` needs of a parser."""

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""

    def next_head(self) -> Head | _NeedData | None:
        """The next request head (see the module docstring)."""

    def next_body(self) -> bytes | _NeedData:
        """The next piece of the current body, ``b""`` at its end."""

    @property
    def has_buffered_data(self) -> bool:
        """Whether bytes past the current request are already here."""

    @property
    def trailing_data(self) -> bytes:
        """The bytes received past the current request, exactly (once it is complete)."""

    def next_cycle(self) -> None:
        """The current request is done: get ready to parse the next."""


def make_parser(name: str, max_head_size: int) -> RequestParser:
    """A parser by its resolved *name* (:func:`resolve_parser`)."""
    if name == "httptools":
        return HttptoolsParser(max_head_size)
    return H11Parser(max_head_size)


@final
class H11Parser:
    """h11, one fresh connection object per request, fed what was read past
    the previous one (cheaper than stepping h11's response state machine)."""

    __slots__ = ("_conn", "_max_head_size", "_started")

    def __init__(self, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        # Whether a byte of this request was fed (empty lines before it are not).
        self._started = False

    def receive_data(self, data: bytes) -> None:
        if not self._started and data:
            # RFC 9112 §2.2: empty lines before a request line are ignored
            # (llhttp does; h11 would refuse them).
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self._started = True
        self._conn.receive_data(data)

    def next_head(self) -> Head | _NeedData | None:
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise ParseError(exc.error_status_hint, str(exc)) from None
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is not h11.Request:
            # ConnectionClosed: the peer closed between requests.
            return None
        return event.method, event.target, event.headers, event.http_version

    def next_body(self) -> bytes | _NeedData:
        conn = self._conn
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if conn.trailing_data[1]:
                # h11's word for an EOF before the end of the body.
                _closed_mid_body()
            raise ParseError(exc.error_status_hint, str(exc)) from None
        if type(event) is h11.Data:
            return bytes(event.data)
        if type(event) is h11.EndOfMessage:
            return b""
        if event is h11.NEED_DATA:
            return NEED_DATA
        _closed_mid_body()

    @property
    def has_buffered_data(self) -> bool:
        return bool(self._conn.trailing_data[0])

    @property
    def trailing_data(self) -> bytes:
        return bytes(self._conn.trailing_data[0])

    def next_cycle(self) -> None:
        leftover, eof = self._conn.trailing_data
        conn = self._conn = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self._max_head_size
        )
        self._started = False
        if leftover:
            self.receive_data(bytes(leftover))
        if eof:
            conn.receive_data(b"")


def _llhttp_status(exc: Exception) -> int:
    """The status for what llhttp refused when h11 cannot be asked: 501 for a
    transfer coding other than a single chunked (as h11), else 400."""
    if "invalid `transfer-encoding`" in str(exc).lower():
        return 501
    return 400


@final
class _HeadRefused:
    """llhttp refused a head; the status is settled when it is taken."""

    __slots__ = ("error",)

    def __init__(self, error: ParseError) -> None:
        self.error = error


# Where llhttp is in the stream (plain ints: read on every callback).
_BETWEEN: Final = 0
_HEAD: Final = 1
_BODY: Final = 2


_END: Final = b""


@final
class HttptoolsParser:
    """llhttp through httptools: one parser per connection (it parses pipelined
    requests as they come), its callbacks queuing events.

    llhttp runs on past the end of a request within one read, and httptools
    tells no byte offset except at an Upgrade. So that a takeover gets exactly
    the bytes sent after its request, the bytes read since the last point
    where llhttp stood between requests at the end of a read are kept (almost
    always none: a read usually ends with a request), and on demand h11 finds
    where the current request ends in them. Past ``max_head_size + 64 KiB`` they
    are dropped (memory per connection stays bounded); a takeover that then
    needs them is refused (400).
    """

    __slots__ = (
        "_base",
        "_delegate",
        "_done",
        "_eof",
        "_error",
        "_events",
        "_fields",
        "_head_bytes",
        "_index",
        "_max_head_size",
        "_parser",
        "_paused",
        "_raw",
        "_raw_cap",
        "_state",
        "_url",
    )

    def __init__(self, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._raw_cap = max_head_size + 64 * 1024
        self._events: deque[object] = deque()
        self._eof = False
        self._new_parser()

    def _new_parser(self) -> None:
        import httptools

        self._parser = parser = httptools.HttpRequestParser(self)
        # Any digit.digit version is read, as h11 does: the protocol answers
        # 505 to a major version other than 1 and 1.1 to a later minor one.
        # Spaces after a chunk size and a bare LF ending a field line are read
        # too, as h11 reads them (RFC 9112 §2.2 allows the LF). Every other
        # leniency stays off: Content-Length with Transfer-Encoding, a bad
        # chunk size, data after "Connection: close" are refused, as h11 and
        # the protocol refuse them.
        parser.set_dangerous_leniencies(
            lenient_version=True,
            lenient_spaces_after_chunk_size=True,
            lenient_optional_cr_before_lf=True,
        )
        self._state = _BETWEEN
        self._url = b""
        self._fields: list[tuple[bytes, bytes]] = []
        # Bytes fed while the current head is incomplete (431 past the limit).
        self._head_bytes = 0
        # Set after an Upgrade pause or an error: llhttp is fed nothing more.
        self._paused = False
        self._error: ParseError | None = None
        # h11, reading the body of an Upgrade request (httptools will not).
        self._delegate: h11.Connection | None = None
        # Requests llhttp completed, and the one the protocol is on.
        self._done = 0
        self._index = 0
        # Bytes read since the end of request number _base (0: since the
        # parser began); None when dropped.
        self._raw: bytearray | None = bytearray()
        self._base = 0

    # llhttp's callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._url = b""
        self._fields = []
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _HEAD:
            # llhttp keeps the whitespace that ends a value; h11 does not (RFC 9110 §5.5).
            self._fields.append((name.lower(), value.rstrip(b" \t")))
        # Fields after the body are a chunked trailer: read and dropped, as h11 does.

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version == "1.1":
            wire_version = b"1.1"
        elif version == "0.9":
            # A request line without a version (HTTP/0.9), or "HTTP/0.9":
            # refused, with the status h11 and the protocol give it.
            raise ParseError(400, "HTTP/0.9")
        else:
            wire_version = version.encode()
        self._events.append((parser.get_method(), self._url, self._fields, wire_version))
        self._state = _BODY

    def on_body(self, body: bytes) -> None:
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(_END)
        self._state = _BETWEEN
        self._done += 1

    # Feeding -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.receive_data(data)
            self._keep(data)
            if not data:
                self._eof = True
            return
        if not data:
            self._eof = True
            return
        if self._paused:
            self._keep(data)
            return
        try:
            self._parser.feed_data(data)
        except Exception as exc:
            import httptools

            if isinstance(exc, httptools.HttpParserUpgrade):
                # The request is complete; what follows is not HTTP (or is
                # the next request, if the Upgrade is answered plainly).
                offset = exc.args[0]
                if self._state != _BETWEEN:
                    self.on_message_complete()
                self._paused = True
                if _declares_body(self._fields):
                    # httptools skips the body of an Upgrade request, taking it
                    # for the new protocol's bytes; it is the request's.
                    self._read_body_with_h11(data)
                    return
                if self._done - self._index <= 1:
                    self._raw = bytearray(data[offset:])
                    self._base = self._done
                else:
                    # Requests before it are still to be answered.
                    self._keep(data)
                return
            self._paused = True
            # Requests before the fault may still be taken over.
            self._keep(data)
            events = self._events
            state = self._state
            if (
                state == _BODY
                and events
                and type(events[-1]) is tuple
                and "transfer-encoding" in str(exc).lower()
            ):
                # Refused right after the head, for its framing: the head goes too.
                events.pop()
                state = _HEAD
            self._error = ParseError(_llhttp_status(exc), f"malformed request: {exc}")
            # A head's status is h11's, decided once the head is all here.
            events.append(_HeadRefused(self._error) if state == _HEAD else self._error)
            return
        state = self._state
        if state == _HEAD:
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_size:
                self._paused = True
                self._error = ParseError(431, "Request head too large")
                self._events.append(self._error)
        if state == _BETWEEN and self._done - self._index <= 1:
            # llhttp stands between requests and has nothing queued past the
            # current one: what follows starts exactly here.
            raw = self._raw
            if raw is None:
                self._raw = bytearray()
            elif raw:
                raw.clear()
            self._base = self._done
        else:
            self._keep(data)

    def _read_body_with_h11(self, data: bytes) -> None:
        """Hand the rest of the current request to h11 (its body), from its start."""
        self._events.pop()  # llhttp's end of the request
        self._done -= 1
        raw = self._raw
        if raw is None:
            self._error = ParseError(400, "an Upgrade request's body came too late to read")
            self._events.append(self._error)
            return
        raw += data
        rest = _past_requests(bytes(raw), self._done - self._base)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(rest) + 1)
        conn.receive_data(rest)
        try:
            conn.next_event()  # the head, read already
        except h11.RemoteProtocolError as exc:
            # Framed in a way h11 refuses (and so would the protocol).
            self._events.pop()
            self._error = ParseError(exc.error_status_hint, str(exc))
            self._events.append(self._error)
            return
        self._delegate = conn
        self._state = _BODY

    def _delegated_body(self, conn: h11.Connection) -> bytes | _NeedData:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if conn.trailing_data[1]:
                _closed_mid_body()
            raise ParseError(exc.error_status_hint, str(exc)) from None
        if type(event) is h11.Data:
            return bytes(event.data)
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is not h11.EndOfMessage:
            _closed_mid_body()
        # The request is complete: what h11 holds past it is the new protocol's.
        self._delegate = None
        self._state = _BETWEEN
        self._done += 1
        self._raw = bytearray(conn.trailing_data[0])
        self._base = self._done
        return b""

    def _h11_status(self) -> int | _NeedData | None:
        """The status h11 gives the head llhttp refused (so that a malformed
        head gets one answer whichever parser read it), :data:`NEED_DATA`
        while the head is incomplete, or ``None`` when h11 reads it (llhttp is
        the stricter: 400) or the bytes are gone."""
        raw = self._raw
        if raw is None:
            return None
        try:
            data = _past_requests(bytes(raw), self._done - self._base)
        except ParseError:
            return None
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)
        conn.receive_data(data)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return exc.error_status_hint
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is h11.Request and event.http_version[:2] != b"1.":
            return 505
        return None

    def _keep(self, data: bytes) -> None:
        raw = self._raw
        if raw is not None:
            raw += data
            if len(raw) > self._raw_cap:
                self._raw = None

    # Events ------------------------------------------------------------------

    def _pop(self) -> object:
        events = self._events
        if events:
            event = events.popleft()
            if type(event) is ParseError:
                raise event
            if type(event) is _HeadRefused:
                status = self._h11_status()
                if status is NEED_DATA:
                    if not self._eof:
                        events.appendleft(event)
                        return NEED_DATA
                    status = None
                error = event.error
                raise ParseError(status or error.status, str(error))
            return event
        return NEED_DATA

    def next_head(self) -> Head | _NeedData | None:
        event = self._pop()
        if event is NEED_DATA:
            if self._eof:
                if self._state == _BETWEEN:
                    return None
                raise ParseError(400, "the connection closed in the middle of a request head")
            return NEED_DATA
        if type(event) is tuple:
            return event
        raise AssertionError(f"a body event where a head was expected: {event!r}")

    def next_body(self) -> bytes | _NeedData:
        if self._delegate is not None and not self._events:
            # At the Upgrade request (its head was the last event).
            return self._delegated_body(self._delegate)
        event = self._pop()
        if event is NEED_DATA:
            if self._eof:
                _closed_mid_body()
            return NEED_DATA
        if type(event) is bytes:
            return event
        raise AssertionError(f"a head where a body was expected: {event!r}")

    @property
    def has_buffered_data(self) -> bool:
        if self._events or self._state != _BETWEEN:
            return True
        return self._paused and bool(self._raw)

    @property
    def trailing_data(self) -> bytes:
        return self._after(self._index + 1)

    def _after(self, number: int) -> bytes:
        """The bytes read past request *number* (counted from 1)."""
        raw = self._raw
        if raw is None:
            raise ParseError(400, "too much was read past the request to hand it over")
        skip = number - self._base
        if skip <= 0:
            return bytes(raw)
        return _past_requests(bytes(raw), skip)

    def next_cycle(self) -> None:
        events = self._events
        # The end of a request without a body was never asked for.
        while events and type(events[0]) is bytes:
            if not events.popleft():
                break
        self._index += 1
        if (
            self._paused
            and self._error is None
            and self._delegate is None
            and self._index == self._done
        ):
            # After an Upgrade answered plainly: a fresh parser for what follows.
            leftover = self._after(self._index)
            eof = self._eof
            self._new_parser()
            if leftover:
                self.receive_data(leftover)
            self._eof = eof


def _declares_body(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in fields:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0")):
            return True
    return False


def _past_requests(data: bytes, count: int) -> bytes:
    """What follows the first *count* requests in *data* (h11 finds their ends)."""
    for _ in range(count):
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=len(data) + 1)
        conn.receive_data(data)
        while True:
            event = conn.next_event()
            if type(event) is h11.EndOfMessage:
                break
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                raise ParseError(400, "the request's end could not be found")
        data = bytes(conn.trailing_data[0])
    return data
