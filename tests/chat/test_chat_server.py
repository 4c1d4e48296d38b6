"""The chat server over real loopback sockets, where the operating system matters:
TCP buffers filling up behind a slow client, a server shutting down under its clients."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from _chat_helpers import WAIT, ChatClient, chat_client, running_chat

from examples.chat import ChatConfig, Hub, Member
from trio_upgrade.ws import (
    WebSocketConfig,
    client_request,
    websocket_session,
)


async def test_two_people_chat_over_loopback_sockets() -> None:
    async with (
        running_chat() as chat,
        chat_client(chat.url) as alice,
        chat_client(chat.url) as bob,
    ):
        await alice.join("general", "alice")
        joined = await bob.join("general", "bob")
        assert joined["members"] == ["alice", "bob"]
        await alice.send(type="say", text="over TCP")
        message = await bob.next("message")
        assert (message["nick"], message["text"]) == ("alice", "over TCP")


async def test_graceful_shutdown_closes_with_1001() -> None:
    async with running_chat(grace_period=5) as chat, chat_client(chat.url) as client:
        await client.join("general", "alice")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat.server.aclose)
            code, _ = await client.closed()
        assert code == 1001


@asynccontextmanager
async def slow_client(address: tuple[str, int]) -> AsyncIterator[ChatClient]:
    """A client that reads as little as possible: a tiny receive buffer, and a
    session that stops reading after one queued message."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(address)
    stream = trio.SocketStream(sock)
    host = f"{address[0]}:{address[1]}"
    request, _ = client_request(
        host, "/ws", b"dGhlIHNhbXBsZSBub25jZQ==", headers=[(b"origin", f"http://{host}".encode())]
    )
    await stream.send_all(request)
    data = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    config = WebSocketConfig(receive_queue=1, min_read_size=1024, max_read_size=1024)
    async with websocket_session(stream, prefetched=rest, client=True, config=config) as ws:
        yield ChatClient(ws)


async def test_a_slow_client_is_closed_with_1013_and_the_room_does_not_wait() -> None:
    config = ChatConfig(queue=8, close_timeout=10)
    async with running_chat(config) as chat, chat_client(chat.url) as fast:
        await fast.join("general", "fast")
        async with slow_client(chat.http) as slow:
            assert (await slow.next("hello"))["type"] == "hello"
            await slow.join("general", "slow")
            await fast.next("presence")
            await _flood(chat.hub, fast)
            # Once it reads again, it learns why it was dropped.
            code, _ = await slow.closed()
            assert code == 1013


async def _flood(hub: Hub, fast: ChatClient) -> None:
    """Post big messages quickly; *fast* reads every one; the slow client is dropped."""
    speaker = Member("speaker", "test-key")
    # The test speaks through the hub directly: no rate limit, no validation.
    await hub.join("general", speaker, _Ignore())
    count, text = 300, "x" * 16384
    received = 0

    async def read_fast() -> None:
        nonlocal received
        while received < count:
            event = await fast.next("message")
            assert event["text"] == text
            received += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_fast)
        for _ in range(count):
            assert await hub.say("general", speaker, text)
            await trio.lowlevel.checkpoint()
    assert received == count
    # The slow one was dropped from the room.
    left = [e for e in fast.skipped if e["type"] == "presence" and e["action"] == "leave"]
    if not left:
        left = [await fast.next("presence")]
    assert [(e["action"], e["nick"]) for e in left] == [("leave", "slow")]


class _Ignore:
    def deliver(self, payload: str) -> None:
        pass

    def drop(self, reason: str) -> None:
        pass
