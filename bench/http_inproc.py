"""In-process HTTP driver for instruction counts: one keep-alive connection over a
socketpair, N hello-world requests in lockstep, everything in one process.

The server is the ``ours`` configuration of ``http_hello.py`` (a Router, one
route, one pass-through middleware); the client is a raw socket in the same
trio run. Run it twice under callgrind and take the difference, so start-up
cancels out; the request parser is chosen with ``TRIO_UPGRADE_HTTP_PARSER``::

    for n in 500 1500; do
        TRIO_UPGRADE_HTTP_PARSER=h11 valgrind --tool=callgrind \\
            --callgrind-out-file=/dev/null .venv/bin/python bench/http_inproc.py $n
    done   # (Collected[1500] - Collected[500]) / 1000 = instructions per request

With ``BENCH_METRICS=1`` the connection has the command's Prometheus observer
(``--metrics-bind``): the same run then counts what metrics cost per request.

A second argument serves another app the same way: ``asgi`` (the raw ASGI
hello of ``bench/servers/_asgi.py`` through ``ASGIHandler``) or ``starlette``
(the Starlette hello), for profiling the ASGI path (``python -m cProfile``).

Instruction counts do not move with the load of a shared machine, unlike
wrk's figures; the client's share (one send, one or two receives per request)
is in every count alike.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import trio

from trio_upgrade.core import Connection
from trio_upgrade.http import Handler, Request, Response, Router, Takeover, serve_http_connection

REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"Accept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n"
)


def make_router() -> Router:
    router = Router()

    @router.route("/")
    async def hello(request: Request) -> Response:
        return Response.text("Hello, world!")

    async def passthrough(request: Request, call_next: Handler) -> Response | Takeover:
        return await call_next(request)

    router.add_middleware(passthrough)
    return router


def make_handler(name: str) -> Handler:
    if name == "native":
        return make_router()
    sys.path.insert(0, str(Path(__file__).parent / "servers"))
    from trio_upgrade.asgi import ASGIHandler

    if name == "starlette":
        from _starlette_app import app
    else:
        from _asgi import app
    return ASGIHandler(app)


async def main(count: int, handler: Handler) -> None:
    server_sock, client_sock = socket.socketpair()
    server = trio.SocketStream(trio.socket.from_stdlib_socket(server_sock))
    client = trio.socket.from_stdlib_socket(client_sock)
    async with trio.open_nursery() as nursery:
        conn = Connection(server, nursery, client=("127.0.0.1", 1), server=("127.0.0.1", 2))
        if os.environ.get("BENCH_METRICS") == "1":
            from prometheus_client import CollectorRegistry

            from trio_upgrade._cli import PrometheusObserver

            conn.observer = PrometheusObserver(CollectorRegistry())
        nursery.start_soon(serve_http_connection, conn, handler)
        for _ in range(count):
            await client.send(REQUEST)
            received = b""
            while not received.endswith(b"Hello, world!"):
                received += await client.recv(65536)
        nursery.cancel_scope.cancel()
    client.close()


if __name__ == "__main__":
    trio.run(
        main,
        int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
        make_handler(sys.argv[2] if len(sys.argv) > 2 else "native"),
    )
