"""Every setting of the command, once: its flags, its environment variable, its
config-file key, its default, and how a string becomes its value.

A setting's value comes from, in order of precedence: a command-line flag, the
``TRIO_UPGRADE_<NAME>`` environment variable, the ``--config`` TOML file (key
``<name>``), the default. :func:`resolve` returns the values with where each
came from, which ``--print-config`` shows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import TrioUpgradeError

__all__ = ["ENV_PREFIX", "OPTIONS", "CLIError", "Option", "Resolved", "add_arguments", "resolve"]

ENV_PREFIX = "TRIO_UPGRADE_"
BOTH = frozenset({"serve", "proxy"})
SERVE = frozenset({"serve"})
PROXY = frozenset({"proxy"})


class CLIError(TrioUpgradeError):
    """Bad input from the user: the command prints the message on one line and exits 2."""


def _nullable(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_none(text: str) -> Any:
        if text.strip().lower() in ("none", "off", "unlimited"):
            return None
        return parse(text)

    parse_or_none.__name__ = parse.__name__
    return parse_or_none


def size(text: str) -> int:
    """A byte count: ``65536``, ``64k``, ``10M``, ``1G`` (powers of 1024)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    body = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(body[-1:], 1)
    if factor != 1:
        body = body[:-1]
    if not (body.isascii() and body.isdigit()):
        raise ValueError(f"{text!r} is not a size (e.g. 65536, 64k, 10M)")
    return int(body) * factor


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a number of seconds")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def octal(text: str) -> int:
    return int(text, 8)


def text(value: str) -> str:
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def choose(value: str) -> str:
        if value not in choices:
            raise ValueError(f"{value!r}: expected one of {', '.join(choices)}")
        return value

    choose.__name__ = "choice"
    return choose


def route(value: str) -> str:
    prefix, sep, backend = value.partition("=")
    if not sep or not prefix.startswith("/") or not backend:
        raise ValueError(f"{value!r}: expected PREFIX=BACKEND, e.g. /api=http://127.0.0.1:9000")
    return value


@dataclass(frozen=True, slots=True)
class Option:
    """One setting."""

    name: str
    """Attribute name, config-file key, and (upper-cased) environment variable suffix."""
    flags: tuple[str, ...]
    parse: Callable[[str], Any]
    """Turns a flag's or a variable's text into the value; ValueError if malformed."""
    default: Any
    help: str
    commands: frozenset[str] = BOTH
    multiple: bool = False
    """Repeatable flag; a whitespace-separated list in the environment, a list in the file."""
    switch: bool = False
    """A boolean with ``--name/--no-name`` flags."""
    metavar: str | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _o(
    name: str, flags: Sequence[str], parse: Callable[[str], Any], default: Any, help: str, **kw: Any
) -> Option:
    return Option(name, tuple(flags), parse, default, help, **kw)


OPTIONS: tuple[Option, ...] = (
    # What to serve.
    _o("app", (), _nullable(text), None, "module:attribute, e.g. myapp.web:app", commands=SERVE),
    _o(
        "factory",
        ("--factory",),
        boolean,
        False,
        "call the attribute to get the app",
        commands=SERVE,
        switch=True,
    ),
    _o(
        "interface",
        ("--interface",),
        _choice("auto", "asgi", "native"),
        "auto",
        "ASGI 3 app or native handler (auto: tell by the signature)",
        commands=SERVE,
    ),
    _o("app_dir", ("--app-dir",), text, ".", "directory to import the app from", commands=SERVE),
    _o(
        "lifespan",
        ("--lifespan",),
        _choice("auto", "on", "off"),
        "auto",
        "ASGI lifespan events (auto: when the app supports them)",
        commands=SERVE,
    ),
    _o(
        "root_path",
        ("--root-path",),
        text,
        "",
        "ASGI root_path: the prefix a proxy in front removed",
        commands=SERVE,
    ),
    _o(
        "route",
        ("--route",),
        route,
        [],
        "PREFIX=BACKEND, e.g. /api=http://127.0.0.1:9000 or /=unix:/run/web.sock (repeatable)",
        commands=PROXY,
        multiple=True,
        metavar="PREFIX=BACKEND",
    ),
    _o(
        "keep_prefix",
        ("--keep-prefix",),
        boolean,
        False,
        "forward paths with their prefix",
        commands=PROXY,
        switch=True,
    ),
    _o(
        "upgrade",
        ("--upgrade",),
        lambda v: v.lower(),
        ["websocket"],
        "a protocol the proxy tunnels on Upgrade (repeatable)",
        commands=PROXY,
        multiple=True,
        metavar="PROTOCOL",
    ),
    # Where to listen.
    _o(
        "bind",
        ("--bind", "-b"),
        text,
        [],
        "host:port, [ipv6]:port, unix:PATH or fd://N (repeatable; default 127.0.0.1:8000)",
        multiple=True,
        metavar="ADDRESS",
    ),
    _o("host", ("--host",), _nullable(text), None, "TCP host to listen on (with --port)"),
    _o("port", ("--port",), _nullable(count), None, "TCP port (with --host, default 127.0.0.1)"),
    _o("uds", ("--uds",), _nullable(text), None, "listen on this Unix socket path"),
    _o("fd", ("--fd",), _nullable(count), None, "serve an inherited listening socket"),
    _o("unix_mode", ("--unix-mode",), _nullable(octal), None, "mode of Unix sockets, e.g. 660"),
    _o(
        "workers",
        ("--workers", "-w"),
        count,
        1,
        "worker processes sharing the sockets (1: serve in this process)",
    ),
    _o(
        "reload",
        ("--reload",),
        boolean,
        False,
        "restart the workers when a *.py file under --reload-dir changes (development)",
        switch=True,
    ),
    _o(
        "reload_dir",
        ("--reload-dir",),
        text,
        [],
        "a directory --reload watches (repeatable; default: --app-dir)",
        multiple=True,
        metavar="DIR",
    ),
    # TLS.
    _o(
        "certfile",
        ("--certfile", "--ssl-certfile"),
        _nullable(text),
        None,
        "serve TLS with this certificate chain (PEM)",
    ),
    _o(
        "keyfile",
        ("--keyfile", "--ssl-keyfile"),
        _nullable(text),
        None,
        "private key for --certfile (PEM)",
    ),
    _o(
        "ssl_ca_certs",
        ("--ssl-ca-certs",),
        _nullable(text),
        None,
        "CA certificates (PEM) to verify client certificates with",
    ),
    _o(
        "ssl_cert_reqs",
        ("--ssl-cert-reqs",),
        _choice("none", "optional", "required"),
        "none",
        "client certificates: none, optional or required (needs --ssl-ca-certs)",
    ),
    # Connections.
    _o(
        "max_connections",
        ("--max-connections",),
        _nullable(count),
        None,
        "connections served at once (default: from the file-descriptor limit; past it, 503)",
    ),
    _o(
        "max_connections_per_client",
        ("--max-connections-per-client",),
        _nullable(count),
        None,
        "connections one client address may hold (past it, 503)",
    ),
    _o(
        "grace_period",
        ("--grace-period", "--graceful-timeout", "--timeout-graceful-shutdown"),
        seconds,
        10.0,
        "seconds to drain on shutdown",
    ),
    # HTTP limits and timeouts (HTTPConfig).
    _o(
        "max_header_size",
        ("--max-header-size",),
        size,
        16 * 1024,
        "largest request head in bytes (past it, 431)",
    ),
    _o(
        "max_body_size",
        ("--max-body-size",),
        _nullable(size),
        10 * 1024**2,
        "largest request body in bytes (past it, 413; none: no limit)",
    ),
    _o(
        "header_timeout",
        ("--header-timeout",),
        _nullable(seconds),
        10.0,
        "seconds to send a request head (past it, 408)",
    ),
    _o(
        "keepalive_timeout",
        ("--keepalive-timeout", "--timeout-keep-alive"),
        _nullable(seconds),
        5.0,
        "seconds an idle keep-alive connection is kept",
    ),
    _o(
        "body_timeout",
        ("--body-timeout",),
        _nullable(seconds),
        30.0,
        "longest wait for each piece of a request body (past it, 408)",
    ),
    _o(
        "min_body_rate",
        ("--min-body-rate",),
        _nullable(seconds),
        500.0,
        "slowest request-body rate in bytes per second (past it, 408)",
    ),
    _o(
        "write_timeout",
        ("--write-timeout",),
        _nullable(seconds),
        30.0,
        "longest wait for one write to the client",
    ),
    _o(
        "max_drain_size",
        ("--max-drain-size",),
        size,
        64 * 1024,
        "unread request body discarded to keep a connection alive",
    ),
    _o(
        "max_requests_per_connection",
        ("--max-requests-per-connection",),
        _nullable(count),
        None,
        "close a keep-alive connection after this many requests",
    ),
    _o(
        "server_header",
        ("--server-header",),
        _nullable(text),
        None,
        "send 'Server: VALUE' (bare flag: trio-upgrade); --no-server-header sends none",
    ),
    _o("date_header", ("--date-header",), boolean, True, "send a Date header", switch=True),
    _o(
        "http_parser",
        ("--http", "--http-parser"),
        _choice("auto", "h11", "httptools"),
        "auto",
        "request parser: httptools when installed (auto), or h11",
    ),
    _o("access_log", ("--access-log",), boolean, False, "log one line per request", switch=True),
    _o(
        "access_log_format",
        ("--access-log-format",),
        _choice("text", "json"),
        "text",
        "access log lines as text or as one JSON object per line",
    ),
    _o(
        "log_level",
        ("--log-level",),
        _choice("debug", "info", "warning", "error"),
        "info",
        "logging level",
    ),
    _o(
        "log_config",
        ("--log-config",),
        _nullable(text),
        None,
        "configure logging from this file (logging.config.dictConfig): .json, .yaml/.yml "
        "(with PyYAML) or .toml",
        metavar="FILE",
    ),
    _o(
        "metrics_bind",
        ("--metrics-bind",),
        _nullable(text),
        None,
        "serve Prometheus metrics at http://ADDRESS/metrics (host:port or unix:PATH; "
        "needs prometheus-client)",
        metavar="ADDRESS",
    ),
    # WebSocket (WebSocketConfig; ASGI apps).
    _o(
        "ws_max_size",
        ("--ws-max-size", "--ws-max-message-size"),
        _nullable(size),
        1024**2,
        "largest WebSocket message (past it, close 1009)",
    ),
    _o("ws_max_queue", ("--ws-max-queue",), count, 16, "WebSocket messages buffered for the app"),
    _o(
        "ws_send_buffer",
        ("--ws-send-buffer",),
        size,
        64 * 1024,
        "WebSocket bytes queued for the peer before send waits",
    ),
    _o(
        "ws_ping_interval",
        ("--ws-ping-interval",),
        _nullable(seconds),
        20.0,
        "seconds between WebSocket keepalive pings (none: no pings)",
    ),
    _o(
        "ws_ping_timeout",
        ("--ws-ping-timeout",),
        seconds,
        20.0,
        "seconds a ping waits for its pong",
    ),
    _o(
        "ws_close_timeout",
        ("--ws-close-timeout",),
        seconds,
        10.0,
        "seconds the WebSocket closing handshake may take",
    ),
    _o(
        "ws_per_message_deflate",
        ("--ws-per-message-deflate",),
        boolean,
        True,
        "negotiate permessage-deflate",
        switch=True,
    ),
    # Behind a proxy.
    _o(
        "proxy_headers",
        ("--proxy-headers",),
        boolean,
        False,
        "trust X-Forwarded-For/-Proto from --forwarded-allow-ips",
        switch=True,
    ),
    _o(
        "forwarded_allow_ips",
        ("--forwarded-allow-ips",),
        text,
        "127.0.0.1,::1",
        "comma-separated proxy addresses or networks whose X-Forwarded-* are trusted (*: all)",
    ),
)

_BY_NAME = {option.name: option for option in OPTIONS}


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of *command*'s settings; only flags given land in the namespace."""

    def checked(option: Option) -> Callable[[str], Any]:
        def parse(value: str) -> Any:
            try:
                return option.parse(value)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None

        parse.__name__ = option.name
        return parse

    for option in OPTIONS:
        if command not in option.commands:
            continue
        help = f"{option.help} [{option.env}; default {_toml(option.default)}]"
        if not option.flags:
            parser.add_argument(option.name, nargs="?", default=argparse.SUPPRESS, help=help)
        elif option.switch:
            parser.add_argument(
                *option.flags,
                dest=option.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help,
            )
        elif option.name == "server_header":
            parser.add_argument(
                *option.flags,
                dest=option.name,
                nargs="?",
                const="trio-upgrade",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=help,
            )
            parser.add_argument(
                "--no-server-header",
                dest=option.name,
                action="store_const",
                const=None,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        else:
            parser.add_argument(
                *option.flags,
                dest=option.name,
                type=checked(option),
                action="append" if option.multiple else "store",
                default=argparse.SUPPRESS,
                metavar=option.metavar,
                help=help,
            )


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings of one run: ``values[name]`` and ``sources[name]``."""

    command: str
    values: dict[str, Any]
    sources: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def dump(self) -> str:
        """The settings as a TOML file, each line saying where the value came from."""
        lines = [f"# trio-upgrade {self.command}: flag > environment > config file > default"]
        for name, value in self.values.items():
            lines.append(f"{name} = {_toml(value)}  # {self.sources[name]}")
        return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)


def _from_file_value(option: Option, value: Any, where: str) -> Any:
    """A config-file value, type-checked; strings go through the option's parser."""
    try:
        if option.multiple:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("expected a list of strings")
            return [option.parse(v) for v in value]
        if option.switch or option.parse is boolean:
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                return boolean(value)
            raise ValueError("expected true or false")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"expected a string or a number, not {type(value).__name__}")
        return option.parse(str(value))
    except ValueError as exc:
        raise CLIError(f"{where}: {option.name}: {exc}") from None


def load_config_file(path: str) -> dict[str, Any]:
    try:
        toml = importlib.import_module("tomllib")
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            toml = importlib.import_module("tomli")
        except ImportError:
            raise CLIError("--config needs Python 3.11 or the tomli package") from None
    try:
        with open(path, "rb") as file:
            data: dict[str, Any] = toml.load(file)
            return data
    except OSError as exc:
        raise CLIError(f"cannot read config file {path!r}: {exc.strerror or exc}") from None
    except ValueError as exc:  # TOMLDecodeError
        raise CLIError(f"config file {path!r} is not valid TOML: {exc}") from None


def resolve(
    command: str,
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_path: str | None = None,
) -> Resolved:
    """Settings of *command* from the flags given, the environment and a config file."""
    file_values: dict[str, Any] = {}
    if config_path is None:
        config_path = environ.get(ENV_PREFIX + "CONFIG") or None
    if config_path is not None:
        raw = load_config_file(config_path)
        # A [serve] or [proxy] table applies to that command only, over the top level.
        merged = {k: v for k, v in raw.items() if k not in ("serve", "proxy")}
        section = raw.get(command, {})
        if not isinstance(section, dict):
            raise CLIError(f"{config_path}: [{command}] must be a table")
        merged.update(section)
        for key, value in merged.items():
            name = key.replace("-", "_")
            option = _BY_NAME.get(name)
            if option is None or command not in option.commands:
                raise CLIError(f"{config_path}: unknown {command} setting {key!r}")
            file_values[name] = _from_file_value(option, value, config_path)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if command not in option.commands:
            continue
        name = option.name
        if name in flags:
            values[name], sources[name] = flags[name], "flag"
        elif option.env in environ:
            raw_text = environ[option.env]
            try:
                if option.multiple:
                    values[name] = [option.parse(item) for item in raw_text.split()]
                else:
                    values[name] = option.parse(raw_text)
            except ValueError as exc:
                raise CLIError(f"{option.env}: {exc}") from None
            sources[name] = f"env {option.env}"
        elif name in file_values:
            values[name], sources[name] = file_values[name], f"file {config_path}"
        else:
            default = option.default
            values[name] = list(default) if isinstance(default, list) else default
            sources[name] = "default"
    return Resolved(command, values, sources)
