"""The chat server's settings, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChatConfig"]


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Limits and policies of the chat server; every field has a usable default.

    Validation limits (answered with an ``error`` event):

    - ``max_nick``, ``max_room``, ``max_text``: characters in a nickname, a room
      name, a message.

    Connection policies (answered by closing the WebSocket):

    - ``max_frame``: largest incoming WebSocket message in characters; bigger
      closes with 1009 (the WebSocket layer enforces it before decoding JSON).
    - ``rate``/``burst``: messages per second a connection may send on
      average, and in a burst. A message over the limit is dropped with a
      ``rate_limited`` error; each error answer (for any bad message) costs a
      *strike*, and a connection that spends more than ``strike_burst`` strikes
      faster than one per ``1 / strike_rate`` seconds is closed with 1008.
    - ``queue``: events waiting to be written to one client. A client that
      lets it fill up (it reads slower than the room talks) is closed with
      1013 so that it never slows the room down.

    Hub settings: ``history`` messages kept per room and sent on arrival;
    ``max_rooms`` rooms with people in them at once.

    Origins: browsers on the page's own origin are always allowed;
    ``allowed_origins`` adds others (``"https://chat.example.com"``, patterns
    such as ``"https://*.example.com"``); ``allow_missing_origin`` lets clients
    that send no ``Origin`` at all (command-line tools) connect.
    """

    max_nick: int = 24
    max_room: int = 32
    max_text: int = 1000
    max_frame: int = 16 * 1024
    rate: float = 5.0
    burst: int = 10
    strike_rate: float = 0.5
    strike_burst: int = 10
    queue: int = 256
    history: int = 50
    max_rooms: int = 1000
    allowed_origins: tuple[str, ...] = ()
    allow_missing_origin: bool = False
    close_timeout: float = 5.0
    ping_interval: float | None = 20.0

    def __post_init__(self) -> None:
        for name in ("max_nick", "max_room", "max_text", "max_frame", "burst", "queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.rate <= 0 or self.strike_rate <= 0 or self.strike_burst < 1:
            raise ValueError("rates must be > 0 and strike_burst >= 1")
        if self.history < 0 or self.max_rooms < 1:
            raise ValueError("history must be >= 0 and max_rooms >= 1")
