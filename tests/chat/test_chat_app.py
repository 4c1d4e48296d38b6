"""The chat protocol through trio_upgrade.testing's in-memory client: no sockets.

Messages, presence, history, every validation error, the close codes a client
earns (1003, 1008, 1009), the rate limit, the origin check, graceful shutdown.
"""

from __future__ import annotations

import pytest
import trio
from _chat_helpers import in_memory_chat

from examples.chat import ChatConfig
from trio_upgrade.testing import WebSocketRejected
from trio_upgrade.ws import ConnectionClosed


async def test_the_page_and_its_files_are_served_with_a_strict_policy() -> None:
    async with in_memory_chat() as chat:
        page = await chat.client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "<title>trio_upgrade chat</title>" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        script = await chat.client.get("/static/chat.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "new WebSocket" in script.text
        style = await chat.client.get("/static/chat.css")
        assert style.headers["content-type"].startswith("text/css")
        head = await chat.client.head("/")
        assert head.status_code == 200 and head.content == b""
        assert (await chat.client.get("/static/../_app.py")).status_code == 404


async def test_the_room_list_is_served_as_json() -> None:
    async with in_memory_chat() as chat, chat.connect() as alice:
        assert (await chat.client.get("/api/rooms")).json() == []
        await alice.join("general", "alice")
        assert (await chat.client.get("/api/rooms")).json() == [{"name": "general", "count": 1}]


async def test_a_plain_get_to_the_websocket_path_gets_426() -> None:
    async with in_memory_chat() as chat:
        response = await chat.client.get("/ws")
        assert response.status_code == 426 and response.headers["upgrade"] == "websocket"


async def test_two_people_chat_and_see_each_other() -> None:
    async with (
        in_memory_chat() as chat,
        chat.connect() as alice,
        chat.connect() as bob,
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
    async with in_memory_chat(config) as chat, chat.connect() as alice:
        await alice.join("general", "alice")
        for i in range(5):
            await alice.send(type="say", text=f"m{i}")
            await alice.next("message")
        async with chat.connect() as carol:
            joined = await carol.join("general", "carol")
            assert [m["text"] for m in joined["history"]] == ["m2", "m3", "m4"]
        async with chat.connect() as dave:
            assert dave.hello["rooms"] == [{"name": "general", "count": 1}]
            assert dave.hello["limits"] == {"nick": 24, "room": 32, "text": 1000}


async def test_switching_rooms_leaves_the_first_one() -> None:
    async with (
        in_memory_chat() as chat,
        chat.connect() as alice,
        chat.connect() as bob,
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
    async with in_memory_chat() as chat, chat.connect() as client:
        await client.send(**event)
        error = await client.next("error")
        assert error["code"] == code and error["message"]
        joined = await client.join("still-here", "fine")
        assert joined["type"] == "joined"


async def test_invalid_json_gets_an_error_event() -> None:
    async with in_memory_chat() as chat, chat.connect() as client:
        await client.ws.send("{not json")
        assert (await client.next("error"))["code"] == "bad_json"


async def test_a_taken_nickname_is_refused() -> None:
    async with (
        in_memory_chat() as chat,
        chat.connect() as alice,
        chat.connect() as other,
    ):
        await alice.join("general", "Alice")
        error = await other.join("general", "ALICE")
        assert (error["type"], error["code"]) == ("error", "nick_taken")


async def test_a_reconnecting_tab_takes_its_nickname_back() -> None:
    async with in_memory_chat() as chat, chat.connect() as watcher:
        await watcher.join("general", "watcher")
        async with chat.connect() as old:
            await old.join("general", "alice", client="tab-1")
            async with chat.connect() as new:
                joined = await new.join("general", "alice", client="tab-1")
                assert joined["members"] == ["alice", "watcher"]
                # The stale connection can no longer talk as alice.
                await old.send(type="say", text="ghost")
                assert (await old.next("error"))["code"] == "not_in_room"
                await new.send(type="say", text="back")
                assert (await watcher.next("message"))["text"] == "back"


async def test_a_binary_message_closes_with_1003() -> None:
    async with in_memory_chat() as chat, chat.connect() as client:
        await client.ws.send(b"\x00\x01")
        code, _ = await client.closed()
        assert code == 1003


async def test_a_message_over_the_frame_limit_closes_with_1009() -> None:
    async with in_memory_chat(ChatConfig(max_frame=2048)) as chat, chat.connect() as client:
        await client.send(type="say", text="x" * 4096)
        code, _ = await client.closed()
        assert code == 1009


async def test_flooding_is_rate_limited_then_closed_with_1008() -> None:
    # Refill rates so low that the test's own speed cannot matter.
    config = ChatConfig(rate=0.001, burst=3, strike_rate=0.001, strike_burst=4)
    async with in_memory_chat(config) as chat, chat.connect() as client:
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
    async with in_memory_chat() as chat:
        for origin in ("http://evil.example", None, "null"):
            with pytest.raises(WebSocketRejected) as info:
                async with chat.connect(origin=origin):
                    pass
            assert info.value.response.status_code == 403
            assert "Forbidden" in info.value.response.text
        # The page's own origin (Host header) is fine.
        async with chat.connect() as client:
            assert (await client.join("r", "same"))["type"] == "joined"


async def test_allowed_origins_and_originless_clients_can_be_enabled() -> None:
    config = ChatConfig(allowed_origins=("https://chat.example",), allow_missing_origin=True)
    async with in_memory_chat(config) as chat:
        async with chat.connect(origin="https://chat.example") as client:
            assert (await client.join("r", "a"))["type"] == "joined"
        async with chat.connect(origin=None) as client:
            assert (await client.join("r", "b"))["type"] == "joined"
        with pytest.raises(WebSocketRejected):
            async with chat.connect(origin="https://other.example"):
                pass


async def test_the_rate_limit_refills_with_time(autojump_clock: trio.testing.MockClock) -> None:
    config = ChatConfig(rate=1.0, burst=2, strike_burst=100)
    async with in_memory_chat(config) as chat, chat.connect() as client:
        await client.join("general", "steady")  # one token
        for text in ("a", "b", "c"):
            await client.send(type="say", text=text)
        assert (await client.next("message", "error"))["text"] == "a"
        assert (await client.next("message", "error"))["code"] == "rate_limited"
        assert (await client.next("message", "error"))["code"] == "rate_limited"
        await trio.sleep(1.0)  # one more token
        await client.send(type="say", text="d")
        assert (await client.next("message", "error"))["text"] == "d"


async def test_graceful_shutdown_closes_with_1001_and_empties_the_room() -> None:
    async with in_memory_chat() as chat, chat.connect() as alice:
        await alice.join("general", "alice")
        chat.client.begin_shutdown()
        code, _ = await alice.closed()
        assert code == 1001
        assert await chat.hub.rooms() == []
