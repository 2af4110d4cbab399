"""The simulated tea-bag scene: a 5-DoF + gripper SO-101-like arm, a tea bag, a mug, 3 cameras.

`TeaBagEnv` is the one entry point for recording (scripted expert), evaluation (a policy in the
loop) and the runtime's sim plant (`sim_actor.SimPlantActor`). Actions and states are float32
vectors of 6 joint positions in radians of the servo shaft (project convention: Feetech count
2048 = 0 rad): shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper.

The arm's joints and kinematics are in `kinematics.py`, the scene's contents and settings in
`scene.py`, an episode's start in `episode_spec.py`.

mujoco is imported lazily (inside `TeaBagEnv`) so that the protocol, the kinematics and the
CLI parsers import without the [train] extra; `MUJOCO_GL` defaults to ``egl``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from edgevla.training.sim.episode_spec import EpisodeSpec
from edgevla.training.sim.kinematics import (HOME_Q, JOINT_LIMITS, JOINT_NAMES, PINION_RADIUS_M,
                                             gripper_to_finger_m)
from edgevla.training.sim.scene import (ASSET, BAG_LIFTED_Z_M, MUG_HEIGHT_M, MUG_INNER_RADIUS_M, TASK,
                                        SceneConfig)


def import_mujoco():
    """Import mujoco with a headless GL backend (must be chosen before the first import)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    return mujoco


def asset_path() -> str:
    return str(resources.files("edgevla.training").joinpath("assets", ASSET))


@dataclass
class _Handles:
    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    finger_qpos: np.ndarray
    finger_dof: np.ndarray
    bag_qpos: int
    bag_dof: int
    mug_qpos: int
    mug_dof: int
    tcp_site: int
    bag_geom: int
    finger_geoms: tuple[int, int]
    mug_geoms: frozenset[int] = field(default_factory=frozenset)


class TeaBagEnv:
    """The scene as an environment: ``reset`` / ``step(action)`` / ``observe``.

    ``step`` holds the action (6 joint targets, rad) for one control period 1/fps. The real-time
    plant drives the same physics with ``set_joint_targets`` + ``physics_step_to(t_s)``.
    Everything is deterministic given the episode spec (or the seed).
    """

    joint_names: tuple[str, ...] = JOINT_NAMES
    task: str = TASK

    def __init__(self, cfg: SceneConfig | None = None) -> None:
        self.cfg = cfg or SceneConfig()
        mj = import_mujoco()
        self._mj = mj
        self.model = mj.MjModel.from_xml_path(asset_path())
        period = 1.0 / self.cfg.fps
        self.substeps = max(1, math.ceil(period / self.cfg.max_physics_dt_s - 1e-9))
        self.model.opt.timestep = period / self.substeps
        self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, self.cfg.width)
        self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, self.cfg.height)
        self.data = mj.MjData(self.model)
        self._h = self._lookup()
        self._renderers: dict[str, Any] = {}
        self._targets = HOME_Q.copy()
        self.episode: EpisodeSpec = EpisodeSpec()
        self.step_count = 0
        self.reset()

    # ------------------------------------------------------------------ properties
    @property
    def joint_limits(self) -> np.ndarray:
        """(6, 2) array of (low, high) rad."""
        return JOINT_LIMITS.copy()

    @property
    def sim_time_s(self) -> float:
        return float(self.data.time)

    @property
    def dt(self) -> float:
        """Control period (one ``step``), s."""
        return 1.0 / self.cfg.fps

    @property
    def targets(self) -> np.ndarray:
        return self._targets.astype(np.float32)

    # ------------------------------------------------------------------ setup
    def _lookup(self) -> _Handles:
        mj, m = self._mj, self.model

        def jid(name: str) -> int:
            return mj.mj_name2id(m, mj.mjtObj.mjOBJ_JOINT, name)

        arm = [jid(n) for n in JOINT_NAMES[:5]]
        fingers = [jid("finger_left"), jid("finger_right")]
        bag, mug = jid("bag"), jid("mug")
        mug_body = mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, "mug")
        return _Handles(
            arm_qpos=np.array([m.jnt_qposadr[j] for j in arm]),
            arm_dof=np.array([m.jnt_dofadr[j] for j in arm]),
            finger_qpos=np.array([m.jnt_qposadr[j] for j in fingers]),
            finger_dof=np.array([m.jnt_dofadr[j] for j in fingers]),
            bag_qpos=int(m.jnt_qposadr[bag]), bag_dof=int(m.jnt_dofadr[bag]),
            mug_qpos=int(m.jnt_qposadr[mug]), mug_dof=int(m.jnt_dofadr[mug]),
            tcp_site=mj.mj_name2id(m, mj.mjtObj.mjOBJ_SITE, "tcp"),
            bag_geom=mj.mj_name2id(m, mj.mjtObj.mjOBJ_GEOM, "bag"),
            finger_geoms=(mj.mj_name2id(m, mj.mjtObj.mjOBJ_GEOM, "finger_left"),
                          mj.mj_name2id(m, mj.mjtObj.mjOBJ_GEOM, "finger_right")),
            mug_geoms=frozenset(g for g in range(m.ngeom) if m.geom_bodyid[g] == mug_body),
        )

    def default_episode(self, seed: int) -> EpisodeSpec:
        """A random start in the default workspace (no protocol): used by ``reset(seed=...)``."""
        rng = np.random.default_rng(seed)
        ang = rng.uniform(-0.5, 1.4)
        r = rng.uniform(0.13, 0.24)
        return EpisodeSpec(bag_xy=(r * math.cos(ang), r * math.sin(ang)),
                           bag_yaw=float(rng.uniform(-math.pi / 2, math.pi / 2)), seed=seed)

    def reset(self, episode: EpisodeSpec | None = None, seed: int | None = None) -> dict[str, Any]:
        """Start an episode; with neither argument a random start from ``cfg.seed``."""
        mj, d, h = self._mj, self.data, self._h
        if episode is None:
            episode = self.default_episode(self.cfg.seed if seed is None else seed)
        elif seed is not None:
            episode = dataclasses.replace(episode, seed=seed)
        self.episode = episode
        mj.mj_resetData(self.model, d)
        q0 = HOME_Q.copy() if episode.arm_q is None else np.asarray(episode.arm_q, float)
        q0 = np.clip(q0, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        d.qpos[h.arm_qpos] = q0[:5]
        d.qpos[h.finger_qpos] = gripper_to_finger_m(q0[5])
        bx, by = episode.bag_xy
        d.qpos[h.bag_qpos:h.bag_qpos + 3] = (bx, by, episode.bag_z + 1e-4)
        d.qpos[h.bag_qpos + 3:h.bag_qpos + 7] = _yaw_quat(episode.bag_yaw)
        mx, my = episode.mug_xy
        d.qpos[h.mug_qpos:h.mug_qpos + 3] = (mx, my, 0.0)
        d.qpos[h.mug_qpos + 3:h.mug_qpos + 7] = (1.0, 0.0, 0.0, 0.0)
        self.set_joint_targets(q0)
        mj.mj_forward(self.model, d)
        self.step_count = 0
        return self.observe()

    # ------------------------------------------------------------------ control
    def set_joint_targets(self, q: np.ndarray) -> None:
        """Servo goal positions (6, rad), clipped to the joint limits like the servos do."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (6,):
            raise ValueError(f"joint targets must have shape (6,), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise ValueError(f"joint targets must be finite, got {q}")
        q = np.clip(q, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1])
        self._targets = q
        self.data.ctrl[:5] = q[:5]
        self.data.ctrl[5:7] = gripper_to_finger_m(q[5])

    def physics_step_to(self, t_s: float, max_steps: int | None = None) -> int:
        """Advance physics until sim time reaches ``t_s``; returns the number of mj_steps."""
        dt = self.model.opt.timestep
        n = int(math.floor((t_s - self.data.time) / dt + 0.5))
        if max_steps is not None:
            n = min(n, max_steps)
        for _ in range(max(0, n)):
            self._mj.mj_step(self.model, self.data)
        return max(0, n)

    def step(self, action: np.ndarray, render: bool = True) -> dict[str, Any]:
        """Hold ``action`` (6 joint targets, rad) for one control period; return the observation.

        ``render=False`` skips the cameras (``images`` is then empty): expert evaluation.
        """
        self.set_joint_targets(action)
        for _ in range(self.substeps):
            self._mj.mj_step(self.model, self.data)
        self.step_count += 1
        return self.observe(render=render)

    # ------------------------------------------------------------------ sensing
    def joint_positions(self) -> np.ndarray:
        """Measured joints (6, float32, rad): what the servos would report."""
        d, h = self.data, self._h
        q = np.empty(6, dtype=np.float32)
        q[:5] = d.qpos[h.arm_qpos]
        q[5] = float(np.mean(d.qpos[h.finger_qpos])) / PINION_RADIUS_M
        return q

    def _renderer(self, camera: str):
        r = self._renderers.get(camera)
        if r is None:
            # One renderer per camera, created once (~170 ms each on software GL).
            r = self._mj.Renderer(self.model, height=self.cfg.height, width=self.cfg.width)
            self._renderers[camera] = r
        return r

    def render_camera(self, camera: str) -> np.ndarray:
        r = self._renderer(camera)
        r.update_scene(self.data, camera=camera)
        flags = r.scene.flags
        flags[self._mj.mjtRndFlag.mjRND_SHADOW] = int(self.cfg.shadows)
        flags[self._mj.mjtRndFlag.mjRND_REFLECTION] = 0
        return r.render()

    def render(self) -> dict[str, np.ndarray]:
        """HxWx3 uint8 RGB image per configured camera."""
        return {c: self.render_camera(c) for c in self.cfg.cameras}

    def observe(self, render: bool = True) -> dict[str, Any]:
        """Camera images, measured joints (``state``) and the servos' goal (``goal``): what a
        real SO-101 reports as Present_Position and Goal_Position."""
        return {"images": self.render() if render else {}, "state": self.joint_positions(),
                "goal": self.targets.astype(np.float32)}

    # ------------------------------------------------------------------ privileged state
    def bag_pos(self) -> np.ndarray:
        h = self._h
        return self.data.qpos[h.bag_qpos:h.bag_qpos + 3].copy()

    def bag_yaw(self) -> float:
        w, x, y, z = self.data.qpos[self._h.bag_qpos + 3:self._h.bag_qpos + 7]
        return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    def mug_pos(self) -> np.ndarray:
        h = self._h
        return self.data.qpos[h.mug_qpos:h.mug_qpos + 3].copy()

    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._h.tcp_site].copy()

    def finger_bag_contacts(self) -> int:
        """How many fingers touch the bag right now (0, 1 or 2)."""
        d, h = self.data, self._h
        touching = set()
        for i in range(d.ncon):
            g1, g2 = int(d.contact[i].geom1), int(d.contact[i].geom2)
            if h.bag_geom in (g1, g2):
                other = g2 if g1 == h.bag_geom else g1
                if other in h.finger_geoms:
                    touching.add(other)
        return len(touching)

    def bag_in_mug(self) -> bool:
        bag, mug = self.bag_pos(), self.mug_pos()
        radial = math.hypot(bag[0] - mug[0], bag[1] - mug[1])
        return radial < MUG_INNER_RADIUS_M and mug[2] - 0.005 < bag[2] < mug[2] + MUG_HEIGHT_M

    def is_success(self) -> bool:
        """Tea bag inside the mug and released (no finger touching it)."""
        return self.bag_in_mug() and self.finger_bag_contacts() == 0

    def bag_held(self) -> bool:
        """Both fingers on the bag and the bag between them (within 3 cm of the TCP)."""
        return (self.finger_bag_contacts() == 2
                and float(np.linalg.norm(self.bag_pos() - self.tcp_pos())) < 0.03)

    def task_phase(self) -> str:
        """Where the task stands, from the privileged scene state: one of `TASK_PHASES`."""
        if self.bag_in_mug():
            return "in_mug"
        if self.bag_held():
            return "carrying" if self.bag_pos()[2] > BAG_LIFTED_Z_M else "grasped"
        return "reaching"

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()

    def __enter__(self) -> TeaBagEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
