"""The chat server over real loopback sockets: the page, the protocol, the policies, shutdown."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.lowlevel
from _chat_helpers import WAIT, ChatClient, chat_client, origin_of, running_chat

from examples.chat import ChatConfig, Hub, Member
from trio_upgrade.ws import (
    ConnectionClosed,
    HandshakeRejected,
    WebSocketConfig,
    client_request,
    open_websocket,
    websocket_session,
)


async def fetch(address: tuple[str, int], path: str) -> tuple[int, dict[str, str], bytes]:
    """GET *path* with a one-shot HTTP/1.1 connection; status, headers, body."""
    host, port = address
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        with trio.fail_after(WAIT):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


async def test_the_page_and_its_files_are_served_with_a_strict_policy() -> None:
    async with running_chat() as chat:
        status, headers, body = await fetch(chat.http, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"<title>trio_upgrade chat</title>" in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        status, headers, body = await fetch(chat.http, "/static/chat.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript")
        assert b"new WebSocket" in body
        status, headers, _ = await fetch(chat.http, "/static/chat.css")
        assert status == 200 and headers["content-type"].startswith("text/css")
        status, _, _ = await fetch(chat.http, "/static/../_app.py")
        assert status == 404


async def test_a_plain_get_to_the_websocket_path_gets_426() -> None:
    async with running_chat() as chat:
        status, headers, _ = await fetch(chat.http, "/ws")
        assert status == 426 and headers["upgrade"] == "websocket"


async def test_two_people_chat_and_see_each_other() -> None:
    async with (
        running_chat() as chat,
        chat_client(chat.url) as alice,
        chat_client(chat.url) as bob,
    ):
        joined = await alice.join("general", "alice")
        assert joined["type"] == "joined" and joined["members"] == ["alice"]
        joined = await bob.join("General", "bob")
        assert (joined["room"], joined["members"]) == ("general", ["alice", "bob"])
        presence = await alice.next("presence")
        assert (presence["action"], presence["nick"], presence["count"]) == ("join", "bob", 2)

        await bob.send(type="say", text="  hi <b>alice</b> ✓  ")
        for client in (alice, bob):
            message = await client.next("message")
            assert (message["nick"], message["text"]) == ("bob", "hi <b>alice</b> ✓")
            assert message["room"] == "general" and isinstance(message["ts"], int)

        await bob.send(type="leave")
        left = await bob.next("left")
        assert left["room"] == "general"
        presence = await alice.next("presence")
        assert (presence["action"], presence["nick"], presence["count"]) == ("leave", "bob", 1)


async def test_arrivals_get_the_recent_history_and_the_room_list() -> None:
    config = ChatConfig(history=3, rate=100, burst=100)
    async with running_chat(config) as chat, chat_client(chat.url) as alice:
        await alice.join("general", "alice")
        for i in range(5):
            await alice.send(type="say", text=f"m{i}")
            await alice.next("message")
        async with chat_client(chat.url) as carol:
            joined = await carol.join("general", "carol")
            assert [m["text"] for m in joined["history"]] == ["m2", "m3", "m4"]
        origin = origin_of(chat.url)
        async with open_websocket(chat.url, headers=[("origin", origin)]) as raw:
            hello = json.loads(await raw.receive())
            assert hello["type"] == "hello"
            assert hello["rooms"] == [{"name": "general", "count": 1}]
            assert hello["limits"] == {"nick": 24, "room": 32, "text": 1000}


async def test_switching_rooms_leaves_the_first_one() -> None:
    async with (
        running_chat() as chat,
        chat_client(chat.url) as alice,
        chat_client(chat.url) as bob,
    ):
        await alice.join("one", "alice")
        await bob.join("one", "bob")
        await alice.next("presence")
        await bob.join("two", "bob")
        presence = await alice.next("presence")
        assert (presence["action"], presence["nick"]) == ("leave", "bob")
        await alice.send(type="say", text="anyone?")
        await alice.next("message")
        await bob.send(type="say", text="in two")
        message = await bob.next("message")
        assert message["room"] == "two"
        # bob never got the message from room one.
        assert all(e.get("text") != "anyone?" for e in bob.skipped)


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"type": "join", "room": "ok", "nick": "<script>"}, "bad_nick"),
        ({"type": "join", "room": "no spaces", "nick": "ok"}, "bad_room"),
        ({"type": "say", "text": "x" * 1001}, "too_long"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "say", "text": "before joining"}, "not_in_room"),
    ],
)
async def test_bad_messages_get_an_error_event_and_the_connection_stays(
    event: dict[str, object], code: str
) -> None:
    async with running_chat() as chat, chat_client(chat.url) as client:
        await client.send(**event)
        error = await client.next("error")
        assert error["code"] == code and error["message"]
        joined = await client.join("still-here", "fine")
        assert joined["type"] == "joined"


async def test_invalid_json_gets_an_error_event() -> None:
    async with running_chat() as chat, chat_client(chat.url) as client:
        await client.ws.send("{not json")
        assert (await client.next("error"))["code"] == "bad_json"


async def test_a_taken_nickname_is_refused() -> None:
    async with (
        running_chat() as chat,
        chat_client(chat.url) as alice,
        chat_client(chat.url) as other,
    ):
        await alice.join("general", "Alice")
        error = await other.join("general", "ALICE")
        assert (error["type"], error["code"]) == ("error", "nick_taken")


async def test_a_reconnecting_tab_takes_its_nickname_back() -> None:
    async with running_chat() as chat, chat_client(chat.url) as watcher:
        await watcher.join("general", "watcher")
        async with chat_client(chat.url) as old:
            await old.join("general", "alice", client="tab-1")
            async with chat_client(chat.url) as new:
                joined = await new.join("general", "alice", client="tab-1")
                assert joined["members"] == ["alice", "watcher"]
                # The stale connection can no longer talk as alice.
                await old.send(type="say", text="ghost")
                assert (await old.next("error"))["code"] == "not_in_room"
                await new.send(type="say", text="back")
                assert (await watcher.next("message"))["text"] == "back"


async def test_a_binary_message_closes_with_1003() -> None:
    async with running_chat() as chat, chat_client(chat.url) as client:
        await client.ws.send(b"\x00\x01")
        code, _ = await client.closed()
        assert code == 1003


async def test_a_message_over_the_frame_limit_closes_with_1009() -> None:
    async with running_chat(ChatConfig(max_frame=2048)) as chat, chat_client(chat.url) as client:
        await client.send(type="say", text="x" * 4096)
        code, _ = await client.closed()
        assert code == 1009


async def test_flooding_is_rate_limited_then_closed_with_1008() -> None:
    # Refill rates so low that the test's own speed cannot matter.
    config = ChatConfig(rate=0.001, burst=3, strike_rate=0.001, strike_burst=4)
    async with running_chat(config) as chat, chat_client(chat.url) as client:
        await client.join("general", "flood")  # takes one token
        for i in range(20):
            try:
                await client.send(type="say", text=f"spam {i}")
            except ConnectionClosed:
                break
        code, events = await client.closed()
        assert code == 1008
        texts = [e["text"] for e in events if e["type"] == "message"]
        errors = [e["code"] for e in events if e["type"] == "error"]
        assert texts == ["spam 0", "spam 1"]
        assert errors == ["rate_limited"] * 4


async def test_the_origin_check_refuses_other_sites_and_missing_origins() -> None:
    async with running_chat() as chat:
        for origin in ("http://evil.example", None, "null"):
            with pytest.raises(HandshakeRejected) as info:
                async with chat_client(chat.url, origin=origin):
                    pass
            assert info.value.status == 403
        # The page's own origin (Host header) is fine.
        async with chat_client(chat.url) as client:
            assert (await client.join("r", "same"))["type"] == "joined"


async def test_allowed_origins_and_originless_clients_can_be_enabled() -> None:
    config = ChatConfig(allowed_origins=("https://chat.example",), allow_missing_origin=True)
    async with running_chat(config) as chat:
        async with chat_client(chat.url, origin="https://chat.example") as client:
            assert (await client.join("r", "a"))["type"] == "joined"
        async with chat_client(chat.url, origin=None) as client:
            assert (await client.join("r", "b"))["type"] == "joined"
        with pytest.raises(HandshakeRejected):
            async with chat_client(chat.url, origin="https://other.example"):
                pass


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
