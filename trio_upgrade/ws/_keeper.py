"""Keepalive pings and server-drain closes for all sessions of a trio run, in shared tasks.

A task per session sleeping until its next ping, or waiting for the server to
drain, costs about 3.5 KiB per idle connection (task, coroutine frames, cancel
scope, timer) — a third of the memory budget of a session. Instead:

- one *keeper* task per trio run holds a heap of (deadline, session) and wakes
  at the earliest deadline; a session's entry says "send a ping" or "check the
  pong" (see ``WebSocket._keepalive_tick``);
- one *drain watcher* per :class:`~trio_upgrade.core.Shutdown` waits for the
  drain and starts the 1001 close of every session registered with it.

Both are trio system tasks: services of the run, not of one connection. They
exit when they have nothing left to watch, hold sessions only through weak
references, and never let an exception out (a system task's exception would
crash the run).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import weakref
from collections.abc import Awaitable
from typing import Protocol, final

import trio

from ..core import Shutdown

__all__ = ["schedule_keepalive", "unwatch_drain", "watch_drain"]

logger = logging.getLogger("trio_upgrade.ws")


class _Kept(Protocol):
    def _keepalive_tick(self, now: float) -> Awaitable[float | None]: ...

    def _start_close(self, code: int, reason: str) -> None: ...


@final
class _Keeper:
    __slots__ = ("counter", "heap", "running", "scope")

    def __init__(self) -> None:
        # (deadline, tie-breaker, weak reference to the session)
        self.heap: list[tuple[float, int, weakref.ref[_Kept]]] = []
        self.counter = itertools.count()
        # The keeper's sleep; its deadline is lowered when an earlier entry arrives.
        self.scope: trio.CancelScope | None = None
        self.running = False


_KEEPER: trio.lowlevel.RunVar[_Keeper] = trio.lowlevel.RunVar("trio_upgrade_ws_keeper")


def schedule_keepalive(session: _Kept, when: float) -> None:
    """Call ``session._keepalive_tick(now)`` at *when* (it returns its next time, or None)."""
    try:
        keeper = _KEEPER.get()
    except LookupError:
        keeper = _Keeper()
        _KEEPER.set(keeper)
    heapq.heappush(keeper.heap, (when, next(keeper.counter), weakref.ref(session)))
    if not keeper.running:
        keeper.running = True
        trio.lowlevel.spawn_system_task(_keep, keeper, name="trio_upgrade.ws keepalive")
    elif keeper.scope is not None and when < keeper.scope.deadline:
        keeper.scope.deadline = when


async def _keep(keeper: _Keeper) -> None:
    heap = keeper.heap
    try:
        while heap:
            when, _, ref = heap[0]
            now = trio.current_time()
            if when > now:
                with trio.CancelScope(deadline=when) as keeper.scope:
                    await trio.sleep_forever()
                keeper.scope = None
                continue
            heapq.heappop(heap)
            session = ref()
            if session is None:
                continue
            try:
                following = await session._keepalive_tick(now)
            except Exception:
                logger.exception("keepalive failed")
                continue
            if following is not None:
                heapq.heappush(heap, (following, next(keeper.counter), ref))
    finally:
        keeper.running = False
        keeper.scope = None


@final
class _Drain:
    __slots__ = ("scope", "sessions")

    def __init__(self) -> None:
        self.sessions: weakref.WeakSet[_Kept] = weakref.WeakSet()
        self.scope = trio.CancelScope()


_DRAINS: trio.lowlevel.RunVar[dict[Shutdown, _Drain]] = trio.lowlevel.RunVar(
    "trio_upgrade_ws_drains"
)


def watch_drain(session: _Kept, shutdown: Shutdown) -> None:
    """Close *session* with 1001 when *shutdown* begins draining (at once if it has)."""
    if shutdown.draining:
        session._start_close(1001, "server shutting down")
        return
    try:
        drains = _DRAINS.get()
    except LookupError:
        drains = {}
        _DRAINS.set(drains)
    drain = drains.get(shutdown)
    if drain is None:
        drain = drains[shutdown] = _Drain()
        trio.lowlevel.spawn_system_task(
            _watch, shutdown, drain, drains, name="trio_upgrade.ws drain watcher"
        )
    drain.sessions.add(session)


def unwatch_drain(session: _Kept, shutdown: Shutdown) -> None:
    """Forget *session*; the watcher ends with the last session of its server."""
    try:
        drains = _DRAINS.get()
    except LookupError:
        return
    drain = drains.get(shutdown)
    if drain is None:
        return
    drain.sessions.discard(session)
    if not drain.sessions:
        drain.scope.cancel()
        del drains[shutdown]


async def _watch(shutdown: Shutdown, drain: _Drain, drains: dict[Shutdown, _Drain]) -> None:
    with drain.scope:
        await shutdown.wait()
        if drains.get(shutdown) is drain:
            del drains[shutdown]
        for session in list(drain.sessions):
            try:
                session._start_close(1001, "server shutting down")
            except Exception:  # pragma: no cover - _start_close does not raise
                logger.exception("closing a session for the drain failed")
