"""Session limits and permessage-deflate settings, as frozen values."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Deflate", "WebSocketConfig"]


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate (RFC 7692) settings for one side of a session.

    The same value serves a server (what it accepts and asks of clients) and a
    client (what it offers). ``server_*`` parameters govern what the server
    compresses, ``client_*`` what the client compresses.

    - ``*_max_window_bits`` (9-15): the LZ77 window. A server answers with
      ``server_max_window_bits`` when a client asks for a smaller one or when
      this value is below 15, and asks the client for ``client_max_window_bits``
      when the client offered that parameter. Smaller windows use less memory
      per connection and compress less.
    - ``*_no_context_takeover``: reset the compression context after every
      message (less memory kept between messages, worse ratio). A server honours
      a client's request for ``server_no_context_takeover`` whatever this says.
    - ``level`` (0-9): zlib compression level; ``mem_level`` (1-9): zlib memory level.
    - ``min_size``: messages shorter than this many bytes go out uncompressed
      (RFC 7692 section 6: compression is per message and optional).

    The defaults are websockets' (window 12, ``mem_level`` 5, level 6): with
    a 4 KiB window and a 4 Ki-entry hash table zlib compressed Autobahn's
    128 KiB text sample about twice as fast as with its own defaults (window
    15, ``mem_level`` 8), and a compressor holds 32 KiB instead of 256 KiB,
    for output about 10% larger. A client whose offer lacks
    ``client_max_window_bits`` may still use a window of 15 (RFC 7692
    section 7.1.2.2), and we inflate with that.
    """

    server_max_window_bits: int = 12
    client_max_window_bits: int = 12
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    level: int = 6
    mem_level: int = 5
    min_size: int = 0

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if not 9 <= bits <= 15:
                raise ValueError(f"{name} must be between 9 and 15, not {bits}")
        if not 0 <= self.level <= 9:
            raise ValueError("level must be between 0 and 9")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be between 1 and 9")
        if self.min_size < 0:
            raise ValueError("min_size must be >= 0")


KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """Limits of one session; every field has a safe default.

    Memory a peer can make a session hold is bounded by roughly
    ``max_queued_bytes`` plus one message of at most ``max_message_size``
    (inflated: compressed messages count at their inflated size) waiting for
    the application, and never more than ``receive_queue`` messages, plus
    ``send_buffer`` bytes (and one message) waiting for the peer, plus one read
    of at most ``max_read_size`` bytes.
    """

    max_message_size: int | None = 1 * MiB
    """Largest message accepted, in bytes (characters for text); bigger closes with 1009.
    ``None`` removes the limit (compressed messages then inflate without bound)."""
    receive_queue: int = 16
    """Messages (or chunks of a streamed message) buffered for the application before
    the reader stops reading from the peer."""
    max_queued_bytes: int = 1 * MiB
    """Bytes (characters for text) of received messages buffered for the application
    that make the reader stop reading from the peer; counted after inflation. One
    message may take the total above it by at most its own size."""
    max_fragments: int | None = None
    """Most frames one message may arrive in; more closes with 1008. ``None`` (the
    default): no count of its own, but every frame of a fragmented message except the
    last counts at least 64 bytes against ``max_message_size``, so a message has at
    most ``max_message_size / 64`` tiny frames (16,384 for 1 MiB) before 1009."""
    send_buffer: int = 64 * KiB
    """High-water mark of outgoing bytes not yet written; above it ``send`` waits."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings; ``None`` disables keepalive."""
    ping_timeout: float = 20.0
    """Seconds a keepalive ping may wait for its pong before the session fails (1011)."""
    close_timeout: float = 10.0
    """Seconds the closing handshake (and the final flush) may take."""
    compression: Deflate | None = field(default_factory=Deflate)
    """permessage-deflate settings, or ``None`` to neither offer nor accept it."""
    max_read_size: int = 256 * KiB
    """Largest single read from the stream; reads grow to this size while data flows."""
    min_read_size: int = 16 * KiB
    """Read size while traffic is light (and the first read's size)."""

    def __post_init__(self) -> None:
        if self.max_message_size is not None and self.max_message_size < 1:
            raise ValueError("max_message_size must be >= 1 or None")
        if self.receive_queue < 1:
            raise ValueError("receive_queue must be >= 1")
        if self.max_queued_bytes < 1:
            raise ValueError("max_queued_bytes must be >= 1")
        if self.max_fragments is not None and self.max_fragments < 1:
            raise ValueError("max_fragments must be >= 1 or None")
        if self.send_buffer < 1:
            raise ValueError("send_buffer must be >= 1")
        if self.ping_interval is not None and self.ping_interval <= 0:
            raise ValueError("ping_interval must be > 0 or None")
        if self.ping_timeout <= 0:
            raise ValueError("ping_timeout must be > 0")
        if self.close_timeout < 0:
            raise ValueError("close_timeout must be >= 0")
        if not 1 <= self.min_read_size <= self.max_read_size:
            raise ValueError("need 1 <= min_read_size <= max_read_size")
