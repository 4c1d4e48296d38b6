"""trio_upgrade.ws exports exactly the names docs/websocket.md documents."""

from __future__ import annotations

import trio_upgrade.ws

DOCUMENTED = {
    # sessions
    "WebSocket",
    "MessageChunks",
    "websocket_session",
    "WebSocketConfig",
    "Deflate",
    # standalone server and client
    "serve_websocket",
    "Accept",
    "Reject",
    "HandshakeHook",
    "WebSocketHandler",
    "open_websocket",
    "HandshakeRequest",
    # errors
    "WebSocketError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "HandshakeError",
    "HandshakeRejected",
    # a handshake done elsewhere, sans I/O (server side, then client side)
    "validate_request",
    "ClientOffer",
    "Rejection",
    "accept",
    "Accepted",
    "client_request",
    "check_response",
    "offered_extensions",
}


def test_all_is_exactly_the_documented_api() -> None:
    assert set(trio_upgrade.ws.__all__) == DOCUMENTED
    assert len(trio_upgrade.ws.__all__) == len(set(trio_upgrade.ws.__all__))


def test_every_class_and_function_export_is_defined_in_the_ws_layer() -> None:
    for name in trio_upgrade.ws.__all__:
        obj = getattr(trio_upgrade.ws, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            assert obj.__module__.startswith("trio_upgrade.ws."), (name, obj.__module__)
