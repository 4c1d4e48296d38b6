"""A gateway on one port in front of two services on Unix sockets.

Run it (from the repository root)::

    python examples/gateway.py            # gateway on http://127.0.0.1:8080/
    python examples/gateway.py --bind 127.0.0.1:9000

One process starts three servers:

- **notes**, an HTTP app (:class:`trio_upgrade.http.Router`) on
  ``unix:<tmpdir>/notes.sock``: a page at ``/``, a small JSON API at
  ``/api/notes``, and a streamed response at ``/api/count``;
- **echo**, a WebSocket service (:func:`trio_upgrade.ws.serve_websocket`) on
  ``unix:<tmpdir>/echo.sock``, answering every message with ``echo: ...``;
- the **gateway**, a :class:`trio_upgrade.proxy.Proxy` on one TCP port:
  ``/echo`` goes to the echo service (the prefix stripped), everything else to
  the notes service. The longest prefix wins, so ``/echo`` beats ``/``.

Open the printed URL in a browser: the page (served by notes, through the
gateway) lists notes and opens a WebSocket to ``/echo`` (tunnelled by the
gateway to echo). Or from a shell::

    curl http://127.0.0.1:8080/api/notes
    curl -X POST -d 'buy milk' http://127.0.0.1:8080/api/notes
    curl -N http://127.0.0.1:8080/api/count?to=5
    python -m websockets ws://127.0.0.1:8080/echo

Ctrl+C stops everything gracefully; the sockets' directory is removed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from trio_upgrade.core import Server, run_until_signal
from trio_upgrade.http import HTTPError, Request, Response, Router, create_server, serve
from trio_upgrade.proxy import Proxy
from trio_upgrade.ws import WebSocket, serve_websocket

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>trio_upgrade gateway</title>
<h1>Notes <small>(HTTP service behind the gateway)</small></h1>
<ul id="notes"></ul>
<form id="add"><input id="text" placeholder="a note"> <button>Add</button></form>
<h1>Echo <small>(WebSocket service behind the gateway)</small></h1>
<form id="say"><input id="msg" placeholder="say something"> <button>Send</button></form>
<pre id="log"></pre>
<script>
const list = document.getElementById("notes"), log = document.getElementById("log");
async function refresh() {
  const notes = await (await fetch("api/notes")).json();
  const item = (n) => Object.assign(document.createElement("li"), {textContent: n});
  list.replaceChildren(...notes.map(item));
}
document.getElementById("add").onsubmit = async (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  await fetch("api/notes", {method: "POST", body: input.value});
  input.value = ""; refresh();
};
const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/\\/[^/]*$/, "/echo"));
ws.onopen = () => log.textContent += "connected\\n";
ws.onmessage = (e) => log.textContent += e.data + "\\n";
ws.onclose = (e) => log.textContent += `closed (${e.code})\\n`;
document.getElementById("say").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("msg");
  ws.send(input.value); input.value = "";
};
refresh();
</script>
"""


def notes_app() -> Router:
    """The HTTP service: a page, a list of notes, a streamed count."""
    app = Router()
    notes: list[str] = ["try the echo below"]

    @app.get("/")
    async def page(request: Request) -> Response:
        return Response.html(PAGE)

    @app.get("/api/notes")
    async def list_notes(request: Request) -> Response:
        return Response.json(notes)

    @app.post("/api/notes")
    async def add_note(request: Request) -> Response:
        request.max_body_size = 4096
        text = (await request.text()).strip()
        if text:
            notes.append(text)
        return Response.json(notes, status=201)

    @app.get("/api/count")
    async def count(request: Request) -> Response:
        # Bad input gets a clear answer: a 400 saying why, not a 500.
        try:
            to = int(request.query.get("to") or "10")
        except ValueError:
            raise HTTPError(400, "to must be a whole number") from None
        to = max(0, min(to, 1000))

        async def lines() -> AsyncIterator[bytes]:
            for i in range(1, to + 1):
                yield f"{i}\n".encode()
                await trio.sleep(0.2)

        # No Content-Length: streamed chunked, through the gateway as it is produced.
        return Response.stream(lines(), content_type="text/plain; charset=utf-8")

    return app


async def echo(ws: WebSocket) -> None:
    """The WebSocket service: answer every message."""
    async for message in ws:
        await ws.send(f"echo: {message}" if isinstance(message, str) else message)


@dataclass
class Gateway:
    """The three running servers and the proxy (for tests and for printing URLs)."""

    notes: Server
    echo: Server
    gateway: Server
    proxy: Proxy


async def start_gateway(nursery: trio.Nursery, bind: str, sock_dir: str) -> Gateway:
    """Start the two services on Unix sockets in *sock_dir* and the gateway on *bind*.

    The gateway server is created but not served: the caller serves it (in
    ``main`` until a signal; in tests in *nursery*).
    """
    notes_server: Server = await nursery.start(
        functools.partial(serve, notes_app(), f"unix:{sock_dir}/notes.sock")
    )
    echo_server: Server = await nursery.start(
        functools.partial(serve_websocket, echo, f"unix:{sock_dir}/echo.sock")
    )
    proxy = Proxy(
        {
            "/": f"unix:{sock_dir}/notes.sock",
            "/echo": f"unix:{sock_dir}/echo.sock",
        }
    )
    gateway = await create_server(proxy, bind)
    return Gateway(notes_server, echo_server, gateway, proxy)


def _url(address: tuple[str, int] | str) -> str:
    if isinstance(address, str):
        return f"unix:{address}"
    host, port = address
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


async def main(bind: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gateway-") as sock_dir:
        async with trio.open_nursery() as nursery:
            running = await start_gateway(nursery, bind, sock_dir)
            async with running.proxy:
                for address in running.notes.addresses:
                    print(f"notes service:  {_url(address)}")
                for address in running.echo.addresses:
                    print(f"echo service:   {_url(address)} (WebSocket)")
                for address in running.gateway.addresses:
                    url = _url(address)
                    print(f"gateway:        {url}   (open this one)")
                    print(f"  WebSocket:    {url.replace('http', 'ws', 1)}echo")
                print("Ctrl+C to stop")
                await run_until_signal(running.gateway)
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1:8080", help="gateway address")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trio.run(main, args.bind)
