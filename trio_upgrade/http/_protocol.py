"""The HTTP/1.1 server side of one connection, sans-I/O: bytes in, requests out;
responses in, bytes out.

:class:`ServerProtocol` owns every decision about the wire: reading requests
(through a parser), the framing policy of each request
(:func:`trio_upgrade._wire.request_framing`: anything framed two ways is
refused, RFC 9112 §6.3), the framing of each response, the keep-alive
decision (RFC 9112 §9.3), and the status of every error it detects. It does
no I/O and knows nothing of trio: the connection loop
(:mod:`._connection`) reads, feeds, calls the handler and writes what it is
given.

Requests are parsed by one of two parsers (:mod:`._parsers`): h11, or
httptools (llhttp) when installed. A parser only tokenises; whatever it reads,
the decisions above are taken here, once. Responses are never written by a
parser: every head goes through :func:`trio_upgrade._wire.response_head`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import final

from .._wire import (
    Framing,
    FramingError,
    check_field,
    http_date,
    list_tokens,
    parse_content_length,
    request_framing,
    response_head,
    simple_response,
)
from .._wire._errors import TrioUpgradeError
from ._parsers import NEED_DATA, IncompleteBody, ParseError, RequestParser, _NeedData, make_parser

__all__ = ["NEED_DATA", "IncompleteBody", "ProtocolError", "RequestHead", "ServerProtocol"]


# Responses that never have a body: a Content-Length would be wrong in a 204
# (RFC 9110 §8.6) and, in a 304, would describe a representation we don't know.
_NO_BODY_STATUSES = frozenset({204, 304})

# The request fields next_request looks at (one set lookup per field).
_NOTED_FIELDS = frozenset(
    {b"connection", b"content-length", b"expect", b"host", b"transfer-encoding", b"upgrade"}
)
# As h11 wrote it: no reason phrase (RFC 9112 §4 allows an empty one).
_CONTINUE = response_head(100, (), reason_bytes=b"")
_LAST_CHUNK = b"0\r\n\r\n"


class ProtocolError(TrioUpgradeError):
    """The peer broke the protocol; *status* is the answer owed (when no
    response has started), after which the connection closes."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class Phase(enum.IntEnum):
    """Where the connection is, in one field."""

    HEAD = 0
    """Waiting for (or reading) the next request head."""
    REQUEST = 1
    """A request is being answered; its body may still be arriving."""
    CLOSED = 2
    """No further request will be read: the peer closed, broke the protocol,
    or the response in progress ends the connection."""


class _Response(enum.IntEnum):
    NOT_STARTED = 0
    STARTED = 1
    COMPLETE = 2
    FAILED = 3
    """A write failed midway: nothing more may be written."""


@final
class RequestHead:
    """A parsed request head, as the connection loop needs it."""

    __slots__ = ("headers", "http_version", "method", "target", "upgrade")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        http_version: bytes,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.target = target
        # (lower-cased name, value) pairs, in order.
        self.headers = headers
        self.http_version = http_version
        # Whether the request may ask to switch protocols (an Upgrade header, or CONNECT).
        self.upgrade = upgrade


def _head_size(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> int:
    """Bytes of the request head as sent (request line, fields, CRLFs), near enough.

    The parsers bound only a head still incomplete; one that arrives whole in a
    single read is parsed whatever its size, so the limit is checked again here.
    """
    size = len(method) + len(target) + 14
    for name, value in headers:
        size += len(name) + len(value) + 4
    return size


@final
class ServerProtocol:
    """The server side of one HTTP/1.1 connection, without I/O.

    Feed it bytes with :meth:`receive_data`; take requests with
    :meth:`next_request` and their bodies with :meth:`next_body_data`; turn a
    response into bytes with :meth:`start_response`, :meth:`send_body` and
    :meth:`end_response`; then :meth:`next_cycle` says whether another request
    may follow. Errors it detects come as :class:`ProtocolError` with the
    status to answer (:meth:`error_response` builds that answer).
    """

    __slots__ = (
        "_body_done",
        "_bytes_fed",
        "_continue_owed",
        "_date",
        "_framing",
        "_keep_alive",
        "_max_head_size",
        "_parser",
        "_remaining",
        "_response",
        "_server",
        "_server_line",
        "http_version",
        "phase",
    )

    def __init__(
        self,
        *,
        max_head_size: int,
        date: bool = True,
        server: bytes | None = None,
        parser: str = "h11",
    ) -> None:
        """*parser* is ``"h11"`` or ``"httptools"`` (resolved already:
        :func:`._parsers.resolve_parser`)."""
        self._max_head_size = max_head_size
        self._date = date
        self._server = server
        if server is not None:
            check_field(b"server", server)
        # The Server field as written (checked once, here).
        self._server_line = b"" if server is None else b"server: " + server + b"\r\n"
        self._parser: RequestParser = make_parser(parser, max_head_size)
        self.phase = Phase.HEAD
        # The current request's HTTP version (b"1.1", b"1.0").
        self.http_version = b"1.1"
        # Whether the current request lets the connection carry another
        # (HTTP/1.1 without "Connection: close"); responses may still say no.
        self._keep_alive = True
        # Whether the current request's body has been received to its end.
        self._body_done = True
        # Bytes fed since the current head began: a head that arrived whole
        # in one read is measured against the limit (the parsers do not).
        self._bytes_fed = 0
        # Whether "100 Continue" is owed before the body is asked for.
        self._continue_owed = False
        self._response = _Response.NOT_STARTED
        # How the response body is framed, and (for LENGTH) what is left of it.
        self._framing = Framing.NONE
        self._remaining = 0

    # Reading -----------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""
        self._bytes_fed += len(data)
        self._parser.receive_data(data)

    @property
    def has_buffered_data(self) -> bool:
        """Whether bytes of a next request are already here (the connection is not idle)."""
        return self._parser.has_buffered_data

    def next_request(self) -> RequestHead | _NeedData | None:
        """The next request head, :data:`NEED_DATA`, or ``None`` when the peer
        closed cleanly between requests.

        Raises :class:`ProtocolError` for a request that must be refused: a
        malformed head (400), one too large (431), another major version
        (505), or a body framed two ways or not at all (400, 501).
        """
        try:
            event = self._parser.next_head()
        except ParseError as exc:
            self.phase = Phase.CLOSED
            raise ProtocolError(exc.status, str(exc)) from None
        if event is NEED_DATA:
            return NEED_DATA
        if event is None:
            # The peer closed between requests.
            self.phase = Phase.CLOSED
            return None
        method, target, headers, version = event
        if self._bytes_fed > self._max_head_size and (
            _head_size(method, target, headers) > self._max_head_size
        ):
            self.phase = Phase.CLOSED
            raise ProtocolError(431, "Request head too large")
        if version[:2] != b"1.":
            # h11 parses any digit.digit; only major version 1 is ours to
            # answer (RFC 9110 §6.2, §15.6.6).
            self.phase = Phase.CLOSED
            raise ProtocolError(505, "HTTP version not supported")
        keep_alive = version != b"1.0"
        framed = upgrade = expect = False
        hosts = 0
        for name, value in headers:
            if name in _NOTED_FIELDS:
                if name == b"host":
                    hosts += 1
                elif name == b"connection":
                    # The token parse only when "close" may be one of them.
                    if (
                        keep_alive
                        and b"close" in value.lower()
                        and b"close" in list_tokens(((name, value),), b"connection")
                    ):
                        keep_alive = False
                elif name == b"upgrade":
                    upgrade = True
                elif name == b"expect":
                    expect = True
                else:
                    framed = True
        if hosts != 1 and (hosts or version == b"1.1"):
            # RFC 9112 §3.2: one Host, and HTTP/1.1 must send it (h11 checks
            # this too; llhttp does not).
            self.phase = Phase.CLOSED
            raise ProtocolError(400, "a request needs exactly one Host field")
        if framed:
            # RFC 9112 §6.3: h11 takes Content-Length with Transfer-Encoding
            # (and Transfer-Encoding in HTTP/1.0); we refuse both, whichever
            # parser read the head. A head
            # without either field has no body, which is what
            # request_framing would say.
            try:
                framing = request_framing(headers, version)
            except FramingError as exc:
                self.phase = Phase.CLOSED
                raise ProtocolError(exc.status, str(exc)) from None
            self._body_done = framing.kind is Framing.NONE
        else:
            self._body_done = True
        self.http_version = version
        self._keep_alive = keep_alive
        self._continue_owed = (
            expect
            and not self._body_done
            and version == b"1.1"
            and b"100-continue" in list_tokens(headers, b"expect")
        )
        self._response = _Response.NOT_STARTED
        self.phase = Phase.REQUEST
        return RequestHead(method, target, headers, version, upgrade or method == b"CONNECT")

    @property
    def body_done(self) -> bool:
        """Whether the current request's body has been received to its end."""
        return self._body_done

    @property
    def expects_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending the body."""
        return self._continue_owed

    def send_continue(self) -> bytes:
        """The ``100 Continue`` interim response (RFC 9110 §10.1.1), once."""
        self._continue_owed = False
        return _CONTINUE

    def next_body_data(self) -> bytes | _NeedData:
        """The next piece of the request body, ``b""`` at its end, or :data:`NEED_DATA`.

        Raises :class:`ProtocolError` (400) for malformed chunked framing and
        :class:`IncompleteBody` when the peer closed before the end.
        """
        if self._body_done:
            return b""
        try:
            data = self._parser.next_body()
        except ParseError as exc:
            self.phase = Phase.CLOSED
            self._keep_alive = False
            raise ProtocolError(exc.status, str(exc)) from None
        except IncompleteBody:
            self.phase = Phase.CLOSED
            self._keep_alive = False
            raise
        if data is NEED_DATA or data:
            return data
        self._body_done = True
        return b""

    @property
    def trailing_data(self) -> bytes:
        """Bytes received past the current request, exactly (valid once its
        body is done).

        Raises :class:`ProtocolError` (400) when they cannot be told exactly
        (httptools, after more than ``max_head_size + 64 KiB`` pipelined past
        a request in one read).
        """
        try:
            return self._parser.trailing_data
        except ParseError as exc:
            raise ProtocolError(exc.status, str(exc)) from None

    # Writing -----------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        """Whether any byte of the current response was handed out."""
        return self._response is not _Response.NOT_STARTED

    @property
    def keep_alive(self) -> bool:
        """Whether the connection may carry another request after this response."""
        return self._keep_alive

    def start_response(
        self,
        status: int,
        fields: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        *,
        head_only: bool = False,
        close: bool = False,
    ) -> bytes:
        """The head of the response to the current request.

        *fields* are the handler's (lower-cased names); *body* is the whole
        body, or ``None`` when it will be streamed with :meth:`send_body`.
        ``Date``, ``Server``, the framing and ``Connection: close`` are added
        here: a ``Content-Length`` for a bytes body, chunked coding for a
        stream of unknown length (HTTP/1.1), the end of the connection for one
        sent to an HTTP/1.0 client. *close* is the server's own reason to end
        the connection after this response (shutdown, a request limit, a body
        left unread).

        Raises ``ValueError`` before anything changes when the response cannot
        be written honestly: an invalid field, a ``Content-Length`` that does
        not match the body, framing fields that contradict each other.
        """
        return self._start(status, fields, body, head_only, close)

    def _start(
        self,
        status: int,
        fields: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        head_only: bool,
        close: bool,
    ) -> bytes:
        if self._response is not _Response.NOT_STARTED:
            raise RuntimeError("a response was already started for this request")
        lengths: list[bytes] | None = None
        codings: list[bytes] | None = None
        has_date = has_server = has_close = False
        for name, value in fields:
            if name == b"content-length":
                if lengths is None:
                    lengths = []
                lengths.append(value)
            elif name == b"date":
                has_date = True
            elif name == b"server":
                has_server = True
            elif name == b"transfer-encoding":
                if codings is None:
                    codings = []
                codings.append(value)
            elif name == b"connection" and not has_close:
                has_close = b"close" in list_tokens(((name, value),), b"connection")
        keep_alive = self._keep_alive and not close and not has_close
        out = fields
        # The fields added here, built from values known to be valid.
        tail = b""
        if self._date and not has_date:
            tail = b"date: " + http_date() + b"\r\n"
        if self._server is not None and not has_server:
            tail += self._server_line
        remaining = 0
        if status in _NO_BODY_STATUSES:
            if body:
                raise ValueError(f"a {status} response cannot have a body")
            framing = Framing.NONE
        elif codings is not None:
            if lengths is not None:
                raise ValueError("response has both Transfer-Encoding and Content-Length")
            if list_tokens(out, b"transfer-encoding") != [b"chunked"]:
                raise ValueError("the only transfer coding a response may set is chunked")
            if self.http_version == b"1.0":
                # An HTTP/1.0 client knows no chunked coding: the end of the
                # connection delimits the body.
                out = [f for f in out if f[0] != b"transfer-encoding"]
                framing = Framing.UNTIL_CLOSE
                keep_alive = keep_alive and head_only
            else:
                framing = Framing.CHUNKED
        elif lengths is not None:
            remaining = parse_content_length(lengths)
            if len(lengths) > 1:
                # Repeats of one length (a proxied response's): sent once.
                first = out.index((b"content-length", lengths[0]))
                out = [f for i, f in enumerate(out) if i <= first or f[0] != b"content-length"]
            # A response to HEAD states the length a GET would have had
            # (RFC 9110 §9.3.2): its body, empty, is not measured against it.
            if body is not None and remaining != len(body) and not head_only:
                raise ValueError(
                    f"Content-Length {remaining} does not match the body's {len(body)} bytes"
                )
            framing = Framing.LENGTH
        elif body is not None:
            remaining = len(body)
            tail += b"content-length: %d\r\n" % remaining
            framing = Framing.LENGTH
        elif self.http_version == b"1.0":
            framing = Framing.UNTIL_CLOSE
            keep_alive = keep_alive and head_only
        else:
            tail += b"transfer-encoding: chunked\r\n"
            framing = Framing.CHUNKED
        if not keep_alive and not has_close:
            tail += b"connection: close\r\n"
        head = response_head(status, out, trusted=tail)
        # Nothing raised: the response is committed.
        self._keep_alive = keep_alive
        self._framing = Framing.NONE if head_only else framing
        self._remaining = 0 if head_only else remaining
        self._response = _Response.STARTED
        return head

    def respond(
        self,
        status: int,
        fields: Sequence[tuple[bytes, bytes]],
        body: bytes,
        head_only: bool,
        close: bool,
    ) -> tuple[bytes, bytes]:
        """A whole response with a body known in advance: its head, and its
        body as framed for the wire (empty for HEAD, 204, 304).

        The same as :meth:`start_response`, :meth:`send_body` and
        :meth:`end_response` in one call (the common case, kept cheap).
        """
        head = self._start(status, fields, body, head_only, close)
        framing = self._framing
        self._response = _Response.COMPLETE
        if framing is Framing.LENGTH:
            # _start checked the length against the body.
            return head, body
        if framing is Framing.NONE:
            return head, b""
        if framing is Framing.UNTIL_CLOSE:
            self._keep_alive = False
            return head, body
        return head, (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + _LAST_CHUNK

    @property
    def response_has_body(self) -> bool:
        """Whether body bytes follow the head (not for HEAD, 204, 304)."""
        return self._framing is not Framing.NONE

    def send_body(self, data: bytes) -> bytes:
        """*data* framed as the response's body requires.

        Raises ``ValueError`` when it goes past the declared Content-Length.
        """
        framing = self._framing
        if framing is Framing.LENGTH:
            if len(data) > self._remaining:
                raise ValueError("more body than the response's Content-Length")
            self._remaining -= len(data)
            return data
        if framing is Framing.CHUNKED:
            if not data:
                return b""
            return b"%x\r\n%s\r\n" % (len(data), data)
        if framing is Framing.UNTIL_CLOSE:
            return data
        if data:
            raise ValueError("this response has no body")
        return b""

    def end_response(self) -> bytes:
        """The bytes that end the response (the last chunk), if any.

        Raises ``ValueError`` when less body was sent than its Content-Length.
        """
        framing = self._framing
        if framing is Framing.LENGTH and self._remaining:
            raise ValueError(f"response body {self._remaining} bytes short of its Content-Length")
        self._response = _Response.COMPLETE
        if framing is Framing.UNTIL_CLOSE:
            self._keep_alive = False
        return _LAST_CHUNK if framing is Framing.CHUNKED else b""

    def error_response(self, status: int) -> bytes:
        """A complete plain-text answer with *status* and ``Connection: close``,
        for a request refused or failed before its response started."""
        fields = () if self._server is None else ((b"server", self._server),)
        self._keep_alive = False
        self._response = _Response.COMPLETE
        self.phase = Phase.CLOSED
        return simple_response(status, fields, date=self._date)

    def response_failed(self) -> None:
        """A write failed or was abandoned midway: nothing more may be written."""
        self._keep_alive = False
        self._response = _Response.FAILED
        self.phase = Phase.CLOSED

    @property
    def failed(self) -> bool:
        """Whether a write failed: the connection is dead."""
        return self._response is _Response.FAILED

    # Between requests --------------------------------------------------------

    def next_cycle(self) -> bool:
        """After a complete response to a complete request: whether another
        request may be read, and if so, get ready for it.

        """
        if (
            not self._keep_alive
            or self._response is not _Response.COMPLETE
            or not self._body_done
            or self.phase is not Phase.REQUEST
        ):
            self.phase = Phase.CLOSED
            return False
        self._parser.next_cycle()
        # What the parser holds already counts against the next head (near
        # enough: with httptools, the whole read that held it).
        self._bytes_fed = self._max_head_size + 1 if self._parser.has_buffered_data else 0
        self._response = _Response.NOT_STARTED
        self.phase = Phase.HEAD
        return True
