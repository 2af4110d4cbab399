"""ExecutorActor: step() on a virtual clock, M7 forwarding through an injected link, governor."""

from __future__ import annotations

import numpy as np
import pytest

from edgevla.actors.executor.actor import ExecutorActor
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import ActionChunk, Command, JointCommand, Request, RobotState

MS = 1_000_000
TICK = 10 * MS
BASE = 1_000 * MS  # virtual time starts at 1 s (t_capture 0 means "unknown")


class FakeLink:
    def __init__(self, port: str, fail_after: int | None = None) -> None:
        self.port = port
        self.sent: list[tuple[list[int], np.ndarray]] = []
        self.fail_after = fail_after
        self.closed = False

    def send_waypoints(self, t_host_ns, positions):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise OSError("port gone")
        self.sent.append((list(t_host_ns), np.array(positions)))
        return True

    def close(self):
        self.closed = True


def chunk(seq: int, t_capture: int, latency: int, h: int = 50, dt: int = 20 * MS,
          offset: float = 0.0) -> ActionChunk:
    t_capture += BASE
    t = t_capture + dt * np.arange(h)
    actions = (0.3 * np.sin(2 * np.pi * 0.5 * t[:, None] / 1e9 + np.arange(6)) + offset)
    return ActionChunk(seq=seq, t_capture_ns=t_capture, t_pub_ns=t_capture + latency,
                       producer="denoise", t0_ns=t_capture, dt_ns=dt,
                       actions=actions.astype(np.float32), obs_seq=seq)


def drive(actor: ExecutorActor, chunks: list[ActionChunk], ticks: int, t_start: int = BASE):
    """Deliver each chunk at its t_pub (latest-value, as the runtime does); collect outputs."""
    clock = VirtualClock(t_start)
    pending = sorted(chunks, key=lambda c: c.t_pub_ns)
    outs = []
    for k in range(ticks):
        clock.set_ns(t_start + k * TICK)
        inputs = {}
        arrived = [c for c in pending if c.t_pub_ns <= clock.now_ns()]
        if arrived:
            inputs["chunks"] = arrived[-1]
            pending = [c for c in pending if c.t_pub_ns > clock.now_ns()]
        outs.append(actor.step(clock, inputs) or {})
    return outs


def make(params: dict | None = None, **kw) -> ExecutorActor:
    a = ExecutorActor("executor", **kw)
    a.setup({"link_latency_ms": 10, **(params or {})})
    return a


def test_commands_requests_and_stats_without_mcu():
    a = make()
    assert a.link is None
    # inference takes 150 ms; the executor asks again at half a chunk (1 s chunks)
    chunks = [chunk(i, i * 500 * MS, 150 * MS) for i in range(6)]
    outs = drive(a, chunks, 300)
    cmds = [o["commands"] for o in outs if "commands" in o]
    assert all(isinstance(c, JointCommand) for c in cmds)
    assert len(cmds) == 300 - 15  # nothing to execute before the first chunk lands at 150 ms
    for c in cmds:
        assert c.t_target_ns == c.t_pub_ns + 10 * MS and c.positions.shape == (6,)
        assert c.producer == "executor" and c.t_capture_ns > 0 and not c.starved
    reqs = [o["requests"] for o in outs if "requests" in o]
    assert all(isinstance(r, Request) for r in reqs)
    assert reqs[0].reason == "startup"
    assert "horizon_below_threshold" in {r.reason for r in reqs}
    s = a.stats()
    assert s["starvation_ticks"] == 0 and s["commands_sent"] == len(cmds)
    assert s["requests"]["startup"] >= 1 and s["last_request_reason"] is not None
    assert s["dropped_chunks"]["older_observation"] == 0
    assert s["inference_latency_ms_last"] == pytest.approx(150.0)
    assert s["skipped_stale_actions"] > 0  # 150 ms of every chunk was in the past on arrival
    # messages survive the wire codec
    _, back = decode(encode("commands", cmds[5]))
    assert back.positions.tobytes() == cmds[5].positions.tobytes()


def test_starvation_when_inference_outlasts_the_horizon_then_resumes():
    a = make({"max_velocity_rad_s": 2.0})
    # 0.5 s chunks, the second arrives 400 ms after the first ran out
    chunks = [chunk(0, 0, 50 * MS, h=25), chunk(1, 400 * MS, 500 * MS, h=100)]
    outs = drive(a, chunks, 150)
    cmds = [o["commands"] for o in outs if "commands" in o]
    starved = [c.starved for c in cmds]
    assert any(starved) and not starved[-1]
    assert a.stats()["starvation_ticks"] == sum(starved)
    assert any(o["requests"].reason == "starving" for o in outs if "requests" in o)
    pos = np.array([c.positions for c in cmds], dtype=np.float64)
    assert np.max(np.abs(np.diff(pos, axis=0))) <= 2.0 * 0.01 + 1e-6


def test_forwards_to_the_m7_through_the_bridge_and_survives_link_faults():
    links = []

    def factory(port):
        links.append(FakeLink(port, fail_after=40))
        return links[-1]

    a = make({"mcu_port": "/dev/ttyRPMSG0"}, link_factory=factory)
    outs = drive(a, [chunk(0, 0, 30 * MS)], 60)
    link = links[0]
    assert link.port == "/dev/ttyRPMSG0"
    cmds = [o["commands"] for o in outs if "commands" in o]
    assert len(link.sent) == 40
    for (t, pos), c in zip(link.sent, cmds):
        assert t == [c.t_target_ns] and pos.shape == (1, 6)
        assert pos[0].tobytes() == c.positions.tobytes()
    # the control clock keeps ticking while the link is down; errors are counted
    assert len(cmds) == 57
    s = a.stats()["mcu"]
    assert s["forwarded"] == 40 and s["errors"] == 17 and "port gone" in s["last_error"]
    a.close()
    assert link.closed


def test_the_state_input_once_heard_is_the_only_source_of_the_measured_joints():
    """The M7's reports are not on the bus: were they mixed in, a replay (no M7) would see
    another arm than the executor did."""
    from types import SimpleNamespace

    class ReportingLink(FakeLink):
        def __init__(self, port):
            super().__init__(port)
            self.t = 0

        def latest_state(self):
            self.t += 1  # a new report every tick, the arm at 0.5 rad
            return SimpleNamespace(t_host_ns=self.t, measured=[0.5] * 6, commanded=[0.5] * 6,
                                   faults=0, mode=1)

    a = make({"mcu_port": "/dev/ttyRPMSG30"}, link_factory=ReportingLink)
    clock = VirtualClock(BASE)
    out = a.step(clock, {})
    assert a.stats()["mcu"]["mode"] == "RUNNING"  # the M7's mode, for `edgevla status`
    assert "robot_state" in out and a.core._measured[0] == 0.5  # no state input yet: the M7
    a.step(clock, {"state": RobotState(joints=np.full(6, 0.1, np.float32))})
    assert a.core._measured[0] == pytest.approx(0.1)
    clock.set_ns(BASE + TICK)
    out = a.step(clock, {})  # a tick with an M7 report and no new state message
    assert "robot_state" in out and a.core._measured[0] == pytest.approx(0.1)


def test_governor_publishes_control_commands():
    a = make({"request_threshold": 0.5, "governor": {
        "enabled": True, "ema_alpha": 1.0, "cooldown_ms": 0,
        "knobs": [{"actor": "denoise", "param": "denoise_steps", "min": 2, "max": 10,
                   "step": 2},
                  {"actor": "cam_top", "rate_hz": True, "min": 5, "max": 30,
                   "factor": 0.5}]}})
    # latency 450 ms against a 0.5 * 1 s budget -> lower
    outs = drive(a, [chunk(i, i * 500 * MS, 450 * MS) for i in range(8)], 420)
    ctl = [o["control"] for o in outs if "control" in o]
    assert ctl and all(isinstance(c, Command) for c in ctl)
    # denoising steps go down first (10 -> 8 -> 6 -> 4 -> 2), then the camera rate
    assert [c.args["value"] for c in ctl[:4]] == [8.0, 6.0, 4.0, 2.0]
    assert all(c.name == "set_param" and c.args["actor"] == "denoise" for c in ctl[:4])
    assert ctl[4].name == "set_rate" and ctl[4].args == {"actor": "cam_top", "hz": 15.0}
    g = a.stats()["governor"]
    assert g["decisions"] and "horizon budget" in g["decisions"][0]["reason"]


def test_state_input_sets_the_start_position():
    a = make({"max_velocity_rad_s": 1.0})
    clock = VirtualClock(BASE)
    start = np.full(6, 0.5, np.float32)
    a.step(clock, {"state": RobotState(joints=start)})
    clock.set_ns(BASE + TICK)
    out = a.step(clock, {"chunks": chunk(0, 0, 5 * MS)})
    # slews from the measured position, not a jump to the chunk
    assert np.max(np.abs(out["commands"].positions - start)) <= 1.0 * 0.01 + 1e-6


def test_bit_identical_replay():
    def run():
        a = make({"strategy": "crossfade"})
        chunks = [chunk(i, i * 300 * MS, (80 + 37 * i % 200) * MS, offset=0.01 * i)
                  for i in range(8)]
        return [encode("c", o["commands"])[2:] for o in drive(a, chunks, 250) if "commands" in o]
    r1, r2 = run(), run()
    assert len(r1) == len(r2) > 200
    assert all(bytes(x[0]) == bytes(y[0]) for x, y in zip(r1, r2))


def test_params_are_validated_and_changeable():
    with pytest.raises(ValueError, match="unknown params \\['stratgy'\\]"):
        make({"stratgy": "latest"})
    with pytest.raises(ValueError, match="strategy must be one of"):
        make({"strategy": "blend_harder"})
    a = make()
    a.set_param("strategy", "latest")
    assert a.stats()["strategy"] == "latest"
    with pytest.raises(ValueError):
        a.set_param("strategy", "nope")
    assert a.stats()["strategy"] == "latest"
    with pytest.raises(KeyError, match="mcu_port"):
        a.set_param("mcu_port", "/dev/x")
    a.set_param("request_rate_hz", 5)
    assert a.stats()["request_mode"] == "rate"


def test_runs_in_a_graph_with_the_in_process_driver():
    """camera 30 Hz -> stage -> dummy policy (200 ms late) -> executor 100 Hz -> sink, on one
    virtual clock through the real wire codec: no starvation once running, bit-identical twice."""
    from edgevla.actors.runtime.inprocess import InProcessGraph

    graph = {"actors": {
        "cam": {"kind": "synthetic_camera", "outputs": {"frames": "cam/top"}, "rate_hz": 30,
                "params": {"width": 8, "height": 8}},
        "vision": {"kind": "dummy_stage", "inputs": {"in": "cam/top"},
                   "outputs": {"out": "features"}, "params": {"work_ms": 0}},
        "denoise": {"kind": "dummy_policy", "inputs": {"features": "features"},
                    "outputs": {"chunks": "chunks"}, "params": {"horizon": 30, "fps": 30}},
        "executor": {"kind": "executor", "inputs": {"chunks": "chunks"},
                     "outputs": {"commands": "commands", "requests": "requests",
                                 "control": "control"}, "rate_hz": 100,
                     "params": {"strategy": "crossfade", "link_latency_ms": 5}},
        "sink": {"kind": "counter_sink", "inputs": {"in": "commands"}},
    }}

    def run():
        g = InProcessGraph(graph, start_ns=BASE, latency_ns={"denoise": 200 * MS})
        g.run_for(3000 * MS)
        cmds = [p for p in g.published if p.topic == "commands"]
        stats = g.actors["executor"].stats()
        g.close()
        return cmds, stats

    cmds, stats = run()
    assert stats["accepted_chunks"] > 50 and stats["starvation_ticks"] == 0
    assert _commands_ok(cmds)
    again, _ = run()
    assert [[bytes(memoryview(b).cast("B")) for b in p.frames[1:]] for p in cmds] == \
        [[bytes(memoryview(b).cast("B")) for b in p.frames[1:]] for p in again]


def _commands_ok(cmds) -> bool:
    _, first = decode(cmds[0].frames)
    ts = [decode(p.frames)[1].t_target_ns for p in cmds]
    return len(cmds) > 250 and all(b > a for a, b in zip(ts, ts[1:])) and not first.starved


def test_arrival_timing_runs_the_whole_chunk_from_its_arrival():
    """Sync baseline: no action is skipped as stale, the first action runs right after arrival."""
    latency = 300 * MS
    c = chunk(1, 0, latency, h=20)
    ex_sync = make({"chunk_timing": "arrival", "max_velocity_rad_s": 100,
                    "max_accel_rad_s2": 1e5})
    ex_async = make({"max_velocity_rad_s": 100, "max_accel_rad_s2": 1e5,
                     "rebase_when_idle": False})
    ex_rebase = make({"max_velocity_rad_s": 100, "max_accel_rad_s2": 1e5})
    t_arrival = c.t_pub_ns
    outs_sync = drive(ex_sync, [c], 80, t_start=t_arrival)
    outs_async = drive(ex_async, [c], 80, t_start=t_arrival)
    outs_rebase = drive(ex_rebase, [c], 80, t_start=t_arrival)
    first_sync = outs_sync[0]["commands"]
    first_async = outs_async[0]["commands"]
    # sync starts at action 0 (held from where the chunk begins); async at the action for now
    np.testing.assert_allclose(first_sync.positions, c.actions[0], atol=1e-4)
    assert ex_async.stats()["skipped_stale_actions"] > 0
    assert ex_sync.stats()["skipped_stale_actions"] == 0
    assert not np.allclose(first_async.positions, c.actions[0], atol=1e-3)
    # By default a chunk observed while the arm held still (here: the first) starts at its
    # arrival as in sync mode: its 300 ms of "stale" actions were never overtaken by motion.
    np.testing.assert_allclose(outs_rebase[0]["commands"].positions, c.actions[0], atol=1e-4)
    assert ex_rebase.stats()["skipped_stale_actions"] == 0
    assert ex_rebase.stats()["rebased_chunks"] == 1
    with pytest.raises(ValueError, match="chunk_timing"):
        make({"chunk_timing": "later"})
    with pytest.raises(ValueError, match="rebase_when_idle must be true or false"):
        make({"rebase_when_idle": "false"})


def test_the_arms_calibration_becomes_the_m7s_position_limits_at_link_up(tmp_path):
    import json

    from edgevla.firmware_bridge.servos import feetech as ft
    from edgevla.firmware_bridge.servos.joint_units import SO101_JOINTS

    class LimitsLink(FakeLink):
        limits = None

        def set_limits(self, *cols):
            self.limits = cols
            return True

    cal = {n: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 1000 + 10 * i,
               "range_max": 3000 - 10 * i} for i, n in enumerate(SO101_JOINTS)}
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(cal))
    links: list[LimitsLink] = []
    a = ExecutorActor("executor", link_factory=lambda port: links.append(LimitsLink(port)) or links[-1])
    a.setup({"mcu_port": "/dev/fake", "calibration": str(path), "max_velocity_rad_s": 2.0})
    lo, hi, vel, _ = links[0].limits
    np.testing.assert_allclose(lo, ft.counts_to_rad([1000 + 10 * i for i in range(6)]), atol=1e-6)
    np.testing.assert_allclose(hi, ft.counts_to_rad([3000 - 10 * i for i in range(6)]), atol=1e-6)
    assert ft.rad_to_counts(lo).tolist() == [1000 + 10 * i for i in range(6)]
    assert vel.tolist() == [2.0]
    del cal["gripper"]
    path.write_text(json.dumps(cal))
    with pytest.raises(ValueError, match=f"{path}: no entry for joint.s. gripper"):
        ExecutorActor("executor", link_factory=LimitsLink).setup({"calibration": str(path)})
