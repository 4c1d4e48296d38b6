"""The hub: rooms, presence, recent history and fan-out — one interface, two back ends.

::

    session ──join/say/leave──► Hub ──► storage (MemoryHub: dicts; RedisHub: Lua scripts)
                                 │                          │
    session ◄──deliver(payload)──┴──── room events ◄────────┘ (RedisHub: via pub/sub)

Every change to a room (a message, a join, a leave) gets the room's next
sequence number *atomically with the change*, and a join returns a snapshot
(members, last messages) taken at its own sequence number. A subscriber that
has just joined ignores events numbered at or below its snapshot and holds
those that arrive before the snapshot itself, so it sees every event exactly
once and in order — even when, with Redis, events from other processes race
with the join.

Delivery never blocks: :meth:`Subscriber.deliver` queues the payload (already
encoded JSON, shared by all subscribers) or, when the subscriber's queue is
full, closes that subscriber. One slow client never slows a room down.
"""

from __future__ import annotations

import abc
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol, final

import trio

from ._config import ChatConfig
from ._protocol import encode, fold_nick

__all__ = [
    "Hub",
    "HubUnavailable",
    "JoinRefused",
    "Member",
    "MemoryHub",
    "Snapshot",
    "Subscriber",
    "joined_event",
    "message_head",
    "open_hub",
    "presence_head",
    "room_event",
]

# Events a subscriber may hold while its join snapshot is on its way; past
# this it cannot be brought up to date and is dropped like a slow client.
_PENDING_LIMIT = 1000
# Rooms listed in a hello event (the busiest first).
ROOM_LIST_LIMIT = 100


class Subscriber(Protocol):
    """What the hub delivers to: one client connection."""

    def deliver(self, payload: str) -> None:
        """Queue *payload* (one encoded event) for the client. Never blocks; a
        subscriber that cannot take it closes itself (1013)."""

    def drop(self, reason: str) -> None:
        """The hub cannot keep this subscriber up to date: close it (1013)."""


@dataclass(frozen=True, slots=True)
class Member:
    """Someone in a room: *nick* as typed, *key* unique to the connection (across
    processes), *client* the tab's id if it sent one (to reclaim the nick)."""

    nick: str
    key: str
    client: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A room as a joining member first sees it, at sequence number *seq*."""

    room: str
    seq: int
    members: tuple[str, ...]
    history: tuple[str, ...]
    """Encoded ``message`` events, oldest first."""


class JoinRefused(Exception):
    """The hub refused a join; *code* is the error code for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HubUnavailable(Exception):
    """The hub's storage cannot be reached (Redis down): try again later."""


# Event payloads. Those with a sequence number are built as a JSON "head"
# without its closing brace, so that the storage (a Lua script, for Redis) can
# append the numbers it assigns atomically.


def message_head(room: str, nick: str, text: str, ts: int) -> str:
    return encode({"type": "message", "room": room, "nick": nick, "text": text, "ts": ts})[:-1]


def presence_head(room: str, action: str, nick: str) -> str:
    return encode({"type": "presence", "room": room, "action": action, "nick": nick})[:-1]


def room_event(room: str, count: int) -> str:
    return encode({"type": "room", "name": room, "count": count})


def joined_event(snapshot: Snapshot, nick: str) -> str:
    """The ``joined`` event: the snapshot, its history spliced in already encoded."""
    head = encode(
        {
            "type": "joined",
            "room": snapshot.room,
            "nick": nick,
            "seq": snapshot.seq,
            "members": list(snapshot.members),
        }
    )[:-1]
    return f'{head},"history":[{",".join(snapshot.history)}]}}'


def sort_members(nicks: list[str]) -> tuple[str, ...]:
    return tuple(sorted(nicks, key=fold_nick))


def now_ms() -> int:
    return int(time.time() * 1000)


@final
class _Watch:
    """A subscriber's place in a room: its snapshot's number, or events held until it comes."""

    __slots__ = ("pending", "seq")

    def __init__(self) -> None:
        self.seq: int | None = None
        self.pending: list[tuple[int, str]] = []


class Hub(abc.ABC):
    """Rooms, presence, recent history and fan-out to this process's subscribers.

    The fan-out (which subscriber gets which event, in which order) lives here;
    the storage and the cross-process transport are the subclass's:
    :class:`MemoryHub` keeps everything in this process, :class:`RedisHub`
    keeps it in Redis and hears other processes' events through pub/sub.
    Subclasses call :meth:`_dispatch` and :meth:`_dispatch_lobby` for every
    event, their own included.

    Methods that touch storage may raise :class:`HubUnavailable`.
    """

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        # room -> subscriber -> its watch, for this process's subscribers only.
        self._watches: dict[str, dict[Subscriber, _Watch]] = {}
        # Every connected subscriber gets room-count updates for the room list.
        self._lobby: set[Subscriber] = set()

    # -- what sessions call --------------------------------------------------

    def connect(self, subscriber: Subscriber) -> None:
        """Start sending *subscriber* room-list updates (``room`` events)."""
        self._lobby.add(subscriber)

    def disconnect(self, subscriber: Subscriber) -> None:
        self._lobby.discard(subscriber)

    async def join(self, room: str, member: Member, subscriber: Subscriber) -> Snapshot:
        """Add *member* to *room* and deliver the ``joined`` event, then the room's
        events as they come. Raises :class:`JoinRefused` (nickname taken, too
        many rooms) or :class:`HubUnavailable`; the subscriber then gets nothing."""
        watch = _Watch()
        self._watches.setdefault(room, {})[subscriber] = watch
        try:
            snapshot = await self._join(room, member)
        except BaseException:
            self._unwatch(room, subscriber)
            raise
        if self._watches.get(room, {}).get(subscriber) is not watch:
            # Left (or joined elsewhere) while this join was in flight.
            return snapshot
        subscriber.deliver(joined_event(snapshot, member.nick))
        watch.seq = snapshot.seq
        for seq, payload in watch.pending:
            if seq > snapshot.seq:
                subscriber.deliver(payload)
        watch.pending = []
        return snapshot

    async def leave(self, room: str, member: Member, subscriber: Subscriber) -> None:
        """Remove *member* from *room* (if it is still this connection's entry) and
        stop delivering the room's events. Safe to call after a failed join."""
        self._unwatch(room, subscriber)
        await self._leave(room, member)

    async def say(self, room: str, member: Member, text: str) -> bool:
        """Post *text* in *room* as *member*; ``False`` if *member* is no longer in
        the room (its nickname was reclaimed by a newer connection, or it was
        expired after its process was lost)."""
        return await self._say(room, member, text, now_ms())

    @abc.abstractmethod
    async def rooms(self) -> list[tuple[str, int]]:
        """Rooms with people in them and how many, the busiest first (at most 100)."""

    # -- storage, per back end -----------------------------------------------

    @abc.abstractmethod
    async def _join(self, room: str, member: Member) -> Snapshot: ...

    @abc.abstractmethod
    async def _leave(self, room: str, member: Member) -> None: ...

    @abc.abstractmethod
    async def _say(self, room: str, member: Member, text: str, ts: int) -> bool: ...

    # -- fan-out -------------------------------------------------------------

    def _unwatch(self, room: str, subscriber: Subscriber) -> None:
        watches = self._watches.get(room)
        if watches is not None:
            watches.pop(subscriber, None)
            if not watches:
                del self._watches[room]

    def _dispatch(self, room: str, seq: int, payload: str) -> None:
        """Event number *seq* of *room* happened: deliver it to local subscribers."""
        watches = self._watches.get(room)
        if not watches:
            return
        for subscriber, watch in watches.items():
            if watch.seq is not None:
                if seq > watch.seq:
                    subscriber.deliver(payload)
            elif len(watch.pending) < _PENDING_LIMIT:
                watch.pending.append((seq, payload))
            else:
                subscriber.drop("too slow: the room moved on while joining")

    def _dispatch_lobby(self, payload: str) -> None:
        for subscriber in self._lobby:
            subscriber.deliver(payload)


@final
class _Room:
    __slots__ = ("history", "members", "seq")

    def __init__(self, history: int) -> None:
        # Folded nickname -> member.
        self.members: dict[str, Member] = {}
        self.history: deque[str] = deque(maxlen=history)
        self.seq = 0


@final
class MemoryHub(Hub):
    """The hub of a single process: rooms live in memory, gone on restart.

    Keeps at most ``max_rooms`` rooms (with their history); when full, the
    least recently used empty room is forgotten to make space, and a join
    to a new room is refused when every room has people in it.
    """

    def __init__(self, config: ChatConfig | None = None) -> None:
        super().__init__(config or ChatConfig())
        # Insertion order is recency of use: the first empty room is evicted first.
        self._rooms: dict[str, _Room] = {}

    def _room(self, name: str, *, create: bool) -> _Room | None:
        state = self._rooms.pop(name, None)
        if state is None:
            if not create:
                return None
            if len(self._rooms) >= self.config.max_rooms:
                empty = next((k for k, r in self._rooms.items() if not r.members), None)
                if empty is None:
                    raise JoinRefused("too_many_rooms", "too many rooms are open: join one of them")
                del self._rooms[empty]
            state = _Room(self.config.history)
        self._rooms[name] = state
        return state

    async def _join(self, room: str, member: Member) -> Snapshot:
        await trio.lowlevel.checkpoint()
        state = self._room(room, create=True)
        assert state is not None
        fold = fold_nick(member.nick)
        current = state.members.get(fold)
        if current is not None and (member.client is None or current.client != member.client):
            raise JoinRefused("nick_taken", f"{current.nick} is already in #{room}")
        state.members[fold] = member
        state.seq += 1
        count = len(state.members)
        self._dispatch(
            room,
            state.seq,
            f'{presence_head(room, "join", member.nick)},"seq":{state.seq},"count":{count}}}',
        )
        self._dispatch_lobby(room_event(room, count))
        members = sort_members([m.nick for m in state.members.values()])
        return Snapshot(room, state.seq, members, tuple(state.history))

    async def _leave(self, room: str, member: Member) -> None:
        await trio.lowlevel.checkpoint()
        state = self._rooms.get(room)
        if state is None:
            return
        fold = fold_nick(member.nick)
        current = state.members.get(fold)
        if current is None or current.key != member.key:
            return  # reclaimed by a newer connection of the same tab
        del state.members[fold]
        state.seq += 1
        count = len(state.members)
        self._dispatch(
            room,
            state.seq,
            f'{presence_head(room, "leave", member.nick)},"seq":{state.seq},"count":{count}}}',
        )
        self._dispatch_lobby(room_event(room, count))

    async def _say(self, room: str, member: Member, text: str, ts: int) -> bool:
        await trio.lowlevel.checkpoint()
        state = self._room(room, create=False)
        if state is None:
            return False
        current = state.members.get(fold_nick(member.nick))
        if current is None or current.key != member.key:
            return False
        state.seq += 1
        payload = f'{message_head(room, member.nick, text, ts)},"seq":{state.seq}}}'
        state.history.append(payload)
        self._dispatch(room, state.seq, payload)
        return True

    async def rooms(self) -> list[tuple[str, int]]:
        await trio.lowlevel.checkpoint()
        busy = [(name, len(r.members)) for name, r in self._rooms.items() if r.members]
        busy.sort(key=lambda item: (-item[1], item[0]))
        return busy[:ROOM_LIST_LIMIT]


@asynccontextmanager
async def open_hub(config: ChatConfig, redis_url: str | None = None) -> AsyncIterator[Hub]:
    """A :class:`MemoryHub`, or with *redis_url* a running :class:`RedisHub`
    (connected, subscribed; stopped when the block ends)."""
    if redis_url is None:
        await trio.lowlevel.checkpoint()
        yield MemoryHub(config)
        return
    from ._redis import RedisHub  # coredis is only needed for scale-out

    async with RedisHub.open(redis_url, config) as hub:
        yield hub
