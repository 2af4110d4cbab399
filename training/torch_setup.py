"""Import torch/torchvision safely on machines whose torchvision C extension mismatches torch.

The torchvision 0.28.0 wheel that matches the CPU torch 2.13.0 here was built against a CUDA
torch, so its `torchvision::nms` / `qnms` ops never register and `import torchvision` fails.
Defining the two op schemas before torchvision's first import is enough for everything we use
(resnet backbones, transforms). Call `ensure_torchvision()` before importing lerobot.
"""

from __future__ import annotations

_LIB = None  # keeps the torch.library.Library alive; dropping it unregisters the schemas


def ensure_torchvision() -> None:
    global _LIB
    import torch

    try:
        torch.ops.torchvision.nms.default  # noqa: B018 - probe whether the real op exists
        return
    except (AttributeError, RuntimeError):
        pass
    if _LIB is None:
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIB = lib
    import torchvision  # noqa: F401 - now imports cleanly
