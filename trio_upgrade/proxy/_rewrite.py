"""Header and target rewriting for forwarded messages: pure functions, no I/O.

Headers are handled as h11 produces them: a sequence of ``(name, value)``
byte pairs with lower-cased names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote, unquote

from .._wire import HOP_BY_HOP, connection_options
from .._wire._errors import TrioUpgradeError

__all__ = [
    "forward_target",
    "is_upgrade_request",
    "rewrite_request_headers",
    "rewrite_response_headers",
]

RawHeaders = Sequence[tuple[bytes, bytes]]
Address = tuple[str, int] | str

# Fields a client may not remove by naming them in Connection: removing them
# would change the message itself (its target host or framing), not the hop.
_PROTECTED = frozenset({b"host", b"content-length"})

_FORWARDING = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-prefix",
    }
)

# RFC 9110 §5.6.2 token characters; Forwarded values outside them are quoted.
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def is_upgrade_request(headers: RawHeaders) -> bool:
    """True when the request asks to switch protocols: ``Connection: upgrade``
    plus a non-empty ``Upgrade`` field (RFC 9110 §7.8)."""
    if b"upgrade" not in connection_options(headers):
        return False
    return any(name == b"upgrade" and value.strip() for name, value in headers)


def _strip_hop_by_hop(headers: RawHeaders, keep_upgrade: bool) -> list[tuple[bytes, bytes]]:
    options = connection_options(headers)
    drop = set(HOP_BY_HOP)
    drop.update(options - _PROTECTED)
    if keep_upgrade:
        drop.discard(b"upgrade")
    kept = [(name, value) for name, value in headers if name not in drop]
    if keep_upgrade:
        kept.append((b"connection", b"upgrade"))
    return kept


def _node(client: Address | None) -> tuple[str, str]:
    """The client as ``(X-Forwarded-For value, Forwarded for= value)``."""
    if isinstance(client, tuple):
        host = client[0]
        if ":" in host:
            return host, f'"[{host}]"'
        return host, host
    # A Unix socket peer or an unknown one (RFC 7239 §6.1).
    return "unknown", "unknown"


def _forwarded_value(value: str) -> str:
    if _TOKEN.match(value.encode("latin-1")):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def rewrite_request_headers(
    headers: RawHeaders,
    *,
    client: Address | None,
    scheme: str,
    prefix: str = "",
    upgrade: bool = False,
    host: str | None = None,
    x_forwarded: bool = True,
    forwarded: bool = False,
    trust_forwarded: bool = False,
) -> list[tuple[bytes, bytes]]:
    """The header fields a request is forwarded to a backend with.

    - Hop-by-hop fields go (RFC 9110 §7.6.1), and so does every field named in
      ``Connection`` (except ``Host`` and ``Content-Length``). For an *upgrade*
      request ``Upgrade`` stays and ``Connection: upgrade`` is sent, so the
      backend sees the handshake intact. The caller adds framing
      (``Transfer-Encoding``) for the backend hop itself.
    - ``Expect`` goes: ``100-continue`` was answered on the client's hop.
    - *host* replaces ``Host`` (otherwise the client's is kept).
    - Forwarding information: unless *trust_forwarded*, the client's own
      ``Forwarded`` / ``X-Forwarded-*`` fields are dropped first. Then
      ``X-Forwarded-For/-Proto/-Host`` (and ``-Prefix`` for a stripped
      *prefix*) with *x_forwarded*, and an RFC 7239 ``Forwarded`` element with
      *forwarded*, are added — appended to trusted incoming ones.
    """
    out = _strip_hop_by_hop(headers, keep_upgrade=upgrade)
    original_host = next((value for name, value in headers if name == b"host"), None)
    drop = {b"expect"}
    if not trust_forwarded:
        drop |= _FORWARDING
    if host is not None:
        drop.add(b"host")
    incoming: dict[bytes, list[bytes]] = {}
    kept: list[tuple[bytes, bytes]] = []
    for name, value in out:
        if name in drop:
            continue
        if name in _FORWARDING:
            incoming.setdefault(name, []).append(value)
            continue
        kept.append((name, value))
    if host is not None:
        kept.insert(0, (b"host", host.encode("latin-1")))

    xff, forwarded_for = _node(client)
    if x_forwarded:
        previous = incoming.pop(b"x-forwarded-for", [])
        kept.append((b"x-forwarded-for", b", ".join([*previous, xff.encode("latin-1")])))
        proto = incoming.pop(b"x-forwarded-proto", [])
        kept.append((b"x-forwarded-proto", proto[0] if proto else scheme.encode("latin-1")))
        fwd_host = incoming.pop(b"x-forwarded-host", [])
        if fwd_host:
            kept.append((b"x-forwarded-host", fwd_host[0]))
        elif original_host is not None:
            kept.append((b"x-forwarded-host", original_host))
        outer = incoming.pop(b"x-forwarded-prefix", [])
        ours = "" if prefix == "/" else prefix
        if outer and ours:
            # Prefixes stripped by successive proxies add up, outermost first.
            outer = [outer[0].rstrip(b"/") + ours.encode("latin-1")]
        if outer:
            kept.append((b"x-forwarded-prefix", outer[0]))
        elif ours:
            kept.append((b"x-forwarded-prefix", ours.encode("latin-1")))
    if forwarded:
        element = f"for={forwarded_for};proto={scheme}"
        if original_host is not None:
            element += f";host={_forwarded_value(original_host.decode('latin-1'))}"
        previous = incoming.pop(b"forwarded", [])
        kept.append((b"forwarded", b", ".join([*previous, element.encode("latin-1")])))
    # Trusted fields this configuration does not produce are passed on as they came.
    for name, values in incoming.items():
        kept.extend((name, value) for value in values)
    return kept


def rewrite_response_headers(
    headers: RawHeaders, *, upgrade: bool = False
) -> list[tuple[bytes, bytes]]:
    """The header fields a backend's response is relayed with.

    Hop-by-hop fields and fields named in ``Connection`` go; ``Content-Length``
    stays (the relay keeps the framing when it knows the length). For the
    ``101`` answer to an *upgrade*, ``Upgrade`` stays and ``Connection:
    upgrade`` is sent.
    """
    return _strip_hop_by_hop(headers, keep_upgrade=upgrade)


def forward_target(target: str, strip: str = "", base_path: str = "") -> str:
    """The request target to send a backend.

    *target* is the raw target the client sent (``/api/a%20b?x=1``); *strip*
    is a decoded path prefix it starts with (``/api``), removed at a segment
    boundary; *base_path* (``/v1``) is put in front. Percent-encoding of the
    rest is kept as the client sent it. A target that does not start with '/'
    (``*``) is passed as is.
    """
    if not target.startswith("/"):
        return target
    raw_path, sep, query = target.partition("?")
    rest = raw_path
    if strip and strip != "/":
        rest = _strip_raw_prefix(raw_path, strip)
    path = base_path + rest if base_path else rest
    return path + sep + query


def _strip_raw_prefix(raw_path: str, prefix: str) -> str:
    # The common case: the client did not percent-encode the prefix.
    if raw_path.startswith(prefix):
        rest = raw_path[len(prefix) :]
        if not rest:
            return "/"
        if rest.startswith("/"):
            return rest
    # Compare decoded segment by segment, keeping the rest's encoding.
    wanted = prefix.strip("/").split("/")
    segments = raw_path.split("/")[1:]
    if len(segments) >= len(wanted) and all(
        unquote(raw) == want for raw, want in zip(segments, wanted, strict=False)
    ):
        return "/" + "/".join(segments[len(wanted) :])
    # The prefix spans an encoded '/' (%2F): fall back to the decoded path.
    decoded = unquote(raw_path)
    if decoded.startswith(prefix):
        return quote(decoded[len(prefix) :], safe="/") or "/"
    return raw_path


class UnsafeTarget(TrioUpgradeError, ValueError):
    """A request target the proxy refuses to forward (answered with 400)."""


def split_target(target: str) -> tuple[str, str, str | None]:
    """``(raw path, "?query" or "", authority)`` of a request target.

    Origin-form (``/a?b``) has no authority; absolute-form
    (``http://host:8080/a?b``, RFC 9112 §3.2.2) gives its path and authority,
    so that it is routed by its path and forwarded in origin-form; the
    asterisk-form ``*`` is its own path. Raises :class:`UnsafeTarget` for
    anything else (an authority-form or a scheme other than http/https).
    """
    if target == "*" or target.startswith("/"):
        path, sep, query = target.partition("?")
        return path, sep + query, None
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise UnsafeTarget(f"unsupported request target {target[:80]!r}")
    rest, _, _fragment = rest.partition("#")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, rest = rest[:cut], rest[cut:]
    if not authority or "@" in authority:
        raise UnsafeTarget(f"unsupported authority in {target[:80]!r}")
    path, sep, query = rest.partition("?")
    return path or "/", sep + query, authority


_SLASHES = re.compile(r"[/\\]")


def normalize_path(raw_path: str) -> str:
    """*raw_path* without dot segments (RFC 3986 §5.2.4), percent-encoding kept.

    ``.`` and ``..`` count in any spelling (``%2e``, ``%2E%2e``). Raises
    :class:`UnsafeTarget` for a ``..`` that would climb above ``/``, and for a
    segment that hides a dot segment behind an encoded slash or a backslash
    (``..%2f``, ``%2e%2e%5c``, ``..\\``): whether that climbs depends on how
    the backend decodes, so it is not forwarded at all. Everything else is
    returned with the client's encoding (``/a/./b/../c%20d`` → ``/a/c%20d``).
    """
    if "." not in raw_path and "%" not in raw_path:
        return raw_path  # The common case: nothing to remove.
    segments = raw_path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, raw in enumerate(segments):
        segment = unquote(raw) if "%" in raw else raw
        if segment == "." or segment == "..":
            if segment == "..":
                if not out:
                    raise UnsafeTarget("the path climbs above the root")
                out.pop()
            if i == last:
                out.append("")  # "/a/b/.." is "/a/", not "/a"
            continue
        if _SLASHES.search(segment) and any(
            part in (".", "..") for part in _SLASHES.split(segment)
        ):
            raise UnsafeTarget("a dot segment behind an encoded slash or a backslash")
        out.append(raw)
    return "/" + "/".join(out)
