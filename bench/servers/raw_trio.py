"""The floor of any Trio HTTP server: a raw keep-alive loop with no parser.

One task per connection on ``trio.SocketStream``: read, split the bytes at
each blank line, answer a fixed response per request (200 "Hello, world!"
for a request line starting ``GET / ``, 404 otherwise), one ``send_all`` per
read. No header is looked at, no body is expected, nothing is validated: it
is not an HTTP server, only what Trio itself costs per request (a receive and
a send through the scheduler), which every Trio server pays on top of its own
work.
"""

from __future__ import annotations

import functools

import trio
from _common import HELLO, HOST, parse_port, trio_wait_for_signal

_OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(HELLO), HELLO)
)
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 9\r\n\r\nNot Found"
)


async def handle(stream: trio.SocketStream) -> None:
    buffer = b""
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
            out = b""
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                out += _OK if buffer.startswith(b"GET / ") else _NOT_FOUND
                buffer = buffer[end + 4 :]
            if out:
                await stream.send_all(out)
    except trio.BrokenResourceError:
        pass


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_tcp, handle, port, host=HOST, backlog=1024))
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
