"""--proxy-headers as a handler wrapper: who is trusted, and what is believed."""

from __future__ import annotations

from typing import Any

import pytest

from trio_upgrade import Request, Response
from trio_upgrade._cli import TrustedProxies, forwarded_headers


async def _seen(trusted: str, client: Any, headers: list[tuple[str, str]]) -> tuple[Any, str]:
    async def app(request: Request) -> Response:
        return Response.text(f"{request.client!r}|{request.scheme}")

    handler = forwarded_headers(app, TrustedProxies(trusted))
    response = await handler(Request("GET", "/", headers=headers, client=client))
    client_text, scheme = response.body.decode().split("|")  # type: ignore[union-attr]
    return client_text, scheme


@pytest.mark.parametrize(
    ("trusted", "client", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 5000), "('203.0.113.7', 0)|https"),
        ("10.0.0.0/8", ("10.1.2.3", 5000), "('203.0.113.7', 0)|https"),
        ("10.0.0.0/8", ("127.0.0.1", 5000), "('127.0.0.1', 5000)|http"),
        ("::1", ("::1", 5000), "('203.0.113.7', 0)|https"),
        ("127.0.0.1", ("::ffff:127.0.0.1", 5000), "('203.0.113.7', 0)|https"),
        ("*", ("192.0.2.1", 5000), "('203.0.113.7', 0)|https"),
        ("unix", "/run/web.sock", "('203.0.113.7', 0)|https"),
        ("127.0.0.1", "/run/web.sock", "'/run/web.sock'|http"),
    ],
)
async def test_only_trusted_peers_rewrite_client_and_scheme(
    trusted: str, client: Any, expected: str
) -> None:
    headers = [("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https")]
    assert "|".join(await _seen(trusted, client, headers)) == expected


async def test_the_nearest_untrusted_hop_is_the_client() -> None:
    """Hops added by trusted proxies are skipped; what the client claimed is not believed."""
    headers = [
        ("x-forwarded-for", "1.1.1.1, 203.0.113.7"),
        ("x-forwarded-for", "10.0.0.2"),
    ]
    client, _ = await _seen("10.0.0.0/8", ("10.0.0.1", 1), headers)
    assert client == "('203.0.113.7', 0)"


async def test_only_http_and_https_are_taken_as_schemes() -> None:
    headers = [("x-forwarded-proto", "javascript")]
    assert await _seen("*", ("10.0.0.1", 1), headers) == ("('10.0.0.1', 1)", "http")


def test_bad_trusted_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        TrustedProxies("127.0.0.1, not-an-ip")
