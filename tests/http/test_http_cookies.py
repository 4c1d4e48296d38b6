"""Cookies: ``request.cookies`` parsed leniently, ``Set-Cookie`` written strictly
(RFC 6265), and ``await request.body()`` as Starlette users write it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

import httpx
import pytest
import trio

from trio_upgrade.core import Server
from trio_upgrade.http import Request, Response, Router, serve


@asynccontextmanager
async def client_for(router: Router) -> AsyncIterator[httpx.AsyncClient]:
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(serve, router, "127.0.0.1:0")
        address = server.addresses[0]
        assert isinstance(address, tuple)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{address[1]}", trust_env=False
            ) as http:
                yield http
        finally:
            await server.aclose()


def test_cookies_are_parsed_leniently_first_value_wins() -> None:
    request = Request(
        "GET",
        "/",
        headers=[
            ("cookie", 'session=abc; theme="dark"; junk; =novalue;  lang = fr '),
            ("cookie", "session=later; extra=1"),
        ],
    )
    assert request.cookies == {"session": "abc", "theme": "dark", "lang": "fr", "extra": "1"}
    assert Request("GET", "/").cookies == {}


async def test_a_browser_style_round_trip_of_cookies_over_loopback() -> None:
    router = Router()

    @router.get("/login")
    async def login(request: Request) -> Response:
        response = Response.text("in")
        response.set_cookie("session", "s3cr3t", httponly=True, max_age=3600)
        response.set_cookie("theme", "dark", path="/", samesite="strict")
        return response

    @router.get("/me")
    async def me(request: Request) -> Response:
        return Response.json(request.cookies)

    @router.get("/logout")
    async def logout(request: Request) -> Response:
        response = Response.text("out")
        response.delete_cookie("session")
        return response

    async with client_for(router) as http:
        response = await http.get("/login")
        assert response.headers.get_list("set-cookie") == [
            "session=s3cr3t; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax",
            "theme=dark; Path=/; SameSite=Strict",
        ]
        assert (await http.get("/me")).json() == {"session": "s3cr3t", "theme": "dark"}
        await http.get("/logout")
        assert (await http.get("/me")).json() == {"theme": "dark"}


def test_set_cookie_writes_every_attribute() -> None:
    response = Response()
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    response.set_cookie(
        "id",
        "a1",
        max_age=10,
        expires=when,
        path="/app",
        domain="example.org",
        secure=True,
        httponly=True,
        samesite="none",
        partitioned=True,
    )
    assert response.headers.get_all("set-cookie") == [
        "id=a1; Max-Age=10; Expires=Wed, 02 Jan 2030 03:04:05 GMT; Domain=example.org; "
        "Path=/app; Secure; HttpOnly; SameSite=None; Partitioned"
    ]


def test_expires_in_seconds_is_from_now_and_delete_cookie_expires_in_the_past() -> None:
    response = Response()
    response.set_cookie("a", "1", expires=3600, samesite=None, path=None)
    (header,) = response.headers.get_all("set-cookie")
    name_value, expires = header.split("; ")
    assert name_value == "a=1"
    moment = parsedate_to_datetime(expires.removeprefix("Expires="))
    assert timedelta(minutes=59) < moment - datetime.now(timezone.utc) <= timedelta(hours=1)

    response = Response()
    response.delete_cookie("a", path="/x", domain="example.org")
    assert response.headers["set-cookie"] == (
        "a=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Domain=example.org; "
        "Path=/x; SameSite=Lax"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "bad name", "value": "v"}, "not a token"),
        ({"key": "a;b", "value": "v"}, "not a token"),
        ({"key": "a", "value": "x\r\nSet-Cookie: evil=1"}, "encode it first"),
        ({"key": "a", "value": "x;Domain=evil"}, "may not contain ';'"),
        ({"key": "a", "value": "two words"}, "may not contain ' '"),
        ({"key": "a", "value": "v", "path": "/;Domain=evil"}, "cookie path"),
        ({"key": "a", "value": "v", "domain": "a\nb"}, "cookie domain"),
        ({"key": "a", "value": "v", "samesite": "none"}, "needs secure=True"),
        ({"key": "a", "value": "v", "samesite": "loose"}, "samesite must be"),
        ({"key": "a", "value": "v", "partitioned": True}, "needs secure=True"),
        ({"key": "a", "value": "v", "expires": datetime(2030, 1, 1)}, "aware datetime"),
    ],
)
def test_set_cookie_refuses_what_would_break_the_header(
    kwargs: dict[str, object], message: str
) -> None:
    response = Response()
    with pytest.raises(ValueError, match=message):
        response.set_cookie(**kwargs)  # type: ignore[arg-type]
    assert "set-cookie" not in response.headers  # nothing half-written


async def test_await_request_body_works_as_in_starlette() -> None:
    router = Router()

    @router.post("/echo")
    async def echo(request: Request) -> Response:
        data = await request.body()
        again = await request.read()  # the same cached bytes
        return Response(data + b"|" + again)

    async with client_for(router) as http:
        response = await http.post("/echo", content=b"payload")
    assert response.content == b"payload|payload"
