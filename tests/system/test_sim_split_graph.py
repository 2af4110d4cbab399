"""graphs/sim_split.yaml: the sim profile as two machines (robot: sim, firmware, executor;
server: vision + ACT decoder), each share under its own supervisor, over CURVE on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import run_until

pytestmark = [pytest.mark.train, pytest.mark.timing, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_split_sim_graph_drives_the_arm_from_the_server(tmp_path, run_base):
    from edgevla.actors.cli.main import main
    from edgevla.actors.runtime.graph import load_graph
    from edgevla.actors.runtime.placement import share
    from edgevla.actors.runtime.supervisor import Supervisor

    # the shipped file, with both machines on loopback and keys of its own
    text = (ROOT / "graphs" / "sim_split.yaml").read_text()
    text = text.replace("192.168.1.10", "127.0.0.1").replace("192.168.1.20", "127.0.0.1")
    text = text.replace("${GRAPH_DIR}/../../models", str(ROOT / "models"))
    text = text.replace("base_port: 5600", "base_port: 7100")
    path = tmp_path / "sim_split.yaml"
    path.write_text(text)
    assert main(["keys", str(path)]) == 0
    g = load_graph(path)
    robot = Supervisor(share(g, "robot"), base_dir=run_base)
    server = Supervisor(share(g, "server"), base_dir=run_base)
    assert set(robot.graph.actors) == {"mcu", "sim", "executor"}
    assert set(server.graph.actors) == {"vision", "decoder"}
    robot.start()
    server.start()
    try:
        def stat(actor, key, default=0):
            sup = robot if actor in robot.replicas else server
            return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get(key, default)

        def chunks():
            server.poll_once(20)
            return stat("executor", "accepted_chunks") >= 3

        assert run_until(robot, chunks, timeout_s=120)
        assert stat("vision", "runs") >= 3
        mcu = stat("executor", "mcu", {})
        assert mcu.get("errors") == 0 and mcu.get("forwarded", 0) > 0, mcu
        assert all(r.restarts == 0 for s in (robot, server) for rs in s.replicas.values() for r in rs)
    finally:
        robot.stop()
        server.stop()
