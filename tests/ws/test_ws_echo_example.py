"""examples/ws_echo.py in a real process: the echo, its Origin check (whole hosts,
not string prefixes), and Ctrl+C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from _wire import read_output_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.trio.client import connect

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ws_echo.py"

# Origins a page on another site could have: each looks local to a prefix test.
FOREIGN = [
    "http://localhost.evil.example",
    "http://127.0.0.1.evil.example",
    "http://localhost@evil.example",
    "https://evil.example",
    "null",
]
LOCAL = ["http://localhost:8000", "http://127.0.0.1", "https://[::1]:3000"]


async def test_ws_echo_refuses_foreign_origins_and_echoes_for_local_ones() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLE), "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output: list[str] = []
        found = await read_output_until(
            process.stdout, r"listening on \('127\.0\.0\.1', (\d+)\)", output
        )
        url = f"ws://127.0.0.1:{found.group(1)}/"

        for origin in FOREIGN:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, proxy=None, origin=origin):
                    pass
            assert refused.value.response.status_code == 403, origin
            assert refused.value.response.body == b"origin not allowed\n", origin

        for origin in LOCAL:
            async with connect(url, proxy=None, origin=origin, subprotocols=["echo"]) as ws:
                assert ws.subprotocol == "echo"
                await ws.send(origin)
                assert await ws.recv() == origin

        # No Origin: not a browser, so no ambient credentials to hijack.
        async with connect(url, proxy=None) as ws:
            await ws.send(b"\x00bytes")
            assert await ws.recv() == b"\x00bytes"
            # Ctrl+C: the open session is closed with 1001 and the process exits 0.
            process.send_signal(signal.SIGINT)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
        with trio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()
