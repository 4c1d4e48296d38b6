"""Request targets through the proxy: dot segments are resolved before routing
(RFC 3986 §5.2.4) and may not climb out of a route; absolute-form targets are
routed by their path and forwarded in origin-form (RFC 9112 §3.2)."""

from __future__ import annotations

import pytest
import trio
from _proxy_env import start_proxy
from _proxy_helpers import Client, RecordingBackend, fields_of, response

from trio_upgrade.http import Router
from trio_upgrade.proxy import Proxy
from trio_upgrade.proxy._rewrite import UnsafeTarget, normalize_path, split_target


async def targets_env(nursery: trio.Nursery) -> tuple[RecordingBackend, Proxy, tuple[str, int]]:
    backend = RecordingBackend(lambda *_: response(200, b"ok"))
    url = await backend.start(nursery)
    proxy = Proxy({"/api": url + "/public-api"})
    return backend, proxy, await start_proxy(nursery, proxy)


async def send_raw_target(address: tuple[str, int], target: bytes) -> int:
    client = await Client.open(address)
    try:
        await client.stream.send_all(
            b"GET " + target + b" HTTP/1.1\r\nhost: proxy.test\r\nconnection: close\r\n\r\n"
        )
        return (await client.read_head()).status_code
    finally:
        await client.aclose()


def forwarded_target(backend: RecordingBackend) -> bytes:
    [head] = backend.heads
    return head.split(b" ")[1]


@pytest.mark.parametrize(
    "target",
    [
        b"/api/../internal/secret",
        b"/api/%2e%2e/internal/secret",
        b"/api/%2E%2e/internal/secret",
        b"/api/..%2finternal/secret",
        b"/api/%2E%2E%2Finternal/secret",
        b"/api/.%2e/internal/secret",
        b"/api/..%5cinternal/secret",
        b"/api/..",
        b"/api/x/../../internal",
        b"/../api/x",
        b"http://proxy.test/api/../internal/secret",
    ],
)
async def test_a_target_climbing_out_of_its_route_is_400(
    nursery: trio.Nursery, target: bytes
) -> None:
    backend, proxy, address = await targets_env(nursery)
    async with proxy:
        status = await send_raw_target(address, target)
    assert status == 400
    assert backend.connections == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/api/./users/../items?q=../x", b"/public-api/items?q=../x"),
        (b"/api/a%20b/%2e/c%2Fd", b"/public-api/a%20b/c%2Fd"),
        (b"/api/x/..", b"/public-api/"),
        (b"/api/x/%2e%2e/y", b"/public-api/y"),
    ],
)
async def test_dot_segments_inside_the_route_are_resolved_and_encoding_kept(
    nursery: trio.Nursery, target: bytes, expected: bytes
) -> None:
    backend, proxy, address = await targets_env(nursery)
    async with proxy:
        status = await send_raw_target(address, target)
    assert status == 200
    assert forwarded_target(backend) == expected


async def test_an_absolute_form_target_is_routed_by_its_path_and_sent_in_origin_form(
    nursery: trio.Nursery,
) -> None:
    backend, proxy, address = await targets_env(nursery)
    async with proxy:
        status = await send_raw_target(address, b"http://other.test:8080/api/users?x=1")
    assert status == 200
    [head] = backend.heads
    assert head.startswith(b"GET /public-api/users?x=1 HTTP/1.1\r\n")
    fields = fields_of(head)
    assert [v for n, v in fields if n == b"host"] == [b"other.test:8080"]


async def test_an_absolute_form_target_outside_every_route_is_404(
    nursery: trio.Nursery,
) -> None:
    backend, proxy, address = await targets_env(nursery)
    async with proxy:
        status = await send_raw_target(address, b"http://other.test/internal/api/x")
    assert status == 404
    assert backend.connections == []


async def test_dot_segments_cannot_climb_out_of_a_mount(nursery: trio.Nursery) -> None:
    backend = RecordingBackend(lambda *_: response(200, b"ok"))
    url = await backend.start(nursery)
    proxy = Proxy(url)
    app = Router()
    app.mount("/svc", proxy)
    async with proxy:
        address = await start_proxy(nursery, app)
        inside = await send_raw_target(address, b"/svc/a/../b")
        outside = await send_raw_target(address, b"/svc/../admin")
    assert (inside, outside) == (200, 400)
    assert [head.split(b" ")[1] for head in backend.heads] == [b"/b"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/%2E/b/%2e%2E/c", "/a/c"),
        ("/a%20b/./c%2Fd", "/a%20b/c%2Fd"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
    ],
)
def test_normalize_path(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["/..", "/a/../..", "/a/..%2fb", "/a/%2e%2e%5Cb", "/a/..\\b"])
def test_normalize_path_refuses(raw: str) -> None:
    with pytest.raises(UnsafeTarget):
        normalize_path(raw)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/a?b=1", ("/a", "?b=1", None)),
        ("*", ("*", "", None)),
        ("http://h:1/a/b?c#f", ("/a/b", "?c", "h:1")),
        ("HTTP://h", ("/", "", "h")),
        ("http://h?x", ("/", "?x", "h")),
    ],
)
def test_split_target(target: str, expected: tuple[str, str, str | None]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize("target", ["h:443", "ftp://h/a", "http:///a", "http://u@h/a"])
def test_split_target_refuses(target: str) -> None:
    with pytest.raises(UnsafeTarget):
        split_target(target)
