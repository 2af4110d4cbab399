"""Inference backends behind one small interface: ONNX Runtime and LiteRT (board side, no torch).

``open_backend(path, options)`` picks the runtime from the file suffix (``.onnx`` -> ONNX Runtime,
``.tflite`` -> LiteRT) or from ``options.backend``. A backend has ``input_names``,
``output_names`` and ``run(feeds) -> {name: array}``; that is all a stage actor uses.

Knobs that matter on an i.MX 95 (6x A55): intra-op threads, which cores those threads sit on
(ORT ``session.intra_op_thread_affinities``), spinning off when cores are shared with the
executor, graph optimisation level; for LiteRT an external delegate library given by path
(the NPU: VX delegate ``/usr/lib/libvx_delegate.so`` or Neutron ``libneutron_delegate.so``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass
class BackendOptions:
    backend: str = "auto"                 # auto | onnxruntime | litert
    threads: int = 2                      # intra-op threads (LiteRT: num_threads)
    inter_op_threads: int = 1
    cpu_affinity: list[int] | None = None  # cores for the intra-op threads (ORT), e.g. [2, 3]
    opt_level: str = "all"                # ORT graph optimisation: disable|basic|extended|all
    # ORT intra-op workers busy-wait for work instead of sleeping: False (cores are shared with
    # other actors), True (ORT's default: they also keep spinning for a while after a run), or
    # "run": spin only while a run is in flight and stop as soon as it returns
    # (session.force_spinning_stop). "run" removes the wake-up latency between the ~200 small
    # ops of a denoise step (fp32 step 2.3 -> 1.7 ms on 2 threads) and burns no CPU between runs.
    allow_spinning: bool | str = False
    delegate: str | None = None           # LiteRT external delegate .so (NPU), by path
    delegate_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnxruntime", "litert"):
            raise ValueError(f"backend must be auto|onnxruntime|litert, got {self.backend!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.opt_level not in OPT_LEVELS:
            raise ValueError(f"opt_level must be one of {'|'.join(OPT_LEVELS)}, got {self.opt_level!r}")
        if self.allow_spinning not in (True, False, "run"):
            raise ValueError(f"allow_spinning must be true, false or 'run', got {self.allow_spinning!r}")
        if self.cpu_affinity is not None and not all(
                isinstance(c, int) and c >= 0 for c in self.cpu_affinity):
            raise ValueError(f"cpu_affinity must be a list of core numbers, got {self.cpu_affinity!r}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "BackendOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown backend option(s) {unknown}; known: {sorted(known)}")
        return cls(**params)


class InferenceBackend(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def bind_constants(backend, constants: dict[str, np.ndarray]):
    """-> ``run(varying_feeds) -> {name: array}`` for many runs that share ``constants``.

    Backends with a ``bind`` method (ONNX Runtime) hand the constant inputs to the runtime once
    (IOBinding); any other backend gets them merged into every feed dict.
    """
    bind = getattr(backend, "bind", None)
    if bind is not None:
        return bind(constants)
    const = {k: v for k, v in constants.items() if k in backend.input_names}
    return lambda feeds: backend.run({**const, **feeds})


class OnnxRuntimeBackend:
    """One ``onnxruntime.InferenceSession`` on the CPU execution provider."""

    def __init__(self, path: str | Path, options: BackendOptions) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[options.opt_level]
        so.add_session_config_entry("session.intra_op.allow_spinning",
                                    "1" if options.allow_spinning else "0")
        if options.allow_spinning == "run":
            so.add_session_config_entry("session.force_spinning_stop", "1")
        if options.cpu_affinity and options.threads > 1:
            # ORT pins threads 2..n (the calling thread is the first); one entry per extra thread.
            cores = options.cpu_affinity
            pins = [str(cores[(i + 1) % len(cores)] + 1) for i in range(options.threads - 1)]
            so.add_session_config_entry("session.intra_op_thread_affinities", ";".join(pins))
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise KeyError(f"{self.path}: missing inputs {missing} (have {sorted(feeds)})")
        outs = self.session.run(None, {n: feeds[n] for n in self.input_names})
        return dict(zip(self.output_names, outs))

    def bind(self, constants: dict[str, np.ndarray]):
        """IOBinding: the inputs in ``constants`` are bound once (ORT reads the arrays in place:
        they must stay unchanged while the returned ``run`` is used); ``run(feeds)`` binds only
        the other inputs and returns fresh output arrays."""
        io = self.session.io_binding()
        bound = [n for n in self.input_names if n in constants]
        for n in bound:
            io.bind_cpu_input(n, np.ascontiguousarray(constants[n]))
        rest = [n for n in self.input_names if n not in constants]
        names = self.output_names
        for n in names:
            io.bind_output(n, "cpu")

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            missing = [n for n in rest if n not in feeds]
            if missing:
                raise KeyError(f"{self.path}: missing inputs {missing} (have {sorted(feeds)})")
            keep = [np.ascontiguousarray(feeds[n]) for n in rest]  # alive during the run
            for n, a in zip(rest, keep):
                io.bind_cpu_input(n, a)
            self.session.run_with_iobinding(io)
            return dict(zip(names, io.copy_outputs_to_cpu()))

        return run


class ChainedBackend:
    """A per-step graph preceded by its constant-per-chunk ``prep`` graph (onnx_split).

    ``run(feeds)`` runs both; ``bind(constants)`` runs the prep graph once on the constant
    inputs and binds its outputs (with the constants the step graph reads) to the step graph:
    what the denoise loop uses. Input names are those of the graph before the split.
    """

    def __init__(self, prep: InferenceBackend, step: InferenceBackend) -> None:
        self.prep, self.step = prep, step
        made = set(prep.output_names)
        self.input_names = list(dict.fromkeys(
            [*prep.input_names, *(n for n in step.input_names if n not in made)]))
        self.output_names = list(step.output_names)
        self.path = getattr(step, "path", "")

    def _step_constants(self, constants: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.prep.input_names if n not in constants]
        if missing:
            raise KeyError(f"{self.path}: missing inputs {missing} (have {sorted(constants)})")
        made = self.prep.run({n: constants[n] for n in self.prep.input_names})
        return {**{n: v for n, v in constants.items() if n in self.step.input_names}, **made}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.step.run({**feeds, **self._step_constants(feeds)})

    def bind(self, constants: dict[str, np.ndarray]):
        return bind_constants(self.step, self._step_constants(constants))


def _litert_interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError:  # the old standalone runtime; breaks with numpy 2 (SETUP-NOTES)
        from tflite_runtime import interpreter  # type: ignore[no-redef]
    return interpreter


class LiteRTBackend:
    """LiteRT interpreter; optional external delegate (e.g. the i.MX 95 NPU) loaded by path."""

    def __init__(self, path: str | Path, options: BackendOptions,
                 names: tuple[list[str], list[str]] | None = None) -> None:
        interp_mod = _litert_interpreter_module()
        delegates = []
        if options.delegate:
            if not Path(options.delegate).exists():
                raise FileNotFoundError(
                    f"LiteRT delegate library {options.delegate!r} not found; on an i.MX 95 BSP it "
                    f"is /usr/lib/libvx_delegate.so or /usr/lib/libneutron_delegate.so")
            delegates.append(interp_mod.load_delegate(options.delegate, options.delegate_options))
        self.path = str(path)
        self.interpreter = interp_mod.Interpreter(model_path=self.path, num_threads=options.threads,
                                                  experimental_delegates=delegates or None)
        self.interpreter.allocate_tensors()
        self._inputs = self.interpreter.get_input_details()
        self._outputs = self.interpreter.get_output_details()
        self.input_names = [_clean(d["name"]) for d in self._inputs]
        self.output_names = [_clean(d["name"]) for d in self._outputs]
        # A converter names tensors by position (args_0, output_0): the stage's own names, in
        # the same order, are taken when the counts agree.
        if names is not None:
            if len(names[0]) == len(self.input_names):
                self.input_names = list(names[0])
            if len(names[1]) == len(self.output_names):
                self.output_names = list(names[1])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, det in zip(self.input_names, self._inputs):
            if name not in feeds:
                raise KeyError(f"{self.path}: missing input {name!r} (have {sorted(feeds)})")
            arr = _to_tensor(feeds[name], det)
            if tuple(arr.shape) != tuple(det["shape"]):
                raise ValueError(f"{self.path}: input {name!r} has shape {arr.shape}, "
                                 f"the model takes {tuple(det['shape'])}")
            self.interpreter.set_tensor(det["index"], arr)
        self.interpreter.invoke()
        return {name: _from_tensor(self.interpreter.get_tensor(det["index"]), det)
                for name, det in zip(self.output_names, self._outputs)}


def _to_tensor(x: np.ndarray, det: dict) -> np.ndarray:
    """A float feed for the model's input: quantized with the tensor's scale and zero point
    where the model is full-integer (its input is int8), as an NPU model takes it."""
    dtype = np.dtype(det["dtype"])
    scale, zero = det.get("quantization", (0.0, 0))
    if dtype.kind == "i" and scale and np.asarray(x).dtype.kind == "f":
        info = np.iinfo(dtype)
        q = np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero
        return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(dtype))
    return np.ascontiguousarray(x, dtype=dtype)


def _from_tensor(t: np.ndarray, det: dict) -> np.ndarray:
    """The model's output as float32 (dequantized where it is int8)."""
    scale, zero = det.get("quantization", (0.0, 0))
    if t.dtype.kind == "i" and scale:
        return ((t.astype(np.float32) - np.float32(zero)) * np.float32(scale))
    return t.copy()


def _clean(name: str) -> str:
    # converters like "serving_default_images:0"; ours writes plain names
    return name.split(":")[0].removeprefix("serving_default_")


def open_backend(path: str | Path, options: BackendOptions | None = None,
                 prep: str | Path | None = None,
                 names: tuple[list[str], list[str]] | None = None) -> InferenceBackend:
    """A backend for one stage file; with ``prep`` (a split graph's constant-per-chunk part,
    ONNX Runtime only) a `ChainedBackend` of both. ``names``: the stage's input and output
    names, for a LiteRT model whose converter named them by position."""
    options = options or BackendOptions()
    if prep is not None:
        return ChainedBackend(open_backend(prep, options), open_backend(path, options))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    kind = options.backend
    if kind == "auto":
        kind = {".onnx": "onnxruntime", ".tflite": "litert"}.get(path.suffix)
        if kind is None:
            raise ValueError(f"{path}: cannot tell the backend from suffix {path.suffix!r} "
                             f"(expected .onnx or .tflite)")
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(path, options)
    return LiteRTBackend(path, options, names)
