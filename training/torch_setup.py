"""Import torch/torchvision safely on machines whose torchvision C extension mismatches torch.

The torchvision 0.28.0 wheel that matches the CPU torch 2.13.0 here was built against a CUDA
torch, so its `torchvision::nms` / `qnms` ops never register and `import torchvision` fails.
Defining the two op schemas before torchvision's first import is enough for everything we use
(resnet backbones, transforms).

Every Python process of the project's environment gets this without asking: the install writes
a ``.pth`` file that calls `install_import_hook()`, which does it just before torchvision is
first imported (so ``python -c "import lerobot..."`` works as typed). `ensure_torchvision()` is
the same, called directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_LIB = None  # keeps the torch.library.Library alive; dropping it unregisters the schemas


def _define_missing_ops() -> None:
    """Define nms/qnms only when torchvision's own extension cannot provide them (where it
    loads, as with a matching build, defining them first would clash with its registration)."""
    global _LIB
    import torch

    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - probe whether the real op exists
        return
    except (AttributeError, RuntimeError):
        pass
    spec = importlib.util.find_spec("torchvision")
    if spec is not None and spec.origin:
        for so in sorted(Path(spec.origin).parent.glob("_C*.so")):
            try:
                torch.ops.load_library(str(so))
                torch.ops.torchvision.nms.default  # noqa: B018
                return
            except (OSError, AttributeError, RuntimeError):
                pass
    if _LIB is None:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB = lib


def ensure_torchvision() -> None:
    _define_missing_ops()
    import torchvision  # noqa: F401 - now imports cleanly


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Runs `_define_missing_ops` once, at the first ``import torchvision``, then steps aside."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            try:
                _define_missing_ops()
            except Exception:  # noqa: BLE001 - never break an import that might work anyway
                pass
        return None


def install_import_hook() -> None:
    if "torchvision" not in sys.modules and \
            not any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeTorchvision())
