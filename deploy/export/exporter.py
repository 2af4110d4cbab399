"""Policy -> model bundle: export stages, quantize variants, convert LiteRT, write the manifest.

Export side (torch + lerobot, imported lazily by the callers). ``export_bundle`` takes an
in-memory lerobot policy; ``load_policy`` reads a lerobot checkpoint folder
(``pretrained_model/`` with config.json, model.safetensors and the processor files holding the
dataset statistics) without touching the hub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.deploy.bundle.cameras import image_key
from edgevla.deploy.bundle.manifest import Manifest, Normalization, StageFile, StageSpec, load_manifest
from edgevla.deploy.bundle.state_layout import layout_name
from edgevla.deploy.export import smolvla_base
from edgevla.deploy.export.litert_vision import add_litert_vision
from edgevla.deploy.export.quantize import quantize_stage
from edgevla.deploy.inference.pipeline import StageModel
from edgevla.firmware_bridge.servos.joint_units import SO101_JOINTS, UNIT_SETS
from edgevla.training.learn.checkpoints import resolve_pretrained_dir
from edgevla.training.torch_setup import ensure_torchvision

# Extra variants written next to the chosen ones, so a graph can switch precision without a
# re-export and the bench can show why the denoiser stays fp32.
DEFAULT_VARIANTS = {
    "act": {"vision": ("fp32", "int8"), "decoder": ("fp32", "int8")},
    "smolvla": {"vision": ("fp32", "int8"), "prefill": ("fp32", "int8", "int4"),
                "denoise": ("fp32", "int8")},
}
DEFAULT_PRECISION = {
    "act": {"vision": "int8", "decoder": "fp32"},
    "smolvla": {"vision": "int8", "prefill": "int8", "denoise": "fp32"},
}


@dataclass
class Sample:
    """One dataset-like observation: frames by camera (HxWx3 uint8) and joint state."""

    frames: dict[str, np.ndarray]
    state: np.ndarray


def policy_type(policy) -> str:
    name = getattr(policy, "name", "") or type(policy).__name__.lower()
    if name in ("act", "smolvla"):
        return name
    raise ValueError(f"unsupported policy {name!r}: edgevla exports act and smolvla")


def camera_names(policy) -> list[str]:
    keys = list(policy.config.image_features)
    return [k.removeprefix("observation.images.") for k in keys]


def synthetic_samples(policy, n: int, seed: int = 0) -> list[Sample]:
    """Dataset-like observations: smooth scenes with coloured blobs, states in joint range.

    Random uniform noise is a poor stand-in for camera images (quantization ranges and attention
    patterns differ); these look like the simulator's renders: flat background, table edge,
    a few saturated objects, mild sensor noise.
    """
    rng = np.random.default_rng(seed)
    cams = camera_names(policy)
    shape = policy.config.image_features[image_key(cams[0])].shape
    h, w = shape[1], shape[2]
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        frames = {}
        for c in cams:
            img = np.empty((h, w, 3), np.float32)
            img[:] = rng.uniform(0.3, 0.7, 3)
            img[yy > rng.uniform(0.4, 0.7) * h] = rng.uniform(0.2, 0.5, 3)  # table
            for _ in range(rng.integers(1, 4)):
                cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.2) * min(h, w)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
            img += rng.normal(0, 0.02, img.shape)
            frames[c] = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        state = rng.uniform(-1.2, 1.2, policy.config.robot_state_feature.shape[0]).astype(np.float32)
        out.append(Sample(frames, state))
    return out


def _norm_from_stats(mode, stats: dict[str, Any] | None, dim: int) -> Normalization:
    mode_name = str(getattr(mode, "value", mode)).lower()
    if mode_name == "identity" or stats is None:
        # no stats (e.g. a policy built in a test): the graph sees raw values
        return Normalization(mode="identity")
    arr = {k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in stats.items()
           if k in ("mean", "std", "min", "max")}
    if mode_name == "mean_std":
        return Normalization(mode="mean_std", mean=arr["mean"], std=arr["std"])
    if mode_name == "min_max":
        return Normalization(mode="min_max", min=arr["min"], max=arr["max"])
    raise ValueError(f"normalisation mode {mode_name!r} is not supported by the board runtime")


def normalizations(policy, stats: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """lerobot normalisation_mapping + dataset stats -> manifest normalisation entries."""
    nm = policy.config.normalization_mapping
    stats = stats or {}
    cams = camera_names(policy)
    out = {
        "state_norm": _norm_from_stats(nm["STATE"], stats.get("observation.state"),
                                       policy.config.robot_state_feature.shape[0]),
        "action_norm": _norm_from_stats(nm["ACTION"], stats.get("action"),
                                        policy.config.action_feature.shape[0]),
        "image_norm": {c: _norm_from_stats(nm["VISUAL"], stats.get(image_key(c)), 3)
                       for c in cams},
    }
    return out


def tokenize_task(policy, task: str) -> tuple[list[int], list[bool]]:
    """lerobot's tokenizer step for one task (newline appended, right padding to max length)."""
    tok = policy.model.vlm_with_expert.processor.tokenizer
    text = task if task.endswith("\n") else task + "\n"
    n = policy.config.tokenizer_max_length
    enc = tok(text, padding="max_length", truncation=True, max_length=n, padding_side="right")
    return list(map(int, enc["input_ids"])), [bool(m) for m in enc["attention_mask"]]


DEFAULT_TASK = "pick up the bag and place it in the box"


def export_bundle(policy, out_dir: str | Path, *, stats: dict | None = None,
                  precision: dict[str, str] | None = None, fps: float = 30.0,
                  task: str = DEFAULT_TASK,
                  samples: list[Sample] | None = None, variants: dict[str, tuple[str, ...]] | None = None,
                  litert: bool = True, model_id: str = "",
                  progress: Callable[[str], None] | None = None,
                  portable_onnx: bool = False,
                  joints: tuple[list[str], list[str]] | None = None,
                  rtc_vjp: bool = False) -> Manifest:
    """Export ``policy`` into a model bundle directory; returns the manifest written.

    ``portable_onnx``: SmolVLA's prefill/denoise with standard ONNX ops only (by default RoPE
    and attention are ONNX Runtime contrib nodes: fewer, faster kernels, ONNX Runtime only).
    ``joints``: (names, units) of the dataset's joints (`joint_units_for_export`); default the
    SO-101 joints in the sim's radians. ``rtc_vjp``: SmolVLA's denoise step's vector-Jacobian
    product as a graph too (`edgevla.deploy.export.smolvla_vjp`: real-time chunking's full
    correction)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = policy_type(policy)
    say = progress or (lambda s: None)
    policy.eval()
    norms = normalizations(policy, stats)
    layout, specs, extra = _export_fp32(policy, kind, out_dir, task, portable_onnx, say)
    if rtc_vjp and kind == "smolvla":
        from edgevla.deploy.export.smolvla_vjp import export_denoise_vjp  # torch at import

        extra["denoise_vjp"] = export_denoise_vjp(policy, layout, out_dir)
        say("exported denoise_vjp")
    cams = camera_names(policy)
    shape = policy.config.image_features[image_key(cams[0])].shape
    chosen = dict(DEFAULT_PRECISION[kind])
    chosen.update(precision or {})
    wanted = {s: tuple(dict.fromkeys((*(variants or DEFAULT_VARIANTS[kind])[s], chosen[s])))
              for s in specs}

    stages: dict[str, StageSpec] = {}
    for s, spec in specs.items():
        vs = {"fp32": StageFile(file=spec["file"], backend="onnxruntime", precision="fp32",
                                prep=spec.get("prep"))}
        stages[s] = StageSpec(inputs=spec["inputs"], outputs=spec["outputs"], default="fp32",
                              variants=vs)
    # what observation.state holds, for a person reading the manifest (the runtime goes by state_dim)
    extra["state_layout"] = layout_name(layout.state_dim)
    manifest = Manifest(policy=kind, model_id=model_id or f"{kind}-export", chunk_size=layout.chunk_size,
                        action_dim=layout.action_dim, state_dim=layout.state_dim, fps=float(fps),
                        cameras=cams, image_hw=[int(shape[1]), int(shape[2])], stages=stages,
                        extra=extra, **norms)
    if joints is not None:
        manifest.joint_names, manifest.joint_units = list(joints[0]), list(joints[1])
    manifest.save(out_dir)

    # Calibration inputs for static int8 come from running the fp32 stages on dataset samples.
    calib = _calibration_feeds(out_dir, samples or synthetic_samples(policy, 8))
    _quantize_variants(out_dir, specs, stages, wanted, calib, say)
    for s in wanted:
        stages[s].default = chosen[s]
    if litert:
        add_litert_vision(policy, kind, layout, out_dir, stages, calib["vision"], say)
    for spec in stages.values():
        for var in spec.variants.values():
            var.size_bytes = sum((out_dir / f).stat().st_size for f in (var.file, var.prep) if f)
    manifest.save(out_dir)
    load_manifest(out_dir)  # what we wrote must read back
    return manifest


def _export_fp32(policy, kind: str, out_dir: Path, task: str, portable_onnx: bool,
                 say: Callable[[str], None]) -> tuple[Any, dict[str, dict], dict[str, Any]]:
    """The fp32 ONNX stages -> (layout, stage specs, the manifest's ``extra``)."""
    # torch at import: kept here so that `edgevla --help` and reading a bundle never load it
    from edgevla.deploy.export import act as export_act
    from edgevla.deploy.export import smolvla as export_smolvla

    extra: dict[str, Any] = {}
    if kind == "act":
        layout, specs = export_act.export_onnx(policy, out_dir, progress=lambda s: say(f"exported {s}"))
        extra["layout"] = layout.__dict__
        return layout, specs, extra
    layout, specs = export_smolvla.export_onnx(policy, out_dir,
                                               lang_len=policy.config.tokenizer_max_length,
                                               progress=lambda s: say(f"exported {s}"),
                                               fused_ops=not portable_onnx)
    tokens, mask = tokenize_task(policy, task)
    extra.update(layout=layout.__dict__, task=task, lang_tokens=tokens, lang_mask=mask,
                 num_steps=int(policy.config.num_steps),
                 max_action_dim=int(policy.config.max_action_dim))
    return layout, specs, extra


def _quantize_variants(out_dir: Path, specs: dict[str, dict], stages: dict[str, StageSpec],
                       wanted: dict[str, tuple[str, ...]], calib: dict[str, list[dict]],
                       say: Callable[[str], None]) -> None:
    """Write every wanted precision but fp32 of each stage and add it to ``stages``."""
    for s, precs in wanted.items():
        for p in precs:
            if p == "fp32":
                continue
            dst = out_dir / f"{s}.{p}.onnx"
            concrete = quantize_stage(out_dir / specs[s]["file"], dst, p, calib.get(s))
            # a split graph's prep part has no weights: every precision of the step shares it
            stages[s].variants[p] = StageFile(file=dst.name, backend="onnxruntime", precision=concrete,
                                              prep=specs[s].get("prep"))
            say(f"quantized {s} -> {p} ({concrete})")


def joint_units_for_export(units: str | None, dataset: str | Path | None,
                           checkpoint: str | Path | None = None) -> tuple[list[str], list[str]]:
    """The joint names and units a bundle declares: ``units`` (a set of `UNIT_SETS`) if given,
    else what the dataset's ``info.json`` records (``edgevla.joints``, written by `dataset
    record`), else what the checkpoint's ``edgevla.json`` says its training data was in. A
    LeRobot SO-100/SO-101 dataset does not record its units (the follower's ``use_degrees``
    decides them), so for one of those ``units`` must be given (ValueError)."""
    recorded = _checkpoint_joints(checkpoint) if dataset is None and units is None else None
    if dataset is not None:
        info_path = Path(dataset) / "meta" / "info.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{info_path}: cannot read the dataset's info ({exc})") from None
        recorded = (info.get("edgevla") or {}).get("joints")
        robot = str(info.get("robot_type") or "")
        if recorded is None and units is None and robot.startswith(("so100", "so101")) \
                and robot != "so101_sim":
            raise ValueError(f"{info_path}: robot_type {robot!r} does not record its joint units; "
                             f"say which with --units ({', '.join(UNIT_SETS)}): so101-degrees "
                             f"if the follower ran with use_degrees=True, so101-range if not")
    if units is not None:
        if units not in UNIT_SETS:
            raise ValueError(f"--units: expected one of {', '.join(UNIT_SETS)}, got {units!r}")
        if recorded is not None and recorded.get("set") != units:
            raise ValueError(f"--units {units}: the dataset was recorded in {recorded.get('set')!r} "
                             f"({Path(dataset) / 'meta' / 'info.json'}, edgevla.joints)")
        return list(SO101_JOINTS), list(UNIT_SETS[units])
    if recorded is not None:
        return list(recorded["names"]), list(recorded["units"])
    return list(SO101_JOINTS), list(UNIT_SETS["radians"])


def _checkpoint_joints(checkpoint: str | Path | None) -> dict | None:
    if checkpoint is None:
        return None
    try:
        meta = resolve_pretrained_dir(checkpoint) / "edgevla.json"
        return json.loads(meta.read_text()).get("joints") if meta.is_file() else None
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _calibration_feeds(bundle_dir: Path, samples: list[Sample]) -> dict[str, list[dict]]:
    sm = StageModel(bundle_dir)
    feeds: dict[str, list[dict]] = {s: [] for s in sm.manifest.stages}
    for smp in samples:
        imgs = sm.images_tensor(smp.frames)
        feeds["vision"].append({"images": imgs})
        tokens = sm.vision(imgs)
        feats = {c: tokens[i] for i, c in enumerate(sm.manifest.cameras)}
        feats["state"] = sm.normalize_state(smp.state)[0]
        if sm.manifest.policy == "act":
            feeds["decoder"].append({"cam_tokens": tokens, "state": feats["state"][None]})
        else:
            ex = sm.manifest.extra
            feeds["prefill"].append({"image_tokens": tokens,
                                     "lang_tokens": np.asarray(ex["lang_tokens"], np.int64)[None],
                                     "lang_mask": np.asarray(ex["lang_mask"], bool)[None],
                                     "state": feats["state"][None]})
    return feeds


# --------------------------------------------------------------------------------------------
# lerobot checkpoints
# --------------------------------------------------------------------------------------------

def load_policy(ckpt: str | Path, vlm: str | Path | None = None, stand_in_tokenizer: bool = False):
    """A lerobot ``pretrained_model`` folder -> (policy, dataset stats or None).

    SmolVLA's backbone files (config, processor, tokenizer) come from ``vlm`` if given, else the
    checkpoint's ``vlm_model_name`` when it is a folder; a fine-tuned ``smolvla_base`` names the
    hub repo instead, which is then taken from the local Hugging Face cache, or with
    ``stand_in_tokenizer`` built from the shipped sizes (`smolvla_base.py`: the task's token ids
    are then not the real ones, so that is for measuring, not for the robot)."""

    ensure_torchvision()
    # draccus resolves `"type": "act"` only for config classes already imported (registered)
    import lerobot.policies.act.configuration_act  # noqa: F401
    import lerobot.policies.smolvla.configuration_smolvla  # noqa: F401
    from lerobot.configs.policies import PreTrainedConfig

    try:  # the same places `edgevla eval` looks
        ckpt = resolve_pretrained_dir(ckpt)
    except FileNotFoundError:
        raise FileNotFoundError(f"{ckpt}: not a lerobot checkpoint (no config.json); pass the "
                                f"pretrained_model folder written by training, or its run folder") \
            from None
    cfg = PreTrainedConfig.from_pretrained(str(ckpt))
    cfg.device = "cpu"
    if cfg.type == "act":
        from lerobot.policies.act.modeling_act import ACTPolicy as cls
    elif cfg.type == "smolvla":
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy as cls

        cfg.vlm_model_name = str(_vlm_folder(ckpt, cfg.vlm_model_name, vlm, stand_in_tokenizer))
        cfg.load_vlm_weights = False
    else:
        raise ValueError(f"{ckpt}/config.json: policy type {cfg.type!r} is not exportable "
                         f"(act, smolvla)")
    policy = cls.from_pretrained(str(ckpt), config=cfg).eval()
    return policy, read_stats(ckpt)


def _vlm_folder(ckpt: Path, name: str, vlm: str | Path | None, stand_in: bool) -> Path:
    if vlm is not None:
        if not (Path(vlm) / "config.json").is_file():
            raise FileNotFoundError(f"--vlm {vlm}: not a backbone folder (no config.json)")
        return Path(vlm)
    if Path(name).is_dir():
        return Path(name)
    if name == smolvla_base.HUB_NAME:
        cached = smolvla_base.cached_hub_vlm(name)
        if cached is not None:
            return cached
        if stand_in:
            return smolvla_base.write_base_smolvlm(smolvla_base.stand_in_folder())
    raise FileNotFoundError(
        f"{ckpt}/config.json: vlm_model_name {name!r} is neither a local folder nor in the local "
        f"Hugging Face cache (no hub access here). Give its files with --vlm DIR (config.json, "
        f"processor and tokenizer files of {name}), or --stand-in-tokenizer to export with a "
        f"stand-in tokenizer of the same size (task token ids not the real ones: for timing only)")


def read_stats(ckpt: Path) -> dict[str, dict[str, np.ndarray]] | None:
    """Normaliser statistics saved by lerobot's preprocessor next to the weights."""
    from safetensors.numpy import load_file

    files = sorted(Path(ckpt).glob("policy_preprocessor*normalizer_processor.safetensors"))
    if not files:
        return None
    stats: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in load_file(str(files[0])).items():
        feat, stat = key.rsplit(".", 1)
        stats.setdefault(feat, {})[stat] = arr
    return stats


def stats_to_json(stats: dict[str, dict[str, np.ndarray]]) -> str:
    return json.dumps({k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()})


def dataset_task(root: str | Path) -> str | None:
    """The task of a local LeRobot dataset when it records exactly one (what a SmolVLA trained
    on it was told); None otherwise."""
    import pandas as pd

    path = Path(root) / "meta" / "tasks.parquet"
    if not path.is_file():
        return None
    tasks = [str(t) for t in pd.read_parquet(path).index]
    return tasks[0] if len(tasks) == 1 else None


def samples_from_dataset(root: str | Path, policy, n: int) -> list[Sample]:
    """``n`` observations spread over a local LeRobot dataset (calibration and parity inputs)."""

    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not (root / "meta" / "info.json").is_file():
        # LeRobotDataset would otherwise try the hub for it; nothing is downloaded at run time
        raise FileNotFoundError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    info = json.loads((root / "meta" / "info.json").read_text())
    repo_id = info.get("repo_id") or f"local/{root.name}"
    ds = LeRobotDataset(repo_id, root=root)
    cams = camera_names(policy)
    missing = [c for c in cams if image_key(c) not in ds.features]
    if missing:
        raise ValueError(f"{root}: dataset has no camera(s) {missing} that the policy reads")
    idx = np.linspace(0, len(ds) - 1, num=max(1, n)).astype(int)
    out = []
    for i in idx:
        item = ds[int(i)]
        frames = {c: (item[image_key(c)].permute(1, 2, 0).numpy() * 255).round()
                  .clip(0, 255).astype(np.uint8) for c in cams}
        out.append(Sample(frames, item["observation.state"].numpy().astype(np.float32)))
    return out
