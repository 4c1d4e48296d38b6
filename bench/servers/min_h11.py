"""The reference for trio + h11: a minimal keep-alive hello-world loop, no framework.

One task per connection, no routing table, no middleware, no request
object: read, feed h11, answer ``GET /`` with "Hello, world!" (404 for
other paths), next cycle. It is correct enough for a benchmark (keep-alive,
HEAD, ``Connection: close``, 400 on a malformed request) and nothing more.
Our HTTP layer's cost is read against it (ours writes its common responses
without h11, so it can come in under this loop).
"""

from __future__ import annotations

import functools

import h11
import trio
from _common import HELLO, HOST, parse_port, trio_wait_for_signal

_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"13")]
_NOT_FOUND = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")]


async def handle(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = await next_event(stream, conn)
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed (EOF) or a client that went away.
            request = event
            # No request body is expected: skip to the end of the message.
            while not isinstance(event, h11.EndOfMessage):
                event = await next_event(stream, conn)
                if isinstance(event, h11.ConnectionClosed):
                    return
            await respond(stream, conn, request)
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            out = conn.send(h11.Response(status_code=400, headers=[(b"content-length", b"0")]))
            await stream.send_all((out or b"") + (conn.send(h11.EndOfMessage()) or b""))
    except trio.BrokenResourceError:
        pass


async def next_event(stream: trio.SocketStream, conn: h11.Connection) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


async def respond(stream: trio.SocketStream, conn: h11.Connection, request: h11.Request) -> None:
    if request.target == b"/" and request.method in (b"GET", b"HEAD"):
        status, reason, headers, body = 200, b"OK", _HEADERS, HELLO
    else:
        status, reason, headers, body = 404, b"Not Found", _NOT_FOUND, b"Not Found"
    out = conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
    if request.method != b"HEAD":
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    # One send_all per response: the whole answer leaves in one write.
    await stream.send_all(out)


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_tcp, handle, port, host=HOST, backlog=1024))
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
