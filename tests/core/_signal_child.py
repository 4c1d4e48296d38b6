"""Child process for test_run: serve on a loopback port until SIGINT/SIGTERM.

argv: mode ("finish" or "stubborn"), grace period in seconds.
Prints the port on one line once the signal handlers are installed, and
"exited cleanly" when run_until_signal has returned.
"""

from __future__ import annotations

import logging
import sys

import trio

from trio_upgrade.core import Connection, Server, open_listeners, run_until_signal


async def handler(conn: Connection) -> None:
    await conn.stream.send_all(b"accepted\n")
    await conn.shutdown.wait()
    await conn.stream.send_all(b"draining\n")
    if sys.argv[1] == "finish":
        # The request in flight: completes when the client sends the rest.
        await conn.stream.receive_some()
        await conn.stream.send_all(b"bye\n")
    else:
        await trio.sleep_forever()


async def main() -> None:
    listeners = await open_listeners("127.0.0.1:0")
    server = Server(handler, listeners, grace_period=float(sys.argv[2]))
    async with trio.open_nursery() as nursery:
        await nursery.start(run_until_signal, server)
        address = server.addresses[0]
        assert isinstance(address, tuple)
        print(address[1], flush=True)
    print("exited cleanly", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    trio.run(main)
