"""The serve loop: accept connections, run each in its own nursery, shut down gracefully.

Graceful shutdown in three steps, whoever starts it (``await server.aclose()``
or cancelling the scope around :meth:`Server.serve`):

1. stop accepting: the listeners are closed;
2. drain: :attr:`Shutdown.draining` becomes true. Connections waiting in
   :meth:`Shutdown.idle` (an HTTP keep-alive connection between requests)
   are cancelled at once, unless the drain keeps them (``aclose(close_idle=False)``,
   for a rolling restart); busy ones are expected to finish what they are doing
   and close (HTTP answers the request in flight with ``Connection: close``;
   a WebSocket session closes with 1001);
3. after the grace period, whatever is still running is cancelled.

Connection limits never stop the accepting: a client past one is answered (or
closed) at once, and a full server sheds the connection that has waited
longest for its protocol to have work (see :class:`Server`).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import logging
import math
import os
import socket as _stdlib_socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import final

import trio

from .._wire import Address, normalize_address
from ._binds import listener_address
from ._limits import fd_limit_connections, raise_fd_limit
from ._observe import Observer

__all__ = [
    "Connection",
    "ConnectionHandler",
    "OverloadResponse",
    "Server",
    "Shutdown",
    "current_connection",
]

logger = logging.getLogger("trio_upgrade.core")

# accept(2) errors that mean "overloaded, try again soon" rather than "broken".
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_RETRY_DELAY = 0.1
# The overload answer: how long it may take to write (and to read what the
# client sent, before closing), how much is read, and how many at a time.
_OVERLOAD_TIMEOUT = 1.0
_OVERLOAD_READ_LIMIT = 64 * 1024
_MAX_ANSWERING = 64
_REFUSAL_LOG_INTERVAL = 60.0
# How much of what a newcomer sent is peeked at (see Server's shed_for).
_PEEK_SIZE = 4096
_CAN_PEEK = hasattr(_stdlib_socket, "MSG_DONTWAIT")  # not on Windows
_PEEK_FLAGS = _stdlib_socket.MSG_PEEK | getattr(_stdlib_socket, "MSG_DONTWAIT", 0)


@final
class Shutdown:
    """The drain signal shared by a server and its connections.

    A server owns one; code that runs connections without a server (the
    in-memory test client) can make its own and call :meth:`begin` to rehearse
    a graceful shutdown.
    """

    __slots__ = ("_closing_idle", "_event", "_idle_scopes")

    def __init__(self) -> None:
        self._event = trio.Event()
        # True once idle connections are to be closed (begin() without close_idle=False).
        self._closing_idle = False
        # Cancel scopes of connections that are idle right now; cancelled once
        # closing_idle is set.
        self._idle_scopes: set[trio.CancelScope] = set()

    @property
    def draining(self) -> bool:
        """True once graceful shutdown has begun."""
        return self._event.is_set()

    @property
    def closing_idle(self) -> bool:
        """True once the drain closes idle connections (see :meth:`begin`)."""
        return self._closing_idle

    async def wait(self) -> None:
        """Return when graceful shutdown begins."""
        await self._event.wait()

    def begin(self, *, close_idle: bool = True) -> None:
        """Start draining: tell busy connections to finish, and cancel idle ones. Idempotent.

        With ``close_idle=False`` idle connections are left alone: each ends
        at its own timeout, or serves its next request as a busy one (HTTP:
        answered with ``Connection: close``). That is for a hand-over, where
        another process accepts on the same sockets (a rolling restart): only
        the client can close an idle connection without a race against the
        request it may be sending at that moment. A later ``begin()`` closes
        them after all.
        """
        self._event.set()
        if not close_idle or self._closing_idle:
            return
        self._closing_idle = True
        for scope in self._idle_scopes:
            scope.cancel()
        self._idle_scopes.clear()

    def cancel_on_drain(self, scope: trio.CancelScope) -> None:
        """Cancel *scope* when the drain closes idle connections (at once if it does).

        The allocation-free form of :meth:`idle` for hot paths; pair it with
        :meth:`forget` when the scope is exited.
        """
        if self._closing_idle:
            scope.cancel()
        else:
            self._idle_scopes.add(scope)

    def forget(self, scope: trio.CancelScope) -> None:
        """Stop watching *scope* (see :meth:`cancel_on_drain`)."""
        self._idle_scopes.discard(scope)

    @contextmanager
    def idle(self) -> Iterator[trio.CancelScope]:
        """A cancel scope for waiting while idle: cancelled as soon as the drain
        closes idle connections (when draining begins, unless it keeps them).

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

    __slots__ = (
        "_capacity",
        "_shed",
        "_sheddable",
        "client",
        "nursery",
        "observer",
        "server",
        "services",
        "shutdown",
        "stream",
        "tls",
    )

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
        observer: Observer | None = None,
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
        # The server's Observer (metrics), or None: nothing is counted.
        self.observer = observer
        # See the `sheddable` property. The server's bookkeeping (None when the
        # connection was built without a server), and whether the server shed it.
        self._sheddable = False
        self._capacity: _Capacity | None = None
        self._shed = False

    @property
    def sheddable(self) -> bool:
        """Whether the server may close this connection to make room for a new one.

        False until the protocol says otherwise. A protocol sets it while the
        connection holds nothing anyone waits for (HTTP: while waiting for, or
        reading, a request head) and clears it as soon as it does (a request
        in progress, a WebSocket session). When a connection arrives at a full
        server, the connection sheddable for longest is cancelled (its
        nursery's cancel scope) to make room.

        Shedding cancels at once, so a protocol must check :attr:`shed` right
        after clearing the flag, before its next checkpoint: the work it was
        about to start would only be cancelled.
        """
        return self._sheddable

    @sheddable.setter
    def sheddable(self, value: bool) -> None:
        if value == self._sheddable:
            return
        self._sheddable = value
        capacity = self._capacity
        if capacity is not None and not self._shed:
            if value:
                capacity.idle[self] = None
            else:
                del capacity.idle[self]

    @property
    def shed(self) -> bool:
        """True once the server has cancelled this connection to make room.

        See :attr:`sheddable`.
        """
        return self._shed

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
        peer = normalize_address(sock.getpeername())
    except OSError:
        peer = None
    return peer, normalize_address(sock.getsockname())


ConnectionHandler = Callable[[Connection], Awaitable[object]]

OverloadResponse = bytes | Callable[[], bytes]


@final
class _Capacity:
    """A server's connection counts, and the connections it may shed, oldest first."""

    __slots__ = ("active", "answering", "full_logged", "idle", "per_client", "shedding")

    def __init__(self) -> None:
        # Connections admitted whose task has not ended (shed ones included).
        self.active = 0
        # Shed connections still ending: their slots already went to newcomers.
        self.shedding = 0
        # Overload answers being written right now.
        self.answering = 0
        # When the limit was last logged (rate-limits the warning).
        self.full_logged = -math.inf
        # Sheddable connections, in the order they became sheddable: O(1) to
        # add, remove, and take the oldest.
        self.idle: OrderedDict[Connection, None] = OrderedDict()
        # Connections per client host, with max_connections_per_client only.
        self.per_client: dict[str, int] = {}


@final
class Server:
    """Run *handler* for every connection accepted on *listeners*.

    Follows the :func:`trio.serve_listeners` contract: use it with
    ``nursery.start(server.serve)``, which returns once the listeners are
    accepting; the server takes ownership of the listeners and of every
    accepted stream (closed when its handler returns). Each connection runs in
    its own task with its own nursery (:attr:`Connection.nursery`); an
    exception escaping a handler is logged and ends that connection only.

    Limits (accepting never stops, so a client past a limit hears at once
    instead of waiting unanswered in the kernel's backlog):

    - *max_connections*: at most this many connections are served at once.
      ``None`` (the default) derives it from the process's file-descriptor
      limit, which is first raised to its hard limit where the OS allows: the
      soft limit minus a tenth (at least 100, at most half) for the process's
      other files. A connection arriving at the limit takes the place of the
      connection that has been :attr:`~Connection.sheddable` for longest,
      which is cancelled; when none is, it gets the overload answer.
    - *max_connections_per_client*: at most this many at once from one client
      host (TCP; Unix-socket clients are not counted); past it, that client's
      new connections get the overload answer. ``None``: no such limit.

    *shed_for* (optional) judges a newcomer at a full server by what it has
    sent already, peeked at without reading (up to 4 KiB; TCP and Unix sockets
    only): when it returns false, the newcomer is closed at once, without the
    overload answer, instead of taking a sheddable connection's place. A
    newcomer that has sent nothing yet, or 4 KiB or more, is always worth
    shedding for. This keeps the connections that crowd a server cheap to turn
    away: HTTP passes "the request head is complete", so a slowloris client
    queued behind others costs an accept and a close, while a client that sent
    its whole request gets in.

    The overload answer is *overload_response* (bytes, or a function returning
    them, called each time), written with a short timeout (1 s, which also
    bounds reading what the client sent before closing, so that the close does
    not reset the answer away); then the connection is closed. ``None``: the
    connection is closed at once. At most 64 answers are written at a time;
    past that, refused connections are closed at once.

    *grace_period* (seconds, ``math.inf`` for none) bounds a graceful shutdown
    (see the module docstring). Errors a handler raises while it is being
    cancelled at the end of the grace period are logged like any other.

    *observer* (an :class:`~trio_upgrade.core.Observer`, for metrics) is handed
    to every connection as :attr:`Connection.observer`; :attr:`connection_count`
    tells the connections open.
    """

    def __init__(
        self,
        handler: ConnectionHandler,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        max_connections: int | None = None,
        max_connections_per_client: int | None = None,
        overload_response: OverloadResponse | None = None,
        shed_for: Callable[[bytes], bool] | None = None,
        grace_period: float = 10.0,
        observer: Observer | None = None,
    ) -> None:
        if max_connections is None:
            max_connections = fd_limit_connections(raise_fd_limit())
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if max_connections_per_client is not None and max_connections_per_client < 1:
            raise ValueError("max_connections_per_client must be >= 1")
        if not grace_period >= 0:  # also rejects NaN
            raise ValueError("grace_period must be >= 0")
        self.handler = handler
        self.listeners = list(listeners)
        self.grace_period = grace_period
        self.shutdown = Shutdown()
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.overload_response = overload_response
        self.shed_for = shed_for
        # Handed to every connection (Connection.observer), for metrics.
        self.observer = observer
        self._capacity = _Capacity()
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
        # Whether the drain closes idle connections (aclose(close_idle=False) clears it).
        self._close_idle = True
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
        """Connections being served right now (shed ones still ending included)."""
        return self._capacity.active

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

    async def aclose(self, *, close_idle: bool = True) -> None:
        """Shut down gracefully and wait until every connection has ended. Idempotent.

        ``close_idle=False`` keeps idle connections through the drain (see
        :meth:`Shutdown.begin`): for a rolling restart, when another process
        accepts on the same sockets. A later ``aclose()`` closes them after all.

        Cancelling the caller abandons the wait only: the shutdown goes on.
        Called from inside a connection handler, it returns only when the grace
        period ends (that handler's connection is one of those waited for).
        """
        if close_idle:
            self._close_idle = True
            if self._stopping.is_set():
                self.shutdown.begin()
        elif not self._stopping.is_set():
            self._close_idle = False
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
        self.shutdown.begin(close_idle=self._close_idle)
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
        capacity = self._capacity
        per_client = self.max_connections_per_client
        while True:
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
            # Admission is synchronous from here to start_soon, so that every
            # accept loop sees the counts the others left.
            # Connection reads the addresses, unless the per-client limit needs
            # them here.
            client: Address | None = None
            server: Address | None = None
            host: str | None = None
            if per_client is not None:
                client, server = _stream_addresses(stream)
                if isinstance(client, tuple):
                    host = client[0]
                    if capacity.per_client.get(host, 0) >= per_client:
                        self._log_refusal("connections from %s reached %d", host, per_client)
                        await self._refuse(stream, conns)
                        continue
            if capacity.active - capacity.shedding >= self.max_connections:
                if not self._worth_shedding_for(stream):
                    # Turned away as cheaply as possible: no task, no answer.
                    self._log_refusal("max_connections (%d) reached", self.max_connections)
                    await trio.aclose_forcefully(stream)
                    continue
                if not self._shed():
                    self._log_refusal("max_connections (%d) reached", self.max_connections)
                    await self._refuse(stream, conns)
                    continue
            capacity.active += 1
            if host is not None:
                capacity.per_client[host] = capacity.per_client.get(host, 0) + 1
            conns.start_soon(self._run_one, stream, client, server, host)

    def _worth_shedding_for(self, stream: trio.abc.Stream) -> bool:
        """Whether *stream*, arriving at a full server, may take a sheddable one's place."""
        shed_for = self.shed_for
        if shed_for is None or not _CAN_PEEK:
            return True
        if not isinstance(stream, trio.SocketStream):
            return True  # TLS: the bytes are a handshake, nothing to judge
        sock = stream.socket
        # A second socket object on the same descriptor, detached before it
        # can close it: trio's sockets cannot read without waiting.
        peeker = _stdlib_socket.socket(sock.family, sock.type, sock.proto, sock.fileno())
        try:
            data = peeker.recv(_PEEK_SIZE, _PEEK_FLAGS)
        except OSError:
            return True  # nothing sent yet (or an error the handler will meet)
        finally:
            peeker.detach()
        return not data or len(data) >= _PEEK_SIZE or shed_for(data)

    def _shed(self) -> bool:
        """Cancel the connection sheddable for longest; False when there is none."""
        capacity = self._capacity
        if not capacity.idle:
            return False
        conn, _ = capacity.idle.popitem(last=False)
        conn._shed = True
        capacity.shedding += 1
        conn.nursery.cancel_scope.cancel()
        return True

    def _log_refusal(self, message: str, *args: object) -> None:
        # Once a minute at most: under a flood, one line per refusal would be
        # a second flood, into the logs.
        now = trio.current_time()
        if now - self._capacity.full_logged >= _REFUSAL_LOG_INTERVAL:
            self._capacity.full_logged = now
            logger.warning(message + "; refusing new connections", *args)

    async def _refuse(self, stream: trio.abc.Stream, conns: trio.Nursery) -> None:
        capacity = self._capacity
        if self.overload_response is None or capacity.answering >= _MAX_ANSWERING:
            await trio.aclose_forcefully(stream)
            return
        capacity.answering += 1
        conns.start_soon(self._answer_overload, stream)
        await trio.lowlevel.checkpoint()

    async def _answer_overload(self, stream: trio.abc.Stream) -> None:
        """Write the overload answer, best-effort and briefly, then close."""
        try:
            with trio.move_on_after(_OVERLOAD_TIMEOUT):
                answer = self.overload_response
                if callable(answer):
                    answer = answer()
                assert answer is not None
                await stream.send_all(answer)
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                # Closing a socket with unread data resets the connection,
                # which can discard the answer before the client reads it: read
                # what the client sent until it closes (or the timeout).
                received = 0
                while received < _OVERLOAD_READ_LIMIT:
                    data = await stream.receive_some()
                    if not data:
                        break
                    received += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            logger.exception("writing the overload response failed")
        finally:
            self._capacity.answering -= 1
            await trio.aclose_forcefully(stream)

    async def _run_one(
        self,
        stream: trio.abc.Stream,
        client: Address | None,
        server: Address | None,
        host: str | None,
    ) -> None:
        capacity = self._capacity
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
                conn = Connection(
                    stream,
                    nursery,
                    client=client,
                    server=server,
                    shutdown=self.shutdown,
                    services=self._services,
                    observer=self.observer,
                )
                conn._capacity = capacity
                _set_current_connection(conn)
                await self.handler(conn)
        except Exception:
            logger.exception("connection handler failed: %r", conn)
        finally:
            if scope is not None:
                self._conn_scopes.discard(scope)
            if conn is not None:
                if conn._shed:
                    capacity.shedding -= 1
                elif conn._sheddable:
                    del capacity.idle[conn]
                # A task of this connection that outlives it (it cannot: the
                # nursery has ended) could not touch the counts either.
                conn._capacity = None
            capacity.active -= 1
            if host is not None:
                count = capacity.per_client[host] - 1
                if count:
                    capacity.per_client[host] = count
                else:
                    del capacity.per_client[host]
            await trio.aclose_forcefully(stream)
