"""Run a server until SIGINT or SIGTERM, then shut it down gracefully."""

from __future__ import annotations

import logging
import signal

import trio

from ._server import Server

__all__ = ["run_until_signal"]

logger = logging.getLogger("trio_upgrade.core")


async def run_until_signal(
    server: Server, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until the process gets SIGINT or SIGTERM, then drain and return.

    A second signal during the drain cancels what remains at once. Also returns
    when the server stops for another reason (``await server.aclose()`` from
    elsewhere). Must run in the main thread (signal handlers live there).
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve_then_stop, server, nursery)
            task_status.started(server)
            count = 0
            async for signum in signals:
                count += 1
                if count == 1:
                    logger.info(
                        "%s received: shutting down (grace period %.1f s)",
                        signal.Signals(signum).name,
                        server.grace_period,
                    )
                    nursery.start_soon(_close_then_stop, server, nursery)
                else:
                    logger.warning("second signal: stopping now")
                    server.cancel_connections()
                    break


async def _serve_then_stop(
    server: Server, nursery: trio.Nursery, *, task_status: trio.TaskStatus[Server]
) -> None:
    # Without this, a server closed by someone else would leave us waiting
    # for a signal forever.
    await server.serve(task_status=task_status)
    nursery.cancel_scope.cancel()


async def _close_then_stop(server: Server, nursery: trio.Nursery) -> None:
    await server.aclose()
    nursery.cancel_scope.cancel()
