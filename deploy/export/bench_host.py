"""What the host's kernels give, measured beside the inference bench's rows.

A speed-up over lerobot eager is a ratio of two libraries' kernels on one CPU: torch's fp32 BLAS
(MKL in the PyTorch wheels) and ONNX Runtime's MLAS. Their relative speed moves from CPU to CPU,
so the bench states the host and both libraries' GEMM throughput on one transformer MLP shape
(the vision tower's: 1024 tokens, 768 -> 3072) at the bench's thread count: how much of a ratio
is the baseline's kernels is then on the record beside the ratio.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgevla.actors.console.bench_report import cpu_facts

# The SigLIP vision tower's MLP product at smolvla_base's size, one camera.
M, K, N = 1024, 768, 3072
REPS = 20
HOST_NOTE = ("host_*, *_gemm_*: the CPU and each library's GEMM throughput on one MLP shape at the "
             "same threads; a speed-up over eager carries torch's fp32 kernel speed on this CPU, "
             "*_selective_vs_onnx_fp32 is the quantization's part alone")


def _median_s(fn) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(REPS):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _ort_matmul(weight: np.ndarray, threads: int, int8: bool):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if int8:  # the ops quantize_dynamic writes for a MatMul (int8 weights, activations on the fly)
        scale = np.float32(np.abs(weight).max() / 127)
        wq = np.round(weight / scale).astype(np.int8)
        inits = [numpy_helper.from_array(wq, "w"), numpy_helper.from_array(np.array(scale), "ws"),
                 numpy_helper.from_array(np.array(0, np.int8), "wz")]
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                 helper.make_node("MatMulInteger", ["xq", "w", "xz", "wz"], ["yi"]),
                 helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["xs", "ws"], ["s"]),
                 helper.make_node("Mul", ["yf", "s"], ["y"])]
    else:
        inits = [numpy_helper.from_array(weight, "w")]
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def host_kernels(threads: int) -> dict[str, Any]:
    """Host facts and GEMM throughput: torch fp32, ORT fp32, ORT int8 (GFLOP/s, 2 ops a MAC)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(threads)
    finally:
        torch.set_num_threads(before)


def _measure(threads: int) -> dict[str, Any]:
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal((M, K), dtype=np.float32)
    w = (rng.standard_normal((K, N), dtype=np.float32) / np.sqrt(K)).astype(np.float32)
    flop = 2.0 * M * K * N
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    with torch.inference_mode():
        t_torch = _median_s(lambda: xt @ wt)
    fp32 = _ort_matmul(w, threads, int8=False)
    int8 = _ort_matmul(w, threads, int8=True)
    t_fp32 = _median_s(lambda: fp32.run(None, {"x": x}))
    t_int8 = _median_s(lambda: int8.run(None, {"x": x}))
    blas = "mkl" if torch.backends.mkl.is_available() else "other"
    cpu = cpu_facts()
    return {"host_cpu": cpu["cpu"], "host_cpu_features": cpu["cpu_features"], "torch_blas": blas,
            "torch_fp32_gemm_gflops": round(flop / t_torch / 1e9, 1),
            "ort_fp32_gemm_gflops": round(flop / t_fp32 / 1e9, 1),
            "ort_int8_gemm_gops": round(flop / t_int8 / 1e9, 1)}
