"""``--workers N``: a supervising parent and N worker processes on the same sockets.

The parent binds every listening socket once and starts each worker as
``python -m trio_upgrade`` with the same arguments, passing the sockets by
descriptor (``pass_fds``) and naming them in ``TRIO_UPGRADE_WORKER_FDS``. All
workers accept on the same sockets; the kernel hands each connection to one.

Two pipes tie a worker to the parent:

- *ready*: the worker writes one byte once it accepts connections. EOF without
  that byte means it died while starting.
- *lifeline*: the parent holds the only write end; a worker that reads EOF on
  it (the parent died, even by SIGKILL) drains and exits.

Signals: SIGTERM and SIGINT drain every worker (a second one stops them at
once); SIGHUP replaces the workers one by one, each new worker accepting
before the old one is asked to retire, so no connection meets a closed socket.
A worker retires on :data:`RETIRE_SIGNAL`: it drains as on SIGTERM but keeps
its idle connections (keep-alive ones between requests, new ones before their
first request) until the client sends the next request, answered with
``Connection: close``, or their timeout ends them: closing an idle
connection races the request its client may be sending at that moment, which
the client would see fail, while the new worker is there to serve its next
connection.
A worker that dies is replaced, after a delay that doubles (up to
:data:`MAX_BACKOFF`) while workers keep dying young.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence

import trio

__all__ = ["FDS_ENV", "LIFELINE_ENV", "READY_ENV", "RETIRE_SIGNAL", "Supervisor"]

logger = logging.getLogger("trio_upgrade.cli")

FDS_ENV = "TRIO_UPGRADE_WORKER_FDS"
READY_ENV = "TRIO_UPGRADE_WORKER_READY_FD"
LIFELINE_ENV = "TRIO_UPGRADE_WORKER_LIFELINE_FD"

# Sent by the supervisor to a worker it replaces (SIGHUP): drain, keeping idle connections.
RETIRE_SIGNAL = signal.SIGUSR1

MIN_BACKOFF = 0.1
MAX_BACKOFF = 10.0
# A worker that lived this long before dying resets the backoff.
HEALTHY_AFTER = 10.0


class _Worker:
    def __init__(self, process: trio.Process, failures: int, replacement: bool) -> None:
        self.process = process
        self.replacement = replacement  # replaces a dead worker: restart it even if it never starts
        self.failures = failures  # deaths in a row before this one started
        self.started_at = trio.current_time()
        self.ready = False
        self.settled = trio.Event()  # ready, or died before it was
        self.exited = trio.Event()
        self.retiring = False  # asked to stop: its exit is not a death

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Runs *count* workers on *fds* until a signal says stop; see the module docstring."""

    def __init__(
        self,
        argv: Sequence[str],
        fds: Sequence[int],
        count: int,
        environ: Mapping[str, str],
        *,
        watch: Sequence[str] | None = None,
    ) -> None:
        self.argv = [sys.executable, "-m", "trio_upgrade", *argv]
        self.fds = list(fds)
        self.count = count
        self.environ = dict(environ)
        self.workers: set[_Worker] = set()
        self.stopping = False
        self.status = 0  # exit status of the supervisor
        self._all_gone = trio.Event()
        self._reloading = False
        self._reload_again = False
        # --reload: directories whose *.py files restart the workers when they change.
        self.watch = list(watch) if watch is not None else None

    async def run(self) -> int:
        lifeline_read, lifeline_write = os.pipe()
        self._lifeline = lifeline_read
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._handle_signals, sigs)
                    if self.watch is not None:
                        nursery.start_soon(self._watch_files, self.watch)
                    starting = [await self._spawn(failures=0) for _ in range(self.count)]
                    ready = 0
                    for worker in starting:
                        await worker.settled.wait()
                        ready += worker.ready
                        if not worker.ready:
                            await worker.exited.wait()
                            if self.watch is not None:
                                logger.error(
                                    "worker %d failed to start: waiting for a change", worker.pid
                                )
                                continue
                            logger.error("worker %d failed to start: stopping", worker.pid)
                            code = worker.process.returncode
                            self.status = code if code is not None and code > 0 else 1
                            self._stop(signal.SIGTERM)
                            break
                    else:
                        logger.info("%d workers ready (supervisor pid %d)", ready, os.getpid())
                    await self._all_gone.wait()
                    nursery.cancel_scope.cancel()
        finally:
            os.close(lifeline_read)
            os.close(lifeline_write)
        return self.status

    async def _spawn(self, *, failures: int, replacement: bool = False) -> _Worker:
        ready_read, ready_write = os.pipe()
        env = {
            **self.environ,
            FDS_ENV: ",".join(map(str, self.fds)),
            READY_ENV: str(ready_write),
            LIFELINE_ENV: str(self._lifeline),
        }
        try:
            process = await trio.lowlevel.open_process(
                self.argv,
                env=env,
                pass_fds=(*self.fds, ready_write, self._lifeline),
                # Its own process group: a Ctrl-C at the terminal reaches the
                # supervisor alone, which forwards it once.
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        worker = _Worker(process, failures, replacement)
        self.workers.add(worker)
        logger.info("worker %d started", worker.pid)
        self._nursery.start_soon(self._watch, worker, ready_read)
        return worker

    async def _watch(self, worker: _Worker, ready_read: int) -> None:
        async with trio.lowlevel.FdStream(ready_read) as pipe:
            worker.ready = bool(await pipe.receive_some(1))
        worker.settled.set()
        code = await worker.process.wait()
        worker.exited.set()
        self.workers.discard(worker)
        if self.stopping or worker.retiring:
            logger.info("worker %d exited (%s)", worker.pid, _describe(code))
            # Killed by the signal we sent before it could catch it: still starting.
            clean = code in (0, -signal.SIGTERM, -signal.SIGINT, -RETIRE_SIGNAL) and (
                code == 0 or not worker.ready
            )
            if not clean and self.stopping and self.status == 0:
                self.status = 1
        elif worker.ready or worker.replacement:
            lived = trio.current_time() - worker.started_at
            failures = 0 if lived >= HEALTHY_AFTER else worker.failures + 1
            delay = min(MAX_BACKOFF, MIN_BACKOFF * 2 ** max(0, failures - 1)) if failures else 0
            logger.warning(
                "worker %d died (%s): replacing it in %.1f s", worker.pid, _describe(code), delay
            )
            await trio.sleep(delay)
            if not self.stopping:
                await self._spawn(failures=failures, replacement=True)
        if self.stopping and not self.workers:
            self._all_gone.set()

    async def _handle_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                logger.info("SIGHUP received: replacing workers one by one")
                self._start_reload()
            elif not self.stopping:
                logger.info("%s received: draining workers", signal.Signals(signum).name)
                self._stop(signal.SIGTERM)
            else:
                logger.warning("second signal: stopping workers now")
                # A second signal is what tells a worker to stop at once.
                self._stop(signal.SIGINT)

    def _stop(self, signum: int) -> None:
        self.stopping = True
        if not self.workers:
            self._all_gone.set()
        for worker in list(self.workers):
            if worker.process.returncode is None:
                worker.process.send_signal(signum)

    def _start_reload(self) -> None:
        if self.stopping:
            return
        if self._reloading:
            # The running reload may have started workers on code older than
            # this request: go again once it is done.
            self._reload_again = True
            return
        self._reloading = True
        self._nursery.start_soon(self._reload)

    async def _reload(self) -> None:
        """Start a worker, wait until it accepts, then retire one old worker; repeat
        until there are ``count`` new workers (fewer old ones are fine: after a
        failed start under --reload there may be none)."""
        try:
            old = [w for w in self.workers if not w.retiring]
            for _ in range(self.count):
                if self.stopping:
                    return
                new = await self._spawn(failures=0)
                await new.settled.wait()
                if not new.ready:
                    logger.error("new worker %d failed to start: keeping the old ones", new.pid)
                    return
                if old:
                    retired = old.pop()
                    retired.retiring = True
                    if retired.process.returncode is None:
                        retired.process.send_signal(RETIRE_SIGNAL)
                    await retired.exited.wait()
            logger.info("workers replaced")
        finally:
            self._reloading = False
            if self._reload_again:
                self._reload_again = False
                self._start_reload()

    async def _watch_files(self, directories: Sequence[str]) -> None:
        """--reload: a change to a *.py file under *directories* replaces the
        workers. Watched with watchfiles (inotify and its kin, through anyio
        on Trio) when it is installed, else by polling modification times."""
        try:
            import watchfiles
        except ImportError:
            logger.info("watching for changes by polling (install watchfiles for inotify)")
            await self._poll_files(directories)
            return
        logger.info("watching for changes with watchfiles")
        tops = list(directories)  # absolute: the command made them so

        def wanted(_change: object, path: str) -> bool:
            return path.endswith(".py") and _watched(path, tops)

        # rust_timeout: how often the watching thread comes back even without
        # a change, which bounds how long cancelling this task may take.
        async for changes in watchfiles.awatch(
            *tops, watch_filter=wanted, debounce=200, rust_timeout=500
        ):
            logger.info("%s changed: replacing workers", sorted(p for _, p in changes)[0])
            self._start_reload()

    async def _poll_files(self, directories: Sequence[str]) -> None:
        """Poll the modification times of the *.py files under *directories*
        twice a second."""
        seen = _snapshot(directories)
        while True:
            await trio.sleep(POLL_INTERVAL)
            now = await trio.to_thread.run_sync(_snapshot, directories)
            if now != seen:
                changed = sorted(set(now.items()) ^ set(seen.items()))
                logger.info("%s changed: replacing workers", changed[0][0])
                seen = now
                self._start_reload()


POLL_INTERVAL = 0.5
# Directories never worth watching.
_SKIP = {"__pycache__", "node_modules", "site-packages"}


def _watched(path: str, tops: Sequence[str]) -> bool:
    """Whether *path* lies under one of *tops* outside the skipped directories."""
    for top in tops:
        rel = os.path.relpath(path, top)
        if rel.startswith(os.pardir):
            continue
        parts = rel.split(os.sep)[:-1]
        return not any(p.startswith(".") or p in _SKIP for p in parts)
    return False


def _snapshot(directories: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for top in directories:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in _SKIP]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    try:
                        found[path] = os.stat(path).st_mtime_ns
                    except FileNotFoundError:
                        continue
    return found


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
