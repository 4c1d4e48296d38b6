"""The serve loop: accept connections, run each in its own nursery, shut down gracefully.

Graceful shutdown in three steps, whoever starts it (``await server.aclose()``
or cancelling the scope around :meth:`Server.serve`):

1. stop accepting: the listeners are closed;
2. drain: :attr:`Shutdown.draining` becomes true. Connections waiting in
   :meth:`Shutdown.idle` (an HTTP keep-alive connection between requests)
   are cancelled at once; busy ones are expected to finish what they are doing
   and close (HTTP answers the request in flight with ``Connection: close``;
   a WebSocket session closes with 1001);
3. after the grace period, whatever is still running is cancelled.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import final

import trio

from ._binds import listener_address

__all__ = [
    "Connection",
    "ConnectionHandler",
    "Server",
    "Shutdown",
    "current_connection",
]

logger = logging.getLogger("trio_upgrade")

# accept(2) errors that mean "overloaded, try again soon" rather than "broken".
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_RETRY_DELAY = 0.1

Address = tuple[str, int] | str


@final
class Shutdown:
    """The drain signal shared by a server and its connections.

    A server owns one; code that runs connections without a server (the
    in-memory test client) can make its own and call :meth:`begin` to rehearse
    a graceful shutdown.
    """

    __slots__ = ("_event", "_idle_scopes")

    def __init__(self) -> None:
        self._event = trio.Event()
        # Cancel scopes of connections that are idle right now; cancelled on begin().
        self._idle_scopes: set[trio.CancelScope] = set()

    @property
    def draining(self) -> bool:
        """True once graceful shutdown has begun."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Return when graceful shutdown begins."""
        await self._event.wait()

    def begin(self) -> None:
        """Start draining: cancel idle connections, tell busy ones to finish. Idempotent."""
        if self._event.is_set():
            return
        self._event.set()
        for scope in self._idle_scopes:
            scope.cancel()
        self._idle_scopes.clear()

    def cancel_on_drain(self, scope: trio.CancelScope) -> None:
        """Cancel *scope* when draining begins (at once if it has begun).

        The allocation-free form of :meth:`idle` for hot paths; pair it with
        :meth:`forget` when the scope is exited.
        """
        if self._event.is_set():
            scope.cancel()
        else:
            self._idle_scopes.add(scope)

    def forget(self, scope: trio.CancelScope) -> None:
        """Stop watching *scope* (see :meth:`cancel_on_drain`)."""
        self._idle_scopes.discard(scope)

    @contextmanager
    def idle(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for waiting while idle: cancelled as soon as draining begins.

        Check ``scope.cancelled_caught`` afterwards to tell a drain from other outcomes.
        """
        scope = trio.CancelScope()
        self.cancel_on_drain(scope)
        try:
            with scope:
                yield scope
        finally:
            self.forget(scope)


@final
class Connection:
    """One accepted connection, as the protocol layers see it.

    Attributes are plain values so that code which runs connections without a
    listener (tests, the in-memory client) can build one directly.
    """

    __slots__ = ("client", "nursery", "server", "services", "shutdown", "stream", "tls")

    def __init__(
        self,
        stream: trio.abc.Stream,
        nursery: trio.Nursery,
        *,
        client: Address | None = None,
        server: Address | None = None,
        tls: bool | None = None,
        shutdown: Shutdown | None = None,
        services: trio.Nursery | None = None,
    ) -> None:
        self.stream = stream
        # The connection's own nursery: tasks a protocol starts for this connection
        # live here and end with it.
        self.nursery = nursery
        if tls is None:
            tls = isinstance(stream, trio.SSLStream)
        self.tls = tls
        if client is None and server is None:
            client, server = _stream_addresses(stream)
        self.client = client
        self.server = server
        self.shutdown = shutdown if shutdown is not None else Shutdown()
        # The server's service nursery (None without a server): for tasks that
        # serve many connections at once, such as shared timers. It lives as
        # long as the server, through the grace period, and is cancelled once
        # every connection has ended.
        self.services = services

    def __repr__(self) -> str:
        return f"<Connection client={self.client!r} server={self.server!r} tls={self.tls}>"


_current: contextvars.ContextVar[Connection] = contextvars.ContextVar("trio_upgrade_connection")


def current_connection() -> Connection | None:
    """The :class:`Connection` the calling task serves, or ``None`` outside one.

    Set by :class:`Server` (and the test client) for every task of a connection,
    so a protocol started by a takeover can watch the server's drain signal.
    """
    return _current.get(None)


def _set_current_connection(conn: Connection) -> None:
    _current.set(conn)


def _stream_addresses(stream: trio.abc.Stream) -> tuple[Address | None, Address | None]:
    inner: object = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    if not isinstance(inner, trio.SocketStream):
        return None, None
    sock = inner.socket
    try:
        peer = _normalize(sock.getpeername())
    except OSError:
        peer = None
    return peer, _normalize(sock.getsockname())


def _normalize(name: object) -> Address:
    if isinstance(name, bytes):
        return name.decode()
    if isinstance(name, str):
        return name
    assert isinstance(name, tuple)
    return (str(name[0]), int(name[1]))


ConnectionHandler = Callable[[Connection], Awaitable[object]]


@final
class Server:
    """Run *handler* for every connection accepted on *listeners*.

    Follows the :func:`trio.serve_listeners` contract: use it with
    ``nursery.start(server.serve)``, which returns once the listeners are
    accepting; the server takes ownership of the listeners and of every
    accepted stream (closed when its handler returns). Each connection runs in
    its own task with its own nursery (:attr:`Connection.nursery`); an
    exception escaping a handler is logged and ends that connection only.

    At most *max_connections* handlers run at once; above that, accepting
    waits (the kernel's backlog holds new arrivals). With several listeners,
    each may hold one accepted stream waiting for a slot; such a stream is
    closed unserved if the server shuts down first. *grace_period* (seconds,
    ``math.inf`` for none) bounds a graceful shutdown (see the module
    docstring). Errors a handler raises while it is being cancelled at the end
    of the grace period are logged like any other.
    """

    def __init__(
        self,
        handler: ConnectionHandler,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        max_connections: int = 1000,
        grace_period: float = 10.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if not grace_period >= 0:  # also rejects NaN
            raise ValueError("grace_period must be >= 0")
        self.handler = handler
        self.listeners = list(listeners)
        self.grace_period = grace_period
        self.shutdown = Shutdown()
        # Accept waits for a token; a connection holds one until it ends. A
        # Semaphore, not a CapacityLimiter: the token is taken by the accept
        # loop and given back by the connection's task.
        self._limiter = trio.Semaphore(max_connections)
        self.max_connections = max_connections
        # Cancelled to stop the accept loops (aclose() or outer cancellation).
        self._accept_scope = trio.CancelScope()
        # Set when the server stops serving; lets the connection nursery close
        # once its connections have ended. Separate from `shutdown` so that a
        # caller who calls `server.shutdown.begin()` directly does not close the
        # nursery under the still-running accept loops.
        self._stopping = trio.Event()
        # Set when serve() has completely finished (every connection ended).
        self._finished = trio.Event()
        self._started = False
        self._active = 0
        # Bound addresses, read on first use (closed sockets can't tell them).
        self._addresses: list[Address] | None = None
        # One cancel scope per running connection (its own nursery's).
        # Grace-period expiry and cancel_connections() cancel these, never the
        # shared nursery of connections: a scope only swallows its own
        # Cancelled, so an error a connection raises while being cancelled is
        # still caught and logged by that connection instead of escaping (or
        # being lost) in the shared nursery.
        self._conn_scopes: set[trio.CancelScope] = set()
        # Deadline for every connection: +inf until draining, then end of grace.
        self._conn_deadline = math.inf
        # Set by cancel_connections(); connections starting later are cancelled too.
        self._cancel_all = False
        # The service nursery (Connection.services), while serving.
        self._services: trio.Nursery | None = None

    @property
    def addresses(self) -> list[Address]:
        """Bound addresses: ``(host, port)`` tuples for TCP, paths for Unix sockets.

        Read once and kept, so they stay readable after the listeners close
        (while the server drains, and after).
        """
        if self._addresses is None:
            self._addresses = [listener_address(listener) for listener in self.listeners]
        return list(self._addresses)

    @property
    def connection_count(self) -> int:
        """Connections being served right now."""
        return self._active

    async def serve(
        self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept and serve until cancelled or :meth:`aclose` is called, then drain.

        Returns after graceful shutdown has finished. ``task_status.started``
        reports this server, whose :attr:`addresses` tell where it listens.
        """
        if self._started:
            raise RuntimeError("Server.serve() can run only once")
        self._started = True
        try:
            async with trio.open_nursery() as outer:
                conns: trio.Nursery = await outer.start(self._run_connections)
                try:
                    with self._accept_scope:
                        async with trio.open_nursery() as accepting:
                            for listener in self.listeners:
                                accepting.start_soon(self._accept_loop, listener, conns)
                            with contextlib.suppress(TypeError):
                                # Read while the sockets are open (not all listeners can tell).
                                _ = self.addresses
                            task_status.started(self)
                finally:
                    # Stop accepting and start draining; synchronous so that it
                    # also runs when the serve scope was cancelled.
                    self._begin_drain()
                    with trio.CancelScope(shield=True):
                        for listener in self.listeners:
                            await trio.aclose_forcefully(listener)
        finally:
            self._finished.set()

    async def aclose(self) -> None:
        """Shut down gracefully and wait until every connection has ended. Idempotent.

        Cancelling the caller abandons the wait only: the shutdown goes on.
        Called from inside a connection handler, it returns only when the grace
        period ends (that handler's connection is one of those waited for).
        """
        self._accept_scope.cancel()
        if self._started:
            await self._finished.wait()
        else:
            await trio.lowlevel.checkpoint()

    def cancel_connections(self) -> None:
        """End the grace period now: cancel every connection still running."""
        self._accept_scope.cancel()
        self._cancel_all = True
        for scope in self._conn_scopes:
            scope.cancel()

    def _begin_drain(self) -> None:
        self._stopping.set()
        self.shutdown.begin()
        # min(): a drain may start after cancel_connections() or a second time.
        self._conn_deadline = min(self._conn_deadline, trio.current_time() + self.grace_period)
        for scope in self._conn_scopes:
            scope.deadline = min(scope.deadline, self._conn_deadline)

    async def _run_connections(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        # Connections are shielded from the cancellation that stops the server:
        # they get the grace period (their scopes' deadline) instead.
        with trio.CancelScope(shield=True):
            # Services (shared by connections) start before the connections
            # and are cancelled once the last connection has ended.
            async with trio.open_nursery() as services:
                self._services = services
                async with trio.open_nursery() as conns:
                    task_status.started(conns)
                    await self._stopping.wait()
                services.cancel_scope.cancel()

    async def _accept_loop(
        self, listener: trio.abc.Listener[trio.abc.Stream], conns: trio.Nursery
    ) -> None:
        while True:
            # Wait for a free slot without holding it while accept() blocks:
            # with several listeners, an idle listener holding a token would
            # keep the server below max_connections.
            await self._limiter.acquire()
            self._limiter.release()
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    logger.error(
                        "accept failed with %s (%s); retrying in %.1f s",
                        errno.errorcode[exc.errno],
                        os.strerror(exc.errno),
                        _ACCEPT_RETRY_DELAY,
                    )
                    await trio.sleep(_ACCEPT_RETRY_DELAY)
                    continue
                raise
            try:
                # Normally immediate. If another listener took the last slot
                # meanwhile, this accepted stream waits here, as it would have
                # in the kernel's backlog; its handler starts when a slot frees.
                await self._limiter.acquire()
            except BaseException:
                # Shielded so that the original exception, not a new Cancelled
                # from this checkpoint, is what propagates.
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
                raise
            conns.start_soon(self._run_one, stream)

    async def _run_one(self, stream: trio.abc.Stream) -> None:
        self._active += 1
        conn: Connection | None = None
        scope: trio.CancelScope | None = None
        try:
            async with trio.open_nursery() as nursery:
                # The nursery's own cancel scope is the connection's scope: a
                # scope of its own around the nursery would cost every idle
                # connection another CancelScope and CancelStatus (~0.6 KiB).
                scope = nursery.cancel_scope
                if self._conn_deadline != math.inf:
                    scope.deadline = self._conn_deadline
                if self._cancel_all:
                    scope.cancel()
                self._conn_scopes.add(scope)
                conn = Connection(stream, nursery, shutdown=self.shutdown, services=self._services)
                _set_current_connection(conn)
                await self.handler(conn)
        except Exception:
            logger.exception("connection handler failed: %r", conn)
        finally:
            if scope is not None:
                self._conn_scopes.discard(scope)
            self._active -= 1
            self._limiter.release()
            await trio.aclose_forcefully(stream)
