"""Hello, WebSocket: a page and a WebSocket echo on one port.

Run it (from the repository root)::

    python examples/hello.py                       # http://127.0.0.1:8000/
    python examples/hello.py --bind 127.0.0.1:0    # any free port (printed)
    scripts/run                                    # the same, in a fresh virtualenv

Open the printed URL in a browser: the page's script opens a WebSocket to the
same server (``location.host``, path ``/ws``) and shows every message echoed
back. From a shell::

    curl http://127.0.0.1:8000/            # the page
    curl -i http://127.0.0.1:8000/ws       # 426: this path is WebSocket only
    python -m websockets ws://127.0.0.1:8000/ws

One :class:`trio_upgrade.bridge.App` serves both: ``GET /`` goes to its HTTP
router, the upgrade to ``/ws`` to its WebSocket router, where
:func:`~trio_upgrade.bridge.check_origin` refuses pages of other sites
(cross-site WebSocket hijacking) but lets clients without an ``Origin``
(curl, scripts) in. Ctrl+C stops it gracefully: open sockets are closed with
1001 (going away).
"""

from __future__ import annotations

import argparse
import logging

import trio

from trio_upgrade.bridge import App, ServerWebSocket, check_origin
from trio_upgrade.core import run_until_signal
from trio_upgrade.http import Request, Response, create_server

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>trio_upgrade: hello</title>
<h1>Hello, WebSocket</h1>
<p id="status">connecting…</p>
<form id="say"><input id="text" placeholder="say something" autofocus> <button>Send</button></form>
<pre id="log"></pre>
<script>
const status = document.getElementById("status"), log = document.getElementById("log");
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");
const show = (line) => { log.textContent += line + "\\n"; };
ws.onopen = () => { status.textContent = "connected to " + ws.url; };
ws.onmessage = (event) => show("← " + event.data);
ws.onclose = (event) => { status.textContent = "closed (" + event.code + ")"; };
document.getElementById("say").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value && ws.readyState === WebSocket.OPEN) {
    ws.send(input.value);
    show("→ " + input.value);
    input.value = "";
  }
};
</script>
"""

app = App()


@app.route("/")
async def index(request: Request) -> Response:
    return Response.html(PAGE)


# Browsers send Origin: pages of other sites are refused (403). Clients without
# one (curl, scripts) cannot carry a victim's cookies, so they may connect.
@app.websocket("/ws", middleware=[check_origin(allow_missing=True)])
async def echo(ws: ServerWebSocket) -> None:
    async for message in ws:
        await ws.send(message)


async def main(bind: str) -> None:
    server = await create_server(app, bind, grace_period=5)
    for address in server.addresses:
        if isinstance(address, tuple):
            host, port = address
            host = f"[{host}]" if ":" in host else host
            print(f"serving on http://{host}:{port}/", flush=True)
        else:
            print(f"serving on unix:{address}", flush=True)
    await run_until_signal(server)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port or unix:/path")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trio.run(main, parser.parse_args().bind)
