"""Checks of the benchmark harness itself (not part of the test suite; nothing is timed).

Run on demand: ``.venv/bin/python -m pytest bench``. The parsers are checked
on fixed text; the process helpers on tiny scripts and the real minimal
servers, over 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from _harness import (
    BENCH_DIR,
    EXIT_UNAVAILABLE,
    Column,
    LineProcess,
    ServerFailed,
    ServerProcess,
    ServerUnavailable,
    cpu_seconds,
    descendants,
    format_table,
    parse_csv_list,
    parse_proc_stat_cpu_ticks,
    parse_wrk,
    ratio,
    rss_kib,
)

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.31ms  301.24us   8.92ms   92.31%
    Req/Sec    15.13k   512.00    15.90k    78.00%
  75312 requests in 5.00s, 10.13MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  15058.51
Transfer/sec:      2.03MB
"""


def test_parse_wrk_reads_totals_rate_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests == 75312
    assert result.seconds == 5.0
    assert result.requests_per_second == 15058.51
    assert result.socket_errors == 3
    assert result.bad_responses == 7


def test_parse_wrk_without_error_lines_counts_zero_and_converts_ms() -> None:
    text = "  1200 requests in 999.50ms, 1.00MB read\nRequests/sec:   1200.60\n"
    result = parse_wrk(text)
    assert (result.socket_errors, result.bad_responses) == (0, 0)
    assert result.seconds == pytest.approx(0.9995)


def test_parse_wrk_rejects_output_without_a_summary() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_proc_stat_fields_are_counted_after_the_last_parenthesis() -> None:
    # A command name with spaces and a ")" must not shift the fields.
    line = "4242 (a b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 321 45 0 0 20 0 1 0 5 0 0"
    assert parse_proc_stat_cpu_ticks(line) == (17, 321, 45)


def test_cpu_and_rss_of_this_process_are_positive() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert rss_kib(os.getpid()) > 1024


def test_ratio_is_none_without_a_baseline() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(3.0, None) is None
    assert ratio(None, 2.0) is None
    assert ratio(3.0, 0.0) is None


def test_parse_csv_list_keeps_the_canonical_order_and_rejects_unknown_names() -> None:
    allowed = ["ours", "minimal", "uvicorn"]
    assert parse_csv_list("uvicorn,ours", allowed, "servers") == ["ours", "uvicorn"]
    assert parse_csv_list("all", allowed, "servers") == allowed
    with pytest.raises(SystemExit, match="unknown servers: nginx"):
        parse_csv_list("ours,nginx", allowed, "servers")


def test_format_table_aligns_numbers_right_and_flattens_notes() -> None:
    table = format_table(
        "T",
        [Column("name", left=True), Column("value", "{:.1f}"), Column("note", left=True)],
        [["a", 1.25, "line one\nline | two"], ["bbb", None, ""]],
        ["footnote"],
    )
    lines = table.splitlines()
    assert lines[0] == "### T"
    assert lines[2] == "| name | value | note                |"
    assert lines[3] == "|:-----|------:|:--------------------|"
    assert lines[4] == "| a    |   1.2 | line one line / two |"
    assert lines[5] == "| bbb  |     - |                     |"
    assert lines[-1] == "footnote"


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "server.py"
    path.write_text(textwrap.dedent(body))
    return str(path)  # absolute: ServerProcess joins it onto bench/servers unchanged


def test_server_that_cannot_import_its_implementation_is_reported_unavailable(
    tmp_path: Path,
) -> None:
    script = _script(
        tmp_path,
        f"""
        import sys
        print("unavailable: frobnicator is not installed", file=sys.stderr)
        sys.exit({EXIT_UNAVAILABLE})
        """,
    )
    with (
        pytest.raises(ServerUnavailable, match="frobnicator is not installed"),
        ServerProcess("x", script),
    ):
        pass


def test_server_that_crashes_at_start_is_reported_failed_with_its_output(tmp_path: Path) -> None:
    script = _script(tmp_path, "raise RuntimeError('boom at start')\n")
    with pytest.raises(ServerFailed, match="boom at start"), ServerProcess("x", script):
        pass


def test_minimal_http_server_answers_and_stops_cleanly_on_sigterm() -> None:
    import http_hello

    with ServerProcess("minimal", "min_h11.py") as server:
        http_hello.verify(server.port)
        assert server.cpu() >= 0
        assert server.rss() > 1024
    assert server.stop() == 0


def test_granian_answers_from_its_worker_process_and_stops_cleanly() -> None:
    """granian serves from a forked worker: the harness must see it and stop it."""
    pytest.importorskip("granian")
    import http_hello

    with ServerProcess("granian", "granian_http.py") as server:
        http_hello.verify(server.port)
        workers = descendants(server.pid)
        assert workers
    assert server.stop() == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_cpu_and_rss_count_a_worker_process_the_server_forks(tmp_path: Path) -> None:
    """Like granian's supervisor and worker: the work done in a child is the server's."""
    script = _script(
        tmp_path,
        """
        import argparse, signal, socket, subprocess, sys
        WORKER = (
            "import time, sys\\n"
            "while time.process_time() < 0.5: pass\\n"
            "held = b'x' * (64 * 1024 * 1024)\\n"
            "print('ready', flush=True)\\n"
            "sys.stdin.read()\\n"
        )
        parser = argparse.ArgumentParser()
        parser.add_argument("--port", type=int)
        port = parser.parse_args().port
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        worker.stdout.readline()
        def stop(*_):
            worker.stdin.close()
            worker.wait()
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        sock = socket.create_server(("127.0.0.1", port))
        while True:
            sock.accept()[0].close()
        """,
    )
    with ServerProcess("forking", script) as server:
        # The parent only waited; the worker burned >= 0.5 s of CPU and holds 64 MiB.
        assert cpu_seconds(server.pid) >= 0.5
        assert server.cpu() >= 0.5
        assert server.rss() - rss_kib(server.pid) >= 64 * 1024
    assert server.stop() == 0


def test_ws_client_checks_every_echo_against_a_correct_server() -> None:
    import ws_echo

    workload = ws_echo.Workload("t", connections=3, messages=20, size=100, inflight=4)
    with ServerProcess("minimal", "min_wsproto.py") as server:
        sample = ws_echo.run_echo(server, workload, timeout=60)
    assert sample.messages == 60
    assert sample.bytes == 6000


def test_picows_echo_reassembles_fragments_keeps_text_text_and_answers_a_close() -> None:
    pytest.importorskip("picows")
    import ws_echo
    from websockets.sync.client import connect

    with ServerProcess("picows", "picows_echo.py") as server:
        # The benchmark's own client: binary, one frame per message.
        workload = ws_echo.Workload("t", connections=2, messages=10, size=3000, inflight=2)
        assert ws_echo.run_echo(server, workload, timeout=60).messages == 20
        with connect(server.url("ws"), compression=None) as ws:
            ws.send(["frag", "mented ", "text"])  # one message in three frames
            assert ws.recv(timeout=10) == "fragmented text"
            ws.send([b"\x00" * 70_000, b"\x01"])
            assert ws.recv(timeout=10) == b"\x00" * 70_000 + b"\x01"
            ws.close(code=4321, reason="bye")
        received = ws.protocol.close_rcvd  # the server's answer to our close
        assert received is not None
        assert (received.code, received.reason) == (4321, "bye")
    assert server.stop() == 0


def test_ws_client_fails_on_a_server_that_corrupts_replies(tmp_path: Path) -> None:
    """A broken echo (bytes reversed) must fail the run, never look fast."""
    import ws_echo

    source = (BENCH_DIR / "servers" / "min_wsproto.py").read_text()
    broken = source.replace(
        'ws.send(BytesMessage(data=b"".join(parts)))',
        'ws.send(BytesMessage(data=b"".join(parts)[::-1]))',
    )
    assert broken != source
    # A copy outside the repository, beside the _common.py it imports.
    (tmp_path / "_common.py").write_text((BENCH_DIR / "servers" / "_common.py").read_text())
    script = tmp_path / "broken_echo.py"
    script.write_text(broken)
    workload = ws_echo.Workload("t", connections=2, messages=5, size=64, inflight=1)
    with (
        ServerProcess("broken", str(script)) as server,
        pytest.raises(RuntimeError, match="differs from the message sent"),
    ):
        ws_echo.run_echo(server, workload, timeout=60)


def test_line_process_relays_json_events_and_raises_on_error_events(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        """
        import json, sys
        print(json.dumps({"event": "connected"}), flush=True)
        line = sys.stdin.readline().strip()
        print(json.dumps({"event": "error", "error": "saw " + line}), flush=True)
        """,
    )
    with LineProcess([sys.executable, script]) as proc:
        assert proc.event(30) == {"event": "connected"}
        proc.send("go")
        with pytest.raises(RuntimeError, match="saw go"):
            proc.event(30)


def test_line_process_reports_a_silent_exit(tmp_path: Path) -> None:
    script = _script(tmp_path, "import sys; print('oops', file=sys.stderr); sys.exit(2)\n")
    with (
        LineProcess([sys.executable, script]) as proc,
        pytest.raises(RuntimeError, match=r"exited \(2\): oops"),
    ):
        proc.event(30)


def test_json_samples_serialise(tmp_path: Path) -> None:
    import ws_echo
    from _harness import write_json

    out = tmp_path / "r.json"
    write_json(str(out), {"s": [ws_echo.EchoSample(1.0, 2.0, 3, 4)]})
    assert json.loads(out.read_text()) == {
        "s": [
            {
                "server_cpu_seconds": 1.0,
                "seconds": 2.0,
                "messages": 3,
                "bytes": 4,
                "client_cpu_seconds": 0.0,
            }
        ]
    }


@pytest.mark.parametrize("workload", ["small", "large", "deflate-small", "deflate-4k"])
def test_the_in_process_websocket_driver_completes_every_workload(workload: str) -> None:
    """bench/ws_inproc.py echoes a few messages of each workload and ends (callgrind's driver)."""
    import trio
    import ws_inproc

    trio.run(ws_inproc.main, workload, 5)
