"""`SimPlantActor` (kind ``sim``): the simulated arm as the runtime's plant.

Each ``step`` advances the physics to the injected clock (sim time 0 = the clock at the first
step), so the plant runs in real time on a `WallClock` and bit-reproducibly on a
`VirtualClock`. It publishes camera frames on ports ``top``/``gripper``/``left`` at
``camera_hz`` (stamped ``t_capture_ns`` = clock at render) and the measured joints on ``state``
at every step.

Motor commands come from one of two places:

* direct mode (default): ``JointCommand`` messages from the executor on input ``commands``;
* servo mode (param ``servo_port``): the plant *is* the Feetech STS bus behind the M7 host
  firmware: `edgevla.firmware_bridge.servos.feetech.FeetechBusSim` serves the serial port and calls
  back here to read present positions / write goal positions in servo counts
  (4096 counts/rev, 2048 = 0 rad). Those callbacks may come from the bus thread, so they only
  touch two small lock-protected buffers, never MuJoCo.

Params: ``camera_hz`` (30), ``width``/``height`` (96x96), ``cameras`` (all three), ``episode``
(an `EpisodeSpec` dict) or ``seed``, ``max_catchup_s`` (0.25: when the host stalls longer, sim
time jumps instead of running a long burst), ``servo_port``, ``servo_ids`` ([1..6]).
``stats()`` reports episodes, successes, frames and timing. Runtime params:
``reset`` (seed or episode dict) starts a new episode, ``camera_hz`` changes the frame rate.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import numpy as np

from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.messages import Frame, JointCommand, Message, RobotState
from edgevla.deploy.bundle.cameras import CAMERAS
from edgevla.firmware_bridge.servos.feetech import FeetechBusSim
from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.episode_spec import EpisodeSpec
from edgevla.training.sim.scene import SceneConfig

COUNTS_PER_REV = 4096
COUNT_ZERO = 2048


def rad_to_counts(q: np.ndarray) -> np.ndarray:
    c = np.rint(np.asarray(q, dtype=np.float64) * COUNTS_PER_REV / (2 * math.pi)) + COUNT_ZERO
    return np.clip(c, 0, COUNTS_PER_REV - 1).astype(np.int64)


def counts_to_rad(c: np.ndarray) -> np.ndarray:
    return (np.asarray(c, dtype=np.float64) - COUNT_ZERO) * (2 * math.pi / COUNTS_PER_REV)


class SimPlantActor(Actor):
    inputs = ("commands",)
    outputs = (*CAMERAS, "state")
    image_outputs = CAMERAS
    trigger = None

    def setup(self, params: dict[str, Any]) -> None:
        self.camera_hz = float(params.get("camera_hz", 30.0))
        if self.camera_hz <= 0:
            raise ValueError(f"{self.name}: params.camera_hz must be > 0, got {self.camera_hz}")
        cameras = tuple(params.get("cameras", CAMERAS))
        self.cfg = SceneConfig(width=int(params.get("width", 96)),
                               height=int(params.get("height", 96)),
                               seed=int(params.get("seed", 0)), cameras=cameras)
        self.max_catchup_s = float(params.get("max_catchup_s", 0.25))
        self.env = TeaBagEnv(self.cfg)
        self._lock = threading.Lock()
        self._goal_counts: np.ndarray | None = None  # written by the servo bus thread
        self._present_counts = rad_to_counts(self.env.joint_positions())
        self._start(params.get("episode"), params.get("seed"))
        self.frames = 0
        self.state_msgs = 0
        self.commands = 0
        self.lag_jumps = 0
        self.render_s = 0.0
        self.physics_steps = 0
        self._seq = {port: 0 for port in self.outputs}
        self.bus = None
        self.servo_ids = [int(i) for i in params.get("servo_ids", [1, 2, 3, 4, 5, 6])]
        if len(self.servo_ids) != 6:
            raise ValueError(f"{self.name}: params.servo_ids must list 6 servo ids, "
                             f"got {self.servo_ids}")
        port = params.get("servo_port")
        if port:
            # Lazy: the firmware bridge is only needed in servo mode.

            self.bus = FeetechBusSim(str(port), self.servo_ids, self._read_positions_counts,
                                     self._write_goals_counts)
            start = getattr(self.bus, "start", None)
            if callable(start):
                start()

    # ------------------------------------------------------------------ episodes
    def _start(self, episode: Any, seed: Any) -> None:
        if isinstance(episode, EpisodeSpec):
            spec = episode
        elif isinstance(episode, dict):
            spec = EpisodeSpec.from_dict(episode)
        else:
            spec = self.env.default_episode(int(seed) if seed is not None else self.cfg.seed)
        self.env.reset(spec)
        self.episodes = getattr(self, "episodes", 0) + 1
        self.successes = getattr(self, "successes", 0)
        self._counted_success = False
        self._t0_ns: int | None = None
        self._next_frame_ns: int | None = None
        with self._lock:
            self._goal_counts = None
            self._present_counts = rad_to_counts(self.env.joint_positions())

    def set_param(self, name: str, value: Any) -> None:
        if name == "reset":
            if isinstance(value, dict):
                self._start(value, None)
            else:
                self._start(None, value)
        elif name == "camera_hz":
            if float(value) <= 0:
                raise ValueError(f"{self.name}: camera_hz must be > 0, got {value}")
            self.camera_hz = float(value)
        else:
            super().set_param(name, value)

    # ------------------------------------------------------------------ servo bus callbacks
    def _read_positions_counts(self) -> list[int]:
        with self._lock:
            return [int(c) for c in self._present_counts]

    def _write_goals_counts(self, counts: Any) -> None:
        c = np.asarray(list(counts), dtype=np.int64)
        if c.shape != (6,):
            raise ValueError(f"{self.name}: expected 6 goal positions, got {c.shape}")
        with self._lock:
            self._goal_counts = c

    # ------------------------------------------------------------------ the loop
    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        now = clock.now_ns()
        if self._t0_ns is None:
            self._t0_ns = now
            self._next_frame_ns = now
        cmd = inputs.get("commands")
        if self.bus is None and isinstance(cmd, JointCommand):
            self.env.set_joint_targets(np.asarray(cmd.positions, dtype=np.float64)[:6])
            self.commands += 1
        elif self.bus is not None:
            with self._lock:
                goals = self._goal_counts
                self._goal_counts = None
            if goals is not None:
                self.env.set_joint_targets(counts_to_rad(goals))
                self.commands += 1
        t_s = (now - self._t0_ns) / 1e9
        behind = t_s - self.env.sim_time_s
        if behind > self.max_catchup_s:
            # Host stalled: do not burn a long burst of physics; let sim time jump.
            self._t0_ns += int((behind - self.max_catchup_s) * 1e9)
            t_s = (now - self._t0_ns) / 1e9
            self.lag_jumps += 1
        self.physics_steps += self.env.physics_step_to(t_s)
        joints = self.env.joint_positions()
        with self._lock:
            self._present_counts = rad_to_counts(joints)
        if not self._counted_success and self.env.is_success():
            self._counted_success = True
            self.successes += 1
        out: dict[str, Message | list[Message]] = {
            "state": RobotState(joints=joints, commanded=self.env.targets, t_capture_ns=now,
                                producer=self.name, seq=self._next_seq("state")),
        }
        self.state_msgs += 1
        if now >= self._next_frame_ns:
            period_ns = int(1e9 / self.camera_hz)
            self._next_frame_ns += period_ns
            if self._next_frame_ns <= now:  # fell behind: skip frames, never burst
                self._next_frame_ns = now + period_ns
            t0 = time.perf_counter()
            for cam in self.cfg.cameras:
                img = self.env.render_camera(cam)
                out[cam] = Frame(camera=cam, image=img, t_capture_ns=clock.now_ns(),
                                 producer=self.name, seq=self._next_seq(cam))
            self.render_s += time.perf_counter() - t0
            self.frames += 1
        return out

    def _next_seq(self, port: str) -> int:
        self._seq[port] += 1
        return self._seq[port]

    def stats(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes, "successes": self.successes,
            "success": bool(self.env.is_success()), "sim_time_s": round(self.env.sim_time_s, 4),
            "task_phase": self.env.task_phase(),
            "frames": self.frames, "state_msgs": self.state_msgs, "commands": self.commands,
            "physics_steps": self.physics_steps, "lag_jumps": self.lag_jumps,
            "render_ms_mean": round(1e3 * self.render_s / self.frames, 3) if self.frames else 0.0,
            "mode": "servo" if self.bus is not None else "direct",
        }

    def close(self) -> None:
        if self.bus is not None:
            for name in ("close", "stop"):
                fn = getattr(self.bus, name, None)
                if callable(fn):
                    fn()
                    break
            self.bus = None
        self.env.close()

