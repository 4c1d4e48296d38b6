"""Fixtures for the proxy tests: backends on a Unix socket and a TCP port, a proxy in front."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
import trio
import trio.testing
from _proxy_env import BackendState, Env, backend_app
from _proxy_helpers import start_http, url_of

from trio_upgrade.proxy import Proxy, ProxyConfig


@pytest.fixture
def sock_dir() -> Iterator[str]:
    # Short: a Unix socket path must fit in 108 bytes, pytest's tmp_path may not.
    path = tempfile.mkdtemp(prefix="tu-proxy-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def env(nursery: trio.Nursery, sock_dir: str) -> AsyncIterator[Env]:
    state = BackendState()
    a = await start_http(nursery, backend_app(state, "a"), f"unix:{sock_dir}/a.sock")
    b = await start_http(nursery, backend_app(state, "b"), "127.0.0.1:0")
    proxy = Proxy({"/a": url_of(a), "/b": url_of(b)}, config=ProxyConfig())
    proxy.add_route("/keep", url_of(a), strip_prefix=False)
    front = await start_http(nursery, proxy, "127.0.0.1:0")
    async with proxy:
        yield Env(state, a, b, proxy, front)


@pytest.fixture
def manual_clock() -> trio.testing.MockClock:
    """A clock that runs at real speed and jumps only when a test says so.

    Timeout tests set their limit far beyond the test's own run time and jump
    past it once everything is blocked waiting (``wait_all_tasks_blocked``):
    what fires is the timeout under test and nothing else, whatever the speed
    of the machine, and real sockets keep working (an autojumping clock would
    jump while bytes are in flight between them)."""
    return trio.testing.MockClock(rate=1.0)
