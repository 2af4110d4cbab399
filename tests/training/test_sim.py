"""The MuJoCo scene: API, determinism, kinematics against MuJoCo, success detection."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytestmark = pytest.mark.train

mujoco = pytest.importorskip("mujoco")

from edgevla.deploy.bundle.cameras import CAMERAS  # noqa: E402
from edgevla.training.sim.env import TeaBagEnv  # noqa: E402
from edgevla.training.sim.episode_spec import EpisodeSpec  # noqa: E402
from edgevla.training.sim.kinematics import HOME_Q, JOINT_NAMES, arm_fk, arm_ik  # noqa: E402
from edgevla.training.sim.scene import MUG_HOME_XY, SceneConfig  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = TeaBagEnv(SceneConfig(width=48, height=40))
    yield e
    e.close()


def test_observation_layout(env):
    obs = env.reset(seed=1)
    assert set(obs["images"]) == set(CAMERAS)
    for img in obs["images"].values():
        assert img.shape == (40, 48, 3) and img.dtype == np.uint8
        assert img.std() > 5  # something is in view, not a blank buffer
    assert obs["state"].shape == (6,) and obs["state"].dtype == np.float32
    assert env.joint_names == JOINT_NAMES and env.joint_limits.shape == (6, 2)
    np.testing.assert_allclose(obs["state"], HOME_Q, atol=1e-6)


def test_step_is_one_control_period_and_tracks_targets(env):
    env.reset(seed=2)
    t0 = env.sim_time_s
    target = HOME_Q.copy()
    target[0] = 0.4
    for _ in range(30):
        obs = env.step(target, render=False)
    assert math.isclose(env.sim_time_s - t0, 30 / env.cfg.fps, abs_tol=1e-9)
    assert abs(obs["state"][0] - 0.4) < 0.01  # 1 s is plenty for a 0.4 rad move


def test_targets_are_validated_and_clipped(env):
    env.reset(seed=3)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        env.set_joint_targets(np.zeros(5))
    with pytest.raises(ValueError, match="finite"):
        env.set_joint_targets(np.full(6, np.nan))
    env.set_joint_targets(np.full(6, 10.0))
    np.testing.assert_allclose(env.targets, env.joint_limits[:, 1].astype(np.float32))


def test_deterministic_with_a_seed():
    cfg = SceneConfig(width=32, height=32, cameras=("top",))
    rng = np.random.default_rng(0)
    actions = HOME_Q + rng.uniform(-0.2, 0.2, (20, 6))
    runs = []
    for _ in range(2):
        with TeaBagEnv(cfg) as e:
            e.reset(seed=11)
            for a in actions:
                obs = e.step(a)
            runs.append((obs["state"].copy(), obs["images"]["top"].copy(), e.bag_pos()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])
    with TeaBagEnv(cfg) as e:
        a = e.reset(seed=11)["images"]["top"]
        b = e.reset(seed=12)["images"]["top"]
    assert not np.array_equal(a, b)  # another seed, another bag pose


def test_closed_form_ik_matches_mujoco_and_aligns_the_fingers(env):
    mj = env._mj
    finger = mj.mj_name2id(env.model, mj.mjtObj.mjOBJ_BODY, "finger_left")
    for p, yaw, tilt in [((0.15, 0.05, 0.016), 0.3, 0.0), ((0.10, -0.12, 0.05), -1.2, 0.0),
                         ((0.27, 0.05, 0.016), 1.0, 0.35), ((0.015, -0.17, 0.12), 0.0, 0.0)]:
        q = arm_ik(p, yaw, tilt)
        assert q is not None
        env.data.qpos[env._h.arm_qpos] = q
        mj.mj_forward(env.model, env.data)
        np.testing.assert_allclose(env.tcp_pos(), p, atol=1e-9)
        np.testing.assert_allclose(arm_fk(q), p, atol=1e-9)
        # fingers close across the object's y axis, seen from above
        axis = env.data.xmat[finger].reshape(3, 3)[:, 1]
        horiz = axis[:2] / np.linalg.norm(axis[:2])
        assert abs(abs(horiz @ np.array([-math.sin(yaw), math.cos(yaw)])) - 1) < 1e-6


def test_success_needs_bag_in_mug_and_released(env):
    env.reset(seed=4)
    assert not env.is_success()
    # drop the bag into the mug from 3 cm above its bottom; the arm is far away
    spec = EpisodeSpec(bag_xy=MUG_HOME_XY, bag_z=0.04)
    env.reset(spec)
    for _ in range(20):
        env.step(HOME_Q, render=False)
    assert env.bag_in_mug() and env.finger_bag_contacts() == 0 and env.is_success()
    env.reset(dataclasses.replace(spec, bag_xy=(0.15, 0.0), bag_z=0.007))
    env.step(HOME_Q, render=False)
    assert not env.is_success()


def test_physics_step_to_for_the_real_time_plant(env):
    env.reset(seed=5)
    n = env.physics_step_to(0.1)
    assert n == round(0.1 / env.model.opt.timestep)
    assert abs(env.sim_time_s - 0.1) <= env.model.opt.timestep / 2
    assert env.physics_step_to(0.05) == 0  # never backwards


def test_reference_resolution_renders():
    with TeaBagEnv(SceneConfig(width=640, height=480, cameras=("top",))) as e:
        img = e.reset(seed=0)["images"]["top"]
    assert img.shape == (480, 640, 3)
