"""``--metrics-bind``: a Prometheus endpoint on its own listener (prometheus-client).

:class:`PrometheusObserver` is the server's :class:`~trio_upgrade.core.Observer`:
it counts what the layers report. :func:`metrics_app` serves
``GET /metrics`` with this package's own HTTP server, in the command's
nursery (no thread, no second event loop). prometheus-client is imported only
when metrics are asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..core import Observer, Server
from ..http import Handler, Request, Response
from ._settings import CLIError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusObserver", "metrics_app", "require_prometheus"]

# Request methods counted by name; any other is counted as "other", so that a
# client inventing methods cannot grow the number of time series.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def require_prometheus() -> None:
    """Raise the command's one-line error when prometheus-client is missing."""
    try:
        importlib.import_module("prometheus_client")
    except ImportError:
        raise CLIError(
            "--metrics-bind needs prometheus-client: pip install 'trio-upgrade[metrics]'"
        ) from None


class PrometheusObserver(Observer):
    """Counts a server's traffic in prometheus-client metrics (all prefixed ``trio_upgrade_``):

    - ``http_requests_total{method, status}``;
    - ``http_request_duration_seconds`` (histogram; WebSocket sessions, status
      101, are left out: they last as long as the session);
    - ``connections_open`` (gauge: the server's connections right now);
    - ``websocket_sessions_open`` (gauge);
    - ``websocket_messages_total{direction="in"|"out"}`` and
      ``websocket_message_bytes_total{direction}`` (payload bytes, UTF-8 for text);
    - ``websocket_handshake_rejections_total{status}``: requests for a
      WebSocket upgrade answered with anything but 101.
    """

    __slots__ = (
        "_by_label",
        "_bytes_in",
        "_bytes_out",
        "_connections",
        "_latency",
        "_messages_in",
        "_messages_out",
        "_rejections",
        "_requests",
        "_sessions",
        "registry",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        # The default registry: metrics an app registers itself are served too.
        self.registry = registry = registry if registry is not None else REGISTRY
        prefix = "trio_upgrade_"
        self._requests = Counter(
            prefix + "http_requests",
            "HTTP requests answered, by method and status",
            ("method", "status"),
            registry=registry,
        )
        self._latency = Histogram(
            prefix + "http_request_duration_seconds",
            "Time from a request's head to the end of its response (WebSocket sessions excluded)",
            registry=registry,
        )
        self._connections = Gauge(
            prefix + "connections_open", "Connections being served", registry=registry
        )
        self._sessions = Gauge(
            prefix + "websocket_sessions_open", "WebSocket sessions open", registry=registry
        )
        messages = Counter(
            prefix + "websocket_messages",
            "WebSocket messages received (in) and sent (out) by the application",
            ("direction",),
            registry=registry,
        )
        size = Counter(
            prefix + "websocket_message_bytes",
            "Payload bytes of WebSocket messages (UTF-8 for text), in and out",
            ("direction",),
            registry=registry,
        )
        self._messages_in = messages.labels("in")
        self._messages_out = messages.labels("out")
        self._bytes_in = size.labels("in")
        self._bytes_out = size.labels("out")
        self._rejections = Counter(
            prefix + "websocket_handshake_rejections",
            "WebSocket upgrade requests answered with anything but 101, by status",
            ("status",),
            registry=registry,
        )
        # Label children by (method, status): .labels() takes a lock and builds a key.
        self._by_label: dict[tuple[str, int], Any] = {}

    def watch(self, server: Server) -> None:
        """Read ``connections_open`` from *server* at each scrape."""
        self._connections.set_function(lambda: server.connection_count)

    def request_done(self, method: str, status: int, seconds: float, upgrade: str | None) -> None:
        key = (method, status)
        child = self._by_label.get(key)
        if child is None:
            name = method if method in _METHODS else "other"
            child = self._by_label[key] = self._requests.labels(name, str(status))
        child.inc()
        if status != 101:
            self._latency.observe(seconds)
            if upgrade is not None and "websocket" in upgrade:
                self._rejections.labels(str(status)).inc()

    def session_opened(self) -> None:
        self._sessions.inc()

    def session_closed(self) -> None:
        self._sessions.dec()

    def message_received(self, size: int) -> None:
        self._messages_in.inc()
        self._bytes_in.inc(size)

    def message_sent(self, size: int) -> None:
        self._messages_out.inc()
        self._bytes_out.inc(size)


def metrics_app(registry: CollectorRegistry) -> Handler:
    """A handler serving *registry* at ``GET /metrics`` (text format, or
    OpenMetrics when the scraper asks for it); anything else is 404."""
    from prometheus_client.exposition import choose_encoder

    async def metrics(request: Request) -> Response:
        if request.path != "/metrics":
            return Response.text("not found: metrics are at /metrics\n", status=404)
        if request.method not in ("GET", "HEAD"):
            return Response.text("method not allowed\n", status=405, headers={"allow": "GET"})
        encode, content_type = choose_encoder(request.headers.get("accept") or "")
        return Response(encode(registry), content_type=content_type)

    return metrics
