"""One graph across two machines: placement in the graph file, each machine's share, and the
two shares running under their own supervisors on loopback (two "machines" at 127.0.0.1,
ports from the one graph)."""

from __future__ import annotations

import pytest
from runtime_helpers import run_until

from edgevla.actors.runtime.graph import GraphError, parse_graph
from edgevla.actors.runtime.placement import share

GRAPH = """\
name: split
network: {base_port: %d}
machines:
  robot: {address: 127.0.0.1}
  server: {address: 127.0.0.1}
defaults: {heartbeat_timeout_s: 5}
actors:
  cam:
    machine: robot
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 30
    params: {width: 32, height: 24}
  stage:
    machine: server
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: feat}
  sink:
    machine: robot
    kind: counter_sink
    inputs: {in: feat}
  local_sink:
    machine: robot
    kind: counter_sink
    inputs: {in: cam/top}
    after: [cam, stage]
"""


def _graph(port: int = 6100, text: str = GRAPH):
    return parse_graph(text % port if "%d" in text else text, "split.yaml")


def test_each_share_holds_its_actors_and_crossing_topics_go_over_tcp():
    g = _graph()
    robot, server = share(g, "robot"), share(g, "server")
    assert set(robot.actors) == {"cam", "sink", "local_sink"} and set(server.actors) == {"stage"}
    assert robot.external_topics == ("feat",) and server.external_topics == ("cam/top",)
    assert robot.actors["local_sink"].after == ("cam",)  # a remote actor is not waited for
    for topic in ("cam/top", "feat"):
        # both machines derive the same endpoint for a topic that crosses
        assert robot.placement.endpoint(topic, 0) == server.placement.endpoint(topic, 0)
        assert robot.placement.endpoint(topic, 0).startswith("tcp://127.0.0.1:")
    assert robot.placement.cross == {"cam/top", "feat"}
    with pytest.raises(ValueError, match="machines are robot, server"):
        share(g, "laptop")


def test_frames_that_leave_the_machine_go_as_jpeg_when_the_graph_says(tmp_path):
    from edgevla.actors.runtime.actor_wiring import ActorWiring

    text = (GRAPH % 6100).replace("network: {base_port: 6100}",
                                  "network: {base_port: 6100, jpeg: {cam/top: 80, feat: 50}}")
    robot = share(parse_graph(text, "split.yaml"), "robot")
    assert ActorWiring(robot, tmp_path).spec(robot.actors["cam"], 0, 30.0).jpeg == {"cam/top": 80}
    # on one machine nothing is compressed: the same graph without machines
    one_text = text.replace("    machine: robot\n", "").replace("    machine: server\n", "")
    one_text = one_text.replace("machines:\n  robot: {address: 127.0.0.1}\n  server: {address: 127.0.0.1}\n", "")
    one = parse_graph(one_text, "one.yaml")
    assert not one.machines
    assert ActorWiring(one, tmp_path).spec(one.actors["cam"], 0, 30.0).jpeg == {}


@pytest.mark.parametrize("edit, says", [
    (lambda t: t.replace("    machine: server\n", ""), "actors.stage.machine must name one of"),
    (lambda t: t.replace("machine: server", "machine: gpu"), "got 'gpu'"),
    (lambda t: t.replace("server: {address: 127.0.0.1}", "server: {address: gpu-box}"),
     "machines.server.address must be an IP address"),
    (lambda t: t.replace("server: {address: 127.0.0.1}", "server: {address: 10.0.0.3}"),
     "network.curve must be true when machines are beyond loopback"),
])
def test_placement_mistakes_are_one_line_each(edit, says):
    with pytest.raises(GraphError) as exc:
        parse_graph(edit(GRAPH % 6100), "split.yaml")
    assert any(says in p for p in exc.value.problems), exc.value.problems
    assert all(p.startswith("split.yaml:") for p in exc.value.problems)


def test_a_machine_without_machines_is_refused():
    text = "actors:\n  cam: {kind: synthetic_camera, outputs: {frames: t}, rate_hz: 5, machine: robot}\n"
    with pytest.raises(GraphError, match="the graph has no 'machines:'"):
        parse_graph(text, "one.yaml")


@pytest.mark.timing
@pytest.mark.timeout(120)
def test_two_supervisors_run_one_graph_across_machines(run_base):
    from edgevla.actors.runtime.supervisor import Supervisor

    g = _graph(6300)
    sups = [Supervisor(share(g, m), base_dir=run_base) for m in ("robot", "server")]
    try:
        for s in sups:
            s.start()
        robot, server = sups

        def count(sup, actor):
            return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get("count", 0)

        def flowing():
            server.poll_once(20)
            return count(robot, "sink") >= 10 and count(robot, "local_sink") >= 10

        assert run_until(robot, flowing, timeout_s=60)
        assert all(r.restarts == 0 for s in sups for rs in s.replicas.values() for r in rs)
        assert robot.run_dir != server.run_dir
    finally:
        for s in sups:
            s.stop()


def test_run_asks_for_the_machine_of_a_spanning_graph(tmp_path, capsys):
    from edgevla.actors.cli.main import main

    path = tmp_path / "split.yaml"
    path.write_text(GRAPH % 6100)
    assert main(["run", str(path), "--duration", "1", "--headless"]) == 2
    out = capsys.readouterr().out
    assert "spans machines robot, server: start each machine's share with --machine NAME" in out
    assert main(["run", str(path), "--duration", "1", "--headless", "--machine", "gpu"]) == 2
    assert "--machine gpu: the graph's machines are robot, server" in capsys.readouterr().out


CURVE_GRAPH = (GRAPH.replace("network: {base_port: %d}", "network: {base_port: %d, curve: true, keys_dir: keys}"))


def _start(g, machine, run_base):
    from edgevla.actors.runtime.supervisor import Supervisor

    sup = Supervisor(share(g, machine), base_dir=run_base)
    sup.start()
    return sup


def _count(sup, actor):
    return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get("count", 0)


@pytest.mark.timing
@pytest.mark.timeout(180)
def test_machines_talk_over_curve_and_a_wrong_key_is_refused(tmp_path, run_base, capsys):
    import shutil

    from edgevla.actors.cli.main import main
    from edgevla.actors.runtime.graph import load_graph

    path = tmp_path / "split.yaml"
    path.write_text(CURVE_GRAPH % 6500)
    with pytest.raises(ValueError, match="keys/robot.key: missing; `edgevla keys"):
        share(load_graph(path), "robot")
    assert main(["keys", str(path)]) == 0
    assert "made" in capsys.readouterr().out
    secret = tmp_path / "keys" / "robot.key_secret"
    assert secret.stat().st_mode & 0o077 == 0
    before = secret.read_bytes()
    assert main(["keys", str(path)]) == 0 and secret.read_bytes() == before  # made once
    g = load_graph(path)
    robot, server = _start(g, "robot", run_base), _start(g, "server", run_base)
    try:
        def flowing():
            server.poll_once(20)
            return _count(robot, "sink") >= 10
        assert run_until(robot, flowing, timeout_s=60)
    finally:
        robot.stop()
        server.stop()
    # a robot whose keys are not the ones the server's graph lists
    other = tmp_path / "impostor"
    other.mkdir()
    shutil.copytree(tmp_path / "keys", other / "keys")
    (other / "keys" / "robot.key").unlink()
    (other / "keys" / "robot.key_secret").unlink()
    (other / "split.yaml").write_text(path.read_text())
    assert main(["keys", str(other / "split.yaml")]) == 0
    robot = _start(load_graph(other / "split.yaml"), "robot", run_base)
    server = _start(g, "server", run_base)
    try:
        def seen():
            server.poll_once(20)
            robot.poll_once(20)
            return "refused a connection" in (server.run_dir / "logs" / "stage.0.log").read_text()
        assert run_until(robot, seen, timeout_s=30)
        robot.poll_once(500)
        stage = (server.replicas["stage"][0].last_stats or {}).get("actor_stats", {})
        assert _count(robot, "sink") == 0 and stage.get("handled", 0) == 0, stage

        def said(sup, log, text):
            return text in (sup.run_dir / "logs" / log).read_text()
        # the other side of each refusal says it too: the robot's sink was refused by the
        # server, the server's stage found the robot's camera holding another key
        assert run_until(robot, lambda: said(robot, "sink.0.log", "refused this machine's key")
                         and said(server, "stage.0.log", "does not hold the key"), timeout_s=30)
    finally:
        robot.stop()
        server.stop()


@pytest.mark.timing
@pytest.mark.timeout(120)
def test_status_on_either_machine_shows_both_halves(tmp_path, run_base):
    from rich.console import Console

    from edgevla.actors.console.dashboard import status_table
    from edgevla.actors.runtime.graph import load_graph

    path = tmp_path / "split.yaml"
    path.write_text(CURVE_GRAPH % 6900)
    from edgevla.actors.cli.main import main

    assert main(["keys", str(path)]) == 0
    g = load_graph(path)
    robot = _start(g, "robot", run_base)
    server = None
    try:
        def peer(sup, m):
            return sup.status()["peers"][m]

        # the server is not up yet: the robot says so, and does not guess
        assert run_until(robot, lambda: robot.status()["peers"]["server"]["age_s"] is None, timeout_s=5)
        assert not peer(robot, "server")["reachable"]
        server = _start(g, "server", run_base)

        def both():
            server.poll_once(20)
            return peer(robot, "server")["reachable"] and peer(server, "robot")["reachable"] \
                and any(a["state"] == "running" for a in peer(robot, "server")["actors"])
        assert run_until(robot, both, timeout_s=30)
        assert {a["actor"] for a in peer(robot, "server")["actors"]} == {"stage"}
        assert {a["actor"] for a in peer(server, "robot")["actors"]} == {"cam", "sink", "local_sink"}
        console = Console(width=160, record=True)
        console.print(status_table(robot.status()))
        text = console.export_text()
        assert "robot:cam.0" in text and "server:stage.0" in text
        server.stop()
        server = None
        assert run_until(robot, lambda: not peer(robot, "server")["reachable"], timeout_s=15)
        console = Console(width=160, record=True)
        console.print(status_table(robot.status()))
        assert "unreachable (last heard" in console.export_text()
    finally:
        robot.stop()
        if server is not None:
            server.stop()


TWO_ROBOTS = """\
name: fleet
network: {base_port: 6150}
machines:
  robot_a: {address: 127.0.0.1}
  robot_b: {address: 127.0.0.1}
  server: {address: 127.0.0.1}
defaults: {heartbeat_timeout_s: 5}
actors:
  cam_a: {machine: robot_a, kind: synthetic_camera, outputs: {frames: a/cam}, rate_hz: 30,
          params: {width: 32, height: 24}}
  cam_b: {machine: robot_b, kind: synthetic_camera, outputs: {frames: b/cam}, rate_hz: 30,
          params: {width: 32, height: 24}}
  stage_a: {machine: server, kind: dummy_stage, inputs: {in: a/cam}, outputs: {out: a/feat}}
  stage_b: {machine: server, kind: dummy_stage, inputs: {in: b/cam}, outputs: {out: b/feat}}
  sink_a: {machine: robot_a, kind: counter_sink, inputs: {in: a/feat}}
  sink_b: {machine: robot_b, kind: counter_sink, inputs: {in: b/feat}}
"""


@pytest.mark.timing
@pytest.mark.timeout(120)
def test_one_server_answers_two_robots(run_base):
    """Two robots' graphs and the server's in one file: the server runs a stage pair for each,
    and both robots are answered (the counts of each grow; neither waits for the other)."""
    g = parse_graph(TWO_ROBOTS, "fleet.yaml")
    sups = {m: _start(g, m, run_base) for m in ("server", "robot_a", "robot_b")}
    try:
        def both():
            for s in sups.values():
                s.poll_once(10)
            return _count(sups["robot_a"], "sink_a") >= 10 and _count(sups["robot_b"], "sink_b") >= 10

        assert run_until(sups["server"], both, timeout_s=60)
        peers = sups["robot_a"].status()["peers"]
        assert set(peers) == {"robot_b", "server"}
    finally:
        for s in sups.values():
            s.stop()
