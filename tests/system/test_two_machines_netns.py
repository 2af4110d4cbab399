"""The split sim graph on two machines made by the test: two network namespaces joined by a veth
pair (10.77.x.1 robot, 10.77.x.2 server), each running `edgevla run --machine` as a separate
command, all traffic on addresses the test created. Where namespaces are not permitted the same
commands run on loopback (two supervisors, distinct ports)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.train, pytest.mark.timing, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> bool:
    return subprocess.run(["ip", *args], capture_output=True).returncode == 0


def _namespaces(tag: str, subnet: int):
    """(robot ns, server ns) joined by a veth pair, or None where that is not permitted."""
    a, b = f"evr{tag}", f"evs{tag}"
    steps = [("netns", "add", a), ("netns", "add", b),
             ("link", "add", f"vr{tag}", "type", "veth", "peer", "name", f"vs{tag}"),
             ("link", "set", f"vr{tag}", "netns", a), ("link", "set", f"vs{tag}", "netns", b),
             ("-n", a, "addr", "add", f"10.77.{subnet}.1/24", "dev", f"vr{tag}"),
             ("-n", b, "addr", "add", f"10.77.{subnet}.2/24", "dev", f"vs{tag}"),
             ("-n", a, "link", "set", f"vr{tag}", "up"), ("-n", b, "link", "set", f"vs{tag}", "up"),
             ("-n", a, "link", "set", "lo", "up"), ("-n", b, "link", "set", "lo", "up")]
    for step in steps:
        if not _ip(*step):
            _ip("netns", "del", a)
            _ip("netns", "del", b)
            return None
    return a, b


def test_robot_and_server_on_two_machines(tmp_path):
    tag, subnet = str(os.getpid() % 100000), os.getpid() % 200 + 20
    ns = _namespaces(tag, subnet)
    robot_ip, server_ip = (f"10.77.{subnet}.1", f"10.77.{subnet}.2") if ns else ("127.0.0.1", "127.0.0.1")
    text = (ROOT / "graphs" / "sim_split.yaml").read_text()
    text = text.replace("192.168.1.10", robot_ip).replace("192.168.1.20", server_ip)
    text = text.replace("${GRAPH_DIR}/../../models", str(ROOT / "models"))
    text = text.replace("base_port: 5600", "base_port: 7900")
    graph = tmp_path / "split.yaml"
    graph.write_text(text)
    cli = [sys.executable, "-m", "edgevla.actors.cli.main"]
    assert subprocess.run([*cli, "keys", str(graph)], capture_output=True).returncode == 0
    procs, bases = {}, []
    try:
        for machine, secs, prefix in (("server", 30, ns[1] if ns else None),
                                      ("robot", 22, ns[0] if ns else None)):
            # a short base: ipc socket paths must stay under ~100 bytes
            bases.append(tempfile.mkdtemp(prefix=f"ev{machine[0]}"))
            env = {**os.environ, "EDGEVLA_RUN_BASE": bases[-1]}
            cmd = [*cli, "run", str(graph), "--machine", machine, "--headless", "--duration",
                   str(secs), "--summary-json", str(tmp_path / f"{machine}.json")]
            if prefix:
                cmd = ["ip", "netns", "exec", prefix, *cmd]
            procs[machine] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)
        outs = {m: p.communicate(timeout=120)[0] for m, p in procs.items()}
        assert (tmp_path / "robot.json").is_file(), (outs["robot"][-2000:], outs["server"][-2000:])
        robot = json.loads((tmp_path / "robot.json").read_text())
        ex = next(a for a in robot["actors"] if a["actor"] == "executor")["actor_stats"]
        assert ex["accepted_chunks"] >= 3, (ex, outs["robot"][-2000:], outs["server"][-2000:])
        assert ex["mcu"]["errors"] == 0
        assert all(a["restarts"] == 0 for a in robot["actors"]), outs["robot"][-2000:]
        # the robot saw the server's half, at the server's own address
        peer = robot["peers"]["server"]
        assert peer["address"] == server_ip and {a["actor"] for a in peer["actors"]} == {"vision", "decoder"}
        print(f"two machines via {'network namespaces' if ns else 'loopback'}: "
              f"{ex['accepted_chunks']} chunks, latency {ex['inference_latency_ms_last']} ms")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        if ns:
            _ip("netns", "del", ns[0])
            _ip("netns", "del", ns[1])
        for b in bases:
            shutil.rmtree(b, ignore_errors=True)
