"""Autobahn's framing (1.*) and ping/pong (2.*) groups through a raw ASGI echo app:
no FAILED case. The session is the ws layer's (covered whole by tests/ws); this
run checks the way in and the message translation of the websocket scope."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from _asgi_helpers import serving

from trio_upgrade.ws import WebSocketConfig

pytestmark = [pytest.mark.autobahn, pytest.mark.timeout(300)]


def _load_runner() -> Any:
    # tests/ws/autobahn.py, by path: tests/ is not a package.
    path = Path(__file__).resolve().parents[1] / "ws" / "autobahn.py"
    spec = importlib.util.spec_from_file_location("asgi_autobahn_runner", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _load_runner()


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        raise RuntimeError("only websocket")
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def test_asgi_echo_passes_autobahn_framing_and_pings(tmp_path: Path) -> None:
    config = WebSocketConfig(ping_interval=None)
    async with serving(echo, websocket_config=config, grace_period=1, lifespan="off") as server:
        host, port = server.addresses[0]  # type: ignore[misc]
        report = await runner.run_fuzzingclient(
            f"ws://{host}:{port}/echo", outdir=tmp_path, cases=["1.*", "2.*"], parallelism=2
        )
    assert report.behavior, f"no case ran:\n{report.output[-3000:]}"
    assert report.failed == [], report.summary()
    assert len(report.behavior) == 27  # 1.1.1-1.2.8 and 2.1-2.11: every case ran
