"""The inference bench's host facts: each library's GEMM is the product it claims to time."""

from __future__ import annotations

import numpy as np

from edgevla.deploy.export import bench_host


def test_the_timed_onnx_graphs_compute_the_matrix_product():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((bench_host.M, bench_host.K)).astype(np.float32)
    w = (rng.standard_normal((bench_host.K, bench_host.N)) / np.sqrt(bench_host.K)).astype(np.float32)
    ref = x @ w
    fp32 = bench_host._ort_matmul(w, 1, int8=False).run(None, {"x": x})[0]
    int8 = bench_host._ort_matmul(w, 1, int8=True).run(None, {"x": x})[0]
    np.testing.assert_allclose(fp32, ref, rtol=1e-4, atol=1e-3)
    rel = np.sqrt(np.mean((int8 - ref) ** 2) / np.mean(ref ** 2))
    assert rel < 0.03, rel  # 8-bit weights and activations: ~1% of the output's scale


def test_host_kernels_reports_the_cpu_and_three_throughputs(monkeypatch):
    monkeypatch.setattr(bench_host, "REPS", 2)
    k = bench_host.host_kernels(1)
    assert k["host_cpu"] and isinstance(k["host_cpu_features"], str)
    for key in ("torch_fp32_gemm_gflops", "ort_fp32_gemm_gflops", "ort_int8_gemm_gops"):
        assert k[key] > 0, k
