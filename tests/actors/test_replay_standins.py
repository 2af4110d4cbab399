"""Deterministic stand-ins for the replay tests (no models): a chunk-following executor with
two blending strategies and a robot-state source. They read time only from the clock given to
``step``, like every actor must."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevla.actors.runtime.actor import Actor
from edgevla.actors.wire.messages import ActionChunk, JointCommand, RobotState


class StandInExecutor(Actor):
    """Interpolates the newest chunk (``latest``) or the mean of the last two (``average``) at
    ``now + link_latency``; holds the last command when nothing covers the target time."""

    inputs = ("chunks", "state")
    outputs = ("commands",)

    def setup(self, params: dict[str, Any]) -> None:
        self.blending = str(params.get("blending", "latest"))
        if self.blending not in ("latest", "average"):
            raise ValueError(f"blending must be latest or average, got {self.blending!r}")
        self.link_latency_ns = int(round(float(params.get("link_latency_ms", 0)) * 1e6))
        self.chunks: list[ActionChunk] = []
        self.last = np.zeros(6, np.float32)
        self.state_seen = 0

    @staticmethod
    def _at(chunk: ActionChunk, t: int) -> np.ndarray | None:
        h = chunk.actions.shape[0]
        x = (t - chunk.t0_ns) / chunk.dt_ns
        if x < 0 or x > h - 1:
            return None
        i = min(int(x), h - 2)
        w = x - i
        return (1 - w) * chunk.actions[i].astype(np.float64) + w * chunk.actions[i + 1]

    def step(self, clock, inputs):
        now = clock.now_ns()
        if "state" in inputs:
            self.state_seen += 1
        if "chunks" in inputs:
            self.chunks = (self.chunks + [inputs["chunks"]])[-2:]
        target = now + self.link_latency_ns
        use = self.chunks[-1:] if self.blending == "latest" else self.chunks
        vals = [v for v in (self._at(c, target) for c in use) if v is not None]
        starved = not vals
        if vals:
            self.last = np.mean(vals, axis=0).astype(np.float32)
        if not self.chunks:
            return None
        return {"commands": JointCommand(t_target_ns=target, positions=self.last.copy(),
                                         starved=starved, chunk_seq=self.chunks[-1].seq,
                                         t_capture_ns=self.chunks[-1].t_capture_ns)}


class StateSource(Actor):
    outputs = ("state",)

    def setup(self, params: dict[str, Any]) -> None:
        self.k = 0

    def step(self, clock, inputs):
        self.k += 1
        return {"state": RobotState(joints=np.full(6, self.k * 1e-3, np.float32),
                                    t_capture_ns=clock.now_ns())}


class NoisyPolicy(Actor):
    """Chunks along a 0.5 rad, 4 s sine with a per-observation offset (a policy whose successive
    chunks disagree, so the blending strategy matters)."""

    inputs = ("features",)
    outputs = ("chunks",)
    trigger = "features"

    def setup(self, params: dict[str, Any]) -> None:
        self.horizon = int(params.get("horizon", 20))
        self.dt_ns = int(1e9 / float(params.get("fps", 30)))
        self.noise = float(params.get("noise_rad", 0.05))

    def step(self, clock, inputs):
        feat = inputs.get("features")
        if feat is None:
            return None
        t = feat.t_capture_ns + self.dt_ns * np.arange(self.horizon, dtype=np.int64)
        base = 0.5 * np.sin(2 * np.pi * (t / 1e9) / 4.0)[:, None] * np.ones((1, 6))
        offset = self.noise * np.sin(1.7 * feat.seq + np.arange(6))  # deterministic "noise"
        return {"chunks": ActionChunk(t0_ns=feat.t_capture_ns, dt_ns=self.dt_ns,
                                      actions=(base + offset).astype(np.float32),
                                      obs_seq=feat.seq, t_capture_ns=feat.t_capture_ns)}


KINDS = {"standin_executor": StandInExecutor, "state_source": StateSource,
         "noisy_policy": NoisyPolicy}


def pipeline_graph(recording: str | None, executor_kind: str = "standin_executor",
                   executor_params: dict | None = None, cam_hz: float = 10.0,
                   policy_kind: str = "dummy_policy") -> dict:
    """camera -> vision -> policy -> executor (100 Hz) <- state, plus a recorder."""
    g = {
        "cam": {"kind": "synthetic_camera", "outputs": {"frames": "cam/top"}, "rate_hz": cam_hz,
                "params": {"camera": "top", "width": 32, "height": 24}},
        "vision": {"kind": "dummy_stage", "inputs": {"in": "cam/top"},
                   "outputs": {"out": "features"}, "params": {"work_ms": 0}},
        "policy": {"kind": policy_kind, "inputs": {"features": "features"},
                   "outputs": {"chunks": "chunks"}, "params": {"horizon": 20, "fps": 30}},
        "state": {"kind": "state_source", "outputs": {"state": "robot/state"}, "rate_hz": 50},
        "executor": {"kind": executor_kind, "inputs": {"chunks": "chunks", "state": "robot/state"},
                     "outputs": {"commands": "commands"}, "rate_hz": 100,
                     "params": {"link_latency_ms": 5, **(executor_params or {})}},
    }
    if recording:
        g["recorder"] = {"kind": "recorder", "inputs": "*", "rate_hz": 20,
                         "params": {"path": recording, "chunk_size": 65536}}
    return g
