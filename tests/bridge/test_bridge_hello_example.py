"""examples/hello.py in a real process: the page, the echo, the origin check, Ctrl+C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from _bridge_helpers import ws_connect
from _wire import read_output_until
from websockets.exceptions import ConnectionClosed, InvalidStatus

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.py"


async def test_hello_serves_the_page_and_echoes_then_stops_on_sigint() -> None:
    process = await trio.lowlevel.open_process(
        [sys.executable, str(EXAMPLE), "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output: list[str] = []
        found = await read_output_until(
            process.stdout, r"serving on (http://127\.0\.0\.1:(\d+)/)", output
        )
        url, port = found.group(1), found.group(2)
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(url)
            plain = await http.get(url + "ws")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        # the page's script connects to the server that served it
        assert 'new WebSocket(scheme + location.host + "/ws")' in page.text
        assert plain.status_code == 426
        ws_url = f"ws://127.0.0.1:{port}/ws"
        # a non-browser client (no Origin) and the page's own origin are welcome
        async with ws_connect(ws_url) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
        async with ws_connect(ws_url, origin=url.rstrip("/")) as ws:
            await ws.send("from the page")
            assert await ws.recv() == "from the page"
            with pytest.raises(InvalidStatus) as refused:
                async with ws_connect(ws_url, origin="http://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
            # Ctrl+C: the open socket is closed with 1001 and the process exits 0
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
