"""Request and Response values: helpers, body streaming and limits, without a connection."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import trio

from trio_upgrade._wire import reason_phrase
from trio_upgrade.http import (
    Headers,
    HTTPError,
    MalformedBody,
    Request,
    RequestBodyTooLarge,
    RequestTimeout,
    Response,
)


class ChunkSource:
    """A body source that hands out fixed chunks and counts reads."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.reads = 0

    async def receive_body(self) -> bytes:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        return self.chunks.pop(0) if self.chunks else b""


async def collect(body: object) -> list[bytes]:
    assert hasattr(body, "__aiter__")
    return [chunk async for chunk in body]


# Response ---------------------------------------------------------------------


def test_response_defaults() -> None:
    response = Response()
    assert response.status == 200 and response.body == b"" and len(response.headers) == 0
    assert repr(response) == "<Response 200>"


@pytest.mark.parametrize("status", [100, 101, 199, 1000, 0])
def test_response_rejects_non_final_status(status: int) -> None:
    with pytest.raises(ValueError):
        Response(status=status)


def test_response_content_type_overrides_the_one_in_headers() -> None:
    response = Response(b"x", headers={"Content-Type": "a/b", "X": "1"}, content_type="c/d")
    assert response.headers.get_all("content-type") == ["c/d"]
    assert response.headers["x"] == "1"


def test_text_html_json_helpers() -> None:
    text = Response.text("héllo", status=201, headers={"x-a": "1"})
    assert (text.status, text.body) == (201, "héllo".encode())
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.headers["x-a"] == "1"
    html = Response.html("<p>é</p>")
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.body == "<p>é</p>".encode()
    data = Response.json({"b": [1, 2], "s": "é"})
    assert data.headers["content-type"] == "application/json"
    assert data.body == '{"b":[1,2],"s":"é"}'.encode()
    pretty = Response.json({"a": 1}, indent=2)
    assert isinstance(pretty.body, bytes)
    assert json.loads(pretty.body) == {"a": 1} and b"\n" in pretty.body


def test_redirect_defaults_to_307_and_quotes_the_location() -> None:
    response = Response.redirect("/a b?x=1&y=%20")
    assert response.status == 307
    assert response.headers["location"] == "/a%20b?x=1&y=%20"
    assert Response.redirect("https://x.test/", status=301).status == 301


def test_redirect_rejects_a_non_redirect_status() -> None:
    with pytest.raises(ValueError):
        Response.redirect("/", status=200)


def test_stream_helper_keeps_the_iterable() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"

    iterable = chunks()
    response = Response.stream(iterable, content_type="text/event-stream")
    assert response.body is iterable
    assert response.headers["content-type"] == "text/event-stream"


def test_reason_phrase() -> None:
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(599) == ""


async def test_file_response_streams_the_file_with_length_type_and_date(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    data = b"<h1>x</h1>" * 20000  # larger than one read
    path.write_bytes(data)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    response = await Response.file(path)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-length"] == str(len(data))
    modified = parsedate_to_datetime(response.headers["last-modified"])
    assert modified.timestamp() == 1_700_000_000
    chunks = await collect(response.body)
    assert len(chunks) > 1
    assert b"".join(chunks) == data


async def test_file_response_attachment_name_and_unknown_type(tmp_path: Path) -> None:
    path = tmp_path / "blob.unknownext"
    path.write_bytes(b"\x00\x01")
    response = await Response.file(path, filename="rapport é.bin")
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"]
        == "attachment; filename*=UTF-8''rapport%20%C3%A9.bin"
    )


async def test_file_response_keeps_a_content_type_given_in_headers(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"a,b")
    response = await Response.file(path, headers={"Content-Type": "text/csv"})
    assert response.headers.get_all("content-type") == ["text/csv"]
    explicit = await Response.file(path, content_type="x/y")
    assert explicit.headers["content-type"] == "x/y"


async def test_file_response_for_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await Response.file(tmp_path / "nope")


# Request head -----------------------------------------------------------------


def test_request_splits_target_into_decoded_path_and_raw_query() -> None:
    request = Request(
        "GET",
        "/a%20b/c%2Fd?x=1&x=2&y=%41",
        headers=[("Host", "example.test"), ("Accept", "a"), ("accept", "b")],
        client=("10.0.0.1", 1234),
        server="/run/app.sock",
        scheme="https",
    )
    assert request.target == "/a%20b/c%2Fd?x=1&x=2&y=%41"
    assert request.path == "/a b/c/d"
    assert request.query_string == "x=1&x=2&y=%41"
    assert request.query.get_all("x") == ["1", "2"]
    assert request.query["y"] == "A"
    assert request.headers.get_all("ACCEPT") == ["a", "b"]
    assert request.host == "example.test"
    assert request.url == "https://example.test/a%20b/c%2Fd?x=1&x=2&y=%41"
    assert request.client == ("10.0.0.1", 1234)
    assert request.server == "/run/app.sock"
    assert request.path_params == {} and request.state == {} and request.root_path == ""
    assert repr(request) == "<Request GET /a%20b/c%2Fd?x=1&x=2&y=%41>"


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("http://example.test/a%20b?x=1", "/a b", "x=1"),
        ("https://example.test", "/", ""),
        ("http://example.test?q", "/", "q"),
        ("*", "*", ""),
        ("db.test:5432", "db.test:5432", ""),
    ],
)
def test_request_path_of_absolute_asterisk_and_authority_forms(
    target: str, path: str, query: str
) -> None:
    """RFC 9112 §3.2: absolute-form is routed on its path; ``*`` and CONNECT's
    authority-form are kept as they are."""
    request = Request("GET", target)
    assert (request.target, request.path, request.query_string) == (target, path, query)


def test_request_without_host_uses_localhost_in_url() -> None:
    assert Request("GET", "/x").url == "http://localhost/x"


def test_request_accepts_a_headers_object_as_is() -> None:
    headers = Headers({"a": "1"})
    assert Request("GET", "/", headers=headers).headers is headers


# Request body -----------------------------------------------------------------


async def test_body_is_streamed_chunk_by_chunk() -> None:
    source = ChunkSource(b"ab", b"cd", b"e")
    request = Request("POST", "/", body=source)
    seen = []
    async for chunk in request.body:
        seen.append((chunk, source.reads))
    assert seen == [(b"ab", 1), (b"cd", 2), (b"e", 3)]


async def test_body_can_be_iterated_only_once_unless_read() -> None:
    request = Request("POST", "/", body=ChunkSource(b"ab"))
    assert await collect(request.body) == [b"ab"]
    with pytest.raises(RuntimeError, match="already consumed"):
        await collect(request.body)


async def test_read_is_cached_and_replayed_by_the_iterator() -> None:
    source = ChunkSource(b"ab", b"cd")
    request = Request("POST", "/", body=source)
    assert await request.read() == b"abcd"
    assert await request.read() == b"abcd"
    assert await collect(request.body) == [b"abcd"]
    assert source.reads == 3
    empty = Request("GET", "/")
    assert await empty.read() == b""
    assert await collect(empty.body) == []


async def test_body_over_the_limit_raises_413() -> None:
    request = Request("POST", "/", body=ChunkSource(b"12345", b"678"), max_body_size=6)
    with pytest.raises(RequestBodyTooLarge) as info:
        await request.read()
    assert info.value.status == 413 and info.value.limit == 6


async def test_body_exactly_at_the_limit_is_accepted() -> None:
    request = Request("POST", "/", body=ChunkSource(b"123", b"456"), max_body_size=6)
    assert await request.read() == b"123456"


async def test_declared_content_length_over_the_limit_fails_before_reading() -> None:
    """With ``Content-Length`` past the limit, 413 comes before any read (and so before
    a ``100 Continue``)."""
    source = ChunkSource(b"x" * 10)
    request = Request("POST", "/", headers={"content-length": "10"}, body=source, max_body_size=5)
    with pytest.raises(RequestBodyTooLarge):
        await request.read()
    assert source.reads == 0


async def test_handler_can_raise_the_limit_for_one_request() -> None:
    request = Request("POST", "/", body=ChunkSource(b"x" * 10), max_body_size=5)
    request.max_body_size = None
    assert len(await request.read()) == 10


async def test_text_uses_the_declared_charset() -> None:
    latin = Request(
        "POST",
        "/",
        headers={"content-type": 'text/plain; charset="latin-1"'},
        body="é".encode("latin-1"),
    )
    assert await latin.text() == "é"
    assert await Request("POST", "/", body="é".encode()).text() == "é"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", b"\xff"), ("text/plain; charset=nonexistent", b"x")],
)
async def test_text_that_cannot_be_decoded_is_400(content_type: str, body: bytes) -> None:
    request = Request("POST", "/", headers={"content-type": content_type}, body=body)
    with pytest.raises(MalformedBody) as info:
        await request.text()
    assert info.value.status == 400


async def test_json_parses_and_malformed_json_is_400() -> None:
    assert await Request("POST", "/", body=b'{"a": [1]}').json() == {"a": [1]}
    with pytest.raises(MalformedBody) as info:
        await Request("POST", "/", body=b"{nope").json()
    assert info.value.status == 400
    assert "JSON" in info.value.detail


async def test_form_parses_urlencoded_and_rejects_non_ascii() -> None:
    form = await Request("POST", "/", body=b"a=1&b=x+y&a=2").form()
    assert form.get_all("a") == ["1", "2"] and form["b"] == "x y"
    with pytest.raises(MalformedBody):
        await Request("POST", "/", body="a=é".encode()).form()


# Errors -----------------------------------------------------------------------


def test_http_error_defaults_its_detail_to_the_reason_phrase() -> None:
    error = HTTPError(404)
    assert error.detail == "Not Found" and str(error) == "404 Not Found"
    assert error.headers == []
    assert RequestTimeout().status == 408
    assert MalformedBody("bad").status == 400
