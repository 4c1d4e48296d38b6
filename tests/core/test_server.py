"""The serve loop: accepting, per-connection nurseries, errors, graceful shutdown.

In-memory listeners with a MockClock where only trio's scheduling matters; real
loopback sockets where the OS does (addresses, TLS, refused connects).
"""

from __future__ import annotations

import errno
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Literal

import pytest
import trio
import trio.testing

from trio_upgrade.core import (
    Connection,
    Server,
    Shutdown,
    current_connection,
    listener_address,
    open_listeners,
)

from ._helpers import MemoryListener, receive_exactly, receive_until_eof, tcp

Handler = Callable[[Connection], Awaitable[object]]
Stop = Literal["aclose", "cancel"]
STOPS: list[Stop] = ["aclose", "cancel"]


class Running:
    """A server serving inside its own cancel scope, stoppable either way."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.scope = trio.CancelScope()
        self.done = trio.Event()

    async def _serve(self, *, task_status: trio.TaskStatus[Server]) -> None:
        with self.scope:
            await self.server.serve(task_status=task_status)
        self.done.set()

    async def start(self, nursery: trio.Nursery) -> Server:
        started: Server = await nursery.start(self._serve)
        return started

    async def stop(self, how: Stop) -> None:
        """Graceful shutdown through aclose() or by cancelling the serve scope."""
        if how == "aclose":
            await self.server.aclose()
        else:
            self.scope.cancel()
            await self.done.wait()


async def _serve(
    nursery: trio.Nursery,
    handler: Handler,
    listeners: list[trio.abc.Listener[trio.abc.Stream]],
    **options: float,
) -> Running:
    running = Running(Server(handler, listeners, **options))  # type: ignore[arg-type]
    await running.start(nursery)
    return running


async def _noop(conn: Connection) -> None:
    await trio.lowlevel.checkpoint()


# ------------------------------------------------------------------ starting


async def test_start_returns_the_server_once_it_accepts_on_its_addresses() -> None:
    listeners = await open_listeners("127.0.0.1:0")

    async def greet(conn: Connection) -> None:
        await conn.stream.send_all(b"hi")

    server = Server(greet, listeners)
    async with trio.open_nursery() as nursery:
        started = await nursery.start(server.serve)
        assert started is server
        assert server.addresses == [listener_address(listeners[0])]
        host, port = tcp(server.addresses[0])
        assert host == "127.0.0.1"
        assert port > 0
        async with await trio.open_tcp_stream(host, port) as client:
            assert await receive_until_eof(client) == b"hi"
        await server.aclose()


async def test_addresses_stay_readable_after_the_listeners_close() -> None:
    """Tests and logs ask for the port after shutdown; closed sockets can't tell it."""

    async def greet(conn: Connection) -> None:
        await conn.stream.send_all(b"hi")

    server = Server(greet, await open_listeners("127.0.0.1:0"))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        before = server.addresses
        await server.aclose()
    assert server.addresses == before


async def test_serve_runs_only_once() -> None:
    server = Server(_noop, [MemoryListener()])
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        with pytest.raises(RuntimeError):
            await server.serve()
        await server.aclose()


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_connections_per_client": 0},
        {"grace_period": -1.0},
        {"grace_period": math.nan},
    ],
)
def test_invalid_limits_are_rejected(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Server(_noop, [], **options)  # type: ignore[arg-type]


async def test_aclose_before_serve_makes_serve_stop_at_once() -> None:
    listener = MemoryListener()
    server = Server(_noop, [listener])
    await server.aclose()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
    assert listener.closed


# --------------------------------------------------------------- connections


async def test_each_connection_gets_its_own_nursery_and_tcp_addresses() -> None:
    listeners = await open_listeners("127.0.0.1:0")
    conns: list[Connection] = []
    release = trio.Event()
    both_started = trio.Event()

    async def hold(conn: Connection) -> None:
        conns.append(conn)
        if len(conns) == 2:
            both_started.set()
        await release.wait()

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, hold, listeners)
        host, port = tcp(running.server.addresses[0])
        first = await trio.open_tcp_stream(host, port)
        second = await trio.open_tcp_stream(host, port)
        with trio.fail_after(30):  # hang guard, not a duration check
            await both_started.wait()
        assert running.server.connection_count == 2
        assert conns[0].nursery is not conns[1].nursery
        assert isinstance(conns[0].nursery, trio.Nursery)
        assert {conns[0].client, conns[1].client} == {
            first.socket.getsockname(),
            second.socket.getsockname(),
        }
        for conn in conns:
            assert conn.server == ("127.0.0.1", port)
            assert conn.tls is False
            assert conn.shutdown is running.server.shutdown
            assert isinstance(conn.stream, trio.SocketStream)
        release.set()
        for client in (first, second):
            async with client:
                assert await receive_until_eof(client) == b""
        await running.stop("aclose")


async def test_tls_connection_is_marked_tls_and_reports_tcp_addresses(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    listeners = await open_listeners("127.0.0.1:0", ssl_context=server_ssl_context)
    conns: list[Connection] = []

    async def echo_once(conn: Connection) -> None:
        conns.append(conn)
        await conn.stream.send_all(await conn.stream.receive_some())

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, echo_once, listeners)
        host, port = tcp(running.server.addresses[0])
        transport = await trio.open_tcp_stream(host, port)
        client_address = transport.socket.getsockname()
        client = trio.SSLStream(transport, client_ssl_context, server_hostname="localhost")
        with trio.fail_after(30):  # hang guard
            async with client:
                await client.send_all(b"tls")
                assert await receive_exactly(client, 3) == b"tls"
        (conn,) = conns
        assert conn.tls is True
        assert isinstance(conn.stream, trio.SSLStream)
        assert conn.client == client_address
        assert conn.server == ("127.0.0.1", port)
        await running.stop("aclose")


async def test_unix_connection_reports_the_socket_path(tmp_path: Path) -> None:
    path = str(tmp_path / "srv.sock")
    listeners = await open_listeners(f"unix:{path}")
    conns: list[Connection] = []

    async def record(conn: Connection) -> None:
        conns.append(conn)

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, record, listeners)
        assert running.server.addresses == [path]
        async with await trio.open_unix_socket(path) as client:
            assert await receive_until_eof(client) == b""
        (conn,) = conns
        assert conn.server == path
        assert conn.client == ""  # an unbound client socket has no name
        assert conn.tls is False
        await running.stop("aclose")


def test_connection_built_by_hand_on_a_memory_stream_has_no_addresses() -> None:
    """The in-memory test client builds Connections directly."""
    _client, server = trio.testing.memory_stream_pair()
    conn = Connection(server, nursery=None)  # type: ignore[arg-type]
    assert (conn.client, conn.server, conn.tls) == (None, None, False)
    assert not conn.shutdown.draining
    assert "client=None" in repr(conn)


def test_connection_takes_addresses_and_tls_from_its_builder() -> None:
    _client, server = trio.testing.memory_stream_pair()
    conn = Connection(
        server,
        nursery=None,  # type: ignore[arg-type]
        client=("10.0.0.1", 1234),
        server=("10.0.0.2", 443),
        tls=True,
    )
    assert (conn.client, conn.server, conn.tls) == (("10.0.0.1", 1234), ("10.0.0.2", 443), True)


async def test_current_connection_is_set_in_the_handler_and_the_tasks_it_starts() -> None:
    listener = MemoryListener()
    seen: dict[str, Connection | None] = {}
    handled = trio.Event()

    async def child(name: str) -> None:
        seen[name] = current_connection()

    async def handler(conn: Connection) -> None:
        seen["handler"] = conn if current_connection() is conn else None
        conn.nursery.start_soon(child, "conn.nursery")
        async with trio.open_nursery() as inner:
            inner.start_soon(child, "inner nursery")
        handled.set()

    assert current_connection() is None
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener])
        await listener.connect()
        await handled.wait()
        await trio.testing.wait_all_tasks_blocked()
        conn = seen["handler"]
        assert conn is not None
        assert seen == {"handler": conn, "conn.nursery": conn, "inner nursery": conn}
        assert current_connection() is None
        await running.stop("aclose")


async def test_tasks_in_the_connection_nursery_keep_the_connection_open() -> None:
    """The stream is closed only when everything the connection started has ended."""
    listener = MemoryListener()
    release = trio.Event()

    async def late_writer(conn: Connection) -> None:
        await release.wait()
        await conn.stream.send_all(b"late")

    async def handler(conn: Connection) -> None:
        conn.nursery.start_soon(late_writer, conn)

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener])
        client = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert running.server.connection_count == 1
        release.set()
        assert await receive_until_eof(client) == b"late"
        await trio.testing.wait_all_tasks_blocked()
        assert running.server.connection_count == 0
        await running.stop("aclose")


async def test_server_closes_the_stream_after_the_handler_returns() -> None:
    listener = MemoryListener()

    async def say_and_return(conn: Connection) -> None:
        await conn.stream.send_all(b"bye")

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, say_and_return, [listener])
        client = await listener.connect()
        assert await receive_until_eof(client) == b"bye"
        # Closed, not merely half-closed: our writes fail.
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"x")
        await running.stop("aclose")


# -------------------------------------------------------------------- errors


async def test_handler_error_is_logged_and_the_next_connection_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = MemoryListener()
    calls = 0

    async def handler(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("handler bug")
        await conn.stream.send_all(b"ok")

    caplog.set_level(logging.ERROR, logger="trio_upgrade")
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener])
        broken = await listener.connect()
        assert await receive_until_eof(broken) == b""  # its stream was closed
        healthy = await listener.connect()
        assert await receive_until_eof(healthy) == b"ok"
        await running.stop("aclose")

    (record,) = caplog.records
    assert record.name == "trio_upgrade.core"
    assert record.levelno == logging.ERROR
    assert "connection handler failed" in record.getMessage()
    assert record.exc_info is not None
    assert "handler bug" in caplog.text


async def test_error_in_a_connection_task_ends_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = MemoryListener()
    release = trio.Event()

    async def crash() -> None:
        raise KeyError("task bug")

    async def handler(conn: Connection) -> None:
        if current_connection() is not None and await conn.stream.receive_some() == b"crash":
            conn.nursery.start_soon(crash)
            await trio.sleep_forever()
        await release.wait()
        await conn.stream.send_all(b"survived")

    caplog.set_level(logging.ERROR, logger="trio_upgrade")
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener])
        bystander = await listener.connect()
        await bystander.send_all(b"calm")
        victim = await listener.connect()
        await victim.send_all(b"crash")
        assert await receive_until_eof(victim) == b""
        release.set()
        assert await receive_until_eof(bystander) == b"survived"
        await running.stop("aclose")
    assert "task bug" in caplog.text


async def test_error_raised_while_grace_expiry_cancels_a_connection_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An error racing the grace-period cancel neither crashes serve nor vanishes."""
    listener = MemoryListener()

    async def fails_when_cancelled() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            raise KeyError("cleanup bug") from None

    async def handler(conn: Connection) -> None:
        conn.nursery.start_soon(fails_when_cancelled)
        await trio.sleep_forever()

    caplog.set_level(logging.ERROR, logger="trio_upgrade")
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener], grace_period=5)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await running.stop("aclose")
    assert "cleanup bug" in caplog.text


async def test_accept_running_out_of_file_descriptors_is_logged_and_retried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    listener = MemoryListener(failures=[OSError(errno.EMFILE, "Too many open files")])

    async def greet(conn: Connection) -> None:
        await conn.stream.send_all(b"hi")

    caplog.set_level(logging.ERROR, logger="trio_upgrade")
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, greet, [listener])
        client = await listener.connect()
        assert await receive_until_eof(client) == b"hi"
        await running.stop("aclose")
    assert "EMFILE" in caplog.text


async def test_other_accept_errors_end_serve_with_that_error() -> None:
    listener = MemoryListener(failures=[OSError(errno.EBADF, "Bad file descriptor")])
    server = Server(_noop, [listener])
    with pytest.RaisesGroup(OSError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
    assert listener.closed


# Connection limits and shedding: test_capacity.py


# ---------------------------------------------------------- graceful shutdown


@pytest.mark.parametrize("how", STOPS)
async def test_shutdown_stops_accepting_before_draining(
    autojump_clock: trio.testing.MockClock, how: Stop
) -> None:
    listener = MemoryListener()
    release = trio.Event()
    drained: list[bool] = []

    async def busy(conn: Connection) -> None:
        await release.wait()
        drained.append(conn.shutdown.draining)

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, busy, [listener], grace_period=100)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(running.stop, how)
        await trio.testing.wait_all_tasks_blocked()
        # Draining: the listener is closed while the busy connection still runs.
        assert running.server.shutdown.draining
        assert listener.closed
        assert running.server.connection_count == 1
        with pytest.raises(trio.BrokenResourceError):
            await listener.connect()
        release.set()
    assert drained == [True]


@pytest.mark.parametrize("how", STOPS)
async def test_shutdown_refuses_new_tcp_connects(how: Stop) -> None:
    listeners = await open_listeners("127.0.0.1:0")
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, _noop, listeners)
        host, port = tcp(running.server.addresses[0])
        await running.stop(how)
    with pytest.raises(OSError):
        await trio.open_tcp_stream(host, port)


@pytest.mark.parametrize("how", STOPS)
async def test_idle_connection_is_cancelled_as_soon_as_draining_begins(
    autojump_clock: trio.testing.MockClock, how: Stop
) -> None:
    listener = MemoryListener()
    outcomes: list[bool] = []

    async def keep_alive(conn: Connection) -> None:
        with conn.shutdown.idle() as idle:
            await trio.sleep_forever()
        outcomes.append(idle.cancelled_caught)

    # With no grace deadline at all, only the idle cancel can end the connection.
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            running = await _serve(nursery, keep_alive, [listener], grace_period=math.inf)
            client = await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            await running.stop(how)
    assert outcomes == [True]
    assert await receive_until_eof(client) == b""


@pytest.mark.parametrize("how", STOPS)
async def test_busy_connection_finishes_its_work_within_the_grace_period(
    autojump_clock: trio.testing.MockClock, how: Stop
) -> None:
    listener = MemoryListener()
    seen: list[bool] = []

    async def busy(conn: Connection) -> None:
        await conn.shutdown.wait()
        seen.append(conn.shutdown.draining)
        await trio.sleep(5)  # the request in flight
        await conn.stream.send_all(b"done")

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, busy, [listener], grace_period=10)
        client = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await running.stop(how)
    assert seen == [True]
    assert await receive_until_eof(client) == b"done"


@pytest.mark.parametrize("how", STOPS)
async def test_connection_overrunning_the_grace_period_is_cancelled(
    autojump_clock: trio.testing.MockClock, how: Stop
) -> None:
    listener = MemoryListener()
    outcome: list[str] = []

    async def slow(conn: Connection) -> None:
        try:
            await trio.sleep(60)
            outcome.append("finished")
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, slow, [listener], grace_period=10)
        client = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await running.stop(how)
    assert outcome == ["cancelled"]
    assert await receive_until_eof(client) == b""


async def test_zero_grace_period_cancels_busy_connections_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listener = MemoryListener()
    outcome: list[str] = []

    async def busy(conn: Connection) -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, busy, [listener], grace_period=0)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await running.stop("aclose")
    assert outcome == ["cancelled"]


async def test_cancel_connections_ends_the_grace_period_now(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listener = MemoryListener()
    outcome: list[str] = []
    closed = trio.Event()

    async def stubborn(conn: Connection) -> None:
        try:
            await trio.sleep_forever()  # ignores draining
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async def close(server: Server) -> None:
        await server.aclose()
        closed.set()

    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            running = await _serve(nursery, stubborn, [listener], grace_period=math.inf)
            await listener.connect()
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(close, running.server)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            assert not closed.is_set()
            running.server.cancel_connections()
            await closed.wait()
    assert outcome == ["cancelled"]


async def test_aclose_is_idempotent_and_safe_to_call_concurrently() -> None:
    listener = MemoryListener()
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, _noop, [listener])
        async with trio.open_nursery() as closers:
            closers.start_soon(running.server.aclose)
            closers.start_soon(running.server.aclose)
        assert running.done.is_set()
        await running.server.aclose()
    assert listener.closed


async def test_aclose_after_the_serve_scope_was_cancelled_returns() -> None:
    listener = MemoryListener()
    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, _noop, [listener])
        await running.stop("cancel")
        await running.server.aclose()
    assert running.done.is_set()


async def test_shutdown_begin_called_directly_keeps_the_server_accepting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Someone may start the drain signal alone; the accept loop must survive it."""
    listener = MemoryListener()
    seen: list[bool] = []

    async def handler(conn: Connection) -> None:
        seen.append(conn.shutdown.draining)
        await conn.stream.send_all(b"ok")

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, handler, [listener])
        first = await listener.connect()
        assert await receive_until_eof(first) == b"ok"
        running.server.shutdown.begin()
        await trio.sleep(1)
        second = await listener.connect()
        assert await receive_until_eof(second) == b"ok"
        assert not listener.closed
        await running.stop("aclose")
    assert seen == [False, True]


# ------------------------------------------------------------------ Shutdown


async def test_shutdown_begin_sets_draining_wakes_waiters_and_is_idempotent() -> None:
    shutdown = Shutdown()
    woke: list[bool] = []

    async def waiter() -> None:
        await shutdown.wait()
        woke.append(shutdown.draining)

    assert not shutdown.draining
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []
        shutdown.begin()
        shutdown.begin()
    assert woke == [True]
    assert shutdown.draining
    await shutdown.wait()  # returns at once once draining


async def test_idle_scope_entered_after_draining_is_cancelled_immediately() -> None:
    shutdown = Shutdown()
    shutdown.begin()
    with trio.fail_after(30), shutdown.idle() as idle:  # hang guard
        await trio.sleep_forever()
    assert idle.cancelled_caught


async def test_idle_scopes_are_all_cancelled_on_begin_and_only_while_entered() -> None:
    shutdown = Shutdown()
    caught: list[bool] = []

    async def idle_forever() -> None:
        with shutdown.idle() as idle:
            await trio.sleep_forever()
        caught.append(idle.cancelled_caught)

    with shutdown.idle() as finished_early:
        await trio.lowlevel.checkpoint()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(idle_forever)
        nursery.start_soon(idle_forever)
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin()
    assert caught == [True, True]
    # A scope already exited is left alone.
    assert not finished_early.cancel_called


async def test_cancel_on_drain_cancels_a_registered_scope_when_draining_begins() -> None:
    shutdown = Shutdown()
    caught: list[bool] = []

    async def wait_idle() -> None:
        with trio.CancelScope() as scope:
            shutdown.cancel_on_drain(scope)
            try:
                await trio.sleep_forever()
            finally:
                shutdown.forget(scope)
        caught.append(scope.cancelled_caught)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_idle)
        await trio.testing.wait_all_tasks_blocked()
        shutdown.begin()
    assert caught == [True]


async def test_cancel_on_drain_after_draining_cancels_the_scope_at_once() -> None:
    shutdown = Shutdown()
    shutdown.begin()
    scope = trio.CancelScope()
    shutdown.cancel_on_drain(scope)
    assert scope.cancel_called


async def test_a_forgotten_scope_is_not_cancelled_by_a_later_drain() -> None:
    shutdown = Shutdown()
    scope = trio.CancelScope()
    shutdown.cancel_on_drain(scope)
    shutdown.forget(scope)
    shutdown.forget(scope)  # forgetting twice is harmless
    shutdown.begin()
    assert not scope.cancel_called


async def test_a_drain_that_keeps_idle_connections_cancels_no_idle_scope_until_told() -> None:
    shutdown = Shutdown()
    before = trio.CancelScope()
    shutdown.cancel_on_drain(before)
    shutdown.begin(close_idle=False)
    after = trio.CancelScope()
    shutdown.cancel_on_drain(after)
    assert shutdown.draining and not shutdown.closing_idle
    assert not before.cancel_called and not after.cancel_called
    shutdown.begin()
    assert shutdown.closing_idle
    assert before.cancel_called and after.cancel_called


async def test_aclose_keeping_idle_connections_lets_them_work_until_a_plain_aclose(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A rolling restart's drain: the listener closes and busy connections are
    told, but an idle one stays usable, until ``aclose()`` closes it after all."""
    listener = MemoryListener()
    seen: list[tuple[bool, bool]] = []

    async def keep_alive(conn: Connection) -> None:
        while True:
            with conn.shutdown.idle() as idle:
                data = await conn.stream.receive_some()
            if idle.cancelled_caught or not data:
                return
            seen.append((conn.shutdown.draining, conn.shutdown.closing_idle))
            await conn.stream.send_all(b"ok")

    async with trio.open_nursery() as nursery:
        running = await _serve(nursery, keep_alive, [listener], grace_period=math.inf)
        client = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(partial(running.server.aclose, close_idle=False))
        await trio.testing.wait_all_tasks_blocked()
        assert listener.closed
        await client.send_all(b"request")
        assert await receive_exactly(client, 2) == b"ok"
        await running.server.aclose()
        assert await receive_until_eof(client) == b""
    assert seen == [(True, False)]
