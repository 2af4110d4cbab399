"""What a training run reads from a dataset's metadata: the camera size, the feature shapes
it checks, and which episodes it trains on."""

from __future__ import annotations

from edgevla.deploy.bundle.cameras import CAMERAS, image_key
from edgevla.deploy.bundle.state_layout import LAYOUTS, N_JOINTS

CAMERA_KEYS = tuple(image_key(c) for c in CAMERAS)


def dataset_image_hw(meta) -> tuple[int, int]:
    """(height, width) shared by the three cameras, with a clear error if the dataset differs."""
    hw = set()
    for key in CAMERA_KEYS:
        feat = meta.features.get(key)
        if feat is None:
            raise ValueError(
                f"{meta.root}/meta/info.json: feature {key!r} missing; edgevla policies expect "
                f"{list(CAMERA_KEYS)} + observation.state + action, found {sorted(meta.features)}"
            )
        shape, names = feat["shape"], feat.get("names") or []
        if len(shape) != 3:
            raise ValueError(f"{meta.root}/meta/info.json: {key}.shape must be 3-D, got {shape}")
        # lerobot stores images as (height, width, channels); accept CHW too.
        if names and names[0] in ("channels", "channel"):
            hw.add((int(shape[1]), int(shape[2])))
        else:
            hw.add((int(shape[0]), int(shape[1])))
    for key, dims in (("observation.state", tuple(LAYOUTS)), ("action", (N_JOINTS,))):
        feat = meta.features.get(key)
        if feat is None or len(feat["shape"]) != 1 or int(feat["shape"][0]) not in dims:
            want = " or ".join(f"({d},)" for d in dims)
            raise ValueError(
                f"{meta.root}/meta/info.json: {key} must have shape {want}, got {feat and feat['shape']}"
            )
    if len(hw) != 1:
        raise ValueError(f"{meta.root}: cameras have different sizes {sorted(hw)}; expected one (H, W)")
    return hw.pop()


def train_episodes(meta, explicit: list[int] | None = None) -> list[int] | None:
    """Episode indices to train on: explicit list, else info.json's "train" split, else all."""
    if explicit is not None:
        return list(explicit)
    split = (meta.info.get("splits") or {}).get("train")
    if isinstance(split, str) and ":" in split:
        lo, hi = (int(x) for x in split.split(":"))
        if (lo, hi) != (0, meta.total_episodes):
            return list(range(lo, hi))
    if isinstance(split, list):
        return [int(x) for x in split]
    return None
