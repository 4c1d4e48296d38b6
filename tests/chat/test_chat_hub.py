"""The in-memory hub: sequence numbers, snapshots, presence, history, nicknames, fan-out."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from _chat_helpers import REPO  # noqa: F401  (puts the repository on sys.path)

from examples.chat import ChatConfig, Hub, JoinRefused, Member, MemoryHub, Snapshot


class Recorder:
    """A subscriber that keeps what it is given; *capacity* mimics a bounded queue."""

    def __init__(self, capacity: int | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.dropped: str | None = None
        self.capacity = capacity

    def deliver(self, payload: str) -> None:
        if self.capacity is not None and len(self.events) >= self.capacity:
            self.drop("full")
            return
        self.events.append(json.loads(payload))

    def drop(self, reason: str) -> None:
        self.dropped = reason

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def test_join_delivers_a_snapshot_and_others_see_the_join() -> None:
    hub = MemoryHub()
    a, b = Recorder(), Recorder()
    await hub.join("r", Member("alice", "k1"), a)
    snapshot = await hub.join("r", Member("bob", "k2"), b)
    assert snapshot.members == ("alice", "bob") and snapshot.seq == 2
    assert b.of("joined")[0]["members"] == ["alice", "bob"]
    # bob does not get his own join event (it is in his snapshot); alice does.
    assert b.of("presence") == []
    assert a.of("presence") == [
        {"type": "presence", "room": "r", "action": "join", "nick": "bob", "seq": 2, "count": 2}
    ]


async def test_messages_reach_every_member_in_order_with_increasing_seq() -> None:
    hub = MemoryHub()
    a, b = Recorder(), Recorder()
    alice, bob = Member("alice", "k1"), Member("bob", "k2")
    await hub.join("r", alice, a)
    await hub.join("r", bob, b)
    for i in range(5):
        assert await hub.say("r", alice if i % 2 else bob, f"m{i}")
    for rec in (a, b):
        texts = [(e["nick"], e["text"]) for e in rec.of("message")]
        assert texts == [
            ("bob", "m0"),
            ("alice", "m1"),
            ("bob", "m2"),
            ("alice", "m3"),
            ("bob", "m4"),
        ]
        seqs = [e["seq"] for e in rec.events if "seq" in e and e["type"] != "joined"]
        assert seqs == sorted(seqs)


async def test_history_keeps_the_last_n_messages() -> None:
    hub = MemoryHub(ChatConfig(history=3))
    alice = Member("alice", "k1")
    await hub.join("r", alice, Recorder())
    for i in range(5):
        await hub.say("r", alice, f"m{i}")
    late = Recorder()
    snapshot = await hub.join("r", Member("bob", "k2"), late)
    assert [json.loads(m)["text"] for m in snapshot.history] == ["m2", "m3", "m4"]
    assert [m["text"] for m in late.of("joined")[0]["history"]] == ["m2", "m3", "m4"]


async def test_leave_updates_presence_and_room_counts() -> None:
    hub = MemoryHub()
    a, b, lobby = Recorder(), Recorder(), Recorder()
    hub.connect(lobby)
    alice, bob = Member("alice", "k1"), Member("bob", "k2")
    await hub.join("r", alice, a)
    await hub.join("r", bob, b)
    await hub.leave("r", bob, b)
    assert a.of("presence")[-1] == {
        "type": "presence",
        "room": "r",
        "action": "leave",
        "nick": "bob",
        "seq": 3,
        "count": 1,
    }
    assert [e["count"] for e in lobby.of("room")] == [1, 2, 1]
    assert await hub.rooms() == [("r", 1)]
    # bob no longer gets the room's events.
    await hub.say("r", alice, "after")
    assert b.of("message") == []
    await hub.leave("r", alice, a)
    assert await hub.rooms() == []


async def test_a_nickname_is_unique_per_room_ignoring_case() -> None:
    hub = MemoryHub()
    await hub.join("r", Member("Alice", "k1"), Recorder())
    intruder = Recorder()
    with pytest.raises(JoinRefused) as info:
        await hub.join("r", Member("aLICE", "k2"), intruder)
    assert info.value.code == "nick_taken"
    assert intruder.events == []
    # Another room is fine.
    await hub.join("other", Member("alice", "k3"), Recorder())


async def test_the_same_tab_reclaims_its_nickname_and_the_old_connection_goes_quiet() -> None:
    hub = MemoryHub()
    old, new, watcher = Recorder(), Recorder(), Recorder()
    await hub.join("r", Member("watcher", "k0"), watcher)
    old_member = Member("alice", "k1", client="tab1")
    await hub.join("r", old_member, old)
    new_member = Member("alice", "k2", client="tab1")
    snapshot = await hub.join("r", new_member, new)
    assert snapshot.members == ("alice", "watcher")
    # The old connection can no longer speak as alice, and its leave changes nothing.
    assert not await hub.say("r", old_member, "ghost")
    await hub.leave("r", old_member, old)
    assert await hub.rooms() == [("r", 2)]
    assert await hub.say("r", new_member, "back")
    assert watcher.of("message")[-1]["text"] == "back"
    # A different tab cannot take it.
    with pytest.raises(JoinRefused):
        await hub.join("r", Member("alice", "k3", client="tab2"), Recorder())


async def test_too_many_rooms_evicts_empty_ones_then_refuses() -> None:
    hub = MemoryHub(ChatConfig(max_rooms=2))
    a, b = Member("a", "k1"), Member("b", "k2")
    rec = Recorder()
    await hub.join("one", a, rec)
    await hub.say("one", a, "forgotten")
    await hub.leave("one", a, rec)
    await hub.join("two", b, rec)
    await hub.join("three", Member("c", "k3"), Recorder())  # evicts "one", which is empty
    with pytest.raises(JoinRefused) as info:
        await hub.join("four", Member("d", "k4"), Recorder())
    assert info.value.code == "too_many_rooms"
    await hub.leave("two", b, rec)
    snapshot = await hub.join("one", Member("e", "k5"), Recorder())  # evicts "two"
    assert snapshot.history == () and snapshot.seq == 1


async def test_say_after_leaving_is_refused() -> None:
    hub = MemoryHub()
    alice = Member("alice", "k1")
    rec = Recorder()
    await hub.join("r", alice, rec)
    await hub.leave("r", alice, rec)
    assert not await hub.say("r", alice, "hello?")
    assert not await hub.say("nowhere", alice, "hello?")


async def test_a_full_subscriber_is_dropped_and_the_others_still_get_everything() -> None:
    hub = MemoryHub()
    slow, fast = Recorder(capacity=3), Recorder()
    alice = Member("alice", "k1")
    await hub.join("r", alice, fast)
    await hub.join("r", Member("slow", "k2"), slow)
    for i in range(10):
        await hub.say("r", alice, f"m{i}")
    assert slow.dropped is not None
    assert [e["text"] for e in fast.of("message")] == [f"m{i}" for i in range(10)]


async def test_events_racing_a_join_are_held_then_filtered_by_the_snapshot() -> None:
    """What RedisHub relies on: events dispatched while a join is in flight."""

    class RacingHub(Hub):
        """MemoryHub's storage; events of "other processes" arrive while a join waits."""

        def __init__(self) -> None:
            super().__init__(ChatConfig())
            self.storage = MemoryHub()

        async def _join(self, room: str, member: Member) -> Snapshot:
            snapshot = await self.storage._join(room, member)
            self._dispatch(room, snapshot.seq - 1, '{"type":"message","text":"old"}')
            self._dispatch(room, snapshot.seq, '{"type":"message","text":"own"}')
            self._dispatch(room, snapshot.seq + 1, '{"type":"message","text":"new"}')
            await trio.lowlevel.checkpoint()
            return snapshot

        async def _leave(self, room: str, member: Member) -> None:
            await self.storage._leave(room, member)

        async def _say(self, room: str, member: Member, text: str, ts: int) -> bool:
            return await self.storage._say(room, member, text, ts)

        async def rooms(self) -> list[tuple[str, int]]:
            return await self.storage.rooms()

    hub = RacingHub()
    rec = Recorder()
    await hub.join("r", Member("alice", "k1"), rec)
    assert [e["type"] for e in rec.events] == ["joined", "message"]
    assert rec.events[1]["text"] == "new"
