"""Protocol and kinematics: pure numpy, no mujoco (fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.training.sim.episode_spec import EpisodeSpec
from edgevla.training.sim.kinematics import JOINT_LIMITS, arm_fk, arm_ik
from edgevla.training.sim.scene import MUG_HOME_XY, SceneConfig
from edgevla.training.sim.start_positions import (ProtocolConfig, cluster_centers, draw_map, make_protocol,
                                                  reachable, select_episodes)


def test_default_protocol_counts_and_split():
    specs = make_protocol()
    assert len(specs) == 11 * 12
    assert sum(s.recovery for s in specs) == 22
    val = [s for s in specs if s.split == "val"]
    assert len(val) == 12 and {s.cluster for s in val} == {6}
    train = [s for s in specs if s.split == "train"]
    assert len(train) == 120 and 6 not in {s.cluster for s in train}
    # train first, then val (LeRobot splits are index ranges), indices consecutive
    assert [s.index for s in specs] == list(range(len(specs)))
    assert all(s.split == "train" for s in specs[:120])
    kinds = {s.recovery_kind for s in specs if s.recovery}
    assert kinds == {"bag_dropped", "missed_grasp", "mug_displaced"}


def test_protocol_is_deterministic_and_seeded():
    a, b = make_protocol(ProtocolConfig(seed=3)), make_protocol(ProtocolConfig(seed=3))
    assert a == b
    c = make_protocol(ProtocolConfig(seed=4))
    assert [s.bag_xy for s in a] != [s.bag_xy for s in c]


def test_start_positions_inside_their_cluster_reachable_and_clear_of_the_mug():
    cfg = ProtocolConfig()
    centers = cluster_centers(cfg)
    for s in make_protocol(cfg):
        cx, cy = centers[s.cluster]
        assert abs(s.bag_xy[0] - cx) <= 0.05 + 1e-9 and abs(s.bag_xy[1] - cy) <= 0.05 + 1e-9
        assert reachable(s.bag_xy)
        # bag (half diagonal 2.2 cm) never starts on the mug (radius 3.8 cm)
        assert math.dist(s.bag_xy, s.mug_xy) > 0.038 + 0.023
        if s.recovery_kind == "mug_displaced":
            assert 0.04 <= math.dist(s.mug_xy, MUG_HOME_XY) <= 0.07
        else:
            assert math.dist(s.mug_xy, MUG_HOME_XY) <= 0.015
        if s.recovery_kind in ("bag_dropped", "missed_grasp"):
            assert s.arm_q is not None and len(s.arm_q) == 6


def test_protocol_config_errors_name_the_field():
    with pytest.raises(ValueError, match="val_cluster"):
        ProtocolConfig(clusters=3, val_cluster=5)
    with pytest.raises(ValueError, match="cluster_size_m"):
        ProtocolConfig(cluster_size_m=2.0)
    with pytest.raises(ValueError, match="recovery_kinds"):
        ProtocolConfig(recovery_kinds=("teleport",))
    with pytest.raises(ValueError, match="SceneConfig.width"):
        SceneConfig(width=5)
    with pytest.raises(ValueError, match="split"):
        EpisodeSpec(split="test")


def test_configurable_protocol_and_subset_keeps_recovery():
    cfg = ProtocolConfig(clusters=4, positions_per_cluster=3, recovery_per_cluster=1,
                         val_cluster=None)
    specs = make_protocol(cfg)
    assert len(specs) == 16 and all(s.split == "train" for s in specs)
    sub = select_episodes(specs, clusters=[1, 2], per_cluster=2)
    assert [s.cluster for s in sub] == [1, 1, 2, 2]
    assert sum(s.recovery for s in sub) == 2
    assert [s.index for s in sub] == [0, 1, 2, 3]


def test_episode_spec_round_trips_through_a_dict():
    for s in make_protocol()[:14]:
        assert EpisodeSpec.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown fields"):
        EpisodeSpec.from_dict({"colour": 1})


@settings(max_examples=examples(200), deadline=None)
@given(r=st.floats(0.09, 0.27), ang=st.floats(-1.8, 1.8), z=st.floats(0.015, 0.15),
       yaw=st.floats(-3.0, 3.0), tilt=st.floats(0.0, 0.35))
def test_ik_inverts_fk_within_limits(r, ang, z, yaw, tilt):
    p = np.array([r * math.cos(ang), r * math.sin(ang), z])
    q = arm_ik(p, yaw, tilt)
    if q is None:
        return
    assert np.all(q >= JOINT_LIMITS[:5, 0] - 1e-9) and np.all(q <= JOINT_LIMITS[:5, 1] + 1e-9)
    np.testing.assert_allclose(arm_fk(q), p, atol=1e-9)
    # the approach is as asked: q1 + q2 + q3 = pi/2 - tilt (pitch of the gripper)
    assert math.isclose(q[1] + q[2] + q[3], math.pi / 2 - tilt, abs_tol=1e-9)


def test_whole_default_workspace_is_solvable_top_down():
    # every point of every cluster can be grasped (the reach the protocol relies on)
    for s in make_protocol():
        assert arm_ik((*s.bag_xy, 0.016), s.bag_yaw, 0.0 if math.hypot(*s.bag_xy) < 0.25
                      else 0.35) is not None


def test_map_png(tmp_path):
    cfg = ProtocolConfig()
    path = draw_map(make_protocol(cfg), cfg, str(tmp_path / "map.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
