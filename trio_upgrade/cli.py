"""The ``trio-upgrade`` command: serve an app, or run a reverse proxy.

::

    trio-upgrade serve myproject.web:app -b 127.0.0.1:8000 -b unix:/run/web.sock
    trio-upgrade serve myproject.web:create_app --factory --access-log --workers 4
    trio-upgrade serve main:app              # a FastAPI/Starlette/Quart-trio app: ASGI
    trio-upgrade proxy -b 0.0.0.0:8080 --route /=unix:/run/web.sock --route /api=http://127.0.0.1:9000

``serve`` tells an ASGI 3 application (``app(scope, receive, send)``) from a
native handler (``app(request)``) by its signature, as uvicorn's
``--interface auto`` does; ``--interface asgi|native`` says which. ASGI apps
get their lifespan (``--lifespan auto|on|off``); a failed startup exits with
status 3 and the app's message. Bad input (a malformed bind, a port in use, an
app that cannot be loaded, a bad config file) exits with status 2 and one line.

Every setting also comes from ``TRIO_UPGRADE_<NAME>`` and a ``--config`` TOML
file (flag > environment > file > default; ``--print-config`` shows the
result). docs/cli.md lists them all. Uses the public API only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import trio

from ._cli import (
    FDS_ENV,
    LIFELINE_ENV,
    READY_ENV,
    RETIRE_SIGNAL,
    CLIError,
    PrometheusObserver,
    Resolved,
    Supervisor,
    TrustedProxies,
    add_arguments,
    fd_listeners,
    forwarded_headers,
    load_log_config,
    metrics_app,
    parse_fd_bind,
    require_prometheus,
    resolve,
    systemd_fds,
    use_json_access_log,
)
from .asgi import ASGIHandler, Lifespan, LifespanFailure, is_asgi_app
from .core import (
    BindError,
    Server,
    configure_logging,
    listener_address,
    open_listeners,
    parse_bind,
    run_until_signal,
)
from .http import Handler, HTTPConfig, app_lifespan, create_server
from .proxy import Proxy
from .ws import Deflate, WebSocketConfig

__all__ = ["load_app", "main"]

logger = logging.getLogger("trio_upgrade.cli")

DEFAULT_BIND = "127.0.0.1:8000"


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-upgrade", description="HTTP/1.1 + WebSocket servers on Trio."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    for name, help in (("serve", "serve an app"), ("proxy", "run a reverse proxy")):
        sub = commands.add_parser(name, help=help)
        add_arguments(sub, name)
        sub.add_argument("--config", metavar="FILE", help="read settings from this TOML file")
        sub.add_argument(
            "--print-config",
            action="store_true",
            help="print the settings, where each came from",
        )
    return parser


# -- settings into objects -------------------------------------------------


def _ssl_context(s: Resolved) -> ssl.SSLContext | None:
    if not s.certfile:
        if s.keyfile or s.ssl_ca_certs:
            raise CLIError("--keyfile and --ssl-ca-certs need --certfile")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(s.certfile, s.keyfile)
        if s.ssl_ca_certs:
            context.load_verify_locations(cafile=s.ssl_ca_certs)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(f"cannot load TLS files: {exc}") from None
    if s.ssl_cert_reqs != "none":
        if not s.ssl_ca_certs:
            raise CLIError("--ssl-cert-reqs needs --ssl-ca-certs")
        context.verify_mode = (
            ssl.CERT_REQUIRED if s.ssl_cert_reqs == "required" else ssl.CERT_OPTIONAL
        )
    return context


def _http_config(s: Resolved) -> HTTPConfig:
    try:
        return HTTPConfig(
            max_header_size=s.max_header_size,
            max_body_size=s.max_body_size,
            header_timeout=s.header_timeout,
            keepalive_timeout=s.keepalive_timeout,
            body_timeout=s.body_timeout,
            min_body_rate=s.min_body_rate,
            write_timeout=s.write_timeout,
            max_drain_size=s.max_drain_size,
            max_requests_per_connection=s.max_requests_per_connection,
            access_log=s.access_log,
            server_header=s.server_header,
            date_header=s.date_header,
            parser=s.http_parser,
        )
    except (ValueError, RuntimeError) as exc:
        # RuntimeError: --http httptools without httptools installed.
        raise CLIError(str(exc)) from None


def _websocket_config(s: Resolved) -> WebSocketConfig:
    try:
        return WebSocketConfig(
            max_message_size=s.ws_max_size,
            receive_queue=s.ws_max_queue,
            send_buffer=s.ws_send_buffer,
            ping_interval=s.ws_ping_interval,
            ping_timeout=s.ws_ping_timeout,
            close_timeout=s.ws_close_timeout,
            compression=Deflate() if s.ws_per_message_deflate else None,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _binds(s: Resolved) -> tuple[list[str], list[int]]:
    """The bind strings to open and the inherited descriptors (``fd://N``) to serve."""
    specs = list(s.bind)
    if s.host is not None or s.port is not None:
        host = s.host if s.host is not None else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        specs.append(f"{host}:{s.port if s.port is not None else 8000}")
    if s.uds is not None:
        specs.append(f"unix:{s.uds}")
    if s.fd is not None:
        specs.append(f"fd://{s.fd}")
    binds: list[str] = []
    fds: list[int] = []
    for spec in specs:
        fd = parse_fd_bind(spec)
        if fd is not None:
            fds.append(fd)
            continue
        try:
            parse_bind(spec)
        except BindError as exc:
            raise CLIError(f"bad --bind: {exc}") from None
        binds.append(spec)
    return binds, fds


async def _open(
    binds: Sequence[str], ssl_context: ssl.SSLContext | None, unix_mode: int | None
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Open each bind, naming the one that failed."""
    listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
    try:
        for bind in binds:
            try:
                listeners += await open_listeners(
                    bind, ssl_context=ssl_context, unix_mode=unix_mode
                )
            except OSError as exc:
                raise CLIError(f"cannot listen on {bind}: {exc.strerror or exc}") from None
    except BaseException:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
        raise
    return listeners


def _describe(address: object, scheme: str) -> str:
    if isinstance(address, tuple):
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        return f"{scheme}://{host}:{address[1]}/"
    return f"unix:{address}"


# -- running ---------------------------------------------------------------


async def _serve(s: Resolved, app: Any, binds: list[str], fds: list[int], worker: bool) -> None:
    ssl_context = _ssl_context(s)
    listeners = fd_listeners(fds, ssl_context) + await _open(binds, ssl_context, s.unix_mode)
    async with contextlib.AsyncExitStack() as stack:
        observer: PrometheusObserver | None = None
        metrics_server: Server | None = None
        if s.metrics_bind is not None:
            # Opened first, so that a port in use stops the command before the
            # app's lifespan runs; closed however the command ends.
            metrics_listeners = await _open([s.metrics_bind], None, None)
            for listener in metrics_listeners:
                stack.push_async_callback(trio.aclose_forcefully, listener)
            observer = PrometheusObserver()
            metrics_server = await create_server(
                metrics_app(observer.registry), listeners=metrics_listeners, max_connections=64
            )
        handler: Handler
        if s.command == "proxy":
            handler = await stack.enter_async_context(_make_proxy(s))
        elif _is_asgi(s, app):
            state = await stack.enter_async_context(Lifespan(app, mode=s.lifespan))
            handler = ASGIHandler(
                app, root_path=s.root_path, state=state, websocket_config=_websocket_config(s)
            )
        else:
            # A native App's lifespan (App(lifespan=...)): startup before the
            # first connection, shutdown after the drain, as run() does.
            try:
                await stack.enter_async_context(app_lifespan(app))
            except Exception as exc:
                raise LifespanFailure("startup", f"{type(exc).__name__}: {exc}") from exc
            handler = app
        if s.proxy_headers:
            handler = forwarded_headers(handler, TrustedProxies(s.forwarded_allow_ips))
        server = await create_server(
            handler,
            config=_http_config(s),
            max_connections=s.max_connections,
            max_connections_per_client=s.max_connections_per_client,
            grace_period=s.grace_period,
            listeners=listeners,
            observer=observer,
        )
        async with trio.open_nursery() as nursery:

            async def serve_then_stop(*, task_status: trio.TaskStatus[Server]) -> None:
                await run_until_signal(server, task_status=task_status)
                nursery.cancel_scope.cancel()

            await nursery.start(serve_then_stop)
            if worker:
                # Before the supervisor hears that this worker is ready, and
                # so may ask it to retire.
                await nursery.start(_retire_on_signal, server)
                _notify_ready()
                lifeline = os.environ.get(LIFELINE_ENV)
                if lifeline is not None:
                    nursery.start_soon(_watch_lifeline, int(lifeline), server)
            else:
                scheme = "https" if ssl_context else "http"
                for address in server.addresses:
                    print(f"serving on {_describe(address, scheme)}", flush=True)
            if observer is not None and metrics_server is not None:
                observer.watch(server)
                # In the command's nursery: cancelled once the server has drained.
                await nursery.start(metrics_server.serve)
                for where in metrics_server.addresses:
                    url = _describe(where, "http")
                    shown = url + "metrics" if url.endswith("/") else f"{url} (GET /metrics)"
                    print(f"metrics on {shown}", flush=True)


def _make_proxy(s: Resolved) -> Proxy:
    routes = dict(route.split("=", 1) for route in s.route)
    return Proxy(routes, strip_prefix=not s.keep_prefix, upgrades=tuple(s.upgrade))


def _notify_ready() -> None:
    ready = os.environ.get(READY_ENV)
    if ready is not None:
        fd = int(ready)
        os.write(fd, b"1")
        os.close(fd)


async def _retire_on_signal(server: Server, *, task_status: trio.TaskStatus[None]) -> None:
    """Drain on RETIRE_SIGNAL, keeping idle connections (the supervisor
    replaces this worker; see trio_upgrade._cli._workers)."""
    with trio.open_signal_receiver(RETIRE_SIGNAL) as signals:
        task_status.started()
        async for _ in signals:
            logger.info(
                "replaced: shutting down (grace period %.1f s); an idle connection "
                "closes after its next request",
                server.grace_period,
            )
            await server.aclose(close_idle=False)
            return


async def _watch_lifeline(fd: int, server: Any) -> None:
    """Drain when the supervisor is gone (the lifeline pipe reads EOF)."""
    async with trio.lowlevel.FdStream(fd) as pipe:
        while await pipe.receive_some(1):
            pass
    logger.warning("supervisor gone: shutting down")
    await server.aclose()


def _is_asgi(s: Resolved, app: Any) -> bool:
    return s.interface == "asgi" or (s.interface == "auto" and is_asgi_app(app))


async def _bind_for_workers(s: Resolved, binds: list[str]) -> list[int]:
    """Bind in the supervisor (no TLS: each worker wraps its sockets) and hand over the fds."""
    fds = []
    for listener in await _open(binds, None, s.unix_mode):
        assert isinstance(listener, trio.SocketListener)
        fds.append(listener.socket.detach())
    return fds


def _run(s: Resolved, argv: Sequence[str]) -> int:
    worker_fds = os.environ.get(FDS_ENV)
    if worker_fds is not None:
        binds: list[str] = []
        fds = [int(fd) for fd in worker_fds.split(",") if fd]
        workers = 1
    else:
        binds, fds = _binds(s)
        fds += systemd_fds(os.environ)
        if not binds and not fds:
            binds = [DEFAULT_BIND]
        workers = s.workers
    app = None
    if s.command == "serve":
        if not s.app:
            raise CLIError("serve needs an app: trio-upgrade serve module:attribute")
        try:
            app = load_app(s.app, factory=s.factory, app_dir=s.app_dir)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise CLIError(f"cannot load {s.app!r}: {exc}") from None
    elif not s.route:
        raise CLIError("proxy needs at least one --route PREFIX=BACKEND")
    if s.proxy_headers:
        try:
            TrustedProxies(s.forwarded_allow_ips)
        except ValueError as exc:
            raise CLIError(f"--forwarded-allow-ips: {exc}") from None
    # Fail on bad limits and TLS files before binding anything.
    _http_config(s)
    _websocket_config(s)
    reload = s.reload and worker_fds is None
    if s.metrics_bind is not None:
        _check_metrics(s, workers, reload)
    if workers <= 1 and not reload:
        trio.run(_serve, s, app, binds, fds, worker_fds is not None)
        return 0
    _ssl_context(s)
    fds = fds + trio.run(_bind_for_workers, s, binds)
    scheme = "https" if s.certfile else "http"
    for fd in fds:
        for listener in fd_listeners([fd]):
            print(f"serving on {_describe(listener_address(listener), scheme)}", flush=True)
            listener.socket.detach()  # type: ignore[attr-defined]
    watch = None
    if reload:
        default = s.app_dir if s.command == "serve" else "."
        watch = [os.path.abspath(d) for d in (s.reload_dir or [default])]
    supervisor = Supervisor(argv, fds, max(1, workers), os.environ, watch=watch)
    return trio.run(supervisor.run)


def _check_metrics(s: Resolved, workers: int, reload: bool) -> None:
    require_prometheus()
    if workers > 1 or reload:
        # Each process counts its own traffic: one endpoint in one worker
        # would show a fraction of it, and a port per worker would collide
        # while SIGHUP runs an old and a new worker side by side.
        raise CLIError(
            "--metrics-bind counts one process: it cannot be used with --workers above 1 "
            "or --reload"
        )
    if parse_fd_bind(s.metrics_bind) is not None:
        raise CLIError("--metrics-bind takes host:port or unix:PATH, not fd://")
    try:
        parse_bind(s.metrics_bind)
    except BindError as exc:
        raise CLIError(f"bad --metrics-bind: {exc}") from None


def _setup_logging(s: Resolved) -> None:
    """The package's log format at --log-level, or --log-config's configuration."""
    if s.log_config is None:
        configure_logging(s.log_level)
    else:
        load_log_config(s.log_config)
        if s.sources["log_level"] != "default":
            # Given explicitly: it still sets the package's level.
            logging.getLogger("trio_upgrade").setLevel(s.log_level.upper())
    if s.access_log_format == "json":
        use_json_access_log()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.version:
        print(f"trio-upgrade {version('trio-upgrade')}")
        return 0
    if args.command is None:
        _parser().print_help()
        return 2
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "version", "config", "print_config")
    }
    try:
        settings = resolve(args.command, flags, os.environ, args.config)
        if args.print_config:
            print(settings.dump(), end="")
            return 0
        _setup_logging(settings)
        return _run(settings, argv)
    except CLIError as exc:
        print(f"trio-upgrade: {exc}", file=sys.stderr)
        return 2
    except LifespanFailure as exc:
        print(f"trio-upgrade: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
