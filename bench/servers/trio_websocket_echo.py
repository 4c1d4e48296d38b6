"""trio-websocket's server echoing every message (default settings, 16 MiB message limit)."""

from __future__ import annotations

import functools

from _common import HOST, MAX_MESSAGE, parse_port, trio_wait_for_signal, unavailable

try:
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket
except ImportError as exc:
    unavailable(f"trio-websocket is not installed ({exc}); run bench/setup")


async def echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        return


async def main(port: int) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(
                serve_websocket, echo, HOST, port, ssl_context=None, max_message_size=MAX_MESSAGE
            )
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse_port())
