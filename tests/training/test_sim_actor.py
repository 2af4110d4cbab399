"""SimPlantActor (kind "sim"): real-time stepping on an injected clock, frames, state, servo bus."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.train

pytest.importorskip("mujoco")

from edgevla.actors.runtime.registry import resolve  # noqa: E402
from edgevla.actors.wire.clock import VirtualClock  # noqa: E402
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import Frame, JointCommand, RobotState  # noqa: E402
from edgevla.training.sim import actor as sim_actor  # noqa: E402
from edgevla.training.sim.actor import SimPlantActor, counts_to_rad, rad_to_counts  # noqa: E402
from edgevla.training.sim.episode_spec import EpisodeSpec  # noqa: E402
from edgevla.training.sim.kinematics import HOME_Q  # noqa: E402
from edgevla.training.sim.scene import MUG_HOME_XY  # noqa: E402


@given(st.lists(st.floats(-3.0, 3.0), min_size=6, max_size=6))
def test_counts_conversion(q):
    q = np.array(q)
    c = rad_to_counts(q)
    assert np.all((c >= 0) & (c <= 4095))
    assert np.abs(counts_to_rad(c) - q).max() <= np.pi / 4096 + 1e-12
    assert rad_to_counts(np.zeros(6)).tolist() == [2048] * 6


def test_registry_resolves_the_sim_kind():
    assert resolve("sim") is SimPlantActor


def test_direct_mode_real_time_frames_and_state():
    actor = SimPlantActor("plant")
    actor.setup({"camera_hz": 10, "width": 32, "height": 24, "seed": 1})
    clock = VirtualClock(5_000_000_000)
    frames: dict[str, list[Frame]] = {}
    states: list[RobotState] = []
    target = HOME_Q.copy()
    target[0] = 0.3
    for i in range(50):  # 0.5 s at a 100 Hz loop
        inputs = {}
        if i == 2:
            inputs["commands"] = JointCommand(t_target_ns=clock.now_ns(),
                                              positions=target.astype(np.float32))
        out = actor.step(clock, inputs)
        states.append(out["state"])
        for cam in ("top", "gripper", "left"):
            if cam in out:
                frames.setdefault(cam, []).append(out[cam])
        clock.advance_ns(10_000_000)
    assert {k: len(v) for k, v in frames.items()} == {"top": 5, "gripper": 5, "left": 5}
    f = frames["top"][1]
    assert f.image.shape == (24, 32, 3) and f.t_capture_ns == 5_100_000_000
    assert f.camera == "top"
    assert len(states) == 50 and states[-1].t_capture_ns == clock.now_ns() - 10_000_000
    assert abs(states[-1].joints[0] - 0.3) < 0.02
    np.testing.assert_allclose(states[-1].commanded[0], 0.3, atol=1e-6)
    stats = actor.stats()
    # sim time follows the injected clock: 49 loop periods after the first step
    assert abs(stats["sim_time_s"] - 0.49) < 0.003
    assert stats["frames"] == 5 and stats["commands"] == 1 and stats["mode"] == "direct"
    # messages go through the project's codec
    topic, back = decode(encode("cam/top", f))
    assert isinstance(back, Frame) and np.array_equal(back.image, f.image)
    actor.close()


def test_host_stall_jumps_instead_of_bursting():
    actor = SimPlantActor("plant")
    actor.setup({"camera_hz": 5, "width": 16, "height": 16, "cameras": ["top"],
                 "max_catchup_s": 0.1})
    clock = VirtualClock(0)
    actor.step(clock, {})
    clock.advance_ns(2_000_000_000)  # a 2 s stall
    out = actor.step(clock, {})
    assert actor.stats()["lag_jumps"] == 1
    assert actor.stats()["sim_time_s"] <= 0.11
    assert "top" in out  # frame produced once, not a backlog
    actor.close()


def test_success_is_counted_and_reset_starts_a_new_episode():
    actor = SimPlantActor("plant")
    spec = EpisodeSpec(bag_xy=MUG_HOME_XY, bag_z=0.04)  # bag dropped straight into the mug
    actor.setup({"camera_hz": 1, "width": 16, "height": 16, "cameras": ["top"],
                 "episode": spec.to_dict()})
    clock = VirtualClock(0)
    for _ in range(30):
        actor.step(clock, {})
        clock.advance_ns(20_000_000)
    assert actor.stats()["successes"] == 1 and actor.stats()["episodes"] == 1
    actor.set_param("reset", 3)
    actor.step(clock, {})
    s = actor.stats()
    assert s["episodes"] == 2 and s["successes"] == 1 and not s["success"]
    with pytest.raises(KeyError):
        actor.set_param("warp_speed", 2)
    actor.close()


def test_servo_mode_drives_the_joints_through_the_feetech_bus(monkeypatch):
    made = {}

    class FakeBus:
        def __init__(self, port_path, servo_ids, read_positions_counts, write_goals_counts):
            made.update(port=port_path, ids=servo_ids, read=read_positions_counts,
                        write=write_goals_counts, closed=False)

        def close(self):
            made["closed"] = True

    monkeypatch.setattr(sim_actor, "FeetechBusSim", FakeBus)
    actor = SimPlantActor("plant")
    actor.setup({"servo_port": "/tmp/fake-pty", "camera_hz": 1, "width": 16, "height": 16,
                 "cameras": ["top"], "seed": 2})
    assert made["port"] == "/tmp/fake-pty" and made["ids"] == [1, 2, 3, 4, 5, 6]
    home_counts = made["read"]()
    assert home_counts == rad_to_counts(HOME_Q).tolist()
    goal = HOME_Q.copy()
    goal[1] = 0.0
    made["write"](rad_to_counts(goal).tolist())  # what the firmware's sync write sends
    clock = VirtualClock(0)
    for _ in range(40):
        # executor commands are ignored in servo mode: the firmware owns the motors
        actor.step(clock, {"commands": JointCommand(t_target_ns=0,
                                                    positions=np.zeros(6, np.float32))})
        clock.advance_ns(20_000_000)
    present = np.array(made["read"]())
    assert abs(counts_to_rad(present)[1] - 0.0) < 0.02
    assert abs(counts_to_rad(present)[0] - HOME_Q[0]) < 0.01
    assert actor.stats()["mode"] == "servo" and actor.stats()["commands"] == 1
    actor.close()
    assert made["closed"]


def test_servo_mode_with_the_real_feetech_bus_over_a_pty():
    """The firmware engineer's FeetechBusSim on a pty; this test plays the M7's bus master."""
    import os
    import select
    import time

    from edgevla.firmware_bridge.servos import feetech  # a broken import fails, never skips
    master, slave = os.openpty()
    actor = SimPlantActor("plant")
    try:
        actor.setup({"servo_port": os.ttyname(slave), "camera_hz": 1, "width": 16,
                     "height": 16, "cameras": ["top"], "seed": 2})
        ids = [1, 2, 3, 4, 5, 6]
        goal = HOME_Q.copy()
        goal[0] = 0.5
        os.write(master, feetech.sync_write_u16(feetech.ADDR_GOAL_POSITION, ids,
                                                rad_to_counts(goal).tolist()))
        clock = VirtualClock(0)
        for _ in range(300):  # bounded: the bus thread hands the goals over within ~ms
            actor.step(clock, {})
            clock.advance_ns(20_000_000)
            if actor.stats()["commands"] and clock.now_ns() > 1_000_000_000:
                break
            time.sleep(0.005)
        assert actor.stats()["commands"] == 1
        os.write(master, feetech.sync_read(feetech.ADDR_PRESENT_POSITION, 2, ids))
        parser = feetech.PacketParser()
        replies = []
        deadline = time.monotonic() + 5.0
        while len(replies) < 6 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                replies += list(parser.feed(os.read(master, 256)))
        assert [p.id for p in replies] == ids
        counts = [p.params[0] | (p.params[1] << 8) for p in replies]
        assert abs(counts[0] - rad_to_counts(goal)[0]) <= 15  # within ~0.02 rad
        assert abs(counts[1] - rad_to_counts(HOME_Q)[1]) <= 15
    finally:
        actor.close()
        os.close(master)
        os.close(slave)
