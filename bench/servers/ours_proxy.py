"""Ours: trio_upgrade.proxy in front of two backends, served by trio_upgrade.http.

``/ws`` (prefix stripped) goes to ``--ws-backend``, everything else to
``--http-backend``. Default settings except a pool of 64 idle keep-alive
connections per backend (the default, 32, is below the benchmark's 50
concurrent clients) and ``max_connections`` above any workload here.
Until ``trio_upgrade.proxy`` exports ``Proxy`` the script exits as unavailable.
"""

from __future__ import annotations

import argparse
import functools

from _common import HOST, raise_nofile_limit, trio_wait_for_signal, unavailable

try:
    import trio

    from trio_upgrade.http import serve
    from trio_upgrade.proxy import Proxy, ProxyConfig
except ImportError as exc:
    unavailable(f"trio_upgrade.proxy has no Proxy yet ({type(exc).__name__})")

POOL_SIZE = 64
MAX_CONNECTIONS = 10_000


async def main(port: int, http_backend: str, ws_backend: str) -> None:
    proxy = Proxy(
        {"/ws": ws_backend, "/": http_backend},
        config=ProxyConfig(pool_size=POOL_SIZE),
    )
    async with proxy, trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(serve, proxy, f"{HOST}:{port}", max_connections=MAX_CONNECTIONS)
        )
        await trio_wait_for_signal()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-backend", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--ws-backend", required=True, help="http://127.0.0.1:PORT")
    args = parser.parse_args()
    raise_nofile_limit()
    trio.run(main, args.port, args.http_backend, args.ws_backend)
