"""Replay runs the shipped graph's actors offline: placeholders expanded as `run` does, no device."""

from __future__ import annotations

from pathlib import Path

from edgevla.actors.recording.replay_setup import live_specs
from edgevla.actors.runtime.graph import load_graph

SIM = Path(__file__).resolve().parents[2] / "graphs" / "sim.yaml"


def test_live_actors_of_the_shipped_graph_get_expanded_params_and_no_device():
    g = load_graph(SIM)
    assert "${RUN_DIR}" in g.actors["executor"].params["mcu_port"]
    live = live_specs(g, ["executor", "decoder", "vision"])
    assert "mcu_port" not in live["executor"].params  # offline: the M7 link is not opened
    for name in ("decoder", "vision"):
        model = Path(live[name].params["model"])
        assert "${" not in str(model) and (model / "manifest.json").is_file()
    # an override still wins over the graph's value
    live = live_specs(g, ["vision"], {"vision": {"model": "/elsewhere"}})
    assert live["vision"].params["model"] == "/elsewhere"


def test_executor_ticks_before_its_first_command_come_from_its_startup_requests():
    # a recording without step traces: an executor's ticks are read off its commands, and
    # before the first chunk (no commands yet) off the requests it sent
    import numpy as np

    from edgevla.actors.executor.actor import ExecutorActor
    from edgevla.actors.recording.step_replay import _tick_times
    from edgevla.actors.runtime.inprocess import ActorSpec
    from edgevla.actors.wire.messages import JointCommand, Request

    from runtime_helpers import Recorded

    ms = 1_000_000
    out = [Recorded("request", t * ms + 50_000, Request(reason="startup")) for t in (0, 200, 400)]
    out += [Recorded("joint_command", (500 + 10 * k) * ms + 80_000,
                JointCommand(t_target_ns=(505 + 10 * k) * ms, positions=np.zeros(6, np.float32)))
            for k in range(3)]
    spec = ActorSpec(name="executor", kind="executor", inputs={"chunks": "c", "state": "s"},
                     outputs={"commands": "cmd", "requests": "req"}, rate_hz=100.0,
                     params={"link_latency_ms": 5})
    ticks, source = _tick_times("executor", spec, ExecutorActor, {}, out, latency_ns=50_000)
    assert source.startswith("command")
    assert ticks == [0, 200 * ms, 400 * ms, 500 * ms, 510 * ms, 520 * ms]


def test_a_replaced_camera_never_opens_a_device(tmp_path):
    import pytest

    from edgevla.actors.runtime.inprocess import ActorSetupError

    g = tmp_path / "board.yaml"
    g.write_text("name: board\nactors:\n  cam_top:\n    kind: camera\n"
                 "    outputs: {frames: frames/top}\n    rate_hz: 30\n"
                 "    params: {source: /dev/video0, camera: top}\n")
    with pytest.raises(ActorSetupError, match="would open the device /dev/video0.*--set cam_top"):
        live_specs(load_graph(g), ["cam_top"])
    live = live_specs(load_graph(g), ["cam_top"], {"cam_top": {"source": str(tmp_path / "v.mp4")}})
    assert live["cam_top"].params["source"].endswith("v.mp4")


def test_a_replaced_host_firmware_never_drives_the_arm(tmp_path):
    import pytest

    from edgevla.actors.runtime.inprocess import ActorSetupError

    g = tmp_path / "usb.yaml"
    g.write_text("name: usb\nactors:\n  mcu:\n    kind: mcu_firmware\n    rate_hz: 10\n"
                 "    params: {link_path: /tmp/x.link, servo_device: /dev/ttyACM0}\n")
    with pytest.raises(ActorSetupError, match="drive the arm on /dev/ttyACM0"):
        live_specs(load_graph(g), ["mcu"])
