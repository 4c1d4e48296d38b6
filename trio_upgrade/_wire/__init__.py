"""Layer 0, sans-I/O: the HTTP/1.1 wire format, in one place for every layer.

No trio, no I/O: values in, values out. Imported by ``core``, ``http``, ``ws``,
``bridge``, ``proxy`` and ``asgi``; not public API (see docs/architecture.md).

- :mod:`._grammar`: tokens, field values, comma lists (RFC 9110 §5);
- :mod:`._head`: the one response-head writer, and small complete responses;
- :mod:`._date`: the cached ``Date`` value;
- :mod:`._framing`: which framing a message has, what is refused, when a
  connection must close, what an intermediary strips (RFC 9112 §6) and which
  fields describe one hop only (RFC 9110 §7.6.1);
- :mod:`._parse`: request and response heads read on h11 (the WebSocket
  server's and client's handshakes), with size and field-count limits;
- :mod:`._websocket`: the WebSocket handshake's key exchange (RFC 6455 §4.2.2);
- :mod:`._address`: the address type;
- :mod:`._errors`: :class:`TrioUpgradeError`, the root of every exception the
  package defines, and this layer's errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._address import Address, normalize_address
from ._date import http_date
from ._errors import TrioUpgradeError
from ._framing import (
    HOP_BY_HOP,
    BodyFraming,
    Framing,
    FramingError,
    connection_options,
    forwardable_fields,
    parse_content_length,
    request_framing,
    response_framing,
)
from ._grammar import (
    TOKEN_CHARS,
    FieldList,
    InvalidField,
    check_field,
    field_values,
    is_field_value,
    is_token,
    list_tokens,
    split_list,
)
from ._head import reason, reason_phrase, response_head, simple_response
from ._websocket import WEBSOCKET_GUID, accept_key

if TYPE_CHECKING:
    from ._parse import (
        DEFAULT_MAX_FIELDS,
        DEFAULT_MAX_HEAD_SIZE,
        HeadError,
        RequestHead,
        RequestParser,
        ResponseHead,
        ResponseParser,
    )

# Head parsing runs on h11: loaded on first use, so that a layer that only
# writes heads or needs an address (core) does not import h11.
_LAZY = frozenset(
    {
        "DEFAULT_MAX_FIELDS",
        "DEFAULT_MAX_HEAD_SIZE",
        "HeadError",
        "RequestHead",
        "RequestParser",
        "ResponseHead",
        "ResponseParser",
    }
)

__all__ = [
    "DEFAULT_MAX_FIELDS",
    "DEFAULT_MAX_HEAD_SIZE",
    "HOP_BY_HOP",
    "TOKEN_CHARS",
    "WEBSOCKET_GUID",
    "Address",
    "BodyFraming",
    "FieldList",
    "Framing",
    "FramingError",
    "HeadError",
    "InvalidField",
    "TrioUpgradeError",
    "accept_key",
    "check_field",
    "connection_options",
    "field_values",
    "forwardable_fields",
    "http_date",
    "is_field_value",
    "is_token",
    "list_tokens",
    "normalize_address",
    "parse_content_length",
    "reason",
    "reason_phrase",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
    "request_framing",
    "response_framing",
    "response_head",
    "simple_response",
    "split_list",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("._parse", __name__), name)
    globals()[name] = value
    return value
