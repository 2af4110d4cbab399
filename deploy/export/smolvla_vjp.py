"""The denoise step's vector-Jacobian product as an ONNX graph, for real-time chunking's full
correction on the board's path.

RTC's guidance (`edgevla.deploy.inference.rtc`) needs ``J_v(x_t)^T e``: how the step's velocity
changes with ``x_t``, applied backwards to the error ``e``. ONNX has no autograd, so the product
is traced in PyTorch and exported as its own graph: ``torch.func.vjp`` of `DenoiseStage`, made
into plain aten ops by ``make_fx`` (the TorchScript exporter cannot follow ``torch.func``), then
the dynamo exporter. Inputs: the step's (``x_t``, ``timestep``), the ``cotangent`` and the
prefill's outputs as they are (no per-chunk prep split); outputs ``v_t`` and ``vjp``. Standard
ONNX ops only (lerobot's RoPE without scatter, lerobot's attention). The graph is optional in a
bundle (`edgevla export --rtc-vjp`): its name is in the manifest's ``extra.denoise_vjp``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgevla.deploy.export import smolvla as export_smolvla

FILE = "denoise_vjp.onnx"


class DenoiseVJP(nn.Module):
    """(x_t, timestep, cotangent, prefix...) -> (v_t, J_v(x_t)^T cotangent)."""

    def __init__(self, denoise: nn.Module) -> None:
        super().__init__()
        self.denoise = denoise

    def forward(self, x_t, timestep, cotangent, prefix_pad_mask, *kv):
        v_t, pullback = torch.func.vjp(lambda x: self.denoise(x, timestep, prefix_pad_mask, *kv), x_t)
        return v_t, pullback(cotangent)[0]


def export_denoise_vjp(policy, layout: export_smolvla.SmolVLALayout, out_dir: str | Path,
                       opset: int = 18) -> dict[str, Any]:
    """Write ``denoise_vjp.onnx`` into ``out_dir``; -> its manifest entry (file, inputs, outputs)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    lo = layout
    ex = export_smolvla.example_inputs(lo)
    module = DenoiseVJP(export_smolvla.DenoiseStage(policy, lo)).eval()
    patches = export_smolvla._ExportPatches(export_smolvla.rope_without_scatter, None)
    with torch.no_grad():
        vision, prefill = export_smolvla.VisionStage(policy, lo), export_smolvla.PrefillStage(policy, lo)
        prefix = prefill(**dict(ex["prefill"], image_tokens=vision(ex["vision"]["images"])))
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(1, lo.chunk_size, lo.max_action_dim, generator=g)
    args = (x_t, torch.tensor([0.5]), torch.randn(x_t.shape, generator=g), *prefix)
    names = ["x_t", "timestep", "cotangent", "prefix_pad_mask", *lo.kv_names()]
    path = Path(out_dir) / FILE
    with patches, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = make_fx(module)(*args)
        # one file, weights inside (a bundle's stage files are single files; protobuf's 2 GB
        # limit is far above the sizes this runs at)
        torch.onnx.export(traced, args, str(path), input_names=names, output_names=["v_t", "vjp"],
                          opset_version=opset, dynamo=True, verbose=False, external_data=False)
    return {"file": FILE, "inputs": names, "outputs": ["v_t", "vjp"]}
