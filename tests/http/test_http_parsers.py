"""The two request parsers behind ServerProtocol (h11, httptools/llhttp): which one
HTTPConfig picks, and that both read the same bytes into the same requests, bodies,
trailing data, statuses and closes.

The comparisons run the whole sans-I/O protocol object (no trio): every request
it reads is answered "200 ok" so that keep-alive and pipelining are exercised
too. The whole HTTP, bridge, proxy, ASGI and testing suites also run under each
parser (scripts/test runs them again with ``TRIO_UPGRADE_HTTP_PARSER=h11``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http_framing import AMBIGUOUS, MALFORMED_CHUNKS

from trio_upgrade.http import HTTPConfig
from trio_upgrade.http import _parsers as parsers
from trio_upgrade.http._protocol import (
    NEED_DATA,
    IncompleteBody,
    ProtocolError,
    ServerProtocol,
)

needs_httptools = pytest.mark.skipif(
    not parsers.have_httptools(), reason="httptools is not installed (the speedups extra)"
)

Event = tuple[object, ...]


def drive(parser: str, pieces: list[bytes], max_head_size: int = 4096) -> list[Event]:
    """Feed *pieces* (then EOF) as reads, answer every request, record what happens."""
    proto = ServerProtocol(max_head_size=max_head_size, date=False, parser=parser)
    reads = [*pieces, b""]
    out: list[Event] = []

    def read() -> None:
        if not reads:
            raise AssertionError("the protocol asked for more after EOF")
        proto.receive_data(reads.pop(0))

    while True:
        try:
            head = proto.next_request()
        except ProtocolError as exc:
            out.append(("refused", exc.status, proto.error_response(exc.status)[:12]))
            return out
        if head is NEED_DATA:
            read()
            continue
        if head is None:
            out.append(("closed",))
            return out
        out.append(
            ("head", head.method, head.target, list(head.headers), head.http_version, head.upgrade)
        )
        if proto.expects_continue:
            out.append(("continue", proto.send_continue()))
        body = b""
        try:
            while True:
                data = proto.next_body_data()
                if data is NEED_DATA:
                    read()
                    continue
                if not data:
                    break
                body += data
        except ProtocolError as exc:
            out.append(("bad body", exc.status, proto.keep_alive))
            return out
        except IncompleteBody:
            out.append(("incomplete",))
            return out
        out.append(("body", body, proto.trailing_data))
        response = proto.respond(200, [], b"ok", head.method == b"HEAD", False)
        out.append(("response", *response))
        if not proto.next_cycle():
            out.append(("close",))
            return out


def splits(data: bytes) -> list[list[bytes]]:
    """One read; a byte at a time; seven bytes at a time."""
    return [
        [data],
        [data[i : i + 1] for i in range(len(data))],
        [data[i : i + 7] for i in range(0, len(data), 7)],
    ]


def assert_same(data: bytes) -> list[Event]:
    events = None
    for pieces in splits(data):
        h11_events = drive("h11", pieces)
        assert drive("httptools", pieces) == h11_events, pieces
        if events is None:
            events = h11_events
    assert events is not None
    return events


# Configuration --------------------------------------------------------------


@needs_httptools
def test_auto_picks_httptools_when_it_is_installed() -> None:
    assert HTTPConfig(parser="auto").resolved_parser == "httptools"
    assert HTTPConfig(parser="httptools").resolved_parser == "httptools"


def test_auto_falls_back_to_h11_and_an_explicit_httptools_is_refused_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsers, "have_httptools", lambda: False)
    assert HTTPConfig(parser="auto").resolved_parser == "h11"
    with pytest.raises(RuntimeError, match=r"trio-upgrade\[speedups\]"):
        HTTPConfig(parser="httptools")


def test_h11_is_always_there_and_an_unknown_parser_is_refused() -> None:
    assert HTTPConfig(parser="h11").resolved_parser == "h11"
    with pytest.raises(ValueError, match="parser must be one of auto, h11, httptools"):
        HTTPConfig(parser="llhttp")


def test_the_environment_sets_the_default_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_UPGRADE_HTTP_PARSER", "h11")
    assert HTTPConfig().parser == "h11"
    monkeypatch.delenv("TRIO_UPGRADE_HTTP_PARSER")
    assert HTTPConfig().parser == "auto"


# The same answers -----------------------------------------------------------

H = b"Host: a\r\n"
SAME = {
    "keep-alive": b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n",
    "pipelined with a body": b"GET /1 HTTP/1.1\r\n"
    + H
    + b"\r\nPOST /2 HTTP/1.1\r\n"
    + H
    + b"Content-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "chunked with an extension and a trailer": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
    "spaces after a chunk size": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
    "HTTP/1.0 closes": b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "HTTP/1.0 keep-alive asked, still closed": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    b"GET / HTTP/1.0\r\n\r\n",
    "connection: close ends it": b"GET / HTTP/1.1\r\n"
    + H
    + b"Connection: close\r\n\r\nGET / HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "HTTP/1.2 read as 1.1": b"GET / HTTP/1.2\r\n" + H + b"\r\n",
    "HTTP/2.0: 505": b"GET / HTTP/2.0\r\n" + H + b"\r\n",
    "HTTP/0.9 line: 400": b"GET /\r\n\r\n",
    "no Host in 1.1: 400": b"GET / HTTP/1.1\r\n\r\n",
    "two Hosts: 400": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "no Host in 1.0 is fine": b"GET / HTTP/1.0\r\n\r\n",
    "trailing whitespace of a value is not the value's": b"GET / HTTP/1.1\r\n"
    + H
    + b"X: a  \t\r\n\r\n",
    "obs-text in a value": b"GET / HTTP/1.1\r\n" + H + b"X: caf\xc3\xa9\r\n\r\n",
    "absolute and asterisk targets": b"GET http://a/x HTTP/1.1\r\n"
    + H
    + b"\r\nOPTIONS * HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "a space in the target: 400": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "empty lines before a request are skipped": b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "Upgrade answered plainly keeps the connection": b"GET / HTTP/1.1\r\n"
    + H
    + b"Upgrade: x\r\nConnection: upgrade\r\n\r\nGET /2 HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "Upgrade with a body": b"POST / HTTP/1.1\r\n"
    + H
    + b"Upgrade: x\r\nConnection: upgrade\r\nContent-Length: 5\r\n\r\nhelloAFTER",
    "Upgrade without Connection: upgrade": b"GET / HTTP/1.1\r\n"
    + H
    + b"Upgrade: x\r\n\r\nGET /2 HTTP/1.1\r\n"
    + H
    + b"\r\n",
    "CONNECT": b"CONNECT a:443 HTTP/1.1\r\n" + H + b"\r\nTUNNEL",
    "100-continue": b"POST / HTTP/1.1\r\n"
    + H
    + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    "EOF in a head: 400": b"GET / HTTP/1.1\r\nHo",
    "EOF in a body": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc",
    "EOF in a chunked body": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhe",
    "TLS hello on the HTTP port: 400": b"\x16\x03\x01\x00\xa5\x01\x00\x00",
    "empty field name: 400": b"GET / HTTP/1.1\r\n" + H + b": a\r\n\r\n",
    "head past the limit: 431": b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 5000 + b"\r\n\r\n",
    "TE gzip: 501": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n",
    "TE gzip, chunked: 501": b"POST / HTTP/1.1\r\n"
    + H
    + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
}


@needs_httptools
@pytest.mark.parametrize("data", list(SAME.values()), ids=list(SAME))
def test_both_parsers_read_the_same_requests_the_same_way(data: bytes) -> None:
    assert_same(data)


@needs_httptools
@pytest.mark.parametrize("head", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
def test_the_smuggling_matrix_gets_one_status_and_one_close_from_both(head: bytes) -> None:
    events = assert_same(head + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events[-1][0] == "refused"
    assert not any(e[0] == "head" and e[2] == b"/smuggled" for e in events)


@needs_httptools
@pytest.mark.parametrize("body", list(MALFORMED_CHUNKS.values()), ids=list(MALFORMED_CHUNKS))
def test_malformed_chunked_bodies_get_one_status_from_both(body: bytes) -> None:
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    events = assert_same(head + body + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events[-1] == ("bad body", 400, False)


@needs_httptools
def test_trailing_data_is_exactly_what_follows_each_request() -> None:
    second = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\nRAW"
    data = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc" + second
    for parser in ("h11", "httptools"):
        events = drive(parser, [data])
        assert events[1] == ("body", b"abc", second), parser
    # Read in pieces, the trailing data is what has come so far: the same from both.
    assert_same(data)


# Where llhttp is stricter than h11, and what the difference is (docs/http.md
# lists these): httptools refuses with 400 what h11 reads.
LLHTTP_STRICTER = {
    "a method outside llhttp's table": b"FOO / HTTP/1.1\r\n" + H + b"\r\n",
    "a lower-case method": b"get / HTTP/1.1\r\n" + H + b"\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n",
    "a control character in a value": b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
    "a bare LF ending the request line": b"GET / HTTP/1.1\nHost: a\n\n",
    "Content-Length repeated with one value": b"POST / HTTP/1.1\r\n"
    + H
    + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
}


@needs_httptools
@pytest.mark.parametrize("data", list(LLHTTP_STRICTER.values()), ids=list(LLHTTP_STRICTER))
def test_what_only_llhttp_refuses_gets_400_and_a_close(data: bytes) -> None:
    assert drive("h11", [data])[0][0] == "head"
    assert drive("httptools", [data])[0][:2] == ("refused", 400)


@needs_httptools
def test_a_chunk_size_past_64_bits_is_refused_by_llhttp_and_read_on_by_h11() -> None:
    """h11 reads on (the body limit, 413, ends it); llhttp refuses at once."""
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffff\r\nhello"
    )
    assert drive("h11", [data])[1] == ("incomplete",)
    assert drive("httptools", [data])[1] == ("bad body", 400, False)


# Generated requests ----------------------------------------------------------

_NAMES = st.sampled_from([b"x-a", b"Accept", b"user-agent", b"X_B", b"cookie", b"x.c~!#$%&'*+^`|"])
_VALUE = st.binary(min_size=0, max_size=12).map(
    lambda b: bytes(c for c in b if 0x21 <= c <= 0x7E or c >= 0x80)
)
_VALUES = st.builds(lambda a, b: a + (b" " + b if b else b""), _VALUE, _VALUE)


@st.composite
def _chunked(draw: st.DrawFn, body: bytes) -> bytes:
    out = b""
    rest = body
    while rest:
        size = draw(st.integers(1, len(rest)))
        ext = draw(st.sampled_from([b"", b";a=b", b";x"]))
        out += b"%x%s\r\n%s\r\n" % (size, ext, rest[:size])
        rest = rest[size:]
    trailer = draw(st.sampled_from([b"", b"X-T: 1\r\n"]))
    return out + b"0\r\n" + trailer + b"\r\n"


@st.composite
def _request(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A request, and whether nothing may follow it (its body is short: EOF ends it)."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS"]))
    target = b"/" + draw(st.sampled_from([b"", b"a", b"a/b?c=d&e", b"%20x", b"~!$&'()*+,;="]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    fields = [(draw(_NAMES), draw(_VALUES)) for _ in range(draw(st.integers(0, 4)))]
    if version == b"1.1" or draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"example.com"))
    body = draw(st.binary(max_size=40))
    framing = draw(
        st.sampled_from(["none", "length", "chunked", "CL+TE", "TE gzip", "bad chunk", "CL short"])
    )
    wire_body = b""
    if framing == "none":
        body = b""
    elif framing in ("length", "CL short"):
        fields.append((b"Content-Length", b"%d" % (len(body) + (framing == "CL short"))))
        wire_body = body
    elif framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
        wire_body = draw(_chunked(body))
    elif framing == "CL+TE":
        fields += [(b"Content-Length", b"%d" % len(body)), (b"Transfer-Encoding", b"chunked")]
        wire_body = draw(_chunked(body))
    elif framing == "TE gzip":
        fields.append((b"Transfer-Encoding", b"gzip"))
    else:
        fields.append((b"Transfer-Encoding", b"chunked"))
        wire_body = b"%xz\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    for extra in draw(st.lists(st.sampled_from(["close", "keep-alive", "expect", "upgrade"]))):
        if extra == "expect":
            fields.append((b"Expect", b"100-continue"))
        elif extra == "upgrade":
            fields += [(b"Upgrade", b"thing"), (b"Connection", b"upgrade")]
        else:
            fields.append((b"Connection", extra.encode()))
    head = b"%s %s HTTP/%s\r\n" % (method, target, version)
    head += b"".join(b"%s: %s\r\n" % field for field in fields)
    return head + b"\r\n" + wire_body, framing == "CL short"


@needs_httptools
@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    requests=st.lists(_request(), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 400), max_size=4),
)
def test_generated_requests_give_the_same_events_from_both_parsers(
    requests: list[tuple[bytes, bool]], cuts: list[int]
) -> None:
    data = b""
    for request, last in requests:
        data += request
        if last:
            break
    points = sorted({c for c in cuts if 0 < c < len(data)})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert drive("httptools", pieces) == drive("h11", pieces)


@needs_httptools
def test_what_is_kept_to_find_trailing_data_is_bounded() -> None:
    """llhttp parses ahead; the bytes kept to hand over exactly what follows a
    request stop at max_head_size + 64 KiB, and a takeover past that is refused."""
    body = b"x" * (100 * 1024)
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
        + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    proto = ServerProtocol(max_head_size=4096, date=False, parser="httptools")
    proto.receive_data(data)
    assert proto.next_request() is not NEED_DATA
    received = b""
    while chunk := proto.next_body_data():
        assert chunk is not NEED_DATA
        received += chunk
    assert received == body
    with pytest.raises(ProtocolError) as caught:
        proto.trailing_data  # noqa: B018
    assert caught.value.status == 400
    # Serving on is unaffected: the next request is there.
    proto.respond(200, [], b"", False, False)
    assert proto.next_cycle()
    head = proto.next_request()
    assert head is not NEED_DATA and head is not None and head.target == b"/2"
