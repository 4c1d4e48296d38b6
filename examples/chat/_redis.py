"""The Redis hub: several chat processes share rooms, presence and history.

State lives in Redis under a key prefix (``chat:`` by default)::

    chat:room:<name>:members   hash   folded nickname -> {"nick","key","client","node"}
    chat:room:<name>:history   list   the last N message events (encoded JSON)
    chat:room:<name>:seq       string the room's event counter
    chat:rooms                 zset   room -> people in it (rooms with people only)
    chat:node:<id>             string one per process, expires unless refreshed
    chat:events                channel "<room>\\n<seq>\\n<event>" ("" room: a room-list update)

Every change is one Lua script, so that the change, its sequence number and
its ``PUBLISH`` happen atomically: every process sees a room's events in one
order, and a join's snapshot is consistent with the events after it.

Each process refreshes its node key every ``heartbeat`` seconds; members of a
process whose key expired (the process died without saying goodbye) are
removed by whichever process's reaper sees it first, with the usual leave
events. The coredis client is built on anyio and runs on Trio as is.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, final

import coredis
import trio
from coredis.exceptions import RedisError

from ._config import ChatConfig
from ._hub import (
    ROOM_LIST_LIMIT,
    Hub,
    HubUnavailable,
    JoinRefused,
    Member,
    Snapshot,
    message_head,
    presence_head,
    room_event,
    sort_members,
)
from ._protocol import fold_nick

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup

__all__ = ["RedisHub"]

logger = logging.getLogger("examples.chat")

# Seconds an empty room's history (and counter) is kept after the last one leaves.
_ROOM_TTL = 24 * 3600

# KEYS: members, history, seq, rooms, channel
# ARGV: room, folded nick, member JSON, client id or "", node key prefix,
#       max rooms, history length, presence head, room-event head
_JOIN = """
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if cur then
  local c = cjson.decode(cur)
  local same_tab = ARGV[4] ~= '' and c.client == ARGV[4]
  if not same_tab and redis.call('EXISTS', ARGV[5] .. c.node) == 1 then
    return {'taken', c.nick}
  end
elseif not redis.call('ZSCORE', KEYS[4], ARGV[1])
    and redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then
  return {'full'}
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local count = redis.call('HLEN', KEYS[1])
redis.call('ZADD', KEYS[4], count, ARGV[1])
local seq = redis.call('INCR', KEYS[3])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('PUBLISH', KEYS[5], ARGV[1] .. '\\n' .. seq .. '\\n' .. ARGV[8]
  .. ',"seq":' .. seq .. ',"count":' .. count .. '}')
redis.call('PUBLISH', KEYS[5], '\\n0\\n' .. ARGV[9] .. ',"count":' .. count .. '}')
local n = tonumber(ARGV[7])
local history = {}
if n > 0 then history = redis.call('LRANGE', KEYS[2], -n, -1) end
return {'ok', seq, redis.call('HVALS', KEYS[1]), history}
"""

# KEYS: members, history, seq, rooms, channel
# ARGV: room, folded nick, member key, presence head, room TTL, room-event head
_LEAVE = """
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if not cur or cjson.decode(cur).key ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
local count = redis.call('HLEN', KEYS[1])
local seq = redis.call('INCR', KEYS[3])
if count == 0 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
else
  redis.call('ZADD', KEYS[4], count, ARGV[1])
end
redis.call('PUBLISH', KEYS[5], ARGV[1] .. '\\n' .. seq .. '\\n' .. ARGV[4]
  .. ',"seq":' .. seq .. ',"count":' .. count .. '}')
redis.call('PUBLISH', KEYS[5], '\\n0\\n' .. ARGV[6] .. ',"count":' .. count .. '}')
return 1
"""

# KEYS: members, history, seq, channel
# ARGV: room, folded nick, member key, message head, history length
_SAY = """
local cur = redis.call('HGET', KEYS[1], ARGV[2])
if not cur or cjson.decode(cur).key ~= ARGV[3] then return 0 end
local seq = redis.call('INCR', KEYS[3])
local msg = ARGV[4] .. ',"seq":' .. seq .. '}'
local n = tonumber(ARGV[5])
if n > 0 then
  redis.call('RPUSH', KEYS[2], msg)
  redis.call('LTRIM', KEYS[2], -n, -1)
end
redis.call('PUBLISH', KEYS[4], ARGV[1] .. '\\n' .. seq .. '\\n' .. msg)
return seq
"""


def _storage_failure(exc: BaseException) -> bool:
    # coredis runs its connections in anyio task groups: on Trio a refused
    # connection arrives wrapped in (nested) exception groups.
    if isinstance(exc, BaseExceptionGroup):
        return all(_storage_failure(e) for e in exc.exceptions)
    return isinstance(exc, (RedisError, OSError))


def _single_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _room_head(room: str) -> str:
    return room_event(room, 0)[: -len(',"count":0}')]


@final
class RedisHub(Hub):
    """A :class:`Hub` whose rooms live in Redis; make it with :meth:`open`.

    Storage errors (Redis unreachable) raise :class:`HubUnavailable`; the
    pub/sub subscription reconnects by itself (events published meanwhile
    are missed, and a client catches up when it next joins).
    """

    def __init__(
        self,
        client: coredis.Redis[str],
        config: ChatConfig,
        *,
        prefix: str = "chat:",
        heartbeat: float = 5.0,
    ) -> None:
        super().__init__(config)
        self._client = client
        self._prefix = prefix
        self._heartbeat = heartbeat
        # This process: its members are reaped if its node key expires.
        self.node = secrets.token_hex(8)
        self._channel = f"{prefix}events"
        self._join_script = client.register_script(_JOIN)
        self._leave_script = client.register_script(_LEAVE)
        self._say_script = client.register_script(_SAY)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        config: ChatConfig,
        *,
        prefix: str = "chat:",
        heartbeat: float = 5.0,
    ) -> AsyncIterator[RedisHub]:
        """Connect to *url* (``redis://host:port/db``), subscribe, start the
        heartbeat and the reaper; stop them and forget this node at the end.

        Raises :class:`HubUnavailable` if Redis cannot be reached at start.
        """
        try:
            async with cls._open(url, config, prefix=prefix, heartbeat=heartbeat) as hub:
                yield hub
        except ExceptionGroup as group:
            # The client's task groups wrap whatever crosses them, the body's
            # exceptions included: hand a lone exception over as itself.
            leaf = _single_leaf(group)
            if leaf is group:
                raise
            raise leaf from None

    @classmethod
    @asynccontextmanager
    async def _open(
        cls, url: str, config: ChatConfig, *, prefix: str, heartbeat: float
    ) -> AsyncIterator[RedisHub]:
        client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
        async with client:
            hub = cls(client, config, prefix=prefix, heartbeat=heartbeat)
            await hub._beat()
            pubsub = client.pubsub(channels=[hub._channel], ignore_subscribe_messages=True)
            async with pubsub, trio.open_nursery() as nursery:
                nursery.start_soon(hub._listen, pubsub)
                nursery.start_soon(hub._beat_forever)
                nursery.start_soon(hub._reap_forever)
                try:
                    yield hub
                finally:
                    nursery.cancel_scope.cancel()
                    with trio.move_on_after(2, shield=True):
                        # Others reap whatever members we still had at once.
                        await hub._call(client.delete([hub._node_key(hub.node)]))

    # -- keys ------------------------------------------------------------------

    def _node_key(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    def _room_keys(self, room: str) -> list[str]:
        base = f"{self._prefix}room:{room}:"
        return [base + "members", base + "history", base + "seq", f"{self._prefix}rooms"]

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except Exception as exc:
            if _storage_failure(exc):
                raise HubUnavailable(f"redis: {_single_leaf(exc)}") from exc
            raise

    # -- storage ---------------------------------------------------------------

    async def _join(self, room: str, member: Member) -> Snapshot:
        value = json.dumps(
            {"nick": member.nick, "key": member.key, "client": member.client, "node": self.node}
        )
        result = await self._call(
            self._join_script(
                [*self._room_keys(room), self._channel],
                [
                    room,
                    fold_nick(member.nick),
                    value,
                    member.client or "",
                    self._node_key(""),
                    self.config.max_rooms,
                    self.config.history,
                    presence_head(room, "join", member.nick),
                    _room_head(room),
                ],
            )
        )
        status = result[0]
        if status == "taken":
            raise JoinRefused("nick_taken", f"{result[1]} is already in #{room}")
        if status == "full":
            raise JoinRefused("too_many_rooms", "too many rooms are open: try an existing one")
        _, seq, members, history = result
        nicks = [json.loads(raw)["nick"] for raw in members]
        return Snapshot(room, int(seq), sort_members(nicks), tuple(history))

    async def _leave(self, room: str, member: Member) -> None:
        await self._leave_entry(room, member.nick, member.key)

    async def _leave_entry(self, room: str, nick: str, key: str) -> None:
        await self._call(
            self._leave_script(
                [*self._room_keys(room), self._channel],
                [
                    room,
                    fold_nick(nick),
                    key,
                    presence_head(room, "leave", nick),
                    _ROOM_TTL,
                    _room_head(room),
                ],
            )
        )

    async def _say(self, room: str, member: Member, text: str, ts: int) -> bool:
        members, history, seq, _ = self._room_keys(room)
        result = await self._call(
            self._say_script(
                [members, history, seq, self._channel],
                [
                    room,
                    fold_nick(member.nick),
                    member.key,
                    message_head(room, member.nick, text, ts),
                    self.config.history,
                ],
            )
        )
        return bool(result)

    async def rooms(self) -> list[tuple[str, int]]:
        scored = await self._call(
            self._client.zrange(f"{self._prefix}rooms", 0, -1, withscores=True)
        )
        busy = [(str(m.member), int(m.score)) for m in scored if m.score > 0]
        busy.sort(key=lambda item: (-item[1], item[0]))
        return busy[:ROOM_LIST_LIMIT]

    # -- background tasks ------------------------------------------------------

    async def _listen(self, pubsub: coredis.patterns.pubsub.PubSub[str]) -> None:
        async for message in pubsub:
            data = message["data"]
            if not isinstance(data, str):
                continue
            room, _, rest = data.partition("\n")
            seq, _, payload = rest.partition("\n")
            if not room:
                self._dispatch_lobby(payload)
            elif seq.isdigit():
                self._dispatch(room, int(seq), payload)

    async def _beat(self) -> None:
        ttl = max(3, int(self._heartbeat * 3))
        await self._call(self._client.set(self._node_key(self.node), "1", ex=ttl))

    async def _beat_forever(self) -> None:
        while True:
            await trio.sleep(self._heartbeat)
            try:
                await self._beat()
            except HubUnavailable as exc:
                logger.warning("heartbeat failed: %s", exc)

    async def _reap_forever(self) -> None:
        while True:
            try:
                await self.reap()
            except HubUnavailable as exc:
                logger.warning("reaper failed: %s", exc)
            await trio.sleep(self._heartbeat)

    async def reap(self) -> int:
        """Remove members of processes whose node key expired; return how many."""
        rooms = await self._call(self._client.zrange(f"{self._prefix}rooms", 0, -1))
        alive: dict[str, bool] = {self.node: True}
        reaped = 0
        for room in rooms:
            members_key = self._room_keys(room)[0]
            entries: Sequence[str] = await self._call(self._client.hvals(members_key))
            for raw in entries:
                entry = json.loads(raw)
                node = entry["node"]
                if node not in alive:
                    alive[node] = bool(
                        await self._call(self._client.exists([self._node_key(node)]))
                    )
                if not alive[node]:
                    await self._leave_entry(room, entry["nick"], entry["key"])
                    reaped += 1
        return reaped
