"""Upgrade tunnels: forward the handshake, relay the answer, then pump raw bytes."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import final

import h11
import trio

from .._wire import (
    Framing,
    FramingError,
    forwardable_fields,
    list_tokens,
    response_framing,
    response_head,
    simple_response,
)
from ..http import Request, TakeoverOutcome
from ._backend import Backend
from ._config import ProxyConfig
from ._errors import BackendTimeout, BadBackendResponse, ProxyError
from ._pool import BackendConnection, ConnectionPool
from ._rewrite import rewrite_response_headers

__all__ = ["Tunnel", "pump"]

logger = logging.getLogger("trio_upgrade.proxy")

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


@final
class Tunnel:
    """The :class:`~trio_upgrade.http.Takeover` a :class:`Proxy` returns for an
    upgrade request.

    ``take_over`` opens a new connection to the backend, sends the request
    (upgrade headers intact), and reads the answer. On ``101`` it relays the
    head and pumps bytes both ways (see :func:`pump`) — the client's
    *prefetched* bytes first, then the backend's bytes that came after its
    head — until both directions have ended; on any other status the answer is
    relayed as a response and the connection closed. 502/504 when the backend
    cannot be reached or does not answer in time; 502 for a ``101`` to a
    protocol that was not offered.
    """

    __slots__ = ("_backend", "_body", "_config", "_forwarded", "_offered", "_pool")

    def __init__(
        self,
        pool: ConnectionPool,
        config: ProxyConfig,
        backend: Backend,
        forwarded: h11.Request,
        body: bytes = b"",
        offered: Sequence[bytes] = (b"websocket",),
    ) -> None:
        self._pool = pool
        self._config = config
        self._backend = backend
        # The request head to send, already rewritten.
        self._forwarded = forwarded
        # The request body, read before the takeover (usually empty).
        self._body = body
        # The protocols offered to the backend (lower-case): a 101 to any
        # other is refused with 502 rather than tunnelled.
        self._offered = frozenset(p.partition(b"/")[0].strip() for p in offered)

    async def take_over(
        self, stream: trio.abc.Stream, prefetched: bytes, request: Request
    ) -> TakeoverOutcome:
        """Tunnel, or relay the refusal; return how the client was answered
        (for the access log and metrics): 101 for a tunnel, else the status and
        body bytes relayed, or the proxy's own 502/504."""
        pool = self._pool
        pool.open_tunnels += 1
        conn: BackendConnection | None = None
        try:
            conn = await pool.acquire(self._backend, fresh=True)
            return await self._run(conn, stream, prefetched)
        except ProxyError as exc:
            logger.warning(
                "proxy: upgrade %s %s -> %s: %d, %s",
                request.method,
                request.target,
                self._backend,
                exc.status,
                exc.detail,
            )
            # Nothing was relayed yet (failures after that are handled where
            # they happen): the client gets an answer.
            answer = simple_response(exc.status)
            with contextlib.suppress(*_STREAM_ERRORS):
                await stream.send_all(answer)
            return TakeoverOutcome(exc.status, len(answer) - answer.index(b"\r\n\r\n") - 4)
        finally:
            pool.open_tunnels -= 1
            if conn is not None:
                conn.close()

    async def _run(
        self, conn: BackendConnection, client: trio.abc.Stream, prefetched: bytes
    ) -> TakeoverOutcome:
        config = self._config
        h = conn.h11
        parts = [h.send(self._forwarded)]
        if self._body:
            parts.append(h.send(h11.Data(data=self._body)))
        parts.append(h.send(h11.EndOfMessage()))
        await conn.send(b"".join(p for p in parts if p), config.write_timeout)

        limit = math.inf if config.response_timeout is None else config.response_timeout
        head: h11.Response | h11.InformationalResponse | None = None
        with trio.move_on_after(limit):
            head = await conn.read_head(upgrade=True)
        if head is None:
            raise BackendTimeout(f"no response head within {config.response_timeout} s")

        if type(head) is h11.Response:
            sent = await _relay_refusal(
                conn, client, head, self._forwarded.method, config.read_timeout
            )
            return TakeoverOutcome(head.status_code, sent)
        # 101: the backend took the upgrade, to a protocol we offered.
        chosen = [p.partition(b"/")[0].strip() for p in list_tokens(head.headers, b"upgrade")]
        if not chosen or not set(chosen) <= self._offered:
            raise BadBackendResponse(
                f"{conn.backend} switched to {b', '.join(chosen)!r}, which was not offered"
            )
        headers = rewrite_response_headers(head.headers, upgrade=True)
        try:
            # Our own reason phrase, as for every other relayed response.
            out = response_head(101, headers)
        except ValueError as exc:
            raise BadBackendResponse(f"{conn.backend} sent an invalid 101: {exc}") from None
        trailing, _ = h.trailing_data
        try:
            await client.send_all(out + bytes(trailing))
        except _STREAM_ERRORS:
            return TakeoverOutcome(101)
        await pump(client, conn.stream, prefetched, config)
        return TakeoverOutcome(101)


async def _relay_refusal(
    conn: BackendConnection,
    client: trio.abc.Stream,
    head: h11.Response,
    method: bytes,
    read_timeout: float | None,
) -> int:
    """Relay a non-101 answer to an upgrade request as a plain response, then
    close; return how many body bytes reached the client.

    The connection ends after it, so the body is framed once, as
    ``_wire.response_framing`` reads it: by its length when it has one, and
    otherwise by closing (the backend's own framing fields are not relayed).
    """
    h = conn.h11
    status = head.status_code
    try:
        framing = response_framing(
            status, head.headers, request_method=method, http_version=head.http_version
        )
    except FramingError as exc:
        raise BadBackendResponse(f"{conn.backend}: {exc}") from None
    headers = forwardable_fields(rewrite_response_headers(head.headers))
    if framing.kind is Framing.LENGTH:
        headers.append((b"content-length", b"%d" % (framing.length or 0)))
    headers.append((b"connection", b"close"))
    try:
        out = response_head(status, headers)
    except ValueError as exc:
        raise BadBackendResponse(f"{conn.backend} sent an invalid head: {exc}") from None
    # Bytes of the head still in *out* (not body), and the body bytes sent.
    head_left = len(out)
    sent = 0
    try:
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadBackendResponse(
                    f"{conn.backend} broke off the response body: {exc}"
                ) from None
            if type(event) is h11.Data:
                out += event.data
                continue
            if event is h11.NEED_DATA:
                if out:
                    await client.send_all(out)
                    sent += len(out) - head_left
                    head_left = 0
                    out = b""
                h.receive_data(await conn.receive(read_timeout))
                continue
            if out:
                await client.send_all(out)
                sent += len(out) - head_left
            return sent
    except _STREAM_ERRORS:
        return sent
    except ProxyError as exc:
        # The head is out: closing the connection is all that is left to say.
        logger.warning("proxy: upgrade refused by %s, then: %s", conn.backend, exc.detail)
        return sent


async def pump(
    client: trio.abc.Stream, backend: trio.abc.Stream, prefetched: bytes, config: ProxyConfig
) -> None:
    """Copy bytes both ways between *client* and *backend* until both directions end.

    Two tasks, one per direction, each reading up to ``config.tunnel_read_size``
    bytes and writing them with one ``send_all``. *prefetched* (bytes the
    client sent after its request head) goes to the backend first. When one
    side ends its sending (EOF), the other side is half-closed
    (``send_eof``) if its stream allows it — a TCP or Unix socket does, TLS
    does not, and then the whole tunnel closes — and the other direction goes
    on for at most ``config.half_close_timeout``. A broken stream on either
    side ends both directions at once. Cancellation ends the tunnel; neither
    stream is closed here.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_pump_one, client, backend, prefetched, config, nursery.cancel_scope)
        nursery.start_soon(_pump_one, backend, client, b"", config, nursery.cancel_scope)


async def _pump_one(
    source: trio.abc.ReceiveStream,
    sink: trio.abc.SendStream,
    first: bytes,
    config: ProxyConfig,
    tunnel: trio.CancelScope,
) -> None:
    read_size = config.tunnel_read_size
    receive = source.receive_some
    send = sink.send_all
    try:
        if first:
            await send(first)
        while data := await receive(read_size):
            await send(data)
        if not isinstance(sink, trio.abc.HalfCloseableStream):
            tunnel.cancel()
            return
        await sink.send_eof()
    except _STREAM_ERRORS:
        tunnel.cancel()
        return
    if config.half_close_timeout is not None and tunnel.deadline == math.inf:
        tunnel.deadline = trio.current_time() + config.half_close_timeout
