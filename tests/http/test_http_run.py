"""``trio_upgrade.run`` end to end: a real process, a real signal, a graceful exit."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from _http_helpers import ResponseReader, receive_until_eof

APP = textwrap.dedent(
    """
    import logging
    import sys

    import trio_upgrade
    from trio_upgrade import Request, Response, Router, current_connection

    router = Router()
    log = logging.getLogger("app")

    @router.get("/slow")
    async def slow(request: Request) -> Response:
        log.warning("slow request started")
        # In flight until the signal has started the drain: no race with a timer.
        await current_connection().shutdown.wait()
        log.warning("slow request saw the drain")
        return Response.text("slow done")

    trio_upgrade.run(router, bind=sys.argv[1])
    """
)


class LineReader:
    """Lines of a child's stderr, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.text = ""

    async def wait_for(self, pattern: str) -> re.Match[str]:
        while (found := re.search(pattern, self.text)) is None:
            data = await self.stream.receive_some()
            if not data:
                raise AssertionError(f"EOF before {pattern!r}; stderr:\n{self.text}")
            self.text += data.decode()
        return found

    async def read_rest(self) -> str:
        self.text += (await receive_until_eof(self.stream)).decode()
        return self.text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_run_finishes_the_request_in_flight_then_exits_0_on_signal(
    signum: signal.Signals, tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), "127.0.0.1:0"],
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        stderr = LineReader(process.stderr)
        found = await stderr.wait_for(r"serving on http://127\.0\.0\.1:(\d+)/")
        stream = await trio.open_tcp_stream("127.0.0.1", int(found.group(1)))
        async with stream:
            await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            await stderr.wait_for("slow request started")
            process.send_signal(signum)
            response = await ResponseReader(stream).read_response()
        assert response.status == 200
        assert response.body == b"slow done"
        assert response.headers.get_tokens("connection") == ["close"]
        text = await stderr.read_rest()
        assert await process.wait() == 0, text
        assert f"{signum.name} received" in text
        assert text.index("received: shutting down") < text.index("saw the drain")
        assert "stopped" in text
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
            if process.stderr is not None:
                await process.stderr.aclose()
