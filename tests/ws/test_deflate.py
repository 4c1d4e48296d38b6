"""permessage-deflate (RFC 7692): negotiation both sides and bounded inflation."""

from __future__ import annotations

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage
from wsproto.frame_protocol import CloseReason

from trio_upgrade.ws import Deflate
from trio_upgrade.ws._deflate import (
    PerMessageDeflate,
    client_finalize,
    client_offer,
    negotiate_server,
)

DEFAULT = Deflate()


def server_answer(offers: list[str], config: Deflate = DEFAULT) -> str | None:
    negotiated = negotiate_server(offers, config, None)
    return None if negotiated is None else negotiated[0]


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", "permessage-deflate"),
        ("permessage-deflate; client_max_window_bits", "permessage-deflate"),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
        ),
        (
            'permessage-deflate; client_max_window_bits="10"',
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover",
        ),
    ],
)
def test_server_answers_each_autobahn_style_offer(offer: str, answer: str) -> None:
    assert server_answer([offer]) == answer


@pytest.mark.parametrize(
    "offer",
    [
        "x-webkit-deflate-frame",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
    ],
)
def test_server_declines_offers_it_cannot_honour(offer: str) -> None:
    assert server_answer([offer]) is None


def test_server_picks_the_first_acceptable_offer() -> None:
    offers = ["permessage-deflate; server_max_window_bits=8", "permessage-deflate"]
    assert server_answer(offers) == "permessage-deflate"


def test_server_settings_shape_the_answer() -> None:
    config = Deflate(
        server_max_window_bits=11,
        client_max_window_bits=12,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    )
    answer = server_answer(["permessage-deflate; client_max_window_bits"], config)
    assert answer == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
        " server_max_window_bits=11; client_max_window_bits=12"
    )


def test_client_offer_and_finalize() -> None:
    config = Deflate(server_max_window_bits=12, server_no_context_takeover=True)
    offer = client_offer(config)
    assert offer == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12;"
        " client_max_window_bits"
    )
    answer = server_answer([offer])
    assert answer is not None
    ext = client_finalize(answer, config, None)
    assert ext.remote_bits == 12
    assert ext.remote_no_context_takeover


@pytest.mark.parametrize(
    "answer",
    [
        "permessage-deflate; server_max_window_bits=15",  # more than the 12 offered
        "permessage-deflate; client_max_window_bits",  # needs a value in a response
        "permessage-deflate; bogus",
        "x-other",
    ],
)
def test_client_rejects_answers_that_break_rfc7692(answer: str) -> None:
    with pytest.raises(ValueError):
        client_finalize(answer, Deflate(server_max_window_bits=12), None)


def test_client_requires_server_no_context_takeover_when_asked() -> None:
    with pytest.raises(ValueError):
        client_finalize("permessage-deflate", Deflate(server_no_context_takeover=True), None)


def pair(
    *, max_size: int | None = None, min_size: int = 0, no_takeover: bool = False
) -> tuple[Connection, Connection]:
    config = Deflate(min_size=min_size)

    def ext(client: bool) -> PerMessageDeflate:
        return PerMessageDeflate(
            client=client,
            local_bits=15,
            remote_bits=15,
            local_no_context_takeover=no_takeover,
            remote_no_context_takeover=no_takeover,
            config=config,
            max_message_size=max_size,
        )

    return (
        Connection(ConnectionType.CLIENT, [ext(True)]),
        Connection(ConnectionType.SERVER, [ext(False)]),
    )


@pytest.mark.parametrize("no_takeover", [False, True])
def test_messages_round_trip_compressed(no_takeover: bool) -> None:
    client, server = pair(no_takeover=no_takeover)
    for text in ["hello " * 100, "", "second message, same context " * 50]:
        wire = client.send(TextMessage(data=text))
        assert wire[0] & 0x40  # RSV1: compressed
        server.receive_data(wire)
        (event,) = server.events()
        assert isinstance(event, TextMessage)
        assert event.data == text


def test_fragmented_compressed_message_sets_rsv1_on_first_frame_only() -> None:
    client, server = pair()
    first = client.send(BytesMessage(data=b"a" * 1000, message_finished=False))
    last = client.send(BytesMessage(data=b"b" * 1000, message_finished=True))
    assert first[0] & 0x40 and not last[0] & 0x40
    server.receive_data(first + last)
    data = b"".join(e.data for e in server.events() if isinstance(e, BytesMessage))
    assert data == b"a" * 1000 + b"b" * 1000


def test_small_messages_below_min_size_go_out_uncompressed() -> None:
    client, server = pair(min_size=64)
    wire = client.send(BytesMessage(data=b"tiny"))
    assert not wire[0] & 0x40
    server.receive_data(wire)
    (event,) = server.events()
    assert isinstance(event, BytesMessage)
    assert event.data == b"tiny"


def test_inflation_stops_at_the_message_size_limit() -> None:
    """A compression bomb fails with 1009 instead of inflating past the limit."""
    client, server = pair(max_size=10_000)
    bomb = client.send(BytesMessage(data=b"\0" * 5_000_000))
    assert len(bomb) < 10_000
    server.receive_data(bomb)
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == CloseReason.MESSAGE_TOO_BIG


def test_garbage_compressed_payload_fails_with_1007() -> None:
    client, server = pair()
    wire = bytearray(client.send(BytesMessage(data=b"x" * 100)))
    # Corrupt the deflate stream: 0xFF starts a block of the reserved type 3.
    mask = wire[2:6]
    wire[6] = 0xFF ^ mask[0]
    server.receive_data(bytes(wire))
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection)
    assert events[-1].code == CloseReason.INVALID_FRAME_PAYLOAD_DATA
