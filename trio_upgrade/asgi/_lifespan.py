"""The ``lifespan`` scope: startup before serving, shutdown after the drain."""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Literal, final

import trio

from ._errors import LifespanFailure, ProtocolError
from ._http import ASGIApp, Message
from ._scope import ASGI_VERSION

__all__ = ["Lifespan", "LifespanMode"]

logger = logging.getLogger("trio_upgrade.asgi")

LifespanMode = Literal["auto", "on", "off"]


class _Step(enum.IntEnum):
    IDLE = 0
    STARTING = 1  # lifespan.startup delivered, waiting for the answer
    STARTED = 2
    STOPPING = 3
    STOPPED = 4


@final
class Lifespan:
    """Run an ASGI app's lifespan around a server: ``async with Lifespan(app) as state``.

    Entering starts the app's ``lifespan`` scope in a task of its own, sends
    ``lifespan.startup`` and returns once the app answers ``complete``, with
    the lifespan :attr:`state` (the dict the app filled in, to hand to
    :class:`~trio_upgrade.asgi.ASGIHandler`); ``startup.failed`` raises
    :class:`LifespanFailure` with the app's message. Leaving sends
    ``lifespan.shutdown`` and waits for the answer, at most *shutdown_timeout*
    seconds.

    *mode* as uvicorn's ``--lifespan``: ``"auto"`` treats an app that raises
    before answering the startup (it does not support lifespan) as having
    none, and logs it; ``"on"`` makes that a failure; ``"off"`` sends nothing.
    """

    __slots__ = (
        "_answer",
        "_app_error",
        "_manager",
        "_message",
        "_step",
        "_unsupported",
        "app",
        "mode",
        "shutdown_timeout",
        "state",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        mode: LifespanMode = "auto",
        shutdown_timeout: float = 30.0,
        state: dict[str, Any] | None = None,
    ) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan mode must be 'auto', 'on' or 'off', not {mode!r}")
        self.app = app
        self.mode = mode
        self.shutdown_timeout = shutdown_timeout
        self.state: dict[str, Any] = {} if state is None else state
        self._step = _Step.IDLE
        # Set when the app answers the current step, or ends.
        self._answer = trio.Event()
        # The app's message with a failed answer.
        self._message: str | None = None
        self._app_error: BaseException | None = None
        # The app raised before answering the startup (auto mode: no lifespan).
        self._unsupported = False
        self._manager: AbstractAsyncContextManager[dict[str, Any]] | None = None

    async def __aenter__(self) -> dict[str, Any]:
        if self._manager is not None:
            raise RuntimeError("a Lifespan can be entered only once at a time")
        self._manager = self._session()
        return await self._manager.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        manager, self._manager = self._manager, None
        assert manager is not None
        return await manager.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[dict[str, Any]]:
        if self.mode == "off":
            await trio.lowlevel.checkpoint()
            yield self.state
            return
        to_app, events = trio.open_memory_channel[Message](2)
        # Raised outside the nursery, so that callers see them as they are and
        # not wrapped in an ExceptionGroup.
        failure: LifespanFailure | None = None
        error: BaseException | None = None
        # The app's lifespan task is shielded from the caller's cancellation,
        # so that a server stopped by cancelling it still sends the app its
        # shutdown; it is cancelled here, once the session is over.
        app_scope = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run, events, app_scope)
            try:
                self._step = _Step.STARTING
                to_app.send_nowait({"type": "lifespan.startup"})
                await self._answer.wait()
                if not self._unsupported and self._step is not _Step.STARTED:
                    failure = LifespanFailure("startup", self._failure_text())
                else:
                    try:
                        yield self.state
                    except BaseException as exc:
                        error = exc
                    if self._step is _Step.STARTED:
                        failure = await self._shutdown(to_app)
            finally:
                to_app.close()
                app_scope.cancel()
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if failure is not None:
            raise failure

    async def _shutdown(self, to_app: trio.MemorySendChannel[Message]) -> LifespanFailure | None:
        self._answer = trio.Event()
        self._step = _Step.STOPPING
        try:
            to_app.send_nowait({"type": "lifespan.shutdown"})
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The app's lifespan already ended after its startup.
            return None
        # Shielded: a server stopped by cancellation still shuts the app down.
        with trio.CancelScope(shield=True), trio.move_on_after(self.shutdown_timeout) as timeout:
            await self._answer.wait()
        if timeout.cancelled_caught:
            logger.error("ASGI lifespan shutdown timed out after %.1f s", self.shutdown_timeout)
            return None
        if self._step is not _Step.STOPPED:
            return LifespanFailure("shutdown", self._failure_text())
        return None

    def _failure_text(self) -> str:
        if self._message is not None:
            return self._message
        if self._app_error is not None:
            return f"{type(self._app_error).__name__}: {self._app_error}"
        return "the app's lifespan ended without answering"

    async def _run(
        self, events: trio.MemoryReceiveChannel[Message], app_scope: trio.CancelScope
    ) -> None:
        with app_scope:
            await self._run_app(events)

    async def _run_app(self, events: trio.MemoryReceiveChannel[Message]) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}

        async def receive() -> Message:
            try:
                return await events.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                # The server is gone; an app that asks again waits to be cancelled.
                await trio.sleep_forever()
                raise AssertionError("unreachable") from None

        try:
            await self.app(scope, receive, self._send)
        except Exception as exc:
            self._app_error = exc
            if self._step is _Step.STARTING and self._message is None and self.mode == "auto":
                self._unsupported = True
                logger.info(
                    "ASGI lifespan unsupported by the app (%s: %s); serving without it",
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.error("ASGI lifespan failed", exc_info=exc)
        finally:
            with events:
                self._answer.set()

    async def _send(self, message: Message) -> None:
        await trio.lowlevel.checkpoint()
        kind = message.get("type")
        step = self._step
        if step is _Step.STARTING and kind in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
        ):
            if kind == "lifespan.startup.complete":
                self._step = _Step.STARTED
            else:
                self._message = str(message.get("message", ""))
            self._answer.set()
            return
        if step is _Step.STOPPING and kind in (
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            if kind == "lifespan.shutdown.complete":
                self._step = _Step.STOPPED
            else:
                self._message = str(message.get("message", ""))
            self._answer.set()
            return
        raise ProtocolError(f"unexpected lifespan message {kind!r} (during {step.name.lower()})")
