"""The ``trio-upgrade`` command: serve an app, or run a reverse proxy.

::

    trio-upgrade serve myproject.web:app --bind 127.0.0.1:8000 --bind unix:/run/web.sock
    trio-upgrade serve myproject.web:create_app --factory --access-log
    trio-upgrade serve main:app              # a FastAPI/Starlette/Quart-trio app: ASGI
    trio-upgrade proxy --bind 0.0.0.0:8080 --route /=unix:/run/web.sock --route /api=http://127.0.0.1:9000

``serve`` tells an ASGI 3 application (``app(scope, receive, send)``) from a
native handler (``app(request)``) by its signature, as uvicorn's
``--interface auto`` does; ``--interface asgi|native`` says which. ASGI apps
get their lifespan (``--lifespan auto|on|off``); a failed startup exits with
status 3 and the app's message. The module is imported from ``--app-dir``
(the current directory by default).

Both run until SIGINT or SIGTERM and then shut down gracefully (a second
signal stops at once). Uses the public API only.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import trio

from .asgi import ASGIHandler, Lifespan, LifespanFailure, is_asgi_app
from .core import run_until_signal
from .http import Handler, HTTPConfig, create_server
from .proxy import Proxy

__all__ = ["load_app", "main"]

logger = logging.getLogger("trio_upgrade")


def load_app(spec: str, *, factory: bool = False, app_dir: str | None = None) -> Any:
    """Import ``"package.module:attribute"`` (an App, a Router, a handler or an ASGI
    app); call it with *factory*. *app_dir* (default: the current directory) is
    put first on ``sys.path``, as uvicorn's ``--app-dir`` does."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{spec!r}: expected 'module:attribute', e.g. 'myapp.web:app'")
    directory = os.path.abspath(app_dir if app_dir is not None else os.getcwd())
    if app_dir is not None or ("" not in sys.path and directory not in sys.path):
        sys.path.insert(0, directory)
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    if factory:
        obj = obj()
    if not callable(obj):
        raise TypeError(f"{spec!r} is not an app (an App, a Router, a handler or an ASGI app)")
    return obj


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.certfile:
        if args.keyfile:
            raise SystemExit("--keyfile needs --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def _parse_route(text: str) -> tuple[str, str]:
    prefix, sep, backend = text.partition("=")
    if not sep or not prefix.startswith("/") or not backend:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected PREFIX=BACKEND, e.g. /api=http://127.0.0.1:9000"
        )
    return prefix, backend


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bind",
        action="append",
        metavar="ADDRESS",
        help="host:port, [ipv6]:port or unix:/path (repeatable; default 127.0.0.1:8000)",
    )
    parser.add_argument("--certfile", help="serve TLS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="private key for --certfile (PEM)")
    parser.add_argument(
        "--unix-mode", type=lambda v: int(v, 8), help="mode of Unix sockets, e.g. 660"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="connections served at once (default: from the file-descriptor limit; past it, 503)",
    )
    parser.add_argument(
        "--grace-period", type=float, default=10.0, help="seconds to drain on shutdown"
    )
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-upgrade", description="HTTP/1.1 + WebSocket servers on Trio."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="serve an App, Router or handler")
    serve.add_argument("app", help="module:attribute, e.g. myapp.web:app")
    serve.add_argument("--factory", action="store_true", help="call the attribute to get the app")
    serve.add_argument(
        "--interface",
        choices=["auto", "asgi", "native"],
        default="auto",
        help="ASGI 3 app or native handler (default: tell by the signature)",
    )
    serve.add_argument(
        "--app-dir", default=".", help="directory to import the app from (default: .)"
    )
    serve.add_argument(
        "--lifespan",
        choices=["auto", "on", "off"],
        default="auto",
        help="ASGI lifespan events (auto: when the app supports them)",
    )
    serve.add_argument(
        "--root-path", default="", help="ASGI root_path: the prefix a proxy in front removed"
    )
    _add_server_options(serve)

    proxy = commands.add_parser("proxy", help="run a reverse proxy")
    proxy.add_argument(
        "--route",
        action="append",
        type=_parse_route,
        required=True,
        metavar="PREFIX=BACKEND",
        help="e.g. /api=http://127.0.0.1:9000 or /=unix:/run/web.sock (repeatable)",
    )
    proxy.add_argument("--keep-prefix", action="store_true", help="forward paths with their prefix")
    proxy.add_argument(
        "--upgrade",
        action="append",
        metavar="PROTOCOL",
        help="a protocol the proxy tunnels on Upgrade (repeatable; default: websocket)",
    )
    _add_server_options(proxy)
    return parser


async def _serve_asgi(app: Any, args: argparse.Namespace) -> None:
    async with Lifespan(app, mode=args.lifespan) as state:
        await _serve(ASGIHandler(app, root_path=args.root_path, state=state), args)


async def _serve(app: Handler, args: argparse.Namespace) -> None:
    server = await create_server(
        app,
        *(args.bind or ["127.0.0.1:8000"]),
        config=HTTPConfig(access_log=args.access_log),
        ssl_context=_ssl_context(args),
        max_connections=args.max_connections,
        grace_period=args.grace_period,
        unix_mode=args.unix_mode,
    )
    scheme = "https" if args.certfile else "http"
    for address in server.addresses:
        if isinstance(address, str):
            print(f"serving on unix:{address}", flush=True)
        else:
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            print(f"serving on {scheme}://{host}:{address[1]}/", flush=True)
    await run_until_signal(server)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"trio-upgrade {version('trio-upgrade')}")
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        try:
            app = load_app(args.app, factory=args.factory, app_dir=args.app_dir)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            print(f"trio-upgrade: cannot load {args.app!r}: {exc}", file=sys.stderr)
            return 2
        asgi = args.interface == "asgi" or (args.interface == "auto" and is_asgi_app(app))
        if not asgi:
            trio.run(_serve, app, args)
            return 0
        try:
            trio.run(_serve_asgi, app, args)
        except LifespanFailure as exc:
            print(f"trio-upgrade: {exc}", file=sys.stderr)
            return 3
        return 0
    upgrades = tuple(p.lower() for p in args.upgrade) if args.upgrade else ("websocket",)
    proxy = Proxy(dict(args.route), strip_prefix=not args.keep_prefix, upgrades=upgrades)

    async def run_proxy() -> None:
        async with proxy:
            await _serve(proxy, args)

    trio.run(run_proxy)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
