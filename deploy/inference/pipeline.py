"""Run an exported model bundle stage by stage with numpy + ONNX Runtime/LiteRT (no torch).

`StageModel` is what the stage actors hold: it opens the stage files of one bundle with the
chosen backend/precision and exposes one method per stage. The same code is used by the bench
and the parity checks, so what is measured and checked is what runs on the board.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgevla.deploy.bundle.manifest import Manifest, load_manifest
from edgevla.deploy.inference.backends import BackendOptions, InferenceBackend, bind_constants, open_backend


@dataclass
class StageChoice:
    precision: str | None = None   # None: the bundle's default for that stage
    backend: str | None = None     # onnxruntime | litert | None


def preprocess_image(frame: np.ndarray, image_hw: list[int] | tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB (any size) -> 3xHxW float32 in [0, 1] at the policy's image size."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"camera frame must be HxWx3, got shape {frame.shape}")
    h, w = int(image_hw[0]), int(image_hw[1])
    if frame.shape[:2] != (h, w):
        import cv2

        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    x = frame.astype(np.float32) if frame.dtype != np.uint8 else frame.astype(np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class StageModel:
    """One model bundle, with the stages this process needs opened."""

    def __init__(self, bundle_dir: str | Path, stages: tuple[str, ...] | None = None,
                 choices: dict[str, StageChoice] | None = None,
                 options: BackendOptions | dict[str, BackendOptions] | None = None) -> None:
        self.dir = Path(bundle_dir)
        self.manifest: Manifest = load_manifest(self.dir)
        m = self.manifest
        wanted = stages or tuple(m.stages)
        unknown = [s for s in wanted if s not in m.stages]
        if unknown:
            raise ValueError(f"{self.dir}: {m.policy} bundle has stages {list(m.stages)}, "
                             f"not {unknown}")
        choices = choices or {}
        self.backends: dict[str, InferenceBackend] = {}
        self.files: dict[str, str] = {}
        for s in wanted:
            ch = choices.get(s, StageChoice())
            var = m.stages[s].pick(ch.precision, ch.backend)
            opts = options.get(s) if isinstance(options, dict) else options
            opts = opts or BackendOptions()
            if var.backend != "onnxruntime" and opts.backend == "auto":
                opts = BackendOptions(**{**opts.__dict__, "backend": var.backend})
            prep = self.dir / var.prep if var.prep and var.backend == "onnxruntime" else None
            spec = m.stages[s]
            self.backends[s] = open_backend(self.dir / var.file, opts, prep=prep,
                                            names=(list(spec.inputs), list(spec.outputs)))
            self.files[s] = var.file
        self.num_steps = int(m.extra.get("num_steps", 10))
        self._vjp: InferenceBackend | None = None
        denoise_opts = options.get("denoise") if isinstance(options, dict) else options
        self._denoise_options = denoise_opts or BackendOptions()

    # ---- inputs --------------------------------------------------------------------------
    def images_tensor(self, frames: dict[str, np.ndarray]) -> np.ndarray:
        """Camera frames by name -> [N_cam, 3, H, W] normalised, cameras in bundle order."""
        m = self.manifest
        missing = [c for c in m.cameras if c not in frames]
        if missing:
            raise KeyError(f"missing camera frame(s) {missing}; the model needs {m.cameras}")
        out = []
        for c in m.cameras:
            x = preprocess_image(frames[c], m.image_hw)
            out.append(m.image_norm[c].normalize(x, (3, 1, 1)))
        return np.stack(out)

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        state = np.asarray(state, np.float32).reshape(-1)
        if state.shape[0] != self.manifest.state_dim:
            raise ValueError(f"state has {state.shape[0]} values, the model takes "
                             f"{self.manifest.state_dim}")
        return self.manifest.state_norm.normalize(state)[None]

    # ---- stages --------------------------------------------------------------------------
    def vision(self, images: np.ndarray) -> np.ndarray:
        """[N_cam, 3, H, W] -> per-camera tokens [N_cam, T, D]."""
        if images.ndim != 4:  # pitfall 3: a 5-D [B, T, C, H, W] tensor never reaches the graph
            raise ValueError(f"vision takes 4-D images [N_cam, 3, H, W], got shape {images.shape}")
        be = self.backends["vision"]
        return next(iter(be.run({be.input_names[0]: images.astype(np.float32)}).values()))

    def features(self, frames: dict[str, np.ndarray], state: np.ndarray) -> dict[str, np.ndarray]:
        """What the vision actor publishes: one token tensor per camera + normalised state."""
        tokens = self.vision(self.images_tensor(frames))
        out = {c: tokens[i] for i, c in enumerate(self.manifest.cameras)}
        out["state"] = self.normalize_state(state)[0]
        return out

    def _stack_cameras(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack([features[c] for c in self.manifest.cameras])

    def act_decode(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """ACT: features -> normalised actions [H, A]."""
        out = self.backends["decoder"].run({"cam_tokens": self._stack_cameras(features),
                                            "state": features["state"][None].astype(np.float32)})
        return out["actions"][0]

    def prefill(self, features: dict[str, np.ndarray],
                lang_tokens: np.ndarray | None = None,
                lang_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """SmolVLA: features -> prefix (pad mask + per-layer K/V)."""
        ex = self.manifest.extra
        if lang_tokens is None:
            lang_tokens = np.asarray(ex["lang_tokens"], np.int64)[None]
            lang_mask = np.asarray(ex["lang_mask"], bool)[None]
        return self.backends["prefill"].run({
            "image_tokens": self._stack_cameras(features).astype(np.float32),
            "lang_tokens": lang_tokens.astype(np.int64), "lang_mask": lang_mask.astype(bool),
            "state": features["state"][None].astype(np.float32)})

    def denoise(self, prefix: dict[str, np.ndarray], noise: np.ndarray,
                steps: int | None = None,
                guide: Callable[[np.ndarray, np.ndarray, float], np.ndarray] | None = None
                ) -> np.ndarray:
        """SmolVLA: Euler-integrate the flow from t=1 to 0 in ``steps`` calls -> [H, A] normalised.

        ``guide(x_t, v_t, time)`` replaces each step's velocity (real-time chunking's guidance,
        `edgevla.deploy.inference.rtc`)."""
        steps = int(steps or self.num_steps)
        if steps < 1:
            raise ValueError(f"denoise steps must be >= 1, got {steps}")
        be = self.backends["denoise"]
        # The prefix is the same for every step: handed to the runtime once per chunk (ORT
        # IOBinding; a split graph's prefix-only part runs here, once), only x_t/t per step.
        step = bind_constants(be, {k: v for k, v in prefix.items()
                                   if k in be.input_names and k not in ("x_t", "timestep")})
        x = noise.astype(np.float32)
        dt = -1.0 / steps
        for i in range(steps):
            time = np.float32(1.0 + i * dt)
            v = step({"x_t": x, "timestep": np.array([time], np.float32)})["v_t"]
            if guide is not None:
                v = guide(x, v, float(time))
            x = x + np.float32(dt) * v
        return x[0, :, : self.manifest.action_dim]

    def velocity_vjp(self, prefix: dict[str, np.ndarray], x_t: np.ndarray, time: float,
                     cotangent: np.ndarray) -> np.ndarray:
        """SmolVLA: the denoise step's vector-Jacobian product ``J_v(x_t)^T cotangent`` (the
        bundle's ``denoise_vjp`` graph, opened on first use with the denoise stage's options)."""
        if self._vjp is None:
            entry = self.manifest.extra.get("denoise_vjp")
            if not entry:
                raise ValueError(f"{self.dir}: no denoise_vjp graph (export with --rtc-vjp)")
            self._vjp = open_backend(self.dir / entry["file"], self._denoise_options)
        be = self._vjp
        feeds = {k: v for k, v in prefix.items() if k in be.input_names}
        feeds.update(x_t=np.asarray(x_t, np.float32), timestep=np.array([time], np.float32),
                     cotangent=np.asarray(cotangent, np.float32).reshape(np.shape(x_t)))
        return be.run(feeds)["vjp"]

    def sample_noise(self, rng: np.random.Generator) -> np.ndarray:
        ex = self.manifest.extra
        return rng.standard_normal((1, self.manifest.chunk_size, int(ex["max_action_dim"])),
                                   dtype=np.float32)

    def unnormalize_actions(self, actions: np.ndarray) -> np.ndarray:
        return self.manifest.action_norm.unnormalize(actions)

    def predict(self, frames: dict[str, np.ndarray], state: np.ndarray,
                rng: np.random.Generator | None = None, noise: np.ndarray | None = None,
                steps: int | None = None) -> np.ndarray:
        """All stages in one call: un-normalised actions [H, A] in joint units."""
        feats = self.features(frames, state)
        if self.manifest.policy == "act":
            return self.unnormalize_actions(self.act_decode(feats))
        if noise is None:
            noise = self.sample_noise(rng or np.random.default_rng())
        return self.unnormalize_actions(self.denoise(self.prefill(feats), noise, steps))

    def describe(self) -> dict[str, Any]:
        return {"policy": self.manifest.policy, "model_id": self.manifest.model_id,
                "files": dict(self.files)}
