"""Exported stages vs the PyTorch modules, and the composed pipeline vs lerobot itself.

Used by the tests, by ``edgevla export`` (a parity report after every export) and by the bench.
Errors are reported as max |a - b| over all elements, and relative to the reference's spread
(max |ref|); action errors also in joint units (rad) and as a fraction of each joint's range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevla.deploy.export.exporter import Sample, camera_names
from edgevla.deploy.inference.pipeline import StageChoice, StageModel

# Stated tolerances (relative to max |reference|) per precision; fp32 is numerics only.
STAGE_TOL = {"fp32": 1e-4, "int8-dynamic": 0.1, "int8-static": 0.15, "int4": 0.2}
ACTION_TOL_FP32_RAD = 1e-4        # composed fp32 pipeline vs lerobot, joint units
ACTION_TOL_QUANT_RANGE = 0.05     # selective quantization: max error <= 5% of the joint range


@dataclass
class ParityReport:
    stage_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    action_max_abs: float = 0.0          # rad, max over samples/steps/joints
    action_max_frac_range: float = 0.0   # that error as a fraction of each joint's range
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stages": self.stage_errors, "action_max_abs": self.action_max_abs,
                "action_max_frac_range": self.action_max_frac_range}


def rel_err(a: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    err = float(np.max(np.abs(a - ref))) if ref.size else 0.0
    return err, err / max(float(np.max(np.abs(ref))), 1e-12)


def action_range(model: StageModel, ref_actions: np.ndarray | None = None) -> np.ndarray:
    """Per-joint range: dataset min/max when the bundle has them, else mean +- 3 std, else
    the spread of the reference actions."""
    n = model.manifest.action_norm
    if n.min is not None and n.max is not None:
        return np.asarray(n.max, np.float64) - np.asarray(n.min, np.float64)
    if n.std is not None:
        return 6 * np.asarray(n.std, np.float64)
    assert ref_actions is not None
    r = ref_actions.reshape(-1, ref_actions.shape[-1])
    return np.maximum(r.max(0) - r.min(0), 1e-6)


def lerobot_chunk(policy, stats, sample: Sample, task: str, noise: np.ndarray | None = None) -> np.ndarray:
    """lerobot's own path: preprocessor -> predict_action_chunk -> postprocessor, joint units."""
    import torch

    pre, post = _processors(policy, stats)
    batch: dict[str, Any] = {
        f"observation.images.{c}": torch.from_numpy(sample.frames[c]).permute(2, 0, 1).float() / 255
        for c in camera_names(policy)}
    batch["observation.state"] = torch.from_numpy(np.asarray(sample.state, np.float32))
    batch["task"] = task
    with torch.no_grad():
        b = pre(batch)
        if policy.name == "smolvla":
            policy.reset()
            out = policy.predict_action_chunk(b, noise=torch.from_numpy(noise))
        else:
            out = policy.predict_action_chunk(b)
        return post(out)[0].numpy()


_PROCESSORS: dict[int, Any] = {}


def _processors(policy, stats):
    """lerobot's pre/post-processor pipelines for a policy (built once per policy object)."""
    from lerobot.policies.factory import make_pre_post_processors

    key = id(policy)
    if key not in _PROCESSORS:
        _PROCESSORS[key] = (policy, make_pre_post_processors(policy.config,
                                                             dataset_stats=_torch_stats(stats)))
    return _PROCESSORS[key][1]


def _torch_stats(stats):
    import torch

    if stats is None:
        return None
    return {k: {s: torch.as_tensor(np.asarray(v), dtype=torch.float32) for s, v in d.items()}
            for k, d in stats.items()}


def composed_parity(policy, stats, bundle_dir, samples: list[Sample],
                    choices: dict[str, StageChoice] | None = None,
                    reference: str = "lerobot", seed: int = 0) -> ParityReport:
    """Pipeline actions vs lerobot (``reference="lerobot"``) or vs the bundle's fp32 pipeline
    (``reference="fp32"``, to isolate quantization error), same noise for both."""
    model = StageModel(bundle_dir, choices=choices)
    ref_model = StageModel(bundle_dir, choices={s: StageChoice("fp32", "onnxruntime")
                                                for s in model.manifest.stages})
    rng = np.random.default_rng(seed)
    task = model.manifest.extra.get("task", "")
    got, ref = [], []
    for smp in samples:
        noise = model.sample_noise(rng) if model.manifest.policy == "smolvla" else None
        got.append(model.predict(smp.frames, smp.state, noise=noise))
        if reference == "lerobot":
            ref.append(lerobot_chunk(policy, stats, smp, task, noise))
        else:
            ref.append(ref_model.predict(smp.frames, smp.state, noise=noise))
    got_a, ref_a = np.stack(got), np.stack(ref)
    rng_j = action_range(model, ref_a)
    err = np.abs(got_a - ref_a)
    return ParityReport(action_max_abs=float(err.max()),
                        action_max_frac_range=float((err / rng_j).max()))


def stage_parity(policy, bundle_dir, samples: list[Sample], precision: dict[str, str] | None = None,
                 random_inputs: bool = True) -> dict[str, dict[str, float]]:
    """Each exported stage vs its PyTorch module on dataset-like (and random) inputs.

    Returns {stage: {"dataset_abs", "dataset_rel", "random_abs", "random_rel"}}.
    """
    import torch

    # torch at import: kept here so that importing this module does not load it
    from edgevla.deploy.export import act as export_act
    from edgevla.deploy.export import smolvla as export_smolvla

    fp32 = StageModel(bundle_dir, choices={s: StageChoice("fp32", "onnxruntime")
                                           for s in ("vision", "decoder", "prefill", "denoise")})
    # the stage's input names are the ONNX ones; feeding a stage needs the fp32 stage before it
    m = fp32.manifest
    precision = precision or {}
    # a variant key names its own backend (litert-int8); a precision alone means ONNX Runtime
    model = StageModel(bundle_dir, choices={
        s: StageChoice(precision.get(s, "fp32"),
                       None if precision.get(s) in m.stages[s].variants else "onnxruntime")
        for s in m.stages}) if precision else fp32
    g = torch.Generator().manual_seed(1)
    out: dict[str, dict[str, float]] = {}

    def record(stage: str, kind: str, a, ref) -> None:
        e, r = rel_err(a, ref)
        d = out.setdefault(stage, {})
        d[f"{kind}_abs"] = max(d.get(f"{kind}_abs", 0.0), e)
        d[f"{kind}_rel"] = max(d.get(f"{kind}_rel", 0.0), r)

    with torch.no_grad():
        if m.policy == "act":
            lo = export_act.layout_of(policy)
            vis, dec = export_act.VisionStage(policy).eval(), export_act.DecoderStage(policy, lo).eval()
            cases = [("dataset", fp32.images_tensor(s.frames), fp32.normalize_state(s.state))
                     for s in samples]
            if random_inputs:
                cases += [("random", torch.randn(lo.n_cameras, 3, *lo.image_hw, generator=g).numpy(),
                           torch.randn(1, lo.state_dim, generator=g).numpy())]
            for kind, imgs, state in cases:
                ref_tok = vis(torch.from_numpy(imgs)).numpy()
                record("vision", kind, model.vision(imgs), ref_tok)
                feats = {c: ref_tok[i] for i, c in enumerate(m.cameras)}
                feats["state"] = state[0]
                ref_act = dec(torch.from_numpy(ref_tok), torch.from_numpy(state)).numpy()[0]
                record("decoder", kind, model.act_decode(feats), ref_act)
            return out
        lo = export_smolvla.SmolVLALayout(**{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in m.extra["layout"].items()})
        vis = export_smolvla.VisionStage(policy, lo).eval()
        pre = export_smolvla.PrefillStage(policy, lo).eval()
        den = export_smolvla.DenoiseStage(policy, lo).eval()
        tokens = torch.tensor(m.extra["lang_tokens"])[None]
        mask = torch.tensor(m.extra["lang_mask"])[None]
        cases = [("dataset", fp32.images_tensor(s.frames), fp32.normalize_state(s.state))
                 for s in samples]
        if random_inputs:
            cases += [("random", torch.rand(lo.n_cameras, 3, *lo.image_hw, generator=g).numpy(),
                       torch.randn(1, lo.state_dim, generator=g).numpy())]
        for kind, imgs, state in cases:
            ref_tok = vis(torch.from_numpy(imgs)).numpy()
            record("vision", kind, model.vision(imgs), ref_tok)
            feats = {c: ref_tok[i] for i, c in enumerate(m.cameras)}
            feats["state"] = state[0]
            ref_pre = pre(torch.from_numpy(ref_tok), tokens, mask, torch.from_numpy(state))
            got_pre = model.prefill(feats)
            names = ["prefix_pad_mask", *lo.kv_names()]
            for n, r in zip(names[1:], ref_pre[1:]):
                record("prefill", kind, got_pre[n], r.numpy())
            x = torch.randn(1, lo.chunk_size, lo.max_action_dim, generator=g)
            for t in (1.0, 0.55, 0.1):
                ts = torch.tensor([t])
                ref_v = den(x, ts, *ref_pre).numpy()
                feeds = {n: r.numpy() for n, r in zip(names, ref_pre)}
                feeds.update(x_t=x.numpy(), timestep=ts.numpy())
                record("denoise", kind, model.backends["denoise"].run(feeds)["v_t"], ref_v)
    return out
