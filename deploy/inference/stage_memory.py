"""Peak memory of one stage's process: ``python -m edgevla.deploy.inference.stage_memory BUNDLE
STAGE PRECISION [THREADS]`` opens the stage as its actor would, runs it once on zero inputs of
the manifest's shapes (denoise: the bundle's number of steps) and prints
``{"peak_rss_mb": ...}``. Used by `edgevla bench inference --size base`; a separate process so
that nothing else the benchmark holds (torch, the PyTorch model) is counted."""

from __future__ import annotations

import json
import sys

import numpy as np

from edgevla.deploy.inference.backends import BackendOptions
from edgevla.deploy.inference.pipeline import StageChoice, StageModel


def _zeros(spec: dict) -> np.ndarray:
    dtype = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}.get(spec["dtype"], np.float32)
    return np.zeros(spec["shape"], dtype)


def peak_rss_mb(bundle: str, stage: str, precision: str, threads: int = 2) -> float:
    model = StageModel(bundle, (stage,), {stage: StageChoice(precision)},
                       options=BackendOptions(threads=threads))
    inputs = {k: _zeros(v) for k, v in model.manifest.stages[stage].inputs.items()}
    if stage == "denoise":
        noise = inputs.pop("x_t")
        inputs.pop("timestep", None)
        model.denoise(inputs, noise)
    else:
        model.backends[stage].run(inputs)
    return _vm_hwm_mb()


def _vm_hwm_mb() -> float:
    """The process's peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that
    across execve, so a child started from a big parent (the benchmark, with torch) would report
    the parent's size."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: python -m edgevla.deploy.inference.stage_memory BUNDLE STAGE PRECISION [THREADS]",
              file=sys.stderr)
        return 2
    threads = int(argv[3]) if len(argv) == 4 else 2
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(argv[0], argv[1], argv[2], threads), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
