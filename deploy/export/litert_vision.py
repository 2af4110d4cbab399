"""The vision stage as LiteRT models, fp32 and int8 full-integer, through the maintained
converter (litert-torch + ai-edge-quantizer) in its own environment (`litert_convert.py`).

The stage module is handed over as a ``torch.export`` program, so the conversion environment
needs neither lerobot nor this project. Without that environment (``make litert-env``) the
bundle simply has no LiteRT variants.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgevla.deploy.bundle.manifest import StageFile, StageSpec
from edgevla.deploy.export.user_cache import user_cache_dir

CONVERT_SCRIPT = Path(__file__).resolve().parent / "litert_convert.py"


def litert_venv() -> Path:
    """The conversion environment (``make litert-env`` builds it): ``EDGEVLA_LITERT_VENV``, else
    ``venv-litert`` in the user's cache (`user_cache.py`), outside the checkout."""
    env = os.environ.get("EDGEVLA_LITERT_VENV")
    return Path(env) if env else user_cache_dir() / "venv-litert"


def litert_python() -> Path | None:
    """The conversion environment's interpreter; None when it is not built."""
    path = litert_venv() / "bin" / "python"
    return path if path.is_file() else None


def vision_module(policy, kind: str, layout: Any):
    """The PyTorch module the ONNX vision stage was exported from."""
    # torch at import: kept here so that reading a bundle never loads it
    from edgevla.deploy.export import act as export_act
    from edgevla.deploy.export import smolvla as export_smolvla

    if kind == "act":
        return export_act.VisionStage(policy).eval()
    return export_smolvla.VisionStage(policy, layout).eval()


def add_litert_vision(policy, kind: str, layout: Any, out_dir: Path, stages: dict[str, StageSpec],
                      feeds: list[dict[str, np.ndarray]], say: Callable[[str], None]) -> None:
    """Convert the vision stage and add ``litert-fp32`` and ``litert-int8`` to its variants.

    ``feeds``: the vision stage's calibration inputs (``images`` arrays); the first is the example
    the program is traced with. A missing environment or a failed conversion is said, not raised:
    the ONNX variants stand on their own."""
    import torch

    python = litert_python()
    if python is None:
        say("LiteRT vision skipped: no conversion environment (make litert-env)")
        return
    images = [np.asarray(f["images"], np.float32) for f in feeds]
    with tempfile.TemporaryDirectory(prefix="edgevla-litert-") as tmp:
        t = Path(tmp)
        with torch.no_grad():
            program = torch.export.export(vision_module(policy, kind, layout),
                                          (torch.from_numpy(images[0]),))
        torch.export.save(program, t / "vision.pt2")
        np.save(t / "example.npy", images[0])
        np.save(t / "calib.npy", np.stack(images))
        fp32, int8 = out_dir / "vision.tflite", out_dir / "vision.int8.tflite"
        run = subprocess.run([str(python), str(CONVERT_SCRIPT), str(t / "vision.pt2"),
                              str(t / "example.npy"), str(t / "calib.npy"), str(fp32), str(int8)],
                             capture_output=True, text=True, timeout=1800)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        say(f"LiteRT vision failed ({python}): {last}")
        for f in (fp32, int8):
            f.unlink(missing_ok=True)
        return
    info = json.loads(run.stdout.strip().splitlines()[-1])
    stages["vision"].variants["litert-fp32"] = StageFile(file=fp32.name, backend="litert",
                                                         precision="fp32")
    stages["vision"].variants["litert-int8"] = StageFile(file=int8.name, backend="litert",
                                                         precision="int8")
    say(f"converted vision -> LiteRT fp32 and int8 full-integer ({info['int8_io'][0][1]} input)")
