"""The CLI against a real supervisor process: status, scale, set, stop; no orphans on SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.timing, pytest.mark.timeout(120)]

GRAPH = """\
name: cli
defaults: {heartbeat_timeout_s: 2}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 20
  stage:
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: feat}
  sink:
    kind: counter_sink
    inputs: {in: feat}
"""


def edgevla(*args, env, timeout=30):
    return subprocess.run([sys.executable, "-m", "edgevla.actors.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_status(env, n_running, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = edgevla("status", "--json", env=env)
        if r.returncode == 0:
            st = json.loads(r.stdout)
            pids = [a["pid"] for a in st["actors"] if a["state"] == "running" and a["pid"]]
            if len(pids) >= n_running and all(a["steps"] for a in st["actors"]):
                return st
        time.sleep(0.3)
    raise AssertionError(f"graph did not come up: {r.stdout} {r.stderr}")


@pytest.fixture
def env(run_base, tmp_path):
    e = {**os.environ, "EDGEVLA_RUN_BASE": run_base}
    (tmp_path / "g.yaml").write_text(GRAPH)
    e["GRAPH"] = str(tmp_path / "g.yaml")
    return e


def test_status_scale_stop(env):
    sup = subprocess.Popen([sys.executable, "-m", "edgevla.actors.cli.main", "run", env["GRAPH"],
                            "--headless", "--duration", "60"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        st = _wait_status(env, 3)
        assert {a["actor"] for a in st["actors"]} == {"cam", "stage", "sink"}
        r = edgevla("scale", "cam", "--hz", "5", env=env)
        assert r.returncode == 0 and json.loads(r.stdout)["rate_hz"] == 5
        r = edgevla("scale", "nope", "--hz", "5", env=env)
        assert r.returncode == 1 and "no actor 'nope'" in r.stderr
        r = edgevla("set", "stage", "work_ms", "2.5", env=env)
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
        r = edgevla("set", "stage", "nope", "true", env=env)
        assert r.returncode == 2
        assert r.stderr == "edgevla set: stage: no runtime parameter 'nope' (has: work_ms)\n"
        r = edgevla("restart", "stage", env=env)
        assert r.returncode == 0
        r = edgevla("stop", env=env)
        assert r.returncode == 0
        out, _ = sup.communicate(timeout=30)
        assert sup.returncode == 0, out
        assert "summary" in out
    finally:
        if sup.poll() is None:
            sup.kill()


def test_bad_graph_is_rejected_before_start(env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GRAPH.replace("rate_hz: 20", "rate_hz: -5"))
    r = edgevla("run", str(bad), "--headless", "--duration", "1", env=env)
    assert r.returncode == 2
    assert f"{bad}:7: actors.cam.rate_hz must be > 0, got -5" in r.stdout.replace("\n", " ") \
        or f"{bad}:7: actors.cam.rate_hz must be > 0, got -5" in r.stdout


def test_no_orphans_after_supervisor_sigkill(env):
    sup = subprocess.Popen([sys.executable, "-m", "edgevla.actors.cli.main", "run", env["GRAPH"],
                            "--headless", "--duration", "60"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        st = _wait_status(env, 3)
        pids = [a["pid"] for a in st["actors"]]
        assert all(_alive(p) for p in pids)
        sup.send_signal(signal.SIGKILL)
        sup.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "actor processes outlived their supervisor"
    finally:
        if sup.poll() is None:
            sup.kill()
