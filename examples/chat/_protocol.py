"""The chat protocol, sans I/O: what a browser may send, what the server answers.

Every WebSocket message is one JSON object in a text frame. Client → server:

- ``{"type": "join", "room": "general", "nick": "alice", "client": "<tab id>"}``
  joins a room (leaving the current one); ``client`` is optional, an opaque
  per-tab id that lets a reconnecting tab take its nickname back at once.
- ``{"type": "say", "text": "hello"}`` sends a message to the current room.
- ``{"type": "leave"}`` leaves the current room.

Server → client: ``hello``, ``joined``, ``message``, ``presence``, ``room``,
``left`` and ``error`` events (see docs/chat.md). Everything here is a pure
function of its arguments, so it is tested without a network.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_CLIENT_ID",
    "Join",
    "Leave",
    "ProtocolError",
    "Say",
    "encode",
    "error_event",
    "fold_nick",
    "parse_client_message",
    "validate_nick",
    "validate_room",
    "validate_text",
]

MAX_CLIENT_ID: Final = 64
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ROOM = re.compile(r"[a-z0-9][a-z0-9_-]*")
# C0 controls other than tab and newline, DEL, and the bidi overrides that can
# make a nickname or a message display as something else.
_FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class Join:
    """Join *room* as *nick* (both already validated and normalised)."""

    room: str
    nick: str
    client: str | None


@dataclass(frozen=True, slots=True)
class Say:
    """Send *text* (validated) to the current room."""

    text: str


@dataclass(frozen=True, slots=True)
class Leave:
    """Leave the current room."""


ClientMessage = Join | Say | Leave


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A bad client message: answered with an ``error`` event, never a crash.

    *code* is stable (the page switches on it), *message* is for people.
    """

    code: str
    message: str


def encode(event: dict[str, Any]) -> str:
    """One event as compact JSON text (non-ASCII kept as is: the frame is UTF-8)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def error_event(error: ProtocolError) -> str:
    return encode({"type": "error", "code": error.code, "message": error.message})


def validate_nick(value: object, *, max_length: int) -> str | ProtocolError:
    """A nickname: 1 to *max_length* characters after trimming and NFC normalisation;
    letters, digits, spaces (single, inside), ``_``, ``-`` and ``.``; at least one
    letter or digit."""
    if not isinstance(value, str):
        return ProtocolError("bad_nick", "the nickname must be a string")
    nick = unicodedata.normalize("NFC", value).strip()
    if not nick:
        return ProtocolError("bad_nick", "the nickname is empty")
    if len(nick) > max_length:
        return ProtocolError("bad_nick", f"the nickname is longer than {max_length} characters")
    if "  " in nick:
        return ProtocolError("bad_nick", "the nickname has consecutive spaces")
    if not all(c.isalnum() or c in " _-." for c in nick):
        return ProtocolError(
            "bad_nick", "a nickname has letters, digits, spaces, '_', '-' and '.' only"
        )
    if not any(c.isalnum() for c in nick):
        return ProtocolError("bad_nick", "the nickname needs at least one letter or digit")
    return nick


def fold_nick(nick: str) -> str:
    """The form two nicknames are compared in: 'Alice' and 'ALICE' are one person."""
    return nick.casefold()


def validate_room(value: object, *, max_length: int) -> str | ProtocolError:
    """A room name: lower-cased, 1 to *max_length* of ``a-z 0-9 _ -``, starting with
    a letter or digit. ASCII only, so that a name reads the same to everyone."""
    if not isinstance(value, str):
        return ProtocolError("bad_room", "the room name must be a string")
    room = value.strip().lower()
    if not room:
        return ProtocolError("bad_room", "the room name is empty")
    if len(room) > max_length:
        return ProtocolError("bad_room", f"the room name is longer than {max_length} characters")
    if not _ROOM.fullmatch(room):
        return ProtocolError(
            "bad_room",
            "a room name has letters a-z, digits, '_' and '-', and starts with a letter or digit",
        )
    return room


def validate_text(value: object, *, max_length: int) -> str | ProtocolError:
    """A message: 1 to *max_length* characters after trimming; tabs and newlines
    allowed, other control characters and bidi overrides not."""
    if not isinstance(value, str):
        return ProtocolError("bad_text", "the message text must be a string")
    text = value.strip()
    if not text:
        return ProtocolError("empty", "the message is empty")
    if len(text) > max_length:
        return ProtocolError("too_long", f"the message is longer than {max_length} characters")
    if _FORBIDDEN_TEXT.search(text):
        return ProtocolError("bad_text", "the message contains control characters")
    return text


def parse_client_message(
    raw: str, *, max_nick: int, max_room: int, max_text: int
) -> ClientMessage | ProtocolError:
    """Decode and validate one text frame from a browser."""
    try:
        data = json.loads(raw)
    except ValueError:
        return ProtocolError("bad_json", "the message is not valid JSON")
    if not isinstance(data, dict):
        return ProtocolError("bad_message", "a message is a JSON object")
    kind = data.get("type")
    if kind == "say":
        text = validate_text(data.get("text"), max_length=max_text)
        return text if isinstance(text, ProtocolError) else Say(text)
    if kind == "join":
        room = validate_room(data.get("room"), max_length=max_room)
        if isinstance(room, ProtocolError):
            return room
        nick = validate_nick(data.get("nick"), max_length=max_nick)
        if isinstance(nick, ProtocolError):
            return nick
        client = data.get("client")
        if client is not None and not (isinstance(client, str) and _CLIENT_ID.fullmatch(client)):
            return ProtocolError(
                "bad_client", f"'client' is 1 to {MAX_CLIENT_ID} of A-Z a-z 0-9 _ -"
            )
        return Join(room, nick, client)
    if kind == "leave":
        return Leave()
    if not isinstance(kind, str):
        return ProtocolError("bad_message", "a message has a string 'type'")
    return ProtocolError("unknown_type", f"unknown message type {kind[:32]!r}")
