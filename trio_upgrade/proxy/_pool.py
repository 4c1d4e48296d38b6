"""Keep-alive connections to backends, reused from a bounded pool."""

from __future__ import annotations

import math
from collections import deque
from typing import final

import h11
import trio

from .._wire._errors import TrioUpgradeError
from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BadBackendResponse

__all__ = ["BackendConnection", "ConnectionPool", "Stale"]


class Stale(TrioUpgradeError):
    """A reused connection turned out closed before a byte of our response came."""


def _limit(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


@final
class BackendConnection:
    """One connection to a backend: the socket stream and its h11 client state.

    Not safe for two tasks to send at once or receive at once; one sender
    and one receiver (the upload and the response reader) may overlap.
    """

    __slots__ = (
        "backend",
        "h11",
        "idle_since",
        "max_head_size",
        "read_size",
        "received",
        "reusable",
        "reused",
        "stream",
    )

    def __init__(self, backend: Backend, stream: trio.SocketStream, config: ProxyConfig) -> None:
        self.backend = backend
        self.stream = stream
        self.h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=config.max_response_head_size
        )
        self.read_size = config.read_size
        # h11 bounds only a head that is still incomplete; one that arrives
        # whole in a single read is measured by read_head().
        self.max_head_size = config.max_response_head_size
        # False once a response's framing was in doubt (both Content-Length and
        # Transfer-Encoding, a 204 that declared a body...): never pooled again.
        self.reusable = True
        # Whether it carried an earlier request: a reused connection that the
        # backend closed while idle fails without our request being seen.
        self.reused = False
        # Whether any byte of the current response has arrived.
        self.received = False
        # trio.current_time() when it went back to the pool.
        self.idle_since = 0.0

    async def send(self, data: bytes, time_limit: float | None) -> None:
        """Write *data*. A failed or timed-out write leaves the connection unusable
        (``send_all`` is not cancel-safe), so the caller must discard it."""
        with trio.move_on_after(_limit(time_limit)) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise BadBackendResponse(f"{self.backend} closed the connection: {exc}") from None
        if scope.cancelled_caught:
            raise BackendTimeout(f"{self.backend} did not read the request for {time_limit} s")

    async def receive(self, time_limit: float | None = None) -> bytes:
        """One read; ``b""`` at EOF or when the backend reset the connection
        (h11 then decides whether the message was complete)."""
        if time_limit is None:
            # The common case (the caller's scope holds the deadline): no scope of our own.
            try:
                data = await self.stream.receive_some(self.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            if data:
                self.received = True
            return data
        with trio.move_on_after(time_limit) as scope:
            try:
                data = await self.stream.receive_some(self.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            if data:
                self.received = True
            return data
        assert scope.cancelled_caught
        raise BackendTimeout(f"{self.backend} sent nothing for {time_limit} s")

    async def read_head(
        self, *, allow_stale: bool = False, upgrade: bool = False
    ) -> h11.Response | h11.InformationalResponse:
        """The backend's response head; 1xx heads are skipped, except a ``101``
        when *upgrade*.

        Raises :class:`BadBackendResponse` for anything that is not HTTP/1.1,
        for EOF before the head, and for heads (1xx included) larger than
        ``max_response_head_size`` in all; :class:`Stale` with *allow_stale*
        when a reused connection reaches EOF before any byte arrived.
        """
        h = self.h11
        fed = 0
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadBackendResponse(f"invalid response from {self.backend}: {exc}") from None
            if type(event) is h11.Response or type(event) is h11.InformationalResponse:
                if fed - len(h.trailing_data[0]) > self.max_head_size:
                    raise BadBackendResponse(
                        f"{self.backend} sent a response head over {self.max_head_size} bytes"
                    )
                if type(event) is h11.Response or (upgrade and event.status_code == 101):
                    return event
                # 100 Continue or 103 Early Hints: ours to take, not the client's.
                continue
            if event is h11.NEED_DATA:
                data = await self.receive()
                if not data and allow_stale and self.reused and not self.received:
                    raise Stale
                fed += len(data)
                h.receive_data(data)
                continue
            raise BadBackendResponse(f"{self.backend} closed the connection without answering")

    def close(self) -> None:
        """Close the socket now (synchronous: no I/O waits for a plain socket)."""
        self.stream.socket.close()


@final
class ConnectionPool:
    """Idle keep-alive connections, per backend, most recently used first.

    A connection goes back only when h11 says both sides finished the exchange
    and the connection may carry another (no ``Connection: close``, body read
    to its end), its last response's framing was beyond doubt, and nothing at
    all is left unread on it: no byte in h11's buffer, nothing readable on the
    socket. Bytes past the end of a response (a body sent with a 204 or in
    answer to HEAD, a wrong ``Content-Length``, a second response) would
    otherwise become the next client's response. At most ``pool_size`` idle
    connections are kept per backend; one idle longer than
    ``pool_idle_timeout``, or readable while idle (the backend closed it, or
    sent bytes nobody asked for), is closed instead of reused. The pool belongs to one trio run.
    """

    __slots__ = ("_config", "_idle", "connections_opened", "connections_reused", "open_tunnels")

    def __init__(self, config: ProxyConfig) -> None:
        self._config = config
        self._idle: dict[Backend, deque[BackendConnection]] = {}
        # Counters for statistics().
        self.connections_opened = 0
        self.connections_reused = 0
        # Connections taken out for an upgrade tunnel and not closed yet.
        self.open_tunnels = 0

    @property
    def idle_connections(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    async def acquire(self, backend: Backend, *, fresh: bool = False) -> BackendConnection:
        """A pooled connection to *backend*, or a new one (always new with *fresh*).

        Raises :class:`BackendUnreachable` or :class:`BackendTimeout`.
        """
        if not fresh:
            idle = self._idle.get(backend)
            if idle:
                oldest_allowed = trio.current_time() - self._config.pool_idle_timeout
                while idle:
                    conn = idle.pop()
                    if conn.idle_since < oldest_allowed or conn.stream.socket.is_readable():
                        conn.close()
                        continue
                    conn.reused = True
                    conn.received = False
                    self.connections_reused += 1
                    await trio.lowlevel.checkpoint()
                    return conn
        stream = await backend.connect(self._config.connect_timeout)
        self.connections_opened += 1
        return BackendConnection(backend, stream, self._config)

    def release(self, conn: BackendConnection) -> None:
        """Give back a connection whose exchange is over: pooled if reusable, else closed."""
        h = conn.h11
        if (
            self._config.pool_size == 0
            or not conn.reusable
            or h.our_state is not h11.DONE
            or h.their_state is not h11.DONE
            or h.trailing_data[0]
            or conn.stream.socket.is_readable()
        ):
            conn.close()
            return
        h.start_next_cycle()
        idle = self._idle.get(conn.backend)
        if idle is None:
            idle = self._idle[conn.backend] = deque()
        now = trio.current_time()
        conn.idle_since = now
        idle.append(conn)
        # Over the bound, or expired: the oldest go first.
        while idle and (
            len(idle) > self._config.pool_size
            or idle[0].idle_since < now - self._config.pool_idle_timeout
        ):
            idle.popleft().close()

    def discard(self, conn: BackendConnection) -> None:
        """Close a connection that is broken or in the middle of an exchange."""
        conn.close()

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            while idle:
                idle.popleft().close()
        self._idle.clear()
