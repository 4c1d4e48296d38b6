"""--workers: N processes on sockets the supervisor bound once; a dead worker is
replaced; SIGTERM drains them all; SIGHUP replaces them one by one without a
failed request."""

from __future__ import annotations

import os
import signal
import ssl
import threading
import time
from pathlib import Path

import httpx
import trustme
from _cli_procs import running

WORKER_STARTED = r"worker (\d+) started"


def _pids_answering(url: str, want: int, tries: int = 400) -> set[str]:
    """Pids seen over fresh connections, until *want* distinct ones (or *tries*)."""
    seen: set[str] = set()
    for _ in range(tries):
        seen.add(httpx.get(url, headers={"connection": "close"}, timeout=10).text)
        if len(seen) >= want:
            break
    return seen


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_connections_land_on_more_than_one_worker(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        workers = set(server.wait_for_log(WORKER_STARTED, count=2))
        seen = _pids_answering(server.url, 2)
        assert seen == workers
        assert str(server.proc.pid) not in seen


def test_a_killed_worker_is_replaced(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        first, second = server.wait_for_log(WORKER_STARTED, count=2)
        os.kill(int(first), signal.SIGKILL)
        server.wait_for_log(rf"worker {first} died \(killed by SIGKILL\)")
        started = server.wait_for_log(WORKER_STARTED, count=3)
        replacement = started[2]
        assert replacement not in (first, second)
        assert _pids_answering(server.url, 2) == {second, replacement}


def test_sigterm_drains_every_worker_and_exits_0(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        workers = server.wait_for_log(WORKER_STARTED, count=2)
        answers: list[httpx.Response] = []

        def slow_request() -> None:
            answers.append(httpx.get(server.url + "slow?1.5", timeout=20))

        requests = [threading.Thread(target=slow_request) for _ in range(4)]
        for thread in requests:
            thread.start()
        time.sleep(0.5)  # the requests are in flight
        server.proc.send_signal(signal.SIGTERM)
        for thread in requests:
            thread.join(timeout=20)
        assert [r.status_code for r in answers] == [200] * 4
        assert server.proc.wait(timeout=20) == 0
        for pid in workers:
            server.wait_for_log(rf"worker {pid} exited \(exit status 0\)")


def test_sighup_replaces_workers_without_a_failed_request(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        old = set(server.wait_for_log(WORKER_STARTED, count=2))
        statuses: list[int] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def hammer(keep_alive: bool) -> None:
            headers = {} if keep_alive else {"connection": "close"}
            with httpx.Client(timeout=10, headers=headers) as client:
                for _ in range(5000):  # bounded; stopped much earlier
                    if stop.is_set():
                        return
                    try:
                        statuses.append(client.get(server.url).status_code)
                    except httpx.HTTPError as exc:
                        failures.append(exc)

        clients = [threading.Thread(target=hammer, args=(False,)) for _ in range(2)] + [
            threading.Thread(target=hammer, args=(True,))
        ]
        for thread in clients:
            thread.start()
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_log("workers replaced")
        time.sleep(0.3)
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
        assert failures == []
        assert statuses and set(statuses) == {200}
        new = set(server.wait_for_log(WORKER_STARTED, count=4)) - old
        assert len(new) == 2
        assert _pids_answering(server.url, 2) == new
        for pid in old:
            assert _gone(int(pid))


def test_a_replaced_worker_answers_the_next_request_of_an_idle_connection(
    demo_dir: Path,
) -> None:
    """On SIGHUP the old worker keeps an idle keep-alive connection through its
    drain: the next request on it, however late, is answered with ``Connection:
    close`` instead of meeting a close that could cross it."""
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        with httpx.Client(timeout=10) as client:
            pid = client.get(server.url).text
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for_log(rf" {pid} INFO trio_upgrade\.cli: replaced")
            time.sleep(0.5)  # far past the 50 ms that a closing drain waits
            response = client.get(server.url)
            assert response.text == pid
            assert response.headers["connection"] == "close"
        server.wait_for_log("workers replaced")
        assert _gone(int(pid))


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status(
    demo_dir: Path,
) -> None:
    (demo_dir / "failing.py").write_text(
        "async def app(scope, receive, send):\n"
        "    assert scope['type'] == 'lifespan'\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n"
    )
    args = ["serve", "failing:app", "-b", "127.0.0.1:0", "-w", "2"]
    with running(args, demo_dir) as server:
        assert server.proc.wait(timeout=30) == 3
        assert "no database" in server.stderr()


def test_workers_drain_when_the_supervisor_is_killed(demo_dir: Path) -> None:
    with running(["serve", "demo:app", "-b", "127.0.0.1:0", "-w", "2"], demo_dir) as server:
        server.wait_for_log("2 workers ready")
        workers = server.wait_for_log(WORKER_STARTED, count=2)
        server.proc.kill()
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while not all(_gone(int(pid)) for pid in workers):
            assert time.monotonic() < deadline, "workers outlived their supervisor"
            time.sleep(0.05)


def test_workers_serve_tls_and_unix_sockets(demo_dir: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(demo_dir / "server.pem")
    )
    path = demo_dir / "w.sock"
    args = ["serve", "demo:app", "-b", "127.0.0.1:0", "-b", f"unix:{path}", "-w", "2"]
    with running([*args, "--certfile", "server.pem"], demo_dir, lines=2) as server:
        server.wait_for_log("2 workers ready")
        workers = set(server.wait_for_log(WORKER_STARTED, count=2))
        assert server.url.startswith("https://127.0.0.1:")
        assert server.lines[1].split()[-1] == f"unix:{path}"
        verify = ssl.create_default_context()
        ca.configure_trust(verify)
        assert httpx.get(server.url, verify=verify, timeout=10).text in workers
