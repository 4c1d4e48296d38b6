"""What one flooding WebSocket connection does to everyone else's latency.

One run: the server (``bench/servers/<server>.py``) in its own process; one
attacker process that opens a WebSocket and floods it with tiny frames; and,
in this process, ``--clients`` ordinary clients (websockets' asyncio client)
that each send a 32-byte message every ``--interval`` seconds and time the
echo. Each flood runs for ``--duration`` seconds; the attacker reconnects
whenever the server closes its connection (a refused message), so the flood
never stops. Reported: the ordinary clients' round-trip p50/p99/max per flood,
and the server's CPU over the flood.

Floods (the frames a client sends are masked, as RFC 6455 requires):

- ``none``: no attacker (the baseline);
- ``empty-continuation``: a text frame without FIN, then empty continuation frames;
- ``tiny-continuation``: the same with 1-byte continuation frames;
- ``empty-ping``: empty pings, never reading the pongs.

``--rate`` bounds the attacker's bytes per second (default 1 MB/s, the rate of
the measured defect); ``--rate 0`` sends as fast as the socket takes it.

    .venv/bin/python bench/ws_flood.py
    .venv/bin/python bench/ws_flood.py --server ours_app_ws --rate 0
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOODS = ("none", "empty-continuation", "tiny-continuation", "empty-ping")
MASK = b"\x11\x22\x33\x44"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _burst(flood: str, size: int) -> bytes:
    """*size* bytes (about) of the flood's frames, masked."""
    if flood == "empty-ping":
        frame = b"\x89\x80" + MASK
    elif flood == "empty-continuation":
        frame = b"\x00\x80" + MASK
    else:
        frame = b"\x00\x81" + MASK + bytes([ord("a") ^ MASK[0]])
    return frame * max(1, size // len(frame))


def _attacker(port: int, flood: str, rate: int, duration: float) -> None:
    """Flood for *duration* seconds, reconnecting whenever the server closes us."""
    end = time.monotonic() + duration
    chunk = 16 * 1024
    burst = _burst(flood, chunk)
    first = b"\x01\x81" + MASK + bytes([ord("a") ^ MASK[0]])  # text, no FIN
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                key = base64.b64encode(os.urandom(16))
                sock.sendall(
                    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n"
                )
                head = b""
                while b"\r\n\r\n" not in head:
                    data = sock.recv(4096)
                    if not data:
                        raise ConnectionError
                    head += data
                if flood != "empty-ping":
                    sock.sendall(first)
                sent = 0
                started = time.monotonic()
                while time.monotonic() < end:
                    sock.sendall(burst)
                    sent += len(burst)
                    if rate:
                        ahead = sent / rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
        except OSError:
            time.sleep(0.01)


async def _client(port: int, interval: float, stop: float, rtts: list[float]) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=None) as ws:
        message = "x" * 32
        while time.monotonic() < stop:
            sent = time.perf_counter()
            await ws.send(message)
            await ws.recv()
            rtts.append(time.perf_counter() - sent)
            await asyncio.sleep(interval)


async def _clients(port: int, count: int, interval: float, duration: float) -> list[float]:
    rtts: list[float] = []
    stop = time.monotonic() + duration
    await asyncio.gather(*(_client(port, interval, stop, rtts) for _ in range(count)))
    return rtts


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="ours_ws", help="a script in bench/servers")
    parser.add_argument("--floods", default=",".join(FLOODS))
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=1_000_000, help="attacker bytes/s; 0: no cap")
    args = parser.parse_args()

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "servers" / f"{args.server}.py"), "--port", str(port)],
        cwd=HERE / "servers",
    )
    try:
        _wait_listening(port, proc)
        print(
            f"server {args.server}, {args.clients} clients every {args.interval * 1000:.0f} ms,"
            f" attacker rate {'unbounded' if not args.rate else f'{args.rate} B/s'}"
        )
        print(f"{'flood':<20} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rtts':>6} {'CPU s':>6}")
        for flood in args.floods.split(","):
            attacker = None
            if flood != "none":
                attacker = multiprocessing.Process(
                    target=_attacker, args=(port, flood, args.rate, args.duration + 1.0)
                )
                attacker.start()
                time.sleep(0.5)  # the flood is under way before the clients start
            cpu = _cpu_seconds(proc.pid)
            rtts = asyncio.run(_clients(port, args.clients, args.interval, args.duration))
            cpu = _cpu_seconds(proc.pid) - cpu
            if attacker is not None:
                attacker.join()
            p50 = statistics.median(rtts) * 1000
            p99 = _percentile(rtts, 0.99) * 1000
            print(
                f"{flood:<20} {p50:8.1f} {p99:8.1f} {max(rtts) * 1000:8.1f} {len(rtts):6d}"
                f" {cpu:6.2f}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
