"""Selective quantization of exported stages with ONNX Runtime's tools (export side, no torch).

Precisions (the names used in manifests and ``--precision``):

* ``fp32``          – the exported graph as is.
* ``int8-dynamic``  – MatMul/Gemm weights int8, activations quantized on the fly. Only those ops:
  quantizing the whole graph made convolutions slower on this CPU (SETUP-NOTES), so convs stay fp32.
* ``int8-static``   – QDQ int8 for weights and activations with calibration on dataset inputs
  (per-channel weights); what convolutional stages (ACT's ResNet) need to get faster in int8.
* ``int8``          – the right int8 for the stage: static QDQ when the graph is mostly
  convolutions, MatMul-only dynamic otherwise.
* ``int4``          – 4-bit block-wise weight-only MatMul (``MatMulNBits`` contrib op), for the
  prefill's LLM weights; other ops untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

STAGE_PRECISIONS = ("fp32", "int8", "int8-dynamic", "int8-static", "int4")


def parse_precision_spec(spec: str, stages: Iterable[str]) -> dict[str, str]:
    """``"vision=int8,prefill=int4,denoise=fp32"`` -> dict; unnamed stages stay fp32."""
    stages = list(stages)
    out = {s: "fp32" for s in stages}
    if not spec:
        return out
    for part in spec.split(","):
        if "=" not in part:
            raise ValueError(f"--precision: expected STAGE=PRECISION, got {part!r}")
        stage, prec = (p.strip() for p in part.split("=", 1))
        if stage not in out:
            raise ValueError(f"--precision: unknown stage {stage!r}; this policy has {stages}")
        if prec not in STAGE_PRECISIONS:
            raise ValueError(f"--precision {stage}: {prec!r} is not one of {STAGE_PRECISIONS}")
        out[stage] = prec
    return out


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def resolve_int8(path: Path) -> str:
    c = _op_counts(path)
    return "int8-static" if c.get("Conv", 0) > c.get("MatMul", 0) + c.get("Gemm", 0) else "int8-dynamic"


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_stage(src: str | Path, dst: str | Path, precision: str,
                   calibration: list[dict[str, np.ndarray]] | None = None) -> str:
    """Write ``dst`` from ``src`` at ``precision``; returns the concrete precision used."""
    src, dst = Path(src), Path(dst)
    if precision not in STAGE_PRECISIONS:
        raise ValueError(f"precision must be one of {STAGE_PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        if src != dst:
            dst.write_bytes(src.read_bytes())
        return "fp32"
    if precision == "int8":
        precision = resolve_int8(src)
    # ORT's quantizers log a generic "consider pre-processing" warning on the root logger for
    # every call; our graphs are already constant-folded at export. Keep the console readable.
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.ERROR)
    try:
        _quantize(src, dst, precision, calibration)
    finally:
        root.setLevel(old_level)
    return precision


def _quantize(src: Path, dst: Path, precision: str, calibration) -> None:
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)

    import onnx

    if precision == "int8-dynamic":
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QInt8, per_channel=False,
                         # 7-bit weights: x86 CPUs without VNNI (AVX2) multiply u8 x s8 with
                         # int16 pair sums that saturate at full range; measured on such a host
                         # (AMD EPYC, AVX2): SmolVLA denoise stage error 0.26 vs 0.1 allowed. Bundles
                         # run on dev hosts (sim profile) as well as on the board.
                         reduce_range=True,
                         # RotaryEmbedding (com.microsoft) outputs have no ONNX-inferred type;
                         # everything in these graphs is float32.
                         extra_options={"MatMulConstBOnly": True,
                                        "DefaultTensorType": onnx.TensorProto.FLOAT})
    elif precision == "int8-static":
        if not calibration:
            raise ValueError(f"{src.name}: int8-static needs calibration inputs (dataset frames)")
        quantize_static(str(src), str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "DefaultTensorType": onnx.TensorProto.FLOAT})
    elif precision == "int4":
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer)

        model = onnx.load(str(src))
        cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, bits=4,
                                           op_types_to_quantize=("MatMul",))
        q = MatMulNBitsQuantizer(model, algo_config=cfg)
        q.process()
        q.model.save_model_to_file(str(dst), use_external_data_format=False)
