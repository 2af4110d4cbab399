"""`edgevla run` tells a failed run from a good one and says why actors restarted."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevla.actors.runtime.run_verdict import last_error_line, problems, restart_notes

pytestmark = pytest.mark.timing  # wall time and processes: make test-under-load

LOG = """\
12:00:01 INFO executor.0 starting
Traceback (most recent call last):
  File "/x/link.py", line 80, in open
    raise LinkDown(f"cannot open M7 link port {path!r}")
edgevla.firmware_bridge.link.connection.LinkDown: cannot open M7 link port '/dev/ttyRPMSG30'
"""


def _actor(name="a", **kw):
    base = {"actor": name, "replica": 0, "state": "running", "restarts": 0, "healthy_once": True,
            "last_error": None}
    return {**base, **kw}


def test_last_error_line_is_the_exception_not_the_traceback_frames():
    assert last_error_line(LOG) == ("edgevla.firmware_bridge.link.connection.LinkDown: cannot open M7 "
                                    "link port '/dev/ttyRPMSG30'")
    assert last_error_line("2026-12-06 05:00:01,2 ERROR camera: no device /dev/video0\nbye\n") \
        == "ERROR camera: no device /dev/video0"
    # the format the actor processes log in: date time actor.replica LEVEL logger: message
    line = "2026-12-06 20:12:23,638 cam_top.0 ERROR edgevla.camera: cannot open camera /dev/video2"
    assert last_error_line(f"{line}\n2026-12-06 20:12:24,1 cam_top.0 INFO x: retry\n") == \
        "ERROR edgevla.camera: cannot open camera /dev/video2"
    assert last_error_line("all fine\nstill fine\n") is None


def test_verdict_fails_on_failed_never_healthy_or_kept_restarting():
    good = {"uptime_s": 60, "actors": [_actor("a"), _actor("b", restarts=1, last_error="X: y")]}
    assert problems(good) == []
    assert restart_notes(good) == ["b.0: 1 restart(s), last error: X: y"]
    bad = {"uptime_s": 60, "actors": [
        _actor("cam", state="failed", restarts=5, last_error="OSError: no /dev/video0"),
        _actor("vision", healthy_once=False),
        _actor("executor", restarts=3, last_error="LinkDown: cannot open")]}
    lines = problems(bad)
    assert lines == ["cam.0 failed after 5 restart(s): OSError: no /dev/video0",
                     "vision.0 never became healthy (no heartbeat)",
                     "executor.0 kept restarting (3 restarts): LinkDown: cannot open"]
    silent = {"uptime_s": 60, "actors": [_actor("cam", outputs=["cam/top"], sent=0),
                                         _actor("sink", outputs=[], sent=0)]}
    assert problems(silent) == ["cam.0 produced nothing on cam/top"]  # a sink sends nothing
    silent["actors"][0]["last_error"] = "ERROR edgevla.camera: cannot open camera /dev/video0"
    assert problems(silent) == ["cam.0 produced nothing on cam/top: ERROR edgevla.camera: "
                                "cannot open camera /dev/video0"]
    short = {"uptime_s": 5, "actors": [_actor("vision", healthy_once=False)]}
    assert problems(short) == []  # a short run may end before a slow model has loaded


def test_run_exits_nonzero_and_names_the_error_of_a_crashing_actor(tmp_path, capsys):
    from edgevla.actors.cli.main import main

    text = (Path(__file__).resolve().parents[2] / "graphs" / "skeleton.yaml").read_text()
    assert "kind: counter_sink" in text
    graph = tmp_path / "crashing.yaml"
    graph.write_text(text.replace("kind: counter_sink", "kind: counter_sink\n    params: {crash_after: 1}")
                     .replace("max_restarts: 5", "max_restarts: 1"))
    summary = tmp_path / "summary.json"
    rc = main(["run", str(graph), "--duration", "12", "--headless", "--summary-json", str(summary)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "run failed" in out and "sink.0 failed after 1 restart(s)" in out
    assert "RuntimeError: sink: crash_after=1 reached (test)" in out


def test_ctrl_c_stops_a_run_with_its_summary_and_no_traceback(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    graph = Path(__file__).resolve().parents[2] / "graphs" / "skeleton.yaml"
    summary = tmp_path / "summary.json"
    proc = subprocess.Popen([sys.executable, "-m", "edgevla.actors.cli.main", "run", str(graph),
                             "--headless", "--summary-json", str(summary)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # SIGINT to its group, as a terminal does
    time.sleep(8.0)  # started (or still starting: Ctrl-C must stop it cleanly either way)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "stopped (Ctrl-C)" in out and "summary" in out
    assert proc.returncode == 0, out
    assert summary.is_file()


def test_commands_talk_to_the_newest_live_run_or_say_nothing_runs(run_base, monkeypatch, capsys):
    from runtime_helpers import start_graph

    from edgevla.actors.cli.main import main
    from edgevla.actors.runtime.run_lookup import find_run_dir

    monkeypatch.setenv("EDGEVLA_RUN_BASE", run_base)
    with pytest.raises(FileNotFoundError, match="nothing is running"):
        find_run_dir()
    assert main(["status"]) == 1
    assert "nothing is running" in capsys.readouterr().err
    graph = "name: g\nactors:\n  cam: {kind: synthetic_camera, outputs: {frames: f}, rate_hz: 5}\n"
    older = start_graph(graph, run_base)
    newer = start_graph(graph, run_base)
    stopped = []
    try:
        assert find_run_dir() == newer.run_dir
        assert find_run_dir(older.run_dir.name) == older.run_dir  # by name
        newer.stop()
        stopped.append(newer)
        assert find_run_dir() == older.run_dir  # the newest *live* one
        with pytest.raises(FileNotFoundError, match=f"run {newer.run_dir.name} has ended"):
            find_run_dir(str(newer.run_dir))
        with pytest.raises(FileNotFoundError, match="no run 'nope'"):
            find_run_dir("nope")
    finally:
        older.stop()
        if not stopped:
            newer.stop()
    with pytest.raises(FileNotFoundError, match="nothing is running"):
        find_run_dir()


def test_status_table_is_compact_below_100_columns_and_never_cuts_numbers():
    from rich.console import Console

    from edgevla.actors.console.dashboard import status_table

    a = {"actor": "vision", "replica": 0, "state": "running", "pid": 4242, "rate_target_hz": None,
         "rate_actual_hz": 0.33, "loop_p50_ms": 148.25, "loop_p99_ms": 1234.5, "restarts": 2,
         "skipped": 0, "dropped_send": 0, "malformed": 0, "rss_mb": 104.0, "cpu_s": 12.5}
    status = {"graph": "g", "uptime_s": 5, "actors": [a]}
    for width in (80, 150):
        con = Console(width=width, record=True, color_system=None)
        con.print(status_table(status, width=width))
        text = con.export_text()
        assert "…" not in text
        assert "event" in text  # no loop rate: it runs when its trigger arrives
        assert ("1234.50" in text.replace("\n", "").replace(" ", "")) == (width >= 100)


def test_status_shows_the_arm_as_the_firmware_reports_it():
    from rich.console import Console

    from edgevla.actors.console.dashboard import status_table

    base = {"replica": 0, "state": "running", "pid": 1, "rate_target_hz": 100, "rate_actual_hz": 100,
            "loop_p50_ms": 0.1, "loop_p99_ms": 0.2, "restarts": 0, "skipped": 0, "dropped_send": 0,
            "malformed": 0, "rss_mb": 50.0, "cpu_s": 1.0}

    def shown(mcu: dict) -> str:
        ex = {**base, "actor": "executor", "actor_stats": {"mcu": mcu}}
        con = Console(width=150, record=True, color_system=None)
        con.print(status_table({"graph": "g", "uptime_s": 5, "actors": [ex]}, width=150))
        return " ".join(con.export_text().split())

    assert "arm: RUNNING, faults: none" in shown({"mode": "RUNNING", "faults": "none"})
    text = shown({"mode": "HOLDING", "faults": "SERVO_TIMEOUT|SERVO_ERROR"})
    assert "arm: HOLDING, faults: SERVO_TIMEOUT|SERVO_ERROR" in text and "overload" in text
    assert "arm:" not in shown({"port": None})  # no firmware link: nothing to say


@pytest.mark.parametrize("width", [60, 80, 150])
def test_inspect_and_replay_tables_fold_instead_of_cutting(width):
    from rich.console import Console

    from edgevla.actors.console.tables import fitted_table

    cols = ("topic", "schema", "count", "rate Hz", "gap p50 ms", "gap p99 ms", "producers")
    rows = [("model/features-of-a-long-name", "features", "10010", "29.88", "33.15", "1234.56",
             "vision.0,vision.1")]
    con = Console(width=width, record=True, color_system=None)
    con.print(fitted_table("topics", cols, rows, width, compact=("topic", "count", "gap p99 ms")))
    flat = con.export_text().replace("\n", "").replace(" ", "").replace("│", "")
    assert "…" not in con.export_text() and "1234.56" in flat and "10010" in flat
    assert ("schema" in flat) == (width >= 100)  # compact below 100 columns


def test_a_slow_trigger_driven_actor_reports_its_rate():
    from edgevla.actors.runtime.process import LoopStats

    loop = LoopStats()
    for k in range(5):  # a stage asked every 3 s
        loop.record(k * 3_000_000_000, k * 3_000_000_000 + 1_000)
    assert loop.rate_hz(12_500_000_000) == pytest.approx(1 / 3)
    fast = LoopStats()
    for k in range(100):
        fast.record(k * 10_000_000, k * 10_000_000 + 1_000)
    assert fast.rate_hz(990_000_000) == pytest.approx(100.0)
