"""Policy stage actors: vision, prefill, denoise (SmolVLA), act_decoder (ACT), policy (merged).

They run an exported model bundle (`edgevla.deploy.bundle.manifest`) with numpy + ONNX Runtime/LiteRT —
never torch. Each holds a `StageModel` with only its own stages opened.

Params (graph ``params:``):
  model:        model bundle directory (the rule: `deploy/bundle/model_path.py`)
  precision:    stage precision (fp32|int8|int8-dynamic|int8-static|int4); PolicyActor takes a
                mapping stage -> precision. Default: the bundle's choice.
  backend:      onnxruntime | litert (same mapping rule as precision)
  threads, cpu_affinity, opt_level, allow_spinning, delegate, delegate_options: backend options
  denoise_steps (denoise/policy): flow-matching steps, also settable at run time (set_param)
  seed (denoise/policy): noise generator seed
  rtc, rtc_schedule, rtc_max_guidance, rtc_horizon, rtc_correction (denoise/policy):
                real-time chunking, the denoiser guided towards what the executor committed to
                (its requests carry it; `actors/kinds/stage_guidance.py`); each also settable
                at run time
  calibration:  the arm's LeRobot calibration JSON; needed when the bundle's joints are in
                LeRobot units (degrees, range_m100_100, range_0_100). The graph's topics carry
                servo radians (count 2048 = 0 rad); states are converted into the model's units
                on the way in, chunks back out of them (`firmware_bridge/servos/joint_units.py`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from edgevla.actors.kinds.stage_guidance import StageGuidance
from edgevla.actors.runtime.actor import Actor, Outputs
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.messages import ActionChunk, Features, Frame, Message, Prefix, RobotState
from edgevla.actors.wire.shm import still_valid
from edgevla.deploy.bundle.cameras import CAMERAS
from edgevla.deploy.bundle.manifest import load_manifest
from edgevla.deploy.bundle.model_path import stage_model
from edgevla.deploy.bundle.state_layout import policy_state
from edgevla.deploy.inference.backends import BackendOptions
from edgevla.deploy.inference.pipeline import StageChoice, StageModel
from edgevla.deploy.inference.rtc import PARAMS as RTC_PARAMS
from edgevla.firmware_bridge.servos.joint_units import JointUnits, joint_map

_BACKEND_KEYS = ("threads", "inter_op_threads", "cpu_affinity", "opt_level", "allow_spinning",
                 "delegate", "delegate_options")
_COMMON_KEYS = {"model", "precision", "backend", "graph_dir", "seed", "denoise_steps",
                "simulated_latency_ms", "calibration", *_BACKEND_KEYS, *RTC_PARAMS}


def _latency_ns(value: Any, actor: str) -> int:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{actor}: simulated_latency_ms must be a number of ms, got {value!r}") from None
    if not 0.0 <= ms <= 60_000.0:
        raise ValueError(f"{actor}: simulated_latency_ms must be in [0, 60000], got {value!r}")
    return int(ms * 1e6)


class _StageActor(Actor):
    stage_names: tuple[str, ...] = ()
    policies: tuple[str, ...] = ("act", "smolvla")

    def setup(self, params: dict[str, Any]) -> None:
        unknown = sorted(set(params) - _COMMON_KEYS)
        if unknown:
            raise ValueError(f"{self.name}: unknown params {unknown}; known: {sorted(_COMMON_KEYS)}")
        path = stage_model(params, self.name)

        policy = load_manifest(path, check_files=False).policy
        if policy not in self.policies:
            raise ValueError(f"{self.name}: {type(self).__name__} runs {'/'.join(self.policies)} "
                             f"bundles, {path} holds a {policy} model")
        stages = self.stage_names or None
        if stages is None:
            stages = ("vision", "decoder") if policy == "act" else ("vision", "prefill", "denoise")

        def per_stage(key: str) -> dict[str, Any]:
            v = params.get(key)
            if isinstance(v, dict):
                bad = sorted(set(v) - set(stages))
                if bad:
                    raise ValueError(f"{self.name}: params.{key} names unknown stage(s) {bad}; "
                                     f"this actor runs {list(stages)}")
                return v
            return {s: v for s in stages}

        prec, back = per_stage("precision"), per_stage("backend")
        choices = {s: StageChoice(precision=prec.get(s), backend=back.get(s)) for s in stages}
        opts = BackendOptions.from_params({k: params[k] for k in _BACKEND_KEYS if k in params})
        self.model = StageModel(path, stages, choices, opts)
        self.manifest = self.model.manifest
        self.model_id = self.manifest.model_id
        self.joints = joint_map(self.manifest.joint_units, self.manifest.joint_names,
                                params.get("calibration"), where=self.name)
        if not self.joints.is_identity and self.manifest.action_dim != len(self.joints.names):
            raise ValueError(f"{self.name}: {path} declares {len(self.joints.names)} joints in "
                             f"{'/'.join(sorted(set(self.joints.units)))} but "
                             f"{self.manifest.action_dim} action values")
        self.steps = int(params.get("denoise_steps", self.model.num_steps))
        if self.steps < 1:
            raise ValueError(f"{self.name}: params.denoise_steps must be >= 1, got {self.steps}")
        self.rng = np.random.default_rng(params.get("seed"))
        self.simulated_latency_ns = _latency_ns(params.get("simulated_latency_ms", 0), self.name)
        self.rtc = StageGuidance(params, self.manifest, self.joints, self.name)
        if self.rtc.params and "denoise" not in self.model.backends:
            raise ValueError(f"{self.name}: params {sorted(self.rtc.params)} guide the denoise "
                             f"stage, which this actor does not run")
        self.runs = 0
        self.skipped = 0
        self.overwritten = 0  # results dropped: a borrowed frame's slot was reused meanwhile
        self.latency_ms: dict[str, float] = {}

    def _timed(self, clock: Clock, stage: str, fn, *args):
        t0 = clock.now_ns()
        out = fn(*args)
        self.latency_ms[stage] = (clock.now_ns() - t0) / 1e6
        return out

    def _chunk(self, clock: Clock, actions: np.ndarray, t_capture_ns: int,
               obs_seq: int) -> ActionChunk:
        # A board-class inference latency on a fast host: the chunk leaves no earlier than
        # capture + latency, and the stage is busy until then, as a slow board's would be. Never
        # longer than the latency from now: on an inference server the capture time is the
        # robot's clock, which this machine's clock cannot be compared with.
        if self.simulated_latency_ns:
            clock.sleep_until_ns(min(int(t_capture_ns), clock.now_ns()) + self.simulated_latency_ns)
        if not self.joints.is_identity:
            actions = np.stack([self.joints.to_servo_radians(a) for a in actions])
        return ActionChunk(t0_ns=int(t_capture_ns), dt_ns=self.manifest.dt_ns,
                           actions=np.ascontiguousarray(actions, np.float32), obs_seq=int(obs_seq),
                           model_id=self.model_id, seq=int(obs_seq), t_capture_ns=int(t_capture_ns),
                           producer=self.name)

    def _guide(self, t_capture_ns: int, prefix: dict[str, np.ndarray]):
        """Real-time chunking's guidance for this chunk (None: plain denoising)."""
        return self.rtc.guide_for(t_capture_ns, functools.partial(self.model.velocity_vjp, prefix))

    def set_param(self, name: str, value: Any) -> None:
        if name == "simulated_latency_ms":
            self.simulated_latency_ns = _latency_ns(value, self.name)
            return
        if name == "denoise_steps" and "denoise" in self.model.backends:
            v = int(value)
            if v < 1:
                raise ValueError(f"{self.name}: denoise_steps must be >= 1, got {value!r}")
            self.steps = v
            return
        if "denoise" in self.model.backends and self.rtc.set_param(name, value):
            return
        has = "simulated_latency_ms" + (", denoise_steps, " + ", ".join(RTC_PARAMS)
                                        if "denoise" in self.model.backends else "")
        raise KeyError(f"{self.name}: no runtime parameter {name!r} (has: {has})")

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runs": self.runs, "skipped": self.skipped,
                               "overwritten": self.overwritten, "model_id": self.model_id}
        out.update({f"{k}_ms": round(v, 3) for k, v in self.latency_ms.items()})
        obs = getattr(self, "obs", None)
        if obs is not None and obs.without_goal:
            out["states_without_goal"] = obs.without_goal
        if "denoise" in self.model.backends:
            out["denoise_steps"] = self.steps
            out["rtc"] = self.rtc.stats()
        return out


class _ObservationInputs:
    """Keeps the newest frame per camera and the newest robot state between triggers."""

    def __init__(self, cameras: list[str], actor: str, state_dim: int,
                 joints: JointUnits | None = None) -> None:
        bad = [c for c in cameras if c not in CAMERAS]
        if bad:
            raise ValueError(f"{actor}: the model's cameras {bad} have no input port "
                             f"(ports: {', '.join(CAMERAS)})")
        self.cameras = cameras
        self.state_dim = state_dim
        self.joints = None if joints is None or joints.is_identity else joints
        self.frames: dict[str, Frame] = {}
        self.state: RobotState | None = None
        self.obs_seq = 0
        # A model that takes the servo goal cannot run on states without one (an old state
        # source): such states are counted and never used.
        self.without_goal = 0

    def update(self, inputs: dict[str, Message]) -> None:
        for c in CAMERAS:
            m = inputs.get(c)
            if isinstance(m, Frame):
                self.frames[c] = m
        s = inputs.get("state")
        if isinstance(s, RobotState):
            if s.commanded is None and self.state_dim != len(s.joints):
                self.without_goal += 1
                return
            self.state = s

    def ready(self) -> bool:
        return self.state is not None and all(c in self.frames for c in self.cameras)

    def intact(self) -> bool:
        """False when a borrowed frame's shared-memory slot was reused while it was in use:
        a result computed from it may mix two frames and is dropped."""
        return all(still_valid(self.frames[c]) for c in self.cameras)

    def take(self) -> tuple[dict[str, np.ndarray], np.ndarray, int, int]:
        """frames, the model's observation.state, t_capture_ns (oldest frame used), seq."""
        self.obs_seq += 1
        frames = {c: self.frames[c].image for c in self.cameras}
        t_cap = min(self.frames[c].t_capture_ns for c in self.cameras)
        joints, goal = self.state.joints, self.state.commanded
        if self.joints is not None:  # servo radians -> the model's units, through the count
            joints = self.joints.from_servo_radians(joints)
            goal = None if goal is None else self.joints.from_servo_radians(goal)
        state = policy_state(joints, goal, self.state_dim)
        return frames, state, t_cap, self.obs_seq


class VisionActor(_StageActor):
    """Frames + state -> Features (per-camera tokens + normalised state), on each Request."""

    inputs = (*CAMERAS, "state", "request")
    outputs = ("features",)
    trigger = "request"
    stage_names = ("vision",)
    borrow_inputs = True  # frames are read once, right away: no copy out of shared memory

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.obs = _ObservationInputs(self.manifest.cameras, self.name, self.manifest.state_dim,
                                      self.joints)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        self.obs.update(inputs)
        if "request" not in inputs:
            return None
        if not self.obs.ready():
            self.skipped += 1  # asked before every camera and the state have arrived
            return None
        frames, state, t_cap, seq = self.obs.take()
        tensors = self._timed(clock, "vision", self.model.features, frames, state)
        if not self.obs.intact():
            self.overwritten += 1
            return None
        self.runs += 1
        return {"features": Features(tensors=tensors, seq=seq, t_capture_ns=t_cap,
                                     model_id=self.model_id, producer=self.name)}


class PrefillActor(_StageActor):
    """Features -> Prefix (pad mask + per-layer K/V the action expert attends to)."""

    inputs = ("features",)
    outputs = ("prefix",)
    trigger = "features"
    stage_names = ("prefill",)
    policies = ("smolvla",)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        f = inputs.get("features")
        if not isinstance(f, Features):
            return None
        prefix = self._timed(clock, "prefill", self.model.prefill, f.tensors)
        self.runs += 1
        return {"prefix": Prefix(tensors=prefix, seq=f.seq, t_capture_ns=f.t_capture_ns,
                                 model_id=self.model_id, producer=self.name)}


class DenoiseActor(_StageActor):
    """Prefix -> ActionChunk: ``denoise_steps`` flow-matching steps from fresh noise."""

    inputs = ("prefix", "request")  # request: the executor's, for its commitment (RTC)
    outputs = ("chunks",)
    trigger = "prefix"
    stage_names = ("denoise",)
    policies = ("smolvla",)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        self.rtc.observe(inputs.get("request"))
        p = inputs.get("prefix")
        if not isinstance(p, Prefix):
            return None
        noise = self.model.sample_noise(self.rng)
        actions = self._timed(clock, "denoise", self.model.denoise, p.tensors, noise, self.steps,
                              self._guide(p.t_capture_ns, p.tensors))
        self.runs += 1
        return {"chunks": self._chunk(clock, self.model.unnormalize_actions(actions), p.t_capture_ns,
                                      p.seq)}


class ActDecoderActor(_StageActor):
    """ACT: Features -> ActionChunk (transformer encoder-decoder in one call)."""

    inputs = ("features",)
    outputs = ("chunks",)
    trigger = "features"
    stage_names = ("decoder",)
    policies = ("act",)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        f = inputs.get("features")
        if not isinstance(f, Features):
            return None
        actions = self._timed(clock, "decoder", self.model.act_decode, f.tensors)
        self.runs += 1
        return {"chunks": self._chunk(clock, self.model.unnormalize_actions(actions), f.t_capture_ns,
                                      f.seq)}


class PolicyActor(_StageActor):
    """All stages in one process (sync mode, small boards): frames + state -> ActionChunk."""

    inputs = (*CAMERAS, "state", "request")
    outputs = ("chunks",)
    trigger = "request"
    borrow_inputs = True  # as VisionActor

    def setup(self, params: dict[str, Any]) -> None:
        super().setup(params)
        self.obs = _ObservationInputs(self.manifest.cameras, self.name, self.manifest.state_dim,
                                      self.joints)

    def step(self, clock: Clock, inputs: dict[str, Message]) -> Outputs | None:
        self.obs.update(inputs)
        if "request" not in inputs:
            return None
        self.rtc.observe(inputs["request"])
        if not self.obs.ready():
            self.skipped += 1
            return None
        frames, state, t_cap, seq = self.obs.take()
        m = self.model
        feats = self._timed(clock, "vision", m.features, frames, state)
        if not self.obs.intact():
            self.overwritten += 1
            return None
        if self.manifest.policy == "act":
            actions = self._timed(clock, "decoder", m.act_decode, feats)
        else:
            prefix = self._timed(clock, "prefill", m.prefill, feats)
            actions = self._timed(clock, "denoise", m.denoise, prefix, m.sample_noise(self.rng),
                                  self.steps, self._guide(t_cap, prefix))
        self.runs += 1
        return {"chunks": self._chunk(clock, m.unnormalize_actions(actions), t_cap, seq)}
