"""Keepalive pings and server-drain closes for many sessions, in shared tasks.

A task per session sleeping until its next ping, or waiting for the server to
drain, costs about 3.5 KiB per idle connection (task, coroutine frames, cancel
scope, timer) — a third of the memory budget of a session. Instead:

- one *keeper* task per nursery holds a heap of (deadline, session) and wakes
  at the earliest deadline; at each one the session sends a ping, checks the
  last pong or gives up (:meth:`Kept.keepalive_tick`);
- one *drain watcher* per :class:`~trio_upgrade.core.Shutdown` and nursery
  waits for the drain and starts the 1001 close of every session registered
  with it (:meth:`Kept.drain_close`).

The nursery is one somebody owns: a server's service nursery
(:attr:`trio_upgrade.core.Connection.services`, which lives as long as the
server and is cancelled after its connections end), or else the session's own
(a client's, or the one given to ``websocket_session``). Both tasks hold
sessions through weak references, are told when a session ends, and end when
they have nothing left to watch, so a keeper in a connection's nursery never
keeps that nursery open.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import weakref
from typing import Protocol, final

import trio

from ..core import Shutdown

__all__ = [
    "Drain",
    "Keeper",
    "Kept",
    "start_keepalive",
    "stop_keepalive",
    "unwatch_drain",
    "watch_drain",
]

logger = logging.getLogger("trio_upgrade.ws")


class Kept(Protocol):
    """What the shared tasks need of a session."""

    def keepalive_tick(self, now: float) -> float | None:
        """Ping, check the last pong, or fail the session; return when to call again.

        ``None``: never again (the session is closing).
        """
        ...

    def drain_close(self) -> None:
        """Start the close (1001) of a server that is draining."""
        ...


@final
class Keeper:
    """The keepalive heap of one nursery and the task that serves it."""

    __slots__ = ("counter", "heap", "key", "live", "scope", "sleep")

    def __init__(self, key: trio.Nursery) -> None:
        # (deadline, tie-breaker, weak reference to the session)
        self.heap: list[tuple[float, int, weakref.ref[Kept]]] = []
        self.counter = itertools.count()
        self.key = key
        # Sessions registered and not yet ended; the task ends at zero.
        self.live = 0
        # The task's own scope (cancelled when the last session ends) and its
        # sleep (whose deadline is lowered when an earlier entry arrives).
        self.scope = trio.CancelScope()
        self.sleep: trio.CancelScope | None = None


_KEEPERS: trio.lowlevel.RunVar[dict[trio.Nursery, Keeper]] = trio.lowlevel.RunVar(
    "trio_upgrade_ws_keepers"
)


def _keepers() -> dict[trio.Nursery, Keeper]:
    try:
        return _KEEPERS.get()
    except LookupError:
        keepers: dict[trio.Nursery, Keeper] = {}
        _KEEPERS.set(keepers)
        return keepers


def start_keepalive(session: Kept, when: float, nursery: trio.Nursery) -> Keeper:
    """Call ``session.keepalive_tick(now)`` at *when*, from the keeper running in *nursery*.

    Pair with :func:`stop_keepalive` when the session ends.
    """
    keepers = _keepers()
    keeper = keepers.get(nursery)
    if keeper is None:
        keeper = keepers[nursery] = Keeper(nursery)
        nursery.start_soon(_keep, keeper, keepers, name="trio_upgrade.ws keepalive")
    elif keeper.sleep is not None and when < keeper.sleep.deadline:
        keeper.sleep.deadline = when
    keeper.live += 1
    heapq.heappush(keeper.heap, (when, next(keeper.counter), weakref.ref(session)))
    return keeper


def stop_keepalive(keeper: Keeper) -> None:
    """A session registered with *keeper* ended; the keeper ends with its last one."""
    keeper.live -= 1
    if keeper.live <= 0:
        _retire(keeper, _keepers())


def _retire(keeper: Keeper, keepers: dict[trio.Nursery, Keeper]) -> None:
    keeper.scope.cancel()
    if keepers.get(keeper.key) is keeper:
        # A session starting from now on gets a new keeper.
        del keepers[keeper.key]


async def _keep(keeper: Keeper, keepers: dict[trio.Nursery, Keeper]) -> None:
    heap = keeper.heap
    try:
        with keeper.scope:
            while heap:
                when, _, ref = heap[0]
                now = trio.current_time()
                if when > now:
                    with trio.CancelScope(deadline=when) as keeper.sleep:
                        await trio.sleep_forever()
                    keeper.sleep = None
                    continue
                heapq.heappop(heap)
                session = ref()
                if session is None:
                    continue
                try:
                    following = session.keepalive_tick(now)
                except Exception:
                    logger.exception("keepalive failed")
                    continue
                if following is not None:
                    heapq.heappush(heap, (following, next(keeper.counter), ref))
    finally:
        _retire(keeper, keepers)
        heap.clear()


@final
class Drain:
    """The sessions of one server (and nursery) to close when it drains."""

    __slots__ = ("key", "scope", "sessions")

    def __init__(self, key: tuple[Shutdown, trio.Nursery]) -> None:
        self.key = key
        self.sessions: weakref.WeakSet[Kept] = weakref.WeakSet()
        self.scope = trio.CancelScope()


_DRAINS: trio.lowlevel.RunVar[dict[tuple[Shutdown, trio.Nursery], Drain]] = trio.lowlevel.RunVar(
    "trio_upgrade_ws_drains"
)


def _drains() -> dict[tuple[Shutdown, trio.Nursery], Drain]:
    try:
        return _DRAINS.get()
    except LookupError:
        drains: dict[tuple[Shutdown, trio.Nursery], Drain] = {}
        _DRAINS.set(drains)
        return drains


def watch_drain(session: Kept, shutdown: Shutdown, nursery: trio.Nursery) -> Drain | None:
    """Close *session* with 1001 when *shutdown* begins draining (at once if it has).

    The watcher runs in *nursery*. Returns what to pass to :func:`unwatch_drain`
    when the session ends (None if it was closed at once).
    """
    if shutdown.draining:
        session.drain_close()
        return None
    drains = _drains()
    key = (shutdown, nursery)
    drain = drains.get(key)
    if drain is None:
        drain = drains[key] = Drain(key)
        nursery.start_soon(_watch, shutdown, drain, drains, name="trio_upgrade.ws drain watcher")
    drain.sessions.add(session)
    return drain


def unwatch_drain(session: Kept, drain: Drain) -> None:
    """Forget *session*; the watcher ends with the last session it watches."""
    drain.sessions.discard(session)
    if not drain.sessions:
        drain.scope.cancel()
        drains = _drains()
        if drains.get(drain.key) is drain:
            del drains[drain.key]


async def _watch(
    shutdown: Shutdown, drain: Drain, drains: dict[tuple[Shutdown, trio.Nursery], Drain]
) -> None:
    try:
        with drain.scope:
            await shutdown.wait()
            for session in list(drain.sessions):
                try:
                    session.drain_close()
                except Exception:  # pragma: no cover - drain_close does not raise
                    logger.exception("closing a session for the drain failed")
    finally:
        if drains.get(drain.key) is drain:
            del drains[drain.key]
