"""Capacity under attack: normal clients vs reconnecting slowloris; the client past the limit.

Three processes, loopback only: the HTTP server (``serve`` with
``max_connections``, default 1000, an app answering ``/`` at once and
``/held`` when the run ends); an attacker; and this one, the measuring client.

Phase 1, slowloris: the attacker keeps ``--attackers`` connections (2,000)
that send a request line and one field, then one more field every
``--trickle`` seconds, and never finish the head; whenever the server closes
one it reconnects at once. Once the server is full, this process sends
``--requests`` normal requests (a new connection each, ``Connection: close``)
one after another and reports their latency (p50, p99, max) and how many
failed (no ``200`` within ``--timeout`` seconds, or an error).

Phase 2, the client past the limit: a fresh server is filled with
``max_connections`` requests in progress (``/held``); then ``--probes`` clients
connect one after another, each timed until it has read a whole answer and
the server's close. Reports the answers' status lines and the times.

Usage (from the repository root)::

    .venv/bin/python bench/slowloris.py
    .venv/bin/python bench/slowloris.py --server-path /work/main   # another checkout

``--server-path`` puts another checkout first on the server's ``sys.path`` to
compare (the same public API: ``serve``, ``Router``, ``Response``). The fd
limits of all three processes are raised to their hard limits.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


# ----------------------------------------------------------------- the server


def run_server(max_connections: int) -> None:
    import trio

    from trio_upgrade.http import Request, Response, Router, serve

    router = Router()
    release = trio.Event()

    @router.route("/")
    async def index(request: Request) -> Response:
        return Response.text("ok")

    @router.route("/held")
    async def held(request: Request) -> Response:
        await release.wait()
        return Response.text("held")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: serve(
                    router,
                    f"{HOST}:0",
                    max_connections=max_connections,
                    task_status=task_status,
                )
            )
            print(server.addresses[0][1], flush=True)
            # Runs until the bench closes our stdin.
            await trio.to_thread.run_sync(sys.stdin.read)
            release.set()
            nursery.cancel_scope.cancel()

    trio.run(main)


# --------------------------------------------------------------- the attacker


def run_attacker(port: int, attackers: int, trickle: float) -> None:
    import trio

    connects = 0

    async def slowloris() -> None:
        nonlocal connects
        while True:
            try:
                stream = await trio.open_tcp_stream(HOST, port)
            except OSError:
                await trio.sleep(0.1)
                continue
            connects += 1
            try:
                async with stream:
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: bench\r\n")
                    while True:
                        with trio.move_on_after(trickle):
                            if not await stream.receive_some():
                                break  # closed by the server: again
                        await stream.send_all(b"X-Slow: 1\r\n")
            except (trio.BrokenResourceError, OSError):
                pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(attackers):
                nursery.start_soon(slowloris)
            print("started", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)
            nursery.cancel_scope.cancel()
        print(connects, flush=True)

    trio.run(main)


# ---------------------------------------------------------------- measuring


def spawn(args: list[str], server_path: str | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if server_path is not None:
        env["PYTHONPATH"] = server_path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def stop(process: subprocess.Popen[str]) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()
    try:
        out = process.stdout.read()
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        out = ""
    return out


def request(port: int, path: str, timeout: float) -> tuple[bytes, float]:
    """One request on a new connection: the whole answer, and seconds until the close."""
    started = time.perf_counter()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % path.encode())
        answer = bytearray()
        deadline = started + timeout
        while True:
            sock.settimeout(max(deadline - time.perf_counter(), 0.001))
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return bytes(answer), time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connections_of(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def overflows() -> int:
    """TcpExtListenOverflows: SYNs dropped because an accept queue was full (Linux)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def phase_slowloris(options: argparse.Namespace) -> None:
    server = spawn(["--serve", str(options.max_connections)], options.server_path)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    attacker = spawn(["--attack", str(port), str(options.attackers), str(options.trickle)])
    assert attacker.stdout is not None
    attacker.stdout.readline()
    # Let the attack fill the server (its fd count shows it).
    deadline = time.monotonic() + 60
    while connections_of(server.pid) < options.max_connections and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(options.settle)
    print(f"server fds once full: {connections_of(server.pid)}")
    latencies: list[float] = []
    failures: list[str] = []
    overflows_before = overflows()
    cpu_before = cpu_seconds(server.pid), cpu_seconds(attacker.pid)
    run_started = time.monotonic()
    for _ in range(options.requests):
        try:
            answer, seconds = request(port, "/", options.timeout)
        except OSError as exc:
            failures.append(type(exc).__name__)
            continue
        if answer.startswith(b"HTTP/1.1 200 "):
            latencies.append(seconds)
            if os.environ.get("SLOWLORIS_TRACE"):
                print(f"    at {time.monotonic() - run_started:6.2f} s: {seconds * 1000:.1f} ms")
        else:
            failures.append(answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed")
        time.sleep(options.pause)
    elapsed = time.monotonic() - run_started
    cpu_server = cpu_seconds(server.pid) - cpu_before[0]
    cpu_attacker = cpu_seconds(attacker.pid) - cpu_before[1]
    connects = stop(attacker).strip()
    stop(server)
    print(
        f"slowloris: {options.attackers} attackers, max_connections {options.max_connections}, "
        f"{options.requests} normal requests in {elapsed:.1f} s, attacker connects: {connects}"
    )
    if latencies:
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"  ok {len(latencies)}  p50 {statistics.median(latencies) * 1000:.1f} ms  "
            f"p99 {p99 * 1000:.1f} ms  max {latencies[-1] * 1000:.1f} ms"
        )
        slow = [f"{t * 1000:.0f}" for t in latencies if t >= 0.5]
        print(f"  {len(slow)} took 500 ms or more: {', '.join(slow)} (ms)")
    print(f"  failed {len(failures)}  {sorted(set(failures))}")
    print(
        f"  CPU during the run: server {cpu_server / elapsed:.0%}, "
        f"attacker {cpu_attacker / elapsed:.0%}; load average {os.getloadavg()[0]:.1f}"
    )
    if connects.isdigit() and int(connects):
        per_connect = cpu_server / int(connects) * 1e6
        print(f"  server CPU per attacker connection: {per_connect:.0f} us")
    dropped = overflows() - overflows_before
    print(f"  listen queue overflows (whole machine) during the run: {dropped}")


def phase_past_the_limit(options: argparse.Namespace) -> None:
    server = spawn(["--serve", str(options.max_connections)], options.server_path)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    held = []
    for _ in range(options.max_connections):
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"GET /held HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        held.append(sock)
    time.sleep(options.settle)
    results: list[tuple[str, float]] = []
    for _ in range(options.probes):
        try:
            answer, seconds = request(port, "/", options.timeout)
            status = answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed, no answer"
        except OSError as exc:
            status, seconds = type(exc).__name__, options.timeout
        results.append((status, seconds))
    stop(server)
    for sock in held:
        sock.close()
    print(
        f"past the limit: {options.max_connections} requests in progress, {options.probes} probes"
    )
    for status in sorted({s for s, _ in results}):
        times = sorted(t for s, t in results if s == status)
        print(
            f"  {status!r} x{len(times)}: median {statistics.median(times) * 1000:.1f} ms, "
            f"max {times[-1] * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--attack", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--max-connections", type=int, default=1000)
    parser.add_argument("--attackers", type=int, default=2000)
    parser.add_argument("--trickle", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--pause", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--phase", choices=["slowloris", "limit", "both"], default="both")
    parser.add_argument("--server-path", help="checkout to run the server from")
    options = parser.parse_args()
    raise_fd_limit()
    if options.serve is not None:
        profile = os.environ.get("SLOWLORIS_PROFILE")  # a path: cProfile the server
        if profile:
            import cProfile

            cProfile.runctx("run_server(options.serve)", globals(), locals(), profile)
        else:
            run_server(options.serve)
    elif options.attack is not None:
        port, attackers, trickle = options.attack
        run_attacker(int(port), int(attackers), float(trickle))
    else:
        if options.phase in ("slowloris", "both"):
            phase_slowloris(options)
        if options.phase in ("limit", "both"):
            phase_past_the_limit(options)


if __name__ == "__main__":
    main()
