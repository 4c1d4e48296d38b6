"""The chat protocol's pure parts: validation of client messages, event encoding, rate limit."""

from __future__ import annotations

import json

import pytest
from _chat_helpers import REPO  # noqa: F401  (puts the repository on sys.path)

from examples.chat import ProtocolError, parse_client_message
from examples.chat._hub import Snapshot, joined_event, message_head, presence_head, room_event
from examples.chat._protocol import Join, Leave, Say, validate_nick, validate_room, validate_text
from examples.chat._ratelimit import TokenBucket


def parse(raw: str) -> object:
    return parse_client_message(raw, max_nick=24, max_room=32, max_text=1000)


def code_of(result: object) -> str:
    assert isinstance(result, ProtocolError), result
    return result.code


def test_join_is_parsed_with_room_lowercased_and_nick_trimmed() -> None:
    raw = json.dumps({"type": "join", "room": " General ", "nick": " Zoë ", "client": "ab_C-9"})
    assert parse(raw) == Join("general", "Zoë", "ab_C-9")


def test_join_without_client_id_is_accepted() -> None:
    assert parse('{"type":"join","room":"r","nick":"n"}') == Join("r", "n", None)


def test_say_and_leave_are_parsed() -> None:
    assert parse('{"type":"say","text":"  hello\\nworld  "}') == Say("hello\nworld")
    assert parse('{"type":"leave"}') == Leave()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ('{"type":', "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"join"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 3}', "bad_message"),
        ('{"type":"shout"}', "unknown_type"),
        ('{"type":"say"}', "bad_text"),
        ('{"type":"say","text":42}', "bad_text"),
        ('{"type":"say","text":"   "}', "empty"),
        ('{"type":"say","text":"a\\u0000b"}', "bad_text"),
        ('{"type":"say","text":"\\u202egnp.exe"}', "bad_text"),
        ('{"type":"join","room":"r"}', "bad_nick"),
        ('{"type":"join","nick":"n"}', "bad_room"),
        ('{"type":"join","room":"r","nick":"n","client":"has space"}', "bad_client"),
        ('{"type":"join","room":"r","nick":"n","client":7}', "bad_client"),
    ],
)
def test_bad_messages_get_an_error_code(raw: str, code: str) -> None:
    assert code_of(parse(raw)) == code


def test_text_longer_than_the_limit_is_too_long() -> None:
    assert validate_text("x" * 1000, max_length=1000) == "x" * 1000
    assert code_of(validate_text("x" * 1001, max_length=1000)) == "too_long"


def test_unknown_type_in_error_is_truncated() -> None:
    error = parse(json.dumps({"type": "x" * 500}))
    assert isinstance(error, ProtocolError) and len(error.message) < 80


@pytest.mark.parametrize("nick", ["alice", "Bob_2", "Zoë", "李雷", "mr. smith", "a-b.c"])
def test_valid_nicknames(nick: str) -> None:
    assert validate_nick(nick, max_length=24) == nick


@pytest.mark.parametrize(
    "nick",
    ["", "   ", "a" * 25, "two  spaces", "<script>", "a\tb", "tab\u0000", "---", "emoji😀"],
)
def test_invalid_nicknames(nick: str) -> None:
    assert code_of(validate_nick(nick, max_length=24)) == "bad_nick"


def test_nickname_is_nfc_normalised() -> None:
    assert validate_nick("Zoe\u0301", max_length=24) == "Zo\u00e9"


@pytest.mark.parametrize("room", ["general", "r", "dev-ops_2", "9lives"])
def test_valid_rooms(room: str) -> None:
    assert validate_room(room, max_length=32) == room


@pytest.mark.parametrize("room", ["", "-lead", "_x", "a b", "ünï", "x" * 33, "a/b", "#general"])
def test_invalid_rooms(room: str) -> None:
    assert code_of(validate_room(room, max_length=32)) == "bad_room"


def test_event_heads_complete_into_valid_json() -> None:
    message = json.loads(message_head("r", "a", 'quote " and \\', 5) + ',"seq":7}')
    assert message == {
        "type": "message",
        "room": "r",
        "nick": "a",
        "text": 'quote " and \\',
        "ts": 5,
        "seq": 7,
    }
    presence = json.loads(presence_head("r", "join", "a") + ',"seq":1,"count":2}')
    assert presence["action"] == "join" and presence["count"] == 2
    assert json.loads(room_event("r", 3)) == {"type": "room", "name": "r", "count": 3}


def test_joined_event_splices_history_events() -> None:
    history = (message_head("r", "a", "hi", 1) + ',"seq":1}',)
    event = json.loads(joined_event(Snapshot("r", 4, ("a", "b"), history), "b"))
    assert event["members"] == ["a", "b"] and event["seq"] == 4 and event["nick"] == "b"
    assert event["history"] == [
        {"type": "message", "room": "r", "nick": "a", "text": "hi", "ts": 1, "seq": 1}
    ]
    empty = json.loads(joined_event(Snapshot("r", 1, ("a",), ()), "a"))
    assert empty["history"] == []


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.25) is False  # half a token
    assert bucket.allow(0.5) is True  # one token after 0.5 s at 2/s
    assert bucket.allow(0.5) is False


def test_token_bucket_refills_to_burst_only() -> None:
    bucket = TokenBucket(rate=10.0, burst=2)
    bucket.allow(0.0)
    assert [bucket.allow(100.0) for _ in range(3)] == [True, True, False]


def test_token_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.allow(10.0)
    assert not bucket.allow(5.0)
    assert bucket.allow(11.0)


def test_token_bucket_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)
