"""Image normalisation statistics that lerobot 0.4.4 gets wrong, and their repair.

lerobot 0.4.4 loads image samples as uint8 and its `RunningQuantileStats.update` squares the
batch before promoting it (`batch**2` in uint8 wraps), so the variance comes out negative and is
clamped: every image feature of every dataset it writes has std 0 per episode, and the
aggregated std (0.0014-0.006 here, the spread of per-episode means) normalises pixels ~40-85x
too strongly against their real std (0.11-0.23) (upstream issue huggingface/lerobot#3682, fixed
after 0.4.4). ACT's resnet uses frozen batch norm, so nothing downstream undoes that scale.

* `patch_running_stats()` – until undone, integer batches are promoted to float64 before
  lerobot's update (used by `dataset record`, so new recordings get correct statistics);
* `broken_image_stats(meta_stats)` – the camera keys whose std is implausibly small;
* `repair_image_stats(root)` – recompute mean/std/min/max/quantiles of every camera from a
  sample of the stored frames and rewrite ``meta/stats.json`` (the old file is kept as
  ``stats.json.orig``). A model trained on the broken statistics carries them in its own
  normaliser, so repairing a dataset does not change an existing checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgevla.training.dataset.schema import open_dataset
from edgevla.training.torch_setup import ensure_torchvision

# A camera's per-channel pixel std in [0, 1] units is ~0.1-0.3 for any real scene; below this it
# can only be the uint8-overflow artefact.
MIN_PLAUSIBLE_STD = 0.01
QUANTILES = (("q01", 0.01), ("q10", 0.10), ("q50", 0.50), ("q90", 0.90), ("q99", 0.99))


def patch_running_stats() -> Callable[[], None]:
    """Promote integer batches before lerobot's RunningQuantileStats squares them; returns the
    function that undoes the patch."""

    ensure_torchvision()
    from lerobot.datasets import compute_stats

    cls = compute_stats.RunningQuantileStats
    original = cls.update

    def update(self, batch: np.ndarray) -> None:
        if np.asarray(batch).dtype.kind in "ui":
            batch = np.asarray(batch, dtype=np.float64)
        return original(self, batch)

    cls.update = update

    def undo() -> None:
        cls.update = original

    return undo


def broken_image_stats(stats: dict[str, Any], keys: list[str] | None = None) -> list[str]:
    """Camera keys (``observation.images.*``) whose std is below `MIN_PLAUSIBLE_STD`."""
    keys = keys if keys is not None else [k for k in stats if k.startswith("observation.images.")]
    bad = []
    for k in keys:
        std = stats.get(k, {}).get("std")
        if std is not None and float(np.max(np.asarray(std, np.float64))) < MIN_PLAUSIBLE_STD:
            bad.append(k)
    return bad


def _channel_stats(pixels: np.ndarray) -> dict[str, Any]:
    """(N, C) float pixels in [0, 1] -> lerobot's per-channel image stats layout (C, 1, 1)."""
    out: dict[str, Any] = {
        "min": pixels.min(axis=0), "max": pixels.max(axis=0),
        "mean": pixels.mean(axis=0), "std": pixels.std(axis=0),
    }
    for name, q in QUANTILES:
        out[name] = np.quantile(pixels, q, axis=0)
    return {k: np.asarray(v, np.float64).reshape(-1, 1, 1).tolist() for k, v in out.items()}


def repair_image_stats(root: str | Path, max_frames: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Recompute the image statistics of a local LeRobot dataset from up to ``max_frames``
    frames spread over it; rewrite meta/stats.json when any camera's std was broken.

    Returns ``{camera: {"old_std": [...], "new_std": [...]}}`` for the repaired cameras ({} when
    nothing needed repair).
    """

    root = Path(root)
    meta = open_dataset(root)
    cameras = [k for k, f in meta.features.items() if f.get("dtype") in ("image", "video")]
    bad = broken_image_stats(meta.stats, cameras)
    if not bad:
        return {}
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id=meta.repo_id, root=root)
    rng = np.random.default_rng(seed)
    n = len(ds)
    picks = np.sort(rng.choice(n, size=min(max_frames, n), replace=False))
    pixels: dict[str, list[np.ndarray]] = {k: [] for k in bad}
    for i in picks:
        item = ds[int(i)]
        for k in bad:
            img = np.asarray(item[k], np.float32)  # (C, H, W) in [0, 1]
            if img.ndim == 3 and img.shape[-1] in (1, 3) and img.shape[0] not in (1, 3):
                img = img.transpose(2, 0, 1)
            if img.max() > 1.5:  # stored as 0..255
                img = img / 255.0
            c = img.shape[0]
            # ~256 pixels per frame are plenty for per-channel moments and quantiles
            stride = max(1, (img.shape[1] * img.shape[2]) // 256)
            pixels[k].append(img.reshape(c, -1)[:, ::stride].T)
    report: dict[str, Any] = {}
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text())
    for k in bad:
        all_px = np.concatenate(pixels[k], axis=0)
        new = _channel_stats(all_px)
        report[k] = {"old_std": np.asarray(stats[k]["std"]).ravel().tolist(),
                     "new_std": np.asarray(new["std"]).ravel().tolist()}
        stats[k].update(new)
    backup = stats_path.with_name("stats.json.orig")
    if not backup.exists():
        shutil.copy2(stats_path, backup)
    stats_path.write_text(json.dumps(stats, indent=4))
    return report

