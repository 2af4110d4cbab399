"""graphs/sim_split.yaml: the sim profile as two machines (robot: sim, firmware, executor;
server: vision + ACT decoder), each share under its own supervisor, over CURVE on loopback."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from runtime_helpers import run_until

pytestmark = [pytest.mark.train, pytest.mark.timing, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def _split(tmp_path, port: int):
    """The shipped file with both machines on loopback, keys of its own; -> loaded graph."""
    from edgevla.actors.cli.main import main
    from edgevla.actors.runtime.graph import load_graph

    text = (ROOT / "graphs" / "sim_split.yaml").read_text()
    text = text.replace("192.168.1.10", "127.0.0.1").replace("192.168.1.20", "127.0.0.1")
    text = text.replace("${GRAPH_DIR}/../../models", str(ROOT / "models"))
    text = text.replace("base_port: 5600", f"base_port: {port}")
    path = tmp_path / "sim_split.yaml"
    path.write_text(text)
    assert main(["keys", str(path)]) == 0
    return load_graph(path)


def _start(g, machine, run_base, record=None):
    from edgevla.actors.recording.tap import add_recorder
    from edgevla.actors.runtime.placement import share
    from edgevla.actors.runtime.supervisor import Supervisor

    part = share(g, machine)
    if record is not None:  # the robot's states, for the reliability suite's no-jump verdict
        part = add_recorder(part, str(record), params={"exclude": ["cam/top", "cam/gripper", "cam/left"]})
    sup = Supervisor(part, base_dir=run_base)
    sup.start()
    return sup


def _stat(sup, actor, key, default=0):
    return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get(key, default)


def test_the_split_sim_graph_drives_the_arm_from_the_server(tmp_path, run_base):
    g = _split(tmp_path, 7100)
    robot, server = _start(g, "robot", run_base), _start(g, "server", run_base)
    assert set(robot.graph.actors) == {"mcu", "sim", "executor"}
    assert set(server.graph.actors) == {"vision", "decoder"}
    try:
        def chunks(n):
            server.poll_once(20)
            # stats come with heartbeats: the server's may lag the robot's by a second
            return _stat(robot, "executor", "accepted_chunks") >= n and _stat(server, "vision", "runs") >= n

        assert run_until(robot, lambda: chunks(3), timeout_s=120)
        mcu = _stat(robot, "executor", "mcu", {})
        assert mcu.get("errors") == 0 and mcu.get("forwarded", 0) > 0, mcu
        assert all(r.restarts == 0 for s in (robot, server) for rs in s.replicas.values() for r in rs)
    finally:
        robot.stop()
        server.stop()


def _server_process(graph_path: Path, base: str):
    """The server's share as its own `edgevla run` (a process group: a machine to kill)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "edgevla.actors.cli.main", "run", str(graph_path), "--machine",
           "server", "--headless", "--duration", "300"]
    return subprocess.Popen(cmd, env={**os.environ, "EDGEVLA_RUN_BASE": base}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_robot_holds_through_a_dead_or_silent_server_and_resumes(tmp_path, run_base):
    """The server machine SIGKILLed (its supervisor and actors, a process group) and started
    again; then frozen for 5 s (a partition: nothing crosses). The robot holds each time (the
    executor's hold), says so in its status (starvation, the server unreachable), resumes when
    chunks come back, and restarts nothing; its recorded servo goal and arm pass the reliability
    suite's no-jump verdict over the whole run."""
    import tempfile

    g = _split(tmp_path, 7300)
    recording = tmp_path / "robot.mcap"
    robot = _start(g, "robot", run_base, record=recording)
    server = _server_process(tmp_path / "sim_split.yaml", tempfile.mkdtemp(prefix="evs", dir=run_base))
    faults: dict[str, tuple[float, float]] = {}
    try:
        def ex(key, default=0):
            return _stat(robot, "executor", key, default)

        def chunks_past(n):
            return ex("accepted_chunks") > n

        assert run_until(robot, lambda: chunks_past(2), timeout_s=120)
        t_kill = time.monotonic()
        os.killpg(server.pid, signal.SIGKILL)  # the server machine is gone
        server.wait(10)
        dead_at = ex("accepted_chunks")
        assert run_until(robot, lambda: ex("starvation_episodes") >= 1
                         and not robot.status()["peers"]["server"]["reachable"], timeout_s=30)
        server = _server_process(tmp_path / "sim_split.yaml", tempfile.mkdtemp(prefix="evs", dir=run_base))
        assert run_until(robot, lambda: chunks_past(dead_at + 1), timeout_s=120)
        faults["server killed"] = (t_kill, time.monotonic())
        held = ex("starvation_episodes")
        t_freeze = time.monotonic()
        os.killpg(server.pid, signal.SIGSTOP)  # a partition: nothing comes from it
        try:
            run_until(robot, lambda: time.monotonic() > t_freeze + 5.0, timeout_s=10)
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        assert ex("starvation_episodes") > held
        back_at = ex("accepted_chunks")
        assert run_until(robot, lambda: chunks_past(back_at), timeout_s=120)
        faults["server frozen 5 s"] = (t_freeze, time.monotonic())
        run_until(robot, lambda: False, timeout_s=1.0)  # a last second of motion on record
        assert all(r.restarts == 0 for rs in robot.replicas.values() for r in rs)
        assert ex("mcu", {}).get("errors") == 0
    finally:
        robot.stop()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    _no_jump(recording, faults, g)


def _no_jump(recording, faults, g) -> None:
    from no_jump import assert_no_jump

    from edgevla.actors.recording.mcap_reader import read_recording, recording_files

    msgs = [m for f in recording_files(recording) for m in read_recording(f, topics=["robot/state"])]
    msgs.sort(key=lambda m: m.publish_time_ns)
    max_vel = float(g.actors["executor"].params.get("max_velocity_rad_s", 3.0))
    assert_no_jump(msgs, max_vel, faults)


def test_demo_split_runs_episodes_across_machines_with_jpeg_frames(tmp_path):
    """`edgevla demo --split --jpeg 90`: the demo's episodes through the two shares, frames to
    the server as JPEG, the robot's recording and summary as the one-machine demo leaves them."""
    import json

    from edgevla.actors.cli.main import main

    assert main(["demo", "--split", "--jpeg", "101", "--out", str(tmp_path)]) == 2
    assert main(["demo", "--split", "--mode", "both", "--out", str(tmp_path)]) == 2
    out = tmp_path / "split"
    assert main(["demo", "--split", "--jpeg", "90", "--episodes", "1", "--duration", "60",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["chunks_accepted"] > 0 and s["episodes"] >= 1
    assert s["machines"]["jpeg_quality"] == 90 and s["machines"]["server"] == ["decoder", "vision"]
    assert all(v == 0 for v in s["restarts"].values()) and all(
        v == 0 for v in s["machines"]["server_restarts"].values())
    assert (out / "run-async.mcap").stat().st_size > 0 and (out / "keys" / "robot.key").is_file()
