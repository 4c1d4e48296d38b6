"""Connection limits: the overload answer, shedding, the per-client limit, the default limit.

In-memory listeners where only trio's scheduling matters; real loopback
sockets where addresses or the kernel do (per-client counting, closing with
unread data).
"""

from __future__ import annotations

import contextlib
import socket as stdlib_socket
from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

from trio_upgrade.core import Connection, Server, open_listeners
from trio_upgrade.core._limits import fd_limit_connections, raise_fd_limit

from ._helpers import MemoryListener, receive_until_eof, tcp

resource = pytest.importorskip("resource")

Handler = Callable[[Connection], Awaitable[object]]
BUSY = b"busy\n"


async def _start(
    nursery: trio.Nursery,
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    **options: object,
) -> Server:
    server = Server(handler, listeners, **options)  # type: ignore[arg-type]
    started: Server = await nursery.start(server.serve)
    return started


class Recorder:
    """A handler that records its connections and holds each until released."""

    def __init__(self, *, sheddable: bool = False) -> None:
        self.sheddable = sheddable
        self.conns: list[Connection] = []
        self.ended: list[Connection] = []
        self.release = trio.Event()
        self._changed = trio.Event()

    async def __call__(self, conn: Connection) -> None:
        self.conns.append(conn)
        self._notify()
        conn.sheddable = self.sheddable
        try:
            await self.release.wait()
        finally:
            self.ended.append(conn)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, started: int, ended: int = 0) -> None:
        """Wait until *started* connections have started and *ended* have ended."""
        with trio.fail_after(30):  # hang guard
            while len(self.conns) < started or len(self.ended) < ended:
                await self._changed.wait()


# ------------------------------------------------------------ the overload answer


async def test_connection_past_max_connections_gets_the_overload_answer_then_eof() -> None:
    listener = MemoryListener()
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=2, overload_response=BUSY
        )
        served = [await listener.connect() for _ in range(2)]
        await trio.testing.wait_all_tasks_blocked()
        refused = await listener.connect()
        assert await receive_until_eof(refused) == BUSY
        await refused.aclose()
        await trio.testing.wait_all_tasks_blocked()
        # The two served connections are untouched.
        assert len(handler.conns) == 2
        assert handler.ended == []
        assert server.connection_count == 2
        handler.release.set()
        await server.aclose()
    for client in served:
        await client.aclose()


async def test_without_an_overload_response_the_connection_past_the_limit_is_closed() -> None:
    listener = MemoryListener()
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(nursery, handler, [listener], max_connections=1)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        refused = await listener.connect()
        assert await receive_until_eof(refused) == b""
        handler.release.set()
        await server.aclose()


async def test_accepting_goes_on_at_the_limit_and_the_next_client_is_served_once_a_slot_frees(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = MemoryListener()
    started: list[int] = []
    release = trio.Event()

    async def handler(conn: Connection) -> None:
        started.append(len(started))
        if len(started) == 1:
            await release.wait()

    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, overload_response=BUSY
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):  # each refused at once: none waits in the backlog
            refused = await listener.connect()
            assert await receive_until_eof(refused) == BUSY
            await refused.aclose()
        assert listener.accepted == 4
        assert started == [0]
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert started == [0, 1]
        await server.aclose()
    # One warning for the whole episode, not one per refused client.
    warnings = [r for r in caplog.records if "max_connections (1) reached" in r.getMessage()]
    assert len(warnings) == 1


async def test_overload_response_may_be_a_function_called_for_every_refusal() -> None:
    listener = MemoryListener()
    handler = Recorder()
    calls: list[int] = []

    def answer() -> bytes:
        calls.append(len(calls))
        return b"busy %d\n" % len(calls)

    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, overload_response=answer
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        for number in (1, 2):
            refused = await listener.connect()
            assert await receive_until_eof(refused) == b"busy %d\n" % number
            await refused.aclose()
        handler.release.set()
        await server.aclose()


async def test_an_overload_response_function_that_fails_is_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = MemoryListener()
    handler = Recorder()

    def answer() -> bytes:
        raise RuntimeError("no answer")

    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, overload_response=answer
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        refused = await listener.connect()
        assert await receive_until_eof(refused) == b""
        await trio.testing.wait_all_tasks_blocked()
        assert server.connection_count == 1
        handler.release.set()
        await server.aclose()
    assert any(r.exc_info and "no answer" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_refused_client_that_never_closes_is_closed_after_the_answer_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listener = MemoryListener()
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, overload_response=BUSY
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        refused = await listener.connect()
        assert await receive_until_eof(refused) == BUSY
        # The server still reads (what the client sends is discarded) ...
        await refused.send_all(b"more")
        await trio.sleep(5)
        # ... until its short timeout; then the connection is closed.
        with pytest.raises(trio.BrokenResourceError):
            await refused.send_all(b"more")
        handler.release.set()
        await server.aclose()


async def test_at_most_64_overload_answers_are_written_at_a_time_the_rest_are_closed() -> None:
    listener = MemoryListener()
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, overload_response=BUSY
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        # None of these closes, so every answer stays in progress (reading).
        refused = [await listener.connect() for _ in range(70)]
        await trio.testing.wait_all_tasks_blocked()
        answers = [await receive_until_eof(client) for client in refused]
        assert answers.count(BUSY) == 64
        assert answers.count(b"") == 6
        for client in refused:
            await client.aclose()
        handler.release.set()
        await server.aclose()


async def test_a_tcp_client_past_the_limit_that_sent_a_request_reads_the_whole_answer() -> None:
    """The answer is not lost to a reset when the client's request was never read."""
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery,
            handler,
            await open_listeners("127.0.0.1:0"),
            max_connections=1,
            overload_response=BUSY * 1000,
        )
        host, port = tcp(server.addresses[0])
        served = await trio.open_tcp_stream(host, port)
        await served.send_all(b"hello")
        for _ in range(5):
            refused = await trio.open_tcp_stream(host, port)
            await refused.send_all(b"x" * 10_000)
            with trio.fail_after(30):  # hang guard
                assert await receive_until_eof(refused) == BUSY * 1000
            await refused.aclose()
        assert len(handler.conns) == 1
        handler.release.set()
        await served.aclose()
        await server.aclose()


# -------------------------------------------------------------------- shedding


async def test_a_full_server_sheds_the_connection_sheddable_for_longest() -> None:
    listener = MemoryListener()
    handler = Recorder(sheddable=True)
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=2, overload_response=BUSY
        )
        first = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        second = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        third = await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        # The first made room for the third: closed, no answer.
        assert await receive_until_eof(first) == b""
        assert [c.shed for c in handler.conns] == [True, False, False]
        assert handler.ended == handler.conns[:1]
        assert server.connection_count == 2
        handler.release.set()
        await server.aclose()
    for client in (second, third):
        await client.aclose()


async def test_shedding_order_is_when_a_connection_last_became_sheddable() -> None:
    """A connection that was busy goes to the back of the line (HTTP keep-alive)."""
    listener = MemoryListener()
    conns: list[Connection] = []
    busy_again = trio.Event()

    async def handler(conn: Connection) -> None:
        conns.append(conn)
        conn.sheddable = True
        if len(conns) == 1:
            await busy_again.wait()
            conn.sheddable = False  # a request...
            conn.sheddable = True  # ... answered: waiting again
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await _start(nursery, handler, [listener], max_connections=2)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        busy_again.set()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert [c.shed for c in conns] == [False, True, False]
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert [c.shed for c in conns] == [True, True, False, False]
        server.cancel_connections()
        await server.aclose()


async def test_a_connection_that_is_not_sheddable_is_never_shed() -> None:
    listener = MemoryListener()
    conns: list[Connection] = []
    release = trio.Event()

    async def handler(conn: Connection) -> None:
        conns.append(conn)
        conn.sheddable = len(conns) == 2  # the first is busy, the second waits
        await release.wait()

    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=2, overload_response=BUSY
        )
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()  # takes the second's place
        await trio.testing.wait_all_tasks_blocked()
        refused = await listener.connect()  # nothing left to shed
        assert await receive_until_eof(refused) == BUSY
        assert [c.shed for c in conns] == [False, True, False]
        release.set()
        await server.aclose()


async def test_a_connection_shed_just_before_it_cleared_the_flag_can_tell() -> None:
    """Clearing the flag after a shed is harmless, and `shed` says what happened."""
    listener = MemoryListener()
    seen: list[bool] = []
    wake = trio.Event()

    async def handler(conn: Connection) -> None:
        conn.sheddable = True
        if not seen:
            seen.append(False)
            with trio.CancelScope(shield=True):
                await wake.wait()
            conn.sheddable = False
            seen.append(conn.shed)
            conn.sheddable = True  # no effect once shed
            return
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await _start(nursery, handler, [listener], max_connections=1)
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        wake.set()
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [False, True]
        assert server.connection_count == 1
        # The shed connection is gone from the line: the next arrival sheds the second.
        await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert server.connection_count == 1
        server.cancel_connections()
        await server.aclose()


def _connect_and_send(port: int, data: bytes) -> trio.SocketStream:
    """Connect and send without yielding to trio: the bytes are in the server's
    socket buffer before its accept loop can run."""
    sock = stdlib_socket.create_connection(("127.0.0.1", port))
    if data:
        sock.sendall(data)
    sock.setblocking(False)
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def _whole(data: bytes) -> bool:
    return data.endswith(b".")


async def test_shed_for_turns_away_a_newcomer_it_judges_unworthy_without_an_answer() -> None:
    handler = Recorder(sheddable=True)
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery,
            handler,
            await open_listeners("127.0.0.1:0"),
            max_connections=1,
            overload_response=BUSY,
            shed_for=_whole,
        )
        port = tcp(server.addresses[0])[1]
        first = _connect_and_send(port, b"")
        await handler.wait_until(1)
        partial = _connect_and_send(port, b"half a mess")
        with trio.fail_after(30):  # hang guard
            # No answer: EOF, or a reset (the server never read what it sent).
            with contextlib.suppress(trio.BrokenResourceError):
                assert await receive_until_eof(partial) == b""
        assert [c.shed for c in handler.conns] == [False]
        whole = _connect_and_send(port, b"a whole message.")
        await handler.wait_until(2)
        assert [c.shed for c in handler.conns] == [True, False]
        handler.release.set()
        for client in (first, partial, whole):
            await client.aclose()
        await server.aclose()


async def test_shed_for_is_not_asked_about_a_newcomer_that_has_sent_nothing_yet() -> None:
    handler = Recorder(sheddable=True)
    asked: list[bytes] = []

    def shed_for(data: bytes) -> bool:
        asked.append(data)
        return False

    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery,
            handler,
            await open_listeners("127.0.0.1:0"),
            max_connections=1,
            shed_for=shed_for,
        )
        port = tcp(server.addresses[0])[1]
        first = _connect_and_send(port, b"")
        await handler.wait_until(1)
        silent = _connect_and_send(port, b"")
        await handler.wait_until(2)
        big = _connect_and_send(port, b"x" * 5000)  # 4 KiB or more: always worth it
        await handler.wait_until(3)
        assert [c.shed for c in handler.conns] == [True, True, False]
        assert asked == []
        handler.release.set()
        for client in (first, silent, big):
            await client.aclose()
        await server.aclose()


async def test_shed_for_does_not_judge_streams_it_cannot_peek_at() -> None:
    listener = MemoryListener()
    handler = Recorder(sheddable=True)
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery, handler, [listener], max_connections=1, shed_for=lambda data: False
        )
        await listener.connect()
        await handler.wait_until(1)
        await listener.connect()
        await handler.wait_until(2)
        assert [c.shed for c in handler.conns] == [True, False]
        handler.release.set()
        await server.aclose()


def test_a_connection_built_without_a_server_keeps_the_flag_and_is_never_shed() -> None:
    _client, server_end = trio.testing.memory_stream_pair()
    conn = Connection(server_end, None)  # type: ignore[arg-type]
    assert conn.sheddable is False
    conn.sheddable = True
    assert conn.sheddable is True
    conn.sheddable = False
    assert (conn.sheddable, conn.shed) == (False, False)


# ---------------------------------------------------------- the per-client limit


async def test_per_client_limit_refuses_that_host_only_and_frees_as_its_connections_end() -> None:
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(
            nursery,
            handler,
            await open_listeners("127.0.0.1:0"),
            max_connections_per_client=2,
            overload_response=BUSY,
        )
        host, port = tcp(server.addresses[0])
        ours = [await trio.open_tcp_stream(host, port) for _ in range(2)]
        await handler.wait_until(2)
        refused = await trio.open_tcp_stream(host, port)
        with trio.fail_after(30):  # hang guard
            assert await receive_until_eof(refused) == BUSY
        await refused.aclose()
        # Another loopback address is another client.
        other = await trio.open_tcp_stream(host, port, local_address="127.0.0.2")
        await handler.wait_until(3)
        assert [tcp(c.client or "")[0] for c in handler.conns] == [
            "127.0.0.1",
            "127.0.0.1",
            "127.0.0.2",
        ]
        handler.release.set()
        await handler.wait_until(3, ended=3)
        # Their connections ended: the first host is welcome again.
        handler.release = trio.Event()
        again = await trio.open_tcp_stream(host, port)
        await handler.wait_until(4)
        handler.release.set()
        for client in [*ours, other, again]:
            await client.aclose()
        await server.aclose()


async def test_per_client_limit_does_not_count_clients_without_an_address() -> None:
    listener = MemoryListener()
    handler = Recorder()
    async with trio.open_nursery() as nursery:
        server = await _start(nursery, handler, [listener], max_connections_per_client=1)
        for _ in range(3):
            await listener.connect()
        await trio.testing.wait_all_tasks_blocked()
        assert len(handler.conns) == 3
        handler.release.set()
        await server.aclose()


# ------------------------------------------------------- the default limit


@pytest.mark.parametrize(
    ("soft", "connections"),
    [(None, 1000), (1, 1), (150, 75), (1024, 922), (20_000, 18_000), (1 << 20, 943_719)],
)
def test_default_max_connections_is_the_fd_limit_less_a_margin(
    soft: int | None, connections: int
) -> None:
    assert fd_limit_connections(soft) == connections


def test_the_default_max_connections_follows_the_process_fd_limit() -> None:
    server = Server(Recorder(), [])
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert server.max_connections == fd_limit_connections(soft)


def test_the_fd_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2:
        pytest.skip("no finite hard limit to raise to")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    try:
        assert raise_fd_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
