"""`edgevla bench rtc`: real-time chunking vs crossfade vs LeRobot's weighted_average, closed loop.

The project's SmolVLA (``models/smolvla/bundle``, trained by `make smolvla`; another with
``EDGEVLA_RTC_BUNDLE``) drives the simulated arm from protocol start positions it was not
trained on, through the executor actor and the merged policy actor (ONNX Runtime), with the
inference delay simulated at 0-50 % of the chunk's horizon (`rtc_runs`). Per delay and method:

* ``prefix_disagreement_rad`` – mean |new chunk - what the executor had committed to| over the
  actions that run during the delay (the first ``d``; at least one);
* ``max_seam_jump_rad`` – within 300 ms of each chunk's arrival, the largest change from one
  tick to the next of (command - the commitment): how abruptly the arm leaves the motion in
  progress (`rtc_runs.metrics`); ``rms_jerk_rad_s3``; ``starved_ms``;
* the latency cost of guidance: the denoise stage's wall time per chunk with and without it,
  same prefixes, interleaved (same threads, same machine state).

Methods: ``rtc`` (guided, the executor switches with no crossfade: ``latest``),
``rtc+crossfade`` (guided, 100 ms crossfade), ``rtc-full`` (as ``rtc`` with the paper's
correction through the denoise step's vector-Jacobian product, when the bundle has the graph),
``crossfade`` (unguided, 200 ms minjerk, the
executor's default), ``weighted_average`` (unguided, LeRobot async's aggregate 0.3 old / 0.7 new).
Summary: the ratios at 30 % delay (``rtc_disagreement_ratio_at_30pct`` = rtc / crossfade, target
<= 0.25; ``rtc_seam_jump_vs_crossfade_at_30pct``, target <= 1) and the latency overhead.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.bench import rtc_runs
from edgevla.actors.bench.rtc_plot import plot_seams
from edgevla.actors.bench.rtc_runs import METHODS, Method, RunRecord, metrics, policy_actor
from edgevla.actors.console.bench_report import BenchInputError, BenchResult
from edgevla.actors.kinds.stage_guidance import StageGuidance
from edgevla.actors.wire.messages import Commitment
from edgevla.deploy.bundle.manifest import Manifest, load_manifest
from edgevla.deploy.inference.pipeline import StageModel
from edgevla.firmware_bridge.servos.joint_units import joint_map
from edgevla.training.eval.eval_starts import eval_specs
from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.scene import SceneConfig

DEFAULT_BUNDLE = "models/smolvla/bundle"
COLUMNS = ["delay_pct", "delay_ms", "method", "prefix_disagreement_rad", "max_seam_jump_rad",
           "rms_jerk_rad_s3", "starved_ms", "chunks", "success"]


def bundle_path() -> Path:
    path = Path(os.environ.get("EDGEVLA_RTC_BUNDLE", DEFAULT_BUNDLE))
    if not (path / "manifest.json").is_file():
        raise BenchInputError(f"{path}: no model bundle (manifest.json); `make smolvla` trains "
                              "and exports the project's SmolVLA there, or set EDGEVLA_RTC_BUNDLE")
    m = load_manifest(path, check_files=False)
    if m.policy != "smolvla":
        raise BenchInputError(f"{path}: the bundle's policy is {m.policy!r}; real-time "
                              "chunking guides a SmolVLA's denoiser")
    return path


def _row(pct: int, delay_s: float, method: Method, recs: list[RunRecord], fps: float) -> dict[str, Any]:
    ms = [metrics(r, fps) for r in recs]
    gaps = [g for r in recs for g in r.disagreement]
    return {"delay_pct": pct, "delay_ms": round(delay_s * 1e3, 1), "method": method.name,
            "prefix_disagreement_rad": round(float(np.mean(gaps)), 5) if gaps else None,
            "max_seam_jump_rad": round(max(m["max_seam_jump_rad"] for m in ms), 5),
            "rms_jerk_rad_s3": round(float(np.mean([m["rms_jerk_rad_s3"] for m in ms])), 3),
            "starved_ms": round(float(np.sum([m["starved_ms"] for m in ms])), 1),
            "chunks": len(gaps), "success": f"{sum(r.success for r in recs)}/{len(recs)}"}


def _latency_cost(bundle: Path, n: int) -> dict[str, float]:
    """Denoise wall time per chunk, guided (each correction) vs not, same prefix, interleaved."""
    model = StageModel(bundle, ("vision", "prefill", "denoise"))
    m = model.manifest
    rng = np.random.default_rng(0)
    frames = {c: rng.integers(0, 255, (*m.image_hw, 3), dtype=np.uint8) for c in m.cameras}
    prefix = model.prefill(model.features(frames, np.zeros(m.state_dim, np.float32)))
    units = joint_map(m.joint_units, m.joint_names, None, where="bench")
    commitment = Commitment(np.zeros((m.chunk_size, m.action_dim), np.float32), 0, m.dt_ns,
                            m.dt_ns * m.chunk_size // 3)
    kinds = ["plain", "lerobot"] + (["full"] if "denoise_vjp" in m.extra else [])
    guides = {}
    for kind in kinds[1:]:
        g = StageGuidance({"rtc": True, "rtc_correction": kind}, m, units, "bench")
        g.commitment = commitment
        guides[kind] = g
    vjp_at = functools.partial(model.velocity_vjp, prefix)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(n):
        for kind in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:  # rotate the order
            guide = guides[kind].guide_for(0, vjp_at) if kind in guides else None
            t0 = time.perf_counter()
            model.denoise(prefix, model.sample_noise(rng), None, guide)
            times[kind].append(time.perf_counter() - t0)
    ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    out = {"denoise_ms": round(ms["plain"], 3), "denoise_rtc_ms": round(ms["lerobot"], 3),
           "rtc_overhead_ms": round(ms["lerobot"] - ms["plain"], 3),
           "rtc_overhead_pct": round(100 * (ms["lerobot"] - ms["plain"]) / ms["plain"], 1)}
    if "full" in ms:
        out.update(denoise_rtc_full_ms=round(ms["full"], 3),
                   rtc_full_overhead_pct=round(100 * (ms["full"] - ms["plain"]) / ms["plain"], 1))
    return out


def run(quick: bool = False) -> BenchResult:
    from rich.progress import Progress

    bundle = bundle_path()
    m = load_manifest(bundle)
    horizon_s = m.chunk_size * m.dt_ns / 1e9
    pcts = [0, 30, 50] if quick else [0, 10, 20, 30, 40, 50]
    starts = eval_specs(1 if quick else 3, 0 if quick else 1, seed=4242)
    duration_s = 6.0 if quick else 12.0
    methods = [x for x in METHODS if x.correction != "full" or "denoise_vjp" in m.extra]
    rows: list[dict[str, Any]] = []
    plot_runs: dict[str, RunRecord] = {}
    scene = SceneConfig(width=int(m.image_hw[1]), height=int(m.image_hw[0]), fps=int(round(m.fps)), seed=0)
    with TeaBagEnv(scene) as env, Progress(transient=True) as progress:
        task = progress.add_task("rtc bench", total=len(pcts) * len(methods) * len(starts) + 1)
        for pct in pcts:
            delay_s = pct / 100 * horizon_s
            for method in methods:
                recs = []
                for i, spec in enumerate(starts):
                    policy = policy_actor(str(bundle), method, seed=i)
                    recs.append(rtc_runs.run(env, spec, policy, method, delay_s, duration_s))
                    progress.advance(task)
                rows.append(_row(pct, delay_s, method, recs, float(m.fps)))
                if pct == 30 and method.name in ("rtc", "crossfade"):
                    plot_runs[method.name] = recs[0]
        cost = _latency_cost(bundle, 6 if quick else 20)
        progress.advance(task)
    out_dir = os.environ.get("EDGEVLA_BENCH_OUT")
    png = plot_seams(plot_runs, 0.3 * horizon_s, Path(out_dir) / "rtc_seam.png") \
        if out_dir and plot_runs else None
    return BenchResult("rtc: real-time chunking vs crossfade vs LeRobot weighted_average, "
                       "closed loop in the sim", rows, _summary(rows, cost, png), columns=COLUMNS,
                       notes=_notes(bundle, m, starts, duration_s, cost))


def _at(rows: list[dict[str, Any]], pct: int, method: str, key: str) -> float:
    return next(r[key] for r in rows if r["delay_pct"] == pct and r["method"] == method)


def _summary(rows, cost, png) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        key = method.replace("+", "_").replace("-", "_")
        out[f"{key}_disagreement_rad_at_30pct"] = _at(rows, 30, method, "prefix_disagreement_rad")
        out[f"{key}_seam_jump_rad_at_30pct"] = _at(rows, 30, method, "max_seam_jump_rad")
        out[f"{key}_rms_jerk_at_30pct"] = _at(rows, 30, method, "rms_jerk_rad_s3")
    cf = out["crossfade_disagreement_rad_at_30pct"]
    out["rtc_disagreement_ratio_at_30pct"] = round(out["rtc_disagreement_rad_at_30pct"] / cf, 4)
    out["rtc_seam_jump_vs_crossfade_at_30pct"] = round(
        out["rtc_seam_jump_rad_at_30pct"] / out["crossfade_seam_jump_rad_at_30pct"], 4)
    out["rtc_crossfade_seam_jump_vs_crossfade_at_30pct"] = round(
        out["rtc_crossfade_seam_jump_rad_at_30pct"] / out["crossfade_seam_jump_rad_at_30pct"], 4)
    out["starved_ms_total"] = round(sum(r["starved_ms"] for r in rows if r["delay_pct"] < 100), 1)
    out.update(cost)
    out["plot"] = str(png) if png else None
    return out


def _notes(bundle: Path, m: Manifest, starts: list, duration_s: float, cost: dict[str, float]) -> list[str]:
    return [
        f"bundle {bundle} ({m.model_id}): chunk {m.chunk_size} x {m.dt_ns / 1e6:.1f} ms; delay "
        "% of that horizon; the bundle's default stage precisions, ONNX Runtime, 1 thread, "
        "the merged policy actor",
        f"{len(starts)} protocol start(s) not in the training set (seed 4242), {duration_s:.0f} s "
        "each on a virtual clock; rows: disagreement and jerk averaged, seam jump the worst",
        "guidance: lerobot's RTC defaults (linear schedule, max guidance 10), execution horizon "
        "= as far as the commitment reaches; correction without the velocity's Jacobian, as "
        "lerobot 0.4.4 computes it (docs/ARCHITECTURE.md, real-time chunking)",
        f"latency: denoise per chunk {cost['denoise_ms']} ms plain, {cost['denoise_rtc_ms']} ms "
        f"guided, {cost.get('denoise_rtc_full_ms', '-')} ms guided with the full correction "
        "(medians, interleaved, same prefix)",
    ]

