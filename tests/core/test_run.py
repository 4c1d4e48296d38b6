"""run_until_signal: real SIGINT/SIGTERM delivered to a child process serving on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from trio_upgrade.core import Connection, Server, open_listeners, run_until_signal

from ._helpers import MemoryListener, receive_exactly, receive_until_eof, tcp

CHILD = Path(__file__).with_name("_signal_child.py")


async def _noop(conn: Connection) -> None:
    await trio.lowlevel.checkpoint()


class Child:
    """The child server process and its output."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = bytearray()

    async def readline(self) -> bytes:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            assert chunk, f"child stdout ended after {bytes(self._buffer)!r}"
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        return line

    async def rest_of_output(self) -> tuple[bytes, bytes]:
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        stdout = bytes(self._buffer) + await receive_until_eof(self.process.stdout)
        return stdout, await receive_until_eof(self.process.stderr)


async def _start_child(mode: str, grace_period: float) -> tuple[Child, int]:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(CHILD), mode, str(grace_period)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child = Child(process)
    port = int(await child.readline())
    return child, port


async def _finish(child: Child) -> None:
    """Kill the child if a test left it running; wait for it either way."""
    if child.process.returncode is None:
        child.process.kill()
    with trio.CancelScope(shield=True):
        await child.process.wait()
        for pipe in (child.process.stdout, child.process.stderr):
            if pipe is not None:
                await pipe.aclose()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_accepting_finishes_in_flight_work_and_exits_zero(
    signum: signal.Signals,
) -> None:
    child, port = await _start_child("finish", grace_period=3600)
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(trio.fail_after(60))  # hang guard, not a duration check
            client = await trio.open_tcp_stream("127.0.0.1", port)
            stack.push_async_callback(client.aclose)
            assert await receive_exactly(client, 9) == b"accepted\n"

            os.kill(child.process.pid, signum)
            assert await receive_exactly(client, 9) == b"draining\n"
            # The listener is closed before the drain is announced.
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)

            await client.send_all(b"the rest of the request")
            assert await receive_until_eof(client) == b"bye\n"
            assert await child.process.wait() == 0
            stdout, stderr = await child.rest_of_output()
    finally:
        await _finish(child)
    assert stdout == b"exited cleanly\n"
    assert f"{signum.name} received: shutting down".encode() in stderr


async def test_second_signal_cancels_what_remains_at_once() -> None:
    child, port = await _start_child("stubborn", grace_period=3600)
    try:
        async with contextlib.AsyncExitStack() as stack:
            stack.enter_context(trio.fail_after(60))  # hang guard: the grace is an hour
            client = await trio.open_tcp_stream("127.0.0.1", port)
            stack.push_async_callback(client.aclose)
            assert await receive_exactly(client, 9) == b"accepted\n"
            os.kill(child.process.pid, signal.SIGTERM)
            assert await receive_exactly(client, 9) == b"draining\n"

            os.kill(child.process.pid, signal.SIGINT)
            assert await receive_until_eof(client) == b""
            assert await child.process.wait() == 0
            stdout, stderr = await child.rest_of_output()
    finally:
        await _finish(child)
    assert stdout == b"exited cleanly\n"
    assert b"second signal: stopping now" in stderr


async def test_run_until_signal_returns_when_the_server_is_closed_elsewhere() -> None:
    listener = MemoryListener()
    server = Server(_noop, [listener])
    with trio.fail_after(30):  # hang guard: it used to wait for a signal forever
        async with trio.open_nursery() as nursery:
            started = await nursery.start(run_until_signal, server)
            assert started is server
            await server.aclose()
    assert listener.closed


async def test_run_until_signal_reports_the_listening_server() -> None:
    listeners = await open_listeners("127.0.0.1:0")
    server = Server(_noop, listeners)
    with trio.fail_after(30):  # hang guard
        async with trio.open_nursery() as nursery:
            await nursery.start(run_until_signal, server)
            host, port = tcp(server.addresses[0])
            async with await trio.open_tcp_stream(host, port) as client:
                assert await receive_until_eof(client) == b""
            await server.aclose()
