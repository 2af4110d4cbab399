"""Real-time chunking in the denoise stage: the executor's commitment as the flow's guidance.

A `Request` with RTC on carries what the executor will command whatever the next chunk says
(`Commitment`: servo radians on the executor's clock, and the expected delay). For the
observation captured at ``t_capture`` the new chunk's action ``i`` runs at
``t_capture + i * dt``; the commitment is resampled at those times, converted into the model's
joint units and action normalisation (the bundle's, which only the stage knows), and the
denoiser is pulled towards it: weight 1 for the ``d = ceil(delay / dt)`` actions that will have
run before the chunk arrives, decaying after (`edgevla.deploy.inference.rtc`).

The newest commitment received is used: it is a trajectory in time, so any recent one is valid
for any capture it covers, and the newest knows most about what is being executed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from edgevla.actors.wire.messages import Commitment, Request
from edgevla.deploy.bundle.manifest import Manifest
from edgevla.deploy.inference.rtc import PARAMS, RtcSettings, committed_at, guided_velocity
from edgevla.firmware_bridge.servos.joint_units import JointUnits

Guide = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
# (x_t, time, cotangent) -> the velocity's vector-Jacobian product at x_t (the bundle's graph)
VjpAt = Callable[[np.ndarray, float, np.ndarray], np.ndarray]


class StageGuidance:
    """The newest commitment and the settings; `guide_for` builds one chunk's guidance."""

    def __init__(self, params: dict[str, Any], manifest: Manifest, joints: JointUnits,
                 where: str) -> None:
        self.where = where
        self.params = {k: params[k] for k in PARAMS if k in params}
        self.manifest = manifest
        self.settings = self._checked(self.params)
        self.joints = None if joints.is_identity else joints
        self.commitment: Commitment | None = None
        self.guided = 0
        self.unguided = 0  # RTC on, but no commitment covered the observation
        self.wrong_shape = 0
        self.last_delay_steps: int | None = None

    def set_param(self, name: str, value: Any) -> bool:
        """True when ``name`` is one of the guidance's settings (validated, then applied)."""
        if name not in PARAMS:
            return False
        params = dict(self.params, **{name: value})
        self.settings = self._checked(params)
        self.params = params
        return True

    def _checked(self, params: dict[str, Any]) -> RtcSettings:
        s = RtcSettings.from_params(params, self.where)
        if s.correction == "full" and "denoise_vjp" not in self.manifest.extra:
            raise ValueError(f"{self.where}: rtc_correction full needs the bundle's denoise "
                             f"step vector-Jacobian product graph; export it with "
                             f"`edgevla export --rtc-vjp`")
        return s

    def observe(self, request: Any) -> None:
        if isinstance(request, Request):
            c = request.commitment
            if c is not None:
                self.commitment = c

    def guide_for(self, t_capture_ns: int, vjp_at: VjpAt | None = None) -> Guide | None:
        """The guidance for the chunk of the observation captured at ``t_capture_ns``; None
        with RTC off or nothing committed at that time. ``vjp_at``: the velocity's
        vector-Jacobian product for this chunk's prefix (used with ``rtc_correction: full``)."""
        s, c, m = self.settings, self.commitment, self.manifest
        if not s.enabled:
            return None
        dt = m.dt_ns
        times = int(t_capture_ns) + np.arange(m.chunk_size, dtype=np.int64) * dt
        if c is None or c.end_ns < times[0]:
            self.unguided += 1
            return None
        if c.actions.shape[1] != m.action_dim:
            self.wrong_shape += 1
            return None
        target = committed_at(c.actions, c.t0_ns, c.dt_ns, times)
        if self.joints is not None:  # servo radians -> the model's units, through the count
            target = np.stack([self.joints.from_servo_radians(a) for a in target])
        target = m.action_norm.normalize(target)
        delay = min(int(math.ceil(c.delay_ns / dt)), m.chunk_size)
        horizon = s.horizon or len(target)
        self.guided += 1
        self.last_delay_steps = delay

        full = s.correction == "full" and vjp_at is not None

        def guide(x: np.ndarray, v: np.ndarray, time: float) -> np.ndarray:
            vjp = (lambda e: vjp_at(x, time, e)) if full else None
            return guided_velocity(x, v, target, delay, time, horizon, s.schedule, s.max_guidance,
                                   vjp=vjp)

        return guide

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.settings.enabled, "schedule": self.settings.schedule,
                "max_guidance": self.settings.max_guidance, "horizon": self.settings.horizon,
                "correction": self.settings.correction,
                "guided": self.guided, "unguided": self.unguided, "wrong_shape": self.wrong_shape,
                "delay_steps": self.last_delay_steps}
