"""Reading HTTP/1.1 heads and small bodies off a stream (handshakes only)."""

from __future__ import annotations

import trio

from ._handshake import HeadError

__all__ = ["read_body", "read_head"]


async def read_head(stream: trio.abc.Stream, limit: int) -> tuple[bytes, bytes] | None:
    """Read up to the blank line ending an HTTP head.

    Returns ``(head, rest)``: the head without its final CRLF CRLF, and the
    bytes read past it (the peer's first frames, which must not be lost).
    ``None`` on EOF before a complete head. Raises :class:`HeadError` (431) if
    the head exceeds *limit* bytes.
    """
    buf = bytearray()
    searched = 0
    while True:
        end = buf.find(b"\r\n\r\n", max(searched - 3, 0))
        if end >= 0:
            return bytes(buf[:end]), bytes(buf[end + 4 :])
        searched = len(buf)
        if searched > limit:
            raise HeadError("request head too large", 431)
        data = await stream.receive_some(max(limit + 4 - searched, 1))
        if not data:
            return None
        buf += data


async def read_body(
    stream: trio.abc.Stream, headers: list[tuple[bytes, bytes]], rest: bytes, limit: int
) -> bytes:
    """Read a response body (Content-Length, chunked, or until EOF), at most *limit* bytes."""
    fields = dict(headers)
    buf = bytearray(rest)

    async def more() -> bool:
        data = await stream.receive_some(65536)
        buf.extend(data)
        return bool(data)

    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        body = bytearray()
        pos = 0
        while len(body) < limit:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                if not await more():
                    break
                continue
            size_text = bytes(buf[pos:line_end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                break
            if size == 0:
                break
            while len(buf) < line_end + 2 + size + 2:
                if not await more():
                    break
            body += buf[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
        return bytes(body[:limit])
    length_text = fields.get(b"content-length")
    if length_text is not None:
        try:
            length = min(int(length_text), limit)
        except ValueError:
            length = 0
        while len(buf) < length and await more():
            pass
        return bytes(buf[:length])
    while len(buf) < limit and await more():
        pass
    return bytes(buf[:limit])
