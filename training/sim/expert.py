"""Scripted expert for the tea-bag task: IK-based pick and place, reactive, slightly randomised.

The expert reads the privileged scene state (bag and mug poses) and plans short motion
segments: large moves are interpolated in joint space (Cartesian interpolation across
orientation changes made IK jump, SETUP-NOTES), vertical approach/lift moves are Cartesian
through the closed-form IK. All segments use a minimum-jerk time law so demonstrations are
smooth, like a careful teleoperator.

The segments of one plan never stop in between: each starts before the previous one has ended
and their joint displacements add up (`_compose`), so the arm passes through the pre-grasp point
into the descent, closes the gripper while the descent settles and starts lifting as the fingers
close. A policy then never sees the arm resting at a point from which two different next
actions were demonstrated (a pause at the pre-grasp point made re-planning policies hover
there). The arm comes to rest only where the expert decides from the scene what comes next
(after the lift, the lowering into the mug and the retreat), and only for an instant.

It re-plans from what it sees, which is what makes recovery episodes show a correction: a bag
that is not between the fingers after the lift (missed grasp) or that falls during transport
(dropped bag) sends it back to the approach; a displaced mug is simply where it goes. Each
episode's speed, heights and small offsets are drawn from the episode's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.kinematics import HOME_Q, JOINT_LIMITS, arm_ik, wrap_angle
from edgevla.training.sim.scene import SceneConfig
from edgevla.training.sim.start_positions import grasp_tilt

GRIPPER_CLOSED = 0.0


def min_jerk(s: float) -> float:
    s = min(max(s, 0.0), 1.0)
    return s * s * s * (10 - 15 * s + 6 * s * s)


@dataclass
class _Segment:
    name: str
    duration_s: float
    path: Callable[[float], np.ndarray]  # s in [0, 1] -> 6 joint targets
    overlap_s: float = 0.0  # starts this long before the previous segment of its plan ends


def _compose(segments: list[_Segment]) -> _Segment:
    """One segment running ``segments`` back to back, each overlapping its predecessor by its
    ``overlap_s``: the joint displacements of the overlapping parts add up. Every segment starts
    where the previous one ends, so the composite ends where the last one does, and since
    min-jerk starts and ends with zero velocity and acceleration, the sum stays smooth."""
    if len(segments) == 1:
        return segments[0]
    starts, t = [], 0.0
    for i, seg in enumerate(segments):
        if i:
            t -= min(seg.overlap_s, segments[i - 1].duration_s, seg.duration_s)
        starts.append(t)
        t += seg.duration_s
    total = t
    origin = segments[0].path(0.0)
    zero = [seg.path(0.0) for seg in segments]

    def path(s: float) -> np.ndarray:
        now = s * total
        q = origin.copy()
        for seg, t0, q0 in zip(segments, starts, zero):
            if now <= t0:
                break
            u = (now - t0) / seg.duration_s if seg.duration_s > 0 else 1.0
            q = q + (seg.path(min(u, 1.0)) - q0)
        return q

    return _Segment("+".join(seg.name for seg in segments), total, path)


@dataclass
class ExpertStyle:
    """Per-episode randomisation of the demonstration."""

    speed: float = 1.0
    pregrasp_z: float = 0.075
    grasp_z: float = 0.016
    grasp_offset: tuple[float, float] = (0.0, 0.0)
    lift_z: float = 0.10
    carry_z: float = 0.14
    release_z: float = 0.115
    release_offset: tuple[float, float] = (0.0, 0.0)
    gripper_open: float = 1.25
    blend_s: float = 0.25  # how early the descent starts before the pre-grasp point is reached

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ExpertStyle:
        return cls(
            speed=float(rng.uniform(0.85, 1.15)),
            pregrasp_z=float(rng.uniform(0.065, 0.085)),
            grasp_z=float(rng.uniform(0.014, 0.018)),
            grasp_offset=tuple(rng.uniform(-0.003, 0.003, 2).tolist()),
            lift_z=float(rng.uniform(0.09, 0.11)),
            carry_z=float(rng.uniform(0.13, 0.15)),
            release_z=float(rng.uniform(0.11, 0.12)),
            release_offset=tuple(rng.uniform(-0.006, 0.006, 2).tolist()),
            gripper_open=float(rng.uniform(1.1, 1.4)),
            blend_s=float(rng.uniform(0.18, 0.3)),
        )


class ScriptedExpert:
    """``act(obs) -> (6,) float32`` joint targets for the current `TeaBagEnv` episode.

    Call `reset()` after each ``env.reset`` (``act`` does it by itself when the episode
    changed). ``done`` turns True once the bag was released in the mug and the arm retreated.
    """

    def __init__(self, env: TeaBagEnv, randomize: bool = True, max_attempts: int = 4) -> None:
        self.env = env
        self.randomize = randomize
        self.max_attempts = max_attempts
        self._episode_key: Any = None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        env = self.env
        self._episode_key = (id(env.episode), env.episode.seed, env.episode.index)
        rng = np.random.default_rng([env.episode.seed, 1234])
        self.style = ExpertStyle.sample(rng) if self.randomize else ExpertStyle()
        self.rng = rng
        self.attempts = 0
        self.phase = "start"
        self.done = False
        self.failed = False
        self._queue: list[_Segment] = []
        self._seg: _Segment | None = None
        self._seg_t = 0.0
        self._q = env.targets.astype(np.float64)
        self._grasp_yaw = 0.0
        self._grasp_tilt = 0.0

    def act(self, obs: dict[str, Any] | None = None) -> np.ndarray:
        env = self.env
        if (id(env.episode), env.episode.seed, env.episode.index) != self._episode_key:
            self.reset()
        dt = env.dt
        if self._seg is None or self._seg_t >= self._seg.duration_s:
            if self._seg is not None:
                self._q = self._seg.path(1.0)
            self._seg = self._next_segment()
            self._seg_t = 0.0
        self._seg_t += dt
        s = self._seg_t / self._seg.duration_s if self._seg.duration_s > 0 else 1.0
        q = self._seg.path(min(s, 1.0))
        return np.clip(q, JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1]).astype(np.float32)

    # ------------------------------------------------------------------ planning
    def _next_segment(self) -> _Segment:
        if not self._queue:
            self._plan()
            # One plan runs as one motion, without stops between its segments.
            self._queue = [_compose(self._queue)]
        return self._queue.pop(0)

    def _plan(self) -> None:
        """Decide the next phase from the scene state and queue its segments."""
        env = self.env
        bag, tcp = env.bag_pos(), env.tcp_pos()
        holding = env.bag_held()
        if self.phase in ("start", "approach", "retry"):
            self._queue_pick(tcp)
        elif self.phase == "lift":
            if holding and bag[2] > 0.04:
                self._queue_place()
            else:
                self._retry()
        elif self.phase == "place":
            if holding:
                self._queue_release()
            else:
                self._retry()
        elif self.phase == "retreat" and not env.bag_in_mug():
            self._retry()
        else:  # retreat / done: hold still
            self.done = self.phase in ("retreat", "done") and env.bag_in_mug()
            self.phase = "done"
            q = self._q.copy()
            self._queue.append(_Segment("hold", 0.2, lambda s, q=q: q))

    def _retry(self) -> None:
        self.attempts += 1
        if self.attempts >= self.max_attempts:
            self.failed = True
            self.phase = "done"
            q = self._q.copy()
            self._queue.append(_Segment("give_up", 0.2, lambda s, q=q: q))
            return
        self.phase = "retry"
        self._queue_pick(self.env.tcp_pos())

    def _duration(self, q0: np.ndarray, q1: np.ndarray, base_s: float,
                  max_vel: float = 2.2) -> float:
        # Min-jerk peaks at 1.875x the mean velocity: size the move so the peak stays bounded.
        dist = float(np.max(np.abs(q1[:5] - q0[:5])))
        return max(base_s, 1.875 * dist / max_vel) / self.style.speed

    def _joint_move(self, name: str, q1: np.ndarray, base_s: float = 0.5,
                    overlap_s: float = 0.0) -> None:
        q0 = self._q.copy()
        q1 = np.asarray(q1, dtype=np.float64).copy()
        duration = self._duration(q0, q1, base_s)
        self._queue.append(_Segment(name, duration,
                                    lambda s, q0=q0, q1=q1: q0 + (q1 - q0) * min_jerk(s),
                                    overlap_s / self.style.speed))
        self._q = q1

    def _cart_move(self, name: str, p0: np.ndarray, p1: np.ndarray, gripper: float,
                   duration_s: float, overlap_s: float = 0.0) -> None:
        yaw, tilt0 = self._grasp_yaw, self._grasp_tilt
        fallback = self._q.copy()
        # At the edge of the reach the end point may need the gripper tilted outward a little
        # more (e.g. lifting far from the base runs into the wrist_flex limit): blend the
        # tilt along the move rather than jumping at the point where IK starts failing.
        tilt1 = tilt0
        for extra in np.arange(0.0, 0.61, 0.05):
            if arm_ik(p1, yaw, tilt0 + extra) is not None:
                tilt1 = tilt0 + float(extra)
                break
        self._grasp_tilt = tilt1

        def path(s: float, p0=p0, p1=p1) -> np.ndarray:
            u = min_jerk(s)
            q5 = arm_ik(p0 + (p1 - p0) * u, yaw, tilt0 + (tilt1 - tilt0) * u)
            if q5 is None:
                return fallback
            return np.array([*q5, gripper])

        end = path(1.0)
        self._queue.append(_Segment(name, duration_s / self.style.speed, path,
                                    overlap_s / self.style.speed))
        self._q = end

    def _gripper_move(self, name: str, target: float, duration_s: float,
                      overlap_s: float = 0.0) -> None:
        q0 = self._q.copy()
        q1 = q0.copy()
        q1[5] = target
        self._queue.append(_Segment(name, duration_s / self.style.speed,
                                    lambda s, q0=q0, q1=q1: q0 + (q1 - q0) * min_jerk(s),
                                    overlap_s / self.style.speed))
        self._q = q1

    def _ik(self, xyz: np.ndarray, yaw: float, tilt: float) -> np.ndarray:
        q5 = arm_ik(xyz, yaw, tilt)
        for extra in (0.1, 0.2, 0.3):  # tilt a bit more at the edge of the reach
            if q5 is not None:
                break
            tilt += extra
            q5 = arm_ik(xyz, yaw, tilt)
        if q5 is None:
            raise RuntimeError(f"expert: no IK solution for grasp point {np.round(xyz, 3)} m")
        self._grasp_tilt = tilt
        return q5

    def _queue_pick(self, tcp: np.ndarray) -> None:
        env, st = self.env, self.style
        self.phase = "approach"
        self._q = env.targets.astype(np.float64)  # start from where the servos are heading
        opening = st.gripper_open
        if tcp[2] < 0.05:
            # Low (e.g. a missed grasp): open and rise straight up before moving sideways.
            self._grasp_tilt = grasp_tilt(math.hypot(tcp[0], tcp[1]))
            self._gripper_move("open", opening, 0.3)
            up = tcp.copy()
            up[2] = max(st.pregrasp_z, tcp[2] + 0.04)
            self._cart_move_from_current("rise", tcp, up, opening, 0.5, overlap_s=0.1)
        bag = env.bag_pos()
        yaw = env.bag_yaw()
        r = math.hypot(bag[0], bag[1])
        target = np.array([bag[0] + st.grasp_offset[0], bag[1] + st.grasp_offset[1], 0.0])
        tilt = grasp_tilt(r)
        if tilt > 0:
            # Tilted: the roll also tilts the fingers' axis, so grasp across whichever side of
            # the bag needs the least roll (the long side fits the fully open gripper).
            pan = math.atan2(bag[1], bag[0])
            across_long = abs(abs(wrap_angle(pan - yaw)) - math.pi / 2) < math.pi / 4
            if across_long:
                yaw += math.pi / 2
                opening = max(opening, 1.6)
        self._grasp_yaw = yaw
        above = target.copy()
        above[2] = st.pregrasp_z
        q_above = self._ik(above, yaw, tilt)
        self._joint_move("to_pregrasp", np.array([*q_above, opening]), base_s=0.6,
                         overlap_s=0.15 if self._queue else 0.0)
        grasp = target.copy()
        grasp[2] = st.grasp_z
        # Through the pre-grasp point without stopping; the fingers start closing over the
        # last millimetres of the descent and the lift starts slowly as they finish.
        self._cart_move("descend", above, grasp, opening, 0.55, overlap_s=st.blend_s)
        self._gripper_move("close", GRIPPER_CLOSED, 0.35, overlap_s=0.08)
        lift = grasp.copy()
        lift[2] = st.lift_z
        self._cart_move("lift", grasp, lift, GRIPPER_CLOSED, 0.6, overlap_s=0.05)
        self.phase = "lift"

    def _cart_move_from_current(self, name: str, p0: np.ndarray, p1: np.ndarray,
                                gripper: float, duration_s: float, overlap_s: float = 0.0) -> None:
        """Vertical move from the current pose, keeping the current wrist roll as the yaw."""
        q_now = self._q
        pan = math.atan2(p0[1], p0[0])
        self._grasp_yaw = pan - float(q_now[4])
        self._cart_move(name, p0.copy(), p1.copy(), gripper, duration_s, overlap_s)

    def _queue_place(self) -> None:
        env, st = self.env, self.style
        self.phase = "place"
        mug = env.mug_pos()
        carry = np.array([mug[0] + st.release_offset[0], mug[1] + st.release_offset[1],
                          st.carry_z])
        # Keep the roll that holds the bag; only the position changes.
        yaw = self._grasp_yaw
        q_carry = self._ik(carry, yaw, 0.0)
        self._joint_move("carry", np.array([*q_carry, GRIPPER_CLOSED]), base_s=0.8)
        self._grasp_yaw, self._grasp_tilt = yaw, 0.0
        release = carry.copy()
        release[2] = st.release_z
        self._cart_move("lower", carry, release, GRIPPER_CLOSED, 0.35, overlap_s=0.15)

    def _queue_release(self) -> None:
        """Open, and rise and go home as the bag drops: whether it landed in the mug is
        checked once the arm is home (a miss sends it back to the bag from there)."""
        st = self.style
        self.phase = "retreat"
        self._gripper_move("open", st.gripper_open, 0.3)
        tcp = self.env.tcp_pos()
        up = tcp.copy()
        up[2] = tcp[2] + 0.05
        self._cart_move_from_current("retreat_up", tcp, up, st.gripper_open, 0.4, overlap_s=0.1)
        self._joint_move("home", HOME_Q.copy(), base_s=0.8, overlap_s=0.15)


def run_episode(env: TeaBagEnv, expert: ScriptedExpert, max_steps: int,
                render: bool = False, tail_s: float = 0.5,
                on_frame: Callable[[dict[str, Any], np.ndarray], None] | None = None
                ) -> dict[str, Any]:
    """Roll the expert out from the env's current state until done (+ ``tail_s``) or max_steps.

    ``on_frame(obs, action)`` is called for each (observation, action) pair in order, as a
    dataset wants them: the observation *before* the action is applied.
    """
    obs = env.observe(render=render)
    expert.reset()
    tail = int(round(tail_s * env.cfg.fps))
    steps = 0
    done_at = None
    while steps < max_steps:
        action = expert.act(obs)
        if on_frame is not None:
            on_frame(obs, action)
        obs = env.step(action, render=render)
        steps += 1
        if expert.failed:
            break
        if expert.done and done_at is None:
            done_at = steps
        if done_at is not None and steps - done_at >= tail:
            break
    return {"steps": steps, "success": env.is_success(), "attempts": expert.attempts + 1,
            "expert_done": expert.done, "expert_failed": expert.failed}



@dataclass
class ExpertEval:
    """Success of the scripted expert per cluster (no rendering: physics and expert only)."""

    per_cluster: dict[int, tuple[int, int]]  # cluster -> (successes, episodes)
    per_kind: dict[str, tuple[int, int]]  # "" (normal) / recovery kind -> (successes, episodes)
    failures: list[dict[str, Any]]
    mean_steps: float
    seconds: float

    @property
    def worst_cluster_rate(self) -> float:
        return min(s / n for s, n in self.per_cluster.values()) if self.per_cluster else 0.0

    @property
    def overall_rate(self) -> float:
        s = sum(v[0] for v in self.per_cluster.values())
        n = sum(v[1] for v in self.per_cluster.values())
        return s / n if n else 0.0


def evaluate_expert(specs: list, scene_cfg: Any = None, max_episode_s: float = 12.0,
                    progress: Callable[[int, int], None] | None = None) -> ExpertEval:
    """Roll the expert out on every spec (its own seed) and count successes."""
    import time

    env = TeaBagEnv(scene_cfg or SceneConfig())
    expert = ScriptedExpert(env)
    per_cluster: dict[int, list[int]] = {}
    per_kind: dict[str, list[int]] = {}
    failures: list[dict[str, Any]] = []
    steps_total = 0
    t0 = time.perf_counter()
    max_steps = int(round(max_episode_s * env.cfg.fps))
    try:
        for i, spec in enumerate(specs):
            env.reset(spec)
            res = run_episode(env, expert, max_steps=max_steps)
            steps_total += res["steps"]
            for table, key in ((per_cluster, spec.cluster), (per_kind, spec.recovery_kind)):
                row = table.setdefault(key, [0, 0])
                row[0] += int(res["success"])
                row[1] += 1
            if not res["success"]:
                failures.append({"index": spec.index, "cluster": spec.cluster,
                                 "position_index": spec.position_index,
                                 "recovery_kind": spec.recovery_kind, "seed": spec.seed,
                                 "phase": expert.phase, "attempts": res["attempts"],
                                 "bag_xy": [round(float(v), 3) for v in env.bag_pos()[:2]]})
            if progress is not None:
                progress(i + 1, len(specs))
    finally:
        env.close()
    return ExpertEval(per_cluster={k: tuple(v) for k, v in sorted(per_cluster.items())},
                      per_kind={k: tuple(v) for k, v in per_kind.items()}, failures=failures,
                      mean_steps=steps_total / max(1, len(specs)),
                      seconds=time.perf_counter() - t0)
