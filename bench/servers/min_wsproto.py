"""The ceiling for trio + wsproto: a minimal echo loop, one task per connection.

Read, feed wsproto, answer every event parsed from that read (handshake,
messages, pings, close), then send everything with one ``send_all``. No
channels, no reader/writer tasks, no limits: whatever our WebSocket layer
adds on top of this is its overhead. Binary messages come back binary, text
messages text; fragmented messages are reassembled and echoed whole.
"""

from __future__ import annotations

import functools

import trio
from _common import HOST, parse_port, trio_wait_for_signal
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

# Large reads: fewer trips through the loop for the 1 MiB messages.
RECEIVE_SIZE = 256 * 1024


async def handle(stream: trio.SocketStream) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    parts: list[bytes | bytearray] = []
    text_parts: list[str] = []
    try:
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            ws.receive_data(data or None)  # None tells wsproto about EOF
            out: list[bytes] = []
            closing = not data
            for event in ws.events():
                if isinstance(event, BytesMessage):
                    parts.append(event.data)
                    if event.message_finished:
                        out.append(ws.send(BytesMessage(data=b"".join(parts))))
                        parts.clear()
                elif isinstance(event, TextMessage):
                    text_parts.append(event.data)
                    if event.message_finished:
                        out.append(ws.send(TextMessage(data="".join(text_parts))))
                        text_parts.clear()
                elif isinstance(event, Request):
                    out.append(ws.send(AcceptConnection()))
                elif isinstance(event, Ping):
                    out.append(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    out.append(ws.send(event.response()))
                    closing = True
            if out:
                await stream.send_all(b"".join(out))
            if closing:
                return
    except (RemoteProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(trio.serve_tcp, handle, port, host=HOST, backlog=4096))
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
