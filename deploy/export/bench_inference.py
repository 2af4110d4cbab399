"""`edgevla bench inference`: lerobot eager vs ONNX FP32 vs selective quantization, per stage and
end to end, for ACT and SmolVLA small configs, 2 threads (torch and ONNX Runtime alike).

Eager end to end is lerobot's own path (pre-processor -> predict_action_chunk -> post-processor);
per-stage eager times run the PyTorch stage modules the graphs were exported from. Our end to end
is `StageModel.predict` (numpy pre/post-processing included). Action errors are measured against
the fp32 pipeline (itself equal to lerobot to ~1e-7 rad, see tests/deploy/test_export.py) on the same
noise, as max |error| in rad and as a fraction of each joint's range.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.bench_report import BenchResult
from edgevla.deploy.export import smolvla_base as sb
from edgevla.deploy.export import smolvla_local as sl
from edgevla.deploy.export.bench_host import HOST_NOTE, host_kernels
from edgevla.deploy.export.exporter import camera_names, export_bundle, synthetic_samples
from edgevla.deploy.export.parity import _processors, composed_parity, lerobot_chunk, stage_parity
from edgevla.deploy.inference.backends import BackendOptions
from edgevla.deploy.inference.pipeline import StageChoice, StageModel

THREADS = 2
# ORT workers spin while a run is in flight and stop when it returns (what the board graph's
# stage actors use, deploy/bundle/manifest.py): no CPU is burnt between runs, so the torch rows timed
# round-robin next to the ORT ones are not slowed by idle spinning threads.
SPINNING = "run"
# Untimed pause before every timed call: with lerobot's default OpenMP wait policy a torch call
# leaves its worker thread spinning ~10 ms (measured: a core burnt for 10 ms after a matmul),
# which took one of the two cores from whatever was timed next. The pause busy-waits on this
# thread (a sleep let the VM's vCPUs idle and made every row slower and noisier).
SETTLE_S = 0.012


def _settle(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _interleaved(fns: dict, reps: int) -> dict:
    """Time callables round-robin; -> {key: (median ms, median over rounds of first/this)}.

    The first key is the baseline. Pairing each round's times cancels slow drifts in load.
    """
    keys = list(fns)
    for k in keys:  # warm-up (ORT arenas, torch allocator, lazy inits)
        fns[k]()
    times: dict = {k: [] for k in keys}
    cpu: dict = {k: [] for k in keys}
    for _ in range(reps):
        for k in keys:
            _settle(SETTLE_S)
            c0, t0 = time.process_time(), time.perf_counter()
            fns[k]()
            times[k].append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    base, cbase = times[keys[0]], cpu[keys[0]]
    out = {}
    for k in keys:
        out[k] = (statistics.median(times[k]),
                  round(statistics.median(b / t for b, t in zip(base, times[k])), 2))
        # CPU time (all threads of this process) is far less sensitive to other processes
        # than wall time on a loaded machine: a second view of the same comparison.
        _CPU[k] = (round(statistics.median(cpu[k]), 3),
                   round(statistics.median(cpu[k]) and statistics.median(cbase) /
                         max(statistics.median(cpu[k]), 1e-6), 2))
    return out


_CPU: dict = {}


def _eager_denoise(den, x, prefix, steps: int):
    import torch

    dt = -1.0 / steps
    for i in range(steps):
        x = x + dt * den(x, torch.tensor([1.0 + i * dt]), *prefix)
    return x


def _policies(quick: bool, root: Path):
    if quick:
        act = sl.make_tiny_act(image_hw=(64, 64))
        vlm = sl.write_tiny_smolvlm(root / "vlm")
        smol = sl.make_tiny_smolvla(vlm)
        return act, smol, "tiny (ACT d=64 64px; SmolVLA text 64/vision 48 at 64px)"
    act = sl.make_tiny_act(image_hw=(96, 96), chunk_size=50, dim_model=256,
                           n_heads=8, dim_feedforward=1024, n_encoder_layers=4)
    size = sl.SmolVLMSize(text_hidden=256, text_layers=4, text_heads=4, text_kv_heads=2,
                          vision_hidden=192, vision_layers=4, vision_heads=4, image_size=128)
    vlm = sl.write_tiny_smolvlm(root / "vlm", size)
    smol = sl.make_tiny_smolvla(vlm, image_hw=(128, 128), chunk_size=50)
    return act, smol, ("small (ACT d=256 4 enc layers 3x96px chunk 50; SmolVLA text 256x4, "
                       "vision 192x4 at 3x128px, chunk 50, 10 steps)")


@dataclass
class _PolicyBench:
    """One policy's rows and summary keys: its bundle timed per stage and end to end."""

    policy: Any
    stats: Any
    bundle: Path
    samples: list
    reps: int
    rows: list

    def __post_init__(self) -> None:
        self.kind = self.policy.name
        self.opts = BackendOptions(threads=THREADS, allow_spinning=SPINNING)
        self.stages = (("vision", "decoder") if self.kind == "act"
                       else ("vision", "prefill", "denoise"))
        self.fp32 = StageModel(self.bundle, options=self.opts,
                               choices={s: StageChoice("fp32", "onnxruntime") for s in self.stages})
        self.m = self.fp32.manifest
        self.smp = self.samples[0]
        self.task = self.m.extra.get("task", "")
        self.noise = (self.fp32.sample_noise(np.random.default_rng(0)) if self.kind == "smolvla"
                      else None)
        self.steps = self.fp32.num_steps

    def row(self, stage, backend, precision, ms, **kw) -> None:
        self.rows.append({"policy": self.kind, "stage": stage, "backend": backend,
                          "precision": precision, "latency_ms": round(ms, 3), **kw})

    def size_mb(self, stage, key):
        return round(self.m.stages[stage].variants[key].size_bytes / 1e6, 2)

    def stage_calls(self) -> tuple[dict, dict]:
        """Per stage: the eager PyTorch call, and how to call it on a `StageModel`; the same
        inputs for every backend."""
        import torch

        # torch at import: kept here so that importing this module does not load it
        from edgevla.deploy.export import act as export_act
        from edgevla.deploy.export import smolvla as export_smolvla

        m, fp32, policy, noise, steps = self.m, self.fp32, self.policy, self.noise, self.steps
        imgs = fp32.images_tensor(self.smp.frames)
        feats = fp32.features(self.smp.frames, self.smp.state)
        with torch.no_grad():
            ti = torch.from_numpy(imgs)
            st = torch.from_numpy(feats["state"][None])
            if self.kind == "act":
                lo = export_act.layout_of(policy)
                vis = export_act.VisionStage(policy).eval()
                dec = export_act.DecoderStage(policy, lo).eval()
                tok = vis(ti)
                eager_fns = {"vision": lambda: vis(ti), "decoder": lambda: dec(tok, st)}
                calls = {"vision": lambda mdl: mdl.vision(imgs),
                         "decoder": lambda mdl: mdl.act_decode(feats)}
                return eager_fns, calls
            lo = export_smolvla.SmolVLALayout(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in m.extra["layout"].items()})
            vis = export_smolvla.VisionStage(policy, lo).eval()
            pre = export_smolvla.PrefillStage(policy, lo).eval()
            den = export_smolvla.DenoiseStage(policy, lo).eval()
            tok = vis(ti)
            lt = torch.tensor(m.extra["lang_tokens"])[None]
            lm = torch.tensor(m.extra["lang_mask"])[None]
            prefix_t = pre(tok, lt, lm, st)
            x = torch.from_numpy(noise)
            eager_fns = {"vision": lambda: vis(ti), "prefill": lambda: pre(tok, lt, lm, st),
                         # N steps with the same update rule as the ONNX path
                         "denoise": lambda: _eager_denoise(den, x, prefix_t, steps)}
            prefix = fp32.prefill(feats)
            calls = {"vision": lambda mdl: mdl.vision(imgs),
                     "prefill": lambda mdl: mdl.prefill(feats),
                     "denoise": lambda mdl: mdl.denoise(prefix, noise, steps)}
        return eager_fns, calls

    def time_stages(self) -> None:
        """Per stage: eager and every variant timed round-robin (paired rounds: load spikes on
        this shared machine hit all of them alike); speedup = median over rounds of
        eager/variant."""
        import torch

        eager_fns, calls = self.stage_calls()
        stage_fns: dict[str, dict[tuple, Any]] = {}
        for s in self.stages:
            fns: dict[tuple, Any] = {
                ("torch", "eager", None): eager_fns[s],
                ("onnxruntime", "fp32", "fp32"): (lambda s=s: calls[s](self.fp32))}
            for key, var in self.m.stages[s].variants.items():
                if key == "fp32":
                    continue
                one = StageModel(self.bundle, (s,), {s: StageChoice(key)}, options=self.opts)
                fns[(var.backend, var.precision, key)] = (lambda s=s, mm=one: calls[s](mm))
            stage_fns[s] = fns
        for s, fns in stage_fns.items():
            note = f"{self.steps} steps" if s == "denoise" else ""
            with torch.no_grad():
                res = _interleaved(fns, self.reps)
            for (backend, precision, key), (med, ratio) in res.items():
                cpu_ms, cpu_ratio = _CPU[(backend, precision, key)]
                self.row(s, backend, precision, med, speedup_vs_eager=ratio, cpu_ms=cpu_ms,
                         cpu_speedup=cpu_ratio, size_mb=self.size_mb(s, key) if key else None,
                         note=note)

    def stage_errors(self) -> None:
        """Stage output error of every quantized or LiteRT variant (dataset-like inputs)."""
        m = self.m
        for key in ("int8", "int4", "litert-fp32", "litert-int8"):
            prec = {s: key for s in self.stages if key in m.stages[s].variants}
            if not prec:
                continue
            errs = stage_parity(self.policy, self.bundle, self.samples[:2], prec,
                                random_inputs=False)
            for r in self.rows:
                var = m.stages[r["stage"]].variants.get(key) if r["stage"] in prec else None
                if r["policy"] == self.kind and var is not None and (
                        r["precision"], r["backend"]) == (var.precision, var.backend):
                    r["out_rel_err"] = round(errs[r["stage"]]["dataset_rel"], 5)

    def end_to_end_variants(self) -> dict[str, dict[str, str]]:
        sel_prec = {s: self.m.stages[s].default for s in self.stages}
        variants = {"selective": sel_prec}
        if self.kind == "smolvla":
            variants["sel+int4"] = dict(sel_prec, prefill="int4")
            if "int4" in self.m.stages["vision"].variants:
                variants["vis+pre-int4"] = dict(sel_prec, vision="int4", prefill="int4")
            variants["denoise-int8"] = dict(sel_prec, denoise="int8")
        else:
            variants["all-int8"] = {s: "int8" for s in self.stages}
        return variants

    def time_end_to_end(self) -> dict[str, tuple]:
        """End to end, also round-robin; baseline = lerobot predict_action_chunk alone (its
        processors excluded, ours included): the conservative comparison.

        -> {precision or lerobot note: (median ms, speedup, action error frac, CPU speedup)}"""
        import torch

        policy, smp, noise = self.policy, self.smp, self.noise
        pre_p, _ = _processors(policy, self.stats)
        b = pre_p(_lerobot_batch(policy, smp, self.task))
        tn = torch.from_numpy(noise) if noise is not None else None
        model_only = ((lambda: policy.predict_action_chunk(dict(b), noise=tn.clone()))
                      if self.kind == "smolvla" else (lambda: policy.predict_action_chunk(dict(b))))
        variants = self.end_to_end_variants()
        e2e: dict[tuple, Any] = {
            ("lerobot", "eager", "predict_action_chunk only"): model_only,
            ("lerobot", "eager", "+ lerobot pre/post-processors"):
                (lambda: lerobot_chunk(policy, self.stats, smp, self.task, noise)),
            ("onnxruntime", "fp32", ""):
                (lambda: self.fp32.predict(smp.frames, smp.state, noise=noise)),
        }
        for name, prec in variants.items():
            mdl = StageModel(self.bundle, choices={s: StageChoice(p) for s, p in prec.items()},
                             options=self.opts)
            e2e[("onnxruntime", name, ",".join(f"{s}={p}" for s, p in prec.items()))] = (
                lambda mdl=mdl: mdl.predict(smp.frames, smp.state, noise=noise))
        with torch.no_grad():
            res = _interleaved(e2e, self.reps)
        results: dict[str, tuple] = {}
        for (backend, precision, note), (med, ratio) in res.items():
            kw: dict[str, Any] = {"note": note}
            err_frac = None
            if backend == "onnxruntime":
                prec = variants.get(precision)
                err_rad, err_frac = _err(policy, self.stats, self.bundle, self.samples, prec)
                kw["action_err_rad"] = err_rad
                if prec is not None:
                    kw["action_err_pct_range"] = round(100 * err_frac, 4)
            cpu_ms, cpu_ratio = _CPU[(backend, precision, note)]
            self.row("end-to-end", backend, precision, med, speedup_vs_eager=ratio, cpu_ms=cpu_ms,
                     cpu_speedup=cpu_ratio, **kw)
            key = precision if backend == "onnxruntime" else note
            results[key] = (med, ratio, err_frac, cpu_ratio)
        return results


def _summarise(kind: str, results: dict[str, tuple], summary: dict) -> None:
    """The summary keys of one policy from its end-to-end results."""
    e2e_eager = results["predict_action_chunk only"][0]
    e2e_fp32 = results["fp32"][0]
    summary[f"{kind}_eager_with_processors_ms"] = round(
        results["+ lerobot pre/post-processors"][0], 2)
    if kind == "act":
        summary["act_eager_ms"] = round(e2e_eager, 2)
        summary["act_onnx_fp32_ms"] = round(e2e_fp32, 2)
        summary["act_speedup_vs_eager"] = results["fp32"][1]
        summary["act_cpu_speedup_vs_eager"] = results["fp32"][3]
        summary["act_int8_cpu_speedup_vs_eager"] = results["selective"][3]
        summary["act_int8_speedup_vs_eager"] = results["selective"][1]
        summary["act_int8_action_error"] = results["selective"][2]
        return
    summary["smolvla_eager_ms"] = round(e2e_eager, 2)
    summary["smolvla_onnx_fp32_ms"] = round(e2e_fp32, 2)
    summary["smolvla_selective_ms"] = round(results["selective"][0], 2)
    # the part of the speed-up that is the quantization alone, not the two libraries' fp32 kernels
    summary["smolvla_selective_vs_onnx_fp32"] = round(e2e_fp32 / results["selective"][0], 2)
    summary["smolvla_speedup_vs_eager"] = results["selective"][1]
    summary["smolvla_cpu_speedup_vs_eager"] = results["selective"][3]
    summary["smolvla_fp32_cpu_speedup_vs_eager"] = results["fp32"][3]
    summary["smolvla_fp32_speedup_vs_eager"] = results["fp32"][1]
    summary["quant_action_error"] = results["selective"][2]
    summary["quant_int4_action_error"] = results["sel+int4"][2]
    summary["denoise_quant_action_error"] = results["denoise-int8"][2]
    summary["denoise_quant_worse"] = results["denoise-int8"][2] > results["selective"][2]


def _bench_policy(policy, stats, bundle: Path, samples, reps: int, rows: list, summary: dict,
                  console) -> None:
    bench = _PolicyBench(policy, stats, bundle, samples, reps, rows)
    bench.time_stages()
    bench.stage_errors()
    results = bench.time_end_to_end()
    _summarise(bench.kind, results, summary)
    console(f"{bench.kind}: eager {results['predict_action_chunk only'][0]:.1f} ms, "
            f"onnx fp32 {results['fp32'][0]:.1f} ms, selective {results['selective'][0]:.1f} ms")


def _lerobot_batch(policy, smp, task: str) -> dict:
    import torch

    batch: dict[str, Any] = {
        f"observation.images.{c}": torch.from_numpy(smp.frames[c]).permute(2, 0, 1).float() / 255
        for c in camera_names(policy)}
    batch["observation.state"] = torch.from_numpy(np.asarray(smp.state, np.float32))
    batch["task"] = task
    return batch


def _err(policy, stats, bundle, samples, prec) -> tuple[float, float]:
    if prec is None:  # fp32 pipeline vs lerobot itself
        stages = ("vision", "decoder") if policy.name == "act" else ("vision", "prefill", "denoise")
        rep = composed_parity(policy, stats, bundle, samples[:2],
                              {s: StageChoice("fp32", "onnxruntime") for s in stages})
        return float(f"{rep.action_max_abs:.3g}"), rep.action_max_frac_range
    rep = composed_parity(policy, stats, bundle, samples, {s: StageChoice(p) for s, p in prec.items()},
                          reference="fp32")
    return float(f"{rep.action_max_abs:.3g}"), rep.action_max_frac_range


def _base_policy(root: Path):
    policy = sb.make_base_smolvla(sb.write_base_smolvlm(root / "vlm"))
    n = sum(p.numel() for p in policy.parameters())
    return policy, (f"base: SmolVLA at smolvla_base's published size ({n / 1e6:.0f}M parameters: "
                    f"SigLIP 768x12 at 512 px, SmolLM2 960 wide x 16 of 32 layers, expert 0.75x), "
                    f"3 cameras 640x480, chunk 50, 10 steps")


def stage_peak_rss_mb(bundle: Path, stage: str, precision: str, threads: int = THREADS) -> float:
    """Peak RSS of a process that opens one stage at ``precision`` and runs it once: what that
    stage's actor needs (Python, numpy, ONNX Runtime and the model), measured, not estimated."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "edgevla.deploy.inference.stage_memory", str(bundle),
                          stage, precision, str(threads)], capture_output=True, text=True,
                         timeout=1800, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def _memory_rows(bundle: Path, choice: dict[str, str], rows: list, summary: dict, prefix: str) -> None:
    total = 0.0
    for stage, prec in choice.items():
        mb = stage_peak_rss_mb(bundle, stage, prec)
        total += mb
        rows.append({"policy": prefix, "stage": stage, "backend": "onnxruntime", "precision": prec,
                     "peak_rss_mb": round(mb, 1), "note": "peak RSS of the stage's process"})
        summary[f"{prefix}_{stage}_peak_rss_mb"] = round(mb, 1)
    summary[f"{prefix}_stages_peak_rss_mb"] = round(total, 1)


def run(quick: bool = False, size: str = "small"):
    if size == "base":
        return run_base(quick)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # torch runs with lerobot's defaults: OMP_WAIT_POLICY is left as the caller set it (unset:
    # libgomp spins briefly, then sleeps). Forcing PASSIVE made lerobot's SmolVLA chunk 2x slower
    # on an idle machine (113-127 ms vs 57-60 ms, small config): a handicapped baseline. Run the
    # bench on an otherwise idle machine (spinning torch threads suffer most from other load).
    import torch
    from rich.console import Console

    console = Console(stderr=True)
    torch.set_num_threads(THREADS)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"threads": THREADS, "ort_allow_spinning": SPINNING,
                               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    reps = 5 if quick else 15
    with console.status("host kernels"):
        summary.update(host_kernels(THREADS))
    with tempfile.TemporaryDirectory(prefix="edgevla-bench-") as tmp:
        root = Path(tmp)
        act, smol, desc = _policies(quick, root)
        for policy in (act, smol):
            stats = sl.tiny_stats(policy)
            with console.status(f"exporting {policy.name}"):
                t0 = time.perf_counter()
                export_bundle(policy, root / policy.name, stats=stats,
                              samples=synthetic_samples(policy, 4 if quick else 8),
                              model_id=f"bench-{policy.name}")
                summary[f"{policy.name}_export_s"] = round(time.perf_counter() - t0, 1)
            samples = synthetic_samples(policy, 3 if quick else 6, seed=99)
            with console.status(f"timing {policy.name}"):
                _bench_policy(policy, stats, root / policy.name, samples, reps, rows, summary,
                              console.print)
    notes = [
        f"config: {desc}; random weights; torch and ONNX Runtime both at {THREADS} threads; "
        f"{reps} rounds, variants timed round-robin; latency = median, speedup = median over "
        f"rounds of the paired ratio eager/variant (load on a shared machine hits all alike)",
        "speedups vs eager use lerobot's predict_action_chunk alone (its processors excluded, "
        "ours included: numpy normalisation/resize); the row '+ lerobot pre/post-processors' "
        "is the full lerobot path; per-stage eager = the PyTorch stage modules exported",
        "action errors vs the fp32 pipeline on the same noise (fp32 vs lerobot: first end-to-end "
        "onnx row); *_action_error summary keys are max |error| / joint range (0.05 = 5%)",
        "targets: act_speedup_vs_eager >= 3, smolvla_speedup_vs_eager >= 3 with "
        "quant_action_error <= 0.05, denoise_quant_action_error > quant_action_error",
        HOST_NOTE,
    ]
    cols = ["policy", "stage", "backend", "precision", "latency_ms", "speedup_vs_eager", "cpu_ms",
            "cpu_speedup", "size_mb", "out_rel_err", "action_err_rad", "action_err_pct_range", "note"]
    for r in rows:  # short names keep the printed table readable
        r["stage"] = {"end-to-end": "e2e"}.get(r["stage"], r["stage"])
        r["backend"] = {"onnxruntime": "ort"}.get(r["backend"], r["backend"])
    return BenchResult(title="inference: lerobot eager vs ONNX fp32 vs selective quantization",
                       rows=rows, summary=summary, columns=cols, notes=notes)


def run_base(quick: bool = False):
    """SmolVLA at smolvla_base's size: export, quantize, time and measure memory (no ACT)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rich.console import Console

    console = Console(stderr=True)
    torch.set_num_threads(THREADS)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"threads": THREADS, "size": "base", "ort_allow_spinning": SPINNING}
    reps = 2 if quick else 5  # 3 rounds left the whole-chunk medians 20 % apart between runs
    with console.status("host kernels"):
        summary.update(host_kernels(THREADS))
    with tempfile.TemporaryDirectory(prefix="edgevla-bench-base-") as tmp:
        root = Path(tmp)
        with console.status("building smolvla_base-shaped SmolVLA"):
            policy, desc = _base_policy(root)
        summary["smolvla_base_params_m"] = round(sum(p.numel() for p in policy.parameters()) / 1e6, 1)
        stats = sl.tiny_stats(policy)
        bundle = root / "smolvla"
        with console.status("exporting (fp32 ONNX, then int8/int4 variants)") as st:
            t0 = time.perf_counter()
            m = export_bundle(policy, bundle, stats=stats, samples=synthetic_samples(policy, 4),
                              model_id="bench-smolvla-base", litert=False,
                              variants={"vision": ("fp32", "int8", "int4"),
                                        "prefill": ("fp32", "int8", "int4"),
                                        "denoise": ("fp32", "int8")},
                              progress=lambda s: st.update(s))
            summary["smolvla_base_export_s"] = round(time.perf_counter() - t0, 1)
        for s_name, spec in m.stages.items():
            for key, var in spec.variants.items():
                summary[f"smolvla_base_{s_name}_{key}_mb"] = round(var.size_bytes / 1e6, 1)
        samples = synthetic_samples(policy, 2 if quick else 3, seed=99)
        with console.status("timing smolvla base"):
            bench = _PolicyBench(policy, stats, bundle, samples, reps, rows)
            bench.time_stages()
            bench.stage_errors()
            results = bench.time_end_to_end()
        _summarise("smolvla", results, summary)
        if "vis+pre-int4" in results:
            summary["quant_vis_pre_int4_action_error"] = results["vis+pre-int4"][2]
        for k in [k for k in summary if k.startswith("smolvla_") and not k.startswith("smolvla_base")]:
            summary[k.replace("smolvla_", "smolvla_base_", 1)] = summary.pop(k)
        del policy
        with console.status("peak RSS per stage"):
            _memory_rows(bundle, {s: m.stages[s].default for s in ("vision", "prefill", "denoise")},
                         rows, summary, "smolvla_base")
    notes = [
        f"config: {desc}; random weights; torch and ONNX Runtime both at {THREADS} threads; "
        f"{reps} rounds, variants timed round-robin (median; speedup = median of paired ratios)",
        "speedups vs lerobot's predict_action_chunk alone; action errors vs the fp32 pipeline on "
        "the same noise, as max |error| / joint range (quant_action_error 0.02 = 2%)",
        "peak RSS: each default-precision stage opened and run once in its own process, as its "
        "actor would (Python + numpy + ONNX Runtime + the model)",
        "targets: smolvla_base_speedup_vs_eager >= 3 with quant_action_error <= 0.02; "
        "denoise_quant_action_error reported and larger",
        HOST_NOTE,
    ]
    cols = ["policy", "stage", "backend", "precision", "latency_ms", "speedup_vs_eager", "cpu_ms",
            "size_mb", "out_rel_err", "action_err_pct_range", "peak_rss_mb", "note"]
    for r in rows:
        r["stage"] = {"end-to-end": "e2e"}.get(r["stage"], r["stage"])
        r["backend"] = {"onnxruntime": "ort"}.get(r["backend"], r["backend"])
    return BenchResult(title="inference at smolvla_base size: lerobot eager vs ONNX fp32 vs "
                             "selective quantization", rows=rows, summary=summary, columns=cols,
                       notes=notes)
