"""The session's fast paths: every call a cancel point, every 64th a schedule point.

The rule lives in one place for receiving (``receive()``, ``async for`` and
``receive_chunks()`` share it) and one for sending; these tests drive each API
through 640 queued messages while a counter task counts its turns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
import trio
import trio.testing

from trio_upgrade.ws import WebSocket

from ._helpers import QUIET, session_pair

N = 640
# Turns other tasks must get during N calls: one per 64 calls, less the last
# one, which trio's scheduler may run after the work's final call returns.
TURNS = N // 64 - 1
ROOMY = replace(QUIET, receive_queue=N, send_buffer=1 << 20)


async def turns_of_others(work: Callable[[], Awaitable[None]]) -> int:
    """How many times another ready task ran while *work* ran."""
    turns = 0

    async def counter() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(counter)
        await trio.lowlevel.checkpoint()  # the counter is running now
        before = turns
        await work()
        ran = turns - before
        nursery.cancel_scope.cancel()
    return ran


async def queue_messages(server: WebSocket, client: WebSocket) -> None:
    for i in range(N):
        await client.send(f"m{i}")
    await trio.testing.wait_all_tasks_blocked()  # all of them queued at the server


async def receive_all(server: WebSocket) -> None:
    for i in range(N):
        assert await server.receive() == f"m{i}"


async def iterate_all(server: WebSocket) -> None:
    i = 0
    async for message in server:
        assert message == f"m{i}"
        i += 1
        if i == N:
            break


async def chunks_all(server: WebSocket) -> None:
    for i in range(N):
        assert [chunk async for chunk in server.receive_chunks()] == [f"m{i}"]


@pytest.mark.parametrize("consume", [receive_all, iterate_all, chunks_all])
async def test_receiving_queued_messages_gives_other_tasks_a_turn_every_64_calls(
    consume: Callable[[WebSocket], Awaitable[None]],
) -> None:
    async with session_pair(ROOMY, ROOMY) as (server, client):
        await queue_messages(server, client)
        ran = await turns_of_others(lambda: consume(server))
        assert ran >= TURNS


async def test_sending_gives_other_tasks_a_turn_every_64_calls() -> None:
    async with session_pair(ROOMY, ROOMY) as (server, _):

        async def send_all() -> None:
            for i in range(N):
                await server.send(f"m{i}")

        assert await turns_of_others(send_all) >= TURNS


async def cancelled(call: Callable[[], Awaitable[object]]) -> bool:
    with trio.CancelScope() as scope:
        scope.cancel()
        await call()
    return scope.cancelled_caught


async def first_chunk(server: WebSocket) -> object:
    async for chunk in server.receive_chunks():
        return chunk
    return None


@pytest.mark.parametrize(
    "call",
    [
        lambda ws: ws.receive(),
        lambda ws: ws.__anext__(),
        lambda ws: first_chunk(ws),
        lambda ws: ws.send("x"),
    ],
    ids=["receive", "async-for", "receive_chunks", "send"],
)
async def test_every_call_is_a_cancel_point_and_loses_nothing(
    call: Callable[[WebSocket], Awaitable[object]],
) -> None:
    async with session_pair(ROOMY, ROOMY) as (server, client):
        await queue_messages(server, client)
        # Many calls in a row, so that calls that do not yield are among them.
        for _ in range(130):
            assert await cancelled(lambda: call(server))
        # Nothing was taken by the cancelled calls.
        assert await server.receive() == "m0"
