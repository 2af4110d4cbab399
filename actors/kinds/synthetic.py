"""Model-free actor kinds: the skeleton graph, runtime tests and benchmarks use these.

They behave like the real stages on the wire (same message types, timestamps carried through)
so the runtime can be exercised end to end without torch, a model or a simulator.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.messages import ActionChunk, Features, Frame, Message


class SyntheticCamera(Actor):
    """A moving gradient at ``width`` x ``height``, stamped at "capture"."""

    outputs = ("frames",)
    image_outputs = ("frames",)

    def setup(self, params: dict[str, Any]) -> None:
        self.camera = str(params.get("camera", self.name))
        self.width = int(params.get("width", 64))
        self.height = int(params.get("height", 48))
        self.seq = 0
        base = np.arange(self.width, dtype=np.uint16)[None, :, None]
        self._base = np.broadcast_to(base, (self.height, self.width, 3))

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs:
        self.seq += 1
        image = ((self._base + self.seq) % 256).astype(np.uint8)
        return {"frames": Frame(camera=self.camera, image=image, seq=self.seq,
                                t_capture_ns=clock.now_ns())}


class DummyStage(Actor):
    """Stands in for vision/prefill: waits ``work_ms``, emits Features that keep the timing."""

    inputs = ("in",)
    outputs = ("out",)
    trigger = "in"

    def setup(self, params: dict[str, Any]) -> None:
        self.work_ms = float(params.get("work_ms", 1.0))
        self.busy = bool(params.get("busy", False))  # burn CPU instead of sleeping
        self.dim = int(params.get("dim", 16))
        self.handled = 0

    def set_param(self, name: str, value: Any) -> None:
        if name != "work_ms":
            raise KeyError(f"{self.name}: no runtime parameter {name!r} (has: work_ms)")
        self.work_ms = float(value)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        msg = inputs.get("in")
        if msg is None:
            return None
        end = time.monotonic() + self.work_ms / 1000
        if self.busy:
            while time.monotonic() < end:
                pass
        else:
            time.sleep(self.work_ms / 1000)
        self.handled += 1
        return {"out": Features(tensors={"x": np.full(self.dim, msg.seq, np.float32)},
                                seq=msg.seq, t_capture_ns=msg.t_capture_ns)}

    def stats(self) -> dict[str, Any]:
        return {"handled": self.handled, "work_ms": self.work_ms}


class DummyPolicy(Actor):
    """Emits action chunks that follow a smooth reference trajectory from the observation time."""

    inputs = ("features",)
    outputs = ("chunks",)
    trigger = "features"

    def setup(self, params: dict[str, Any]) -> None:
        self.horizon = int(params.get("horizon", 50))
        self.dt_ns = int(1e9 / float(params.get("fps", 30)))
        self.dof = int(params.get("dof", 6))
        self.period_s = float(params.get("period_s", 4.0))
        self.amplitude = float(params.get("amplitude_rad", 0.5))

    def reference(self, t_ns: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (t_ns / 1e9) / self.period_s
        offsets = np.linspace(0, np.pi, self.dof)
        return (self.amplitude * np.sin(phase[:, None] + offsets[None, :])).astype(np.float32)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        feat = inputs.get("features")
        if feat is None:
            return None
        t0 = feat.t_capture_ns
        times = t0 + self.dt_ns * np.arange(self.horizon, dtype=np.int64)
        return {"chunks": ActionChunk(t0_ns=t0, dt_ns=self.dt_ns, actions=self.reference(times),
                                      obs_seq=feat.seq, model_id="dummy",
                                      t_capture_ns=feat.t_capture_ns)}


class CounterSink(Actor):
    """Counts what it receives (per producer), optionally crashing after N messages."""

    inputs = ("in",)
    outputs = ()
    trigger = "in"

    def setup(self, params: dict[str, Any]) -> None:
        self.count = 0
        self.by_producer: dict[str, int] = {}
        self.last_seq = -1
        self.crash_after = params.get("crash_after")

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        msg = inputs.get("in")
        if msg is None:
            return None
        self.count += 1
        self.by_producer[msg.producer] = self.by_producer.get(msg.producer, 0) + 1
        self.last_seq = msg.seq
        if self.crash_after is not None and self.count >= int(self.crash_after):
            raise RuntimeError(f"{self.name}: crash_after={self.crash_after} reached (test)")
        return None

    def stats(self) -> dict[str, Any]:
        return {"count": self.count, "by_producer": self.by_producer, "last_seq": self.last_seq}
