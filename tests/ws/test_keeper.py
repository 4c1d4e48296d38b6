"""Keepalive pings and drain closes run in tasks of a nursery someone owns.

One keeper and one drain watcher serve all sessions of a server from the
server's service nursery (never trio system tasks); a client's or a
standalone session's run in its own nursery and end with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace

import pytest
import trio
import trio.testing

from trio_upgrade.core import Server
from trio_upgrade.ws import (
    ConnectionClosedError,
    ConnectionClosedOK,
    WebSocket,
    WebSocketConfig,
    open_websocket,
    serve_websocket,
    websocket_session,
)

from ._helpers import QUIET, RawPeer

KEEPALIVE = WebSocketConfig(ping_interval=20, compression=None)


class SystemTaskWatch(trio.abc.Instrument):
    """Records every trio system task spawned while installed."""

    def __init__(self) -> None:
        self.spawned: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        nursery = task.parent_nursery
        if nursery is not None and nursery.parent_task is trio.lowlevel.current_root_task():
            self.spawned.append(task.name)


@contextmanager
def no_system_tasks() -> Iterator[None]:
    watch = SystemTaskWatch()
    trio.lowlevel.add_instrument(watch)
    try:
        yield
    finally:
        trio.lowlevel.remove_instrument(watch)
    assert watch.spawned == []


def tasks_named(name: str) -> list[trio.lowlevel.Task]:
    """Every task of the run with this name, with its ancestors walked from the root."""
    found: list[trio.lowlevel.Task] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task.name == name:
            found.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


def parent_name(task: trio.lowlevel.Task) -> str:
    nursery = task.parent_nursery
    assert nursery is not None
    return nursery.parent_task.name


@asynccontextmanager
async def serving(config: WebSocketConfig) -> AsyncIterator[Server]:
    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                handler, "127.0.0.1:0", config=config, task_status=task_status
            )
        )
        yield server
        nursery.cancel_scope.cancel()


def url_of(server: Server) -> str:
    host, port = server.addresses[0]  # type: ignore[misc]
    return f"ws://{host}:{port}/"


async def test_one_keeper_and_one_drain_watcher_per_server_in_its_service_nursery() -> None:
    with no_system_tasks():
        async with (
            serving(KEEPALIVE) as server,
            open_websocket(url_of(server), config=replace(KEEPALIVE, ping_interval=None)) as a,
            open_websocket(url_of(server), config=replace(KEEPALIVE, ping_interval=None)) as b,
        ):
            for ws in (a, b):
                await ws.send("hi")
                assert await ws.receive() == "hi"
            keepers = tasks_named("trio_upgrade.ws keepalive")
            watchers = tasks_named("trio_upgrade.ws drain watcher")
            assert len(keepers) == len(watchers) == 1
            # The service nursery is opened by the task that runs the connections.
            for task in keepers + watchers:
                assert parent_name(task).endswith("Server._run_connections")
            await server.aclose()
            # The drain watcher closed both sessions (1001) ...
            for ws in (a, b):
                with pytest.raises(ConnectionClosedOK) as info:
                    await ws.receive()
                assert info.value.code == 1001
            # ... and the shared tasks ended with the server.
            assert tasks_named("trio_upgrade.ws keepalive") == []
            assert tasks_named("trio_upgrade.ws drain watcher") == []


async def test_a_clients_keeper_runs_in_the_clients_session_and_ends_with_it() -> None:
    with no_system_tasks():
        async with serving(QUIET) as server:
            async with open_websocket(url_of(server), config=KEEPALIVE) as ws:
                await ws.send("hi")
                assert await ws.receive() == "hi"
                (keeper,) = tasks_named("trio_upgrade.ws keepalive")
                # In the session's nursery, opened by this task's `async with`.
                assert keeper.parent_nursery is not None
                assert keeper.parent_nursery.parent_task is trio.lowlevel.current_task()
            assert tasks_named("trio_upgrade.ws keepalive") == []


async def test_a_keepalive_timeout_fails_the_session_without_system_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = replace(QUIET, ping_interval=1, ping_timeout=1)
    left, right = trio.testing.memory_stream_pair()
    peer = RawPeer(right)  # never answers a ping
    with no_system_tasks():
        async with trio.open_nursery() as nursery:
            async with websocket_session(left, config=config, nursery=nursery) as server:
                with pytest.raises(ConnectionClosedError) as info:
                    await server.receive()
                assert info.value.code == 1011
            # The peer gets our Close, then the stream ends.
            events = await peer.events_until_eof()
            assert events[-1].code == 1011  # type: ignore[attr-defined]
        # The nursery closed: no keeper outlived the session in it.
        assert tasks_named("trio_upgrade.ws keepalive") == []
