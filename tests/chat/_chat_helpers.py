"""Helpers for the chat example's tests: clients, an in-process server, subprocesses.

Imported by name (tests/chat is on sys.path, like the other test folders'
helpers). Puts the repository root on sys.path so that ``examples.chat``
imports however pytest was started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.chat import ChatConfig, Hub, MemoryHub, create_app  # noqa: E402
from trio_upgrade.core import Server  # noqa: E402
from trio_upgrade.http import create_server  # noqa: E402
from trio_upgrade.testing import AppClient  # noqa: E402
from trio_upgrade.ws import WebSocket, WebSocketConfig, open_websocket  # noqa: E402

# Upper bound for any single wait in these tests: a hang fails, it never blocks the suite.
WAIT = 15.0


@dataclass
class ChatClient:
    """A test client: sends events as keyword arguments, waits for events by type."""

    ws: WebSocket
    # Events skipped while waiting for another type, in arrival order.
    skipped: list[dict[str, Any]] = field(default_factory=list)
    hello: dict[str, Any] = field(default_factory=dict)

    async def send(self, **event: Any) -> None:
        await self.ws.send(json.dumps(event))

    async def next(self, *types: str) -> dict[str, Any]:
        """The next event of one of *types* (skipping and keeping the others)."""
        with trio.fail_after(WAIT):
            while True:
                raw = await self.ws.receive()
                assert isinstance(raw, str), raw
                event: dict[str, Any] = json.loads(raw)
                if not types or event["type"] in types:
                    return event
                self.skipped.append(event)

    async def join(self, room: str, nick: str, client: str | None = None) -> dict[str, Any]:
        extra = {} if client is None else {"client": client}
        await self.send(type="join", room=room, nick=nick, **extra)
        return await self.next("joined", "error")

    async def closed(self) -> tuple[int, list[dict[str, Any]]]:
        """Read until the server closes; return the close code and the events read meanwhile."""
        from trio_upgrade.ws import ConnectionClosed

        events = []
        with trio.fail_after(WAIT):
            try:
                while True:
                    raw = await self.ws.receive()
                    assert isinstance(raw, str)
                    events.append(json.loads(raw))
            except ConnectionClosed as exc:
                return exc.code, events


def origin_of(url: str) -> str:
    return "http://" + url.split("//", 1)[1].split("/", 1)[0]


@asynccontextmanager
async def chat_client(
    url: str, *, origin: str | None = "", config: WebSocketConfig | None = None
) -> AsyncIterator[ChatClient]:
    """Connect to the chat at *url* (``ws://host:port/ws``), as a page of the
    same origin unless *origin* says otherwise (``None``: no Origin header),
    and consume the ``hello`` event."""
    if origin == "":
        origin = origin_of(url)
    headers = [] if origin is None else [("origin", origin)]
    async with open_websocket(url, headers=headers, config=config or WebSocketConfig()) as ws:
        client = ChatClient(ws)
        hello = await client.next()
        assert hello["type"] == "hello", hello
        yield client


# The origin of the in-memory harness's requests (its Host header): the page's own.
ORIGIN = "http://chat.test"


@dataclass
class InMemory:
    """The chat app driven by trio_upgrade.testing's AppClient: no sockets."""

    client: AppClient
    hub: Hub

    @asynccontextmanager
    async def connect(
        self, *, origin: str | None = ORIGIN, config: WebSocketConfig | None = None
    ) -> AsyncIterator[ChatClient]:
        """A chat connection (Origin: the page's own unless said otherwise;
        ``None``: none), its ``hello`` event consumed."""
        headers = {} if origin is None else {"origin": origin}
        async with self.client.websocket(
            "/ws", headers=headers, config=config or WebSocketConfig()
        ) as ws:
            client = ChatClient(ws)
            hello = await client.next()
            assert hello["type"] == "hello", hello
            client.hello = hello
            yield client


@asynccontextmanager
async def in_memory_chat(
    config: ChatConfig | None = None, hub: Hub | None = None
) -> AsyncIterator[InMemory]:
    config = config or ChatConfig()
    hub = hub or MemoryHub(config)
    async with AppClient(create_app(hub, config), base_url=ORIGIN) as client:
        yield InMemory(client, hub)


@dataclass
class Running:
    server: Server
    hub: Hub
    url: str  # ws://127.0.0.1:port/ws
    http: tuple[str, int]


@asynccontextmanager
async def running_chat(
    config: ChatConfig | None = None, hub: Hub | None = None, *, grace_period: float = 5.0
) -> AsyncIterator[Running]:
    """The chat app served in this process on an ephemeral loopback port."""
    config = config or ChatConfig()
    hub = hub or MemoryHub(config)
    server = await create_server(create_app(hub, config), "127.0.0.1:0", grace_period=grace_period)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        address = server.addresses[0]
        assert isinstance(address, tuple)
        host, port = address[0], address[1]
        try:
            yield Running(server, hub, f"ws://{host}:{port}/ws", (host, port))
        finally:
            nursery.cancel_scope.cancel()


# -- subprocesses -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        import pytest

        pytest.skip("redis-server is not installed (scripts/test installs it with apt-get)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


class ChatProcess:
    """``python -m examples.chat`` as a child process on *port* (0: any)."""

    def __init__(self, port: int = 0, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "examples.chat", "--bind", f"127.0.0.1:{port}", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._drainer: threading.Thread | None = None
        self.port = self._wait_serving()

    def _wait_serving(self) -> int:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if line.startswith("chat: serving on http://127.0.0.1:"):
                # Keep reading, or the child blocks once the pipe is full of logs.
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                return int(line.split("127.0.0.1:", 1)[1].split("/", 1)[0])
        self.stop()
        raise RuntimeError("the chat did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send *sig* (SIGTERM: graceful shutdown) and wait; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self._drainer is not None:
                self._drainer.join(WAIT)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        return status
