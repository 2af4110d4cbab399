"""The model bundle format (what the board loads) and the board bundle (what ships to an i.MX 95).

Model bundle: a directory with ``manifest.json`` and the stage files::

    manifest.json
    vision.onnx  vision.int8.onnx  vision.tflite
    prefill.onnx prefill.int8.onnx prefill.int4.onnx
    denoise.onnx denoise.int8.onnx                      (SmolVLA)
    decoder.onnx decoder.int8.onnx                      (ACT)

``manifest.json`` (format ``edgevla-model-bundle``, version 1) holds everything the stage actors
need without torch: policy type, per stage the chosen file/backend/precision, every available
variant, input/output names, shapes and dtypes; chunk size, action/state dims, fps and dt;
camera names and image size; normalisation stats (state, action, per-camera images); for SmolVLA
the tokenised task, denoising steps and padded dims. This module is numpy/json only.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.actors.console.output_files import write_whole
from edgevla.deploy.bundle import board_files, host_profile
from edgevla.deploy.bundle.graph_rtc import with_rtc
from edgevla.firmware_bridge.servos.joint_units import (SO101_JOINTS, UNIT_SETS, UNITS, CalibrationError,
                                                        load_calibration)

FORMAT = "edgevla-model-bundle"
MANIFEST_FILE = "manifest.json"
VERSION = 1
POLICIES = {"act": ("vision", "decoder"), "smolvla": ("vision", "prefill", "denoise")}
PRECISIONS = ("fp32", "int8", "int8-dynamic", "int8-static", "int4")
NORM_MODES = ("identity", "mean_std", "min_max")


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and field."""


@dataclass
class StageFile:
    file: str
    backend: str          # onnxruntime | litert
    precision: str        # fp32 | int8 | int8-dynamic | int8-static | int4
    size_bytes: int = 0
    # ONNX Runtime: a constant-per-chunk graph split off ``file`` (deploy/export/onnx_split.py), run
    # once before ``file`` is run N times with the same prefix; its outputs are inputs of ``file``
    prep: str | None = None


@dataclass
class StageSpec:
    inputs: dict[str, dict[str, Any]]   # name -> {"shape": [...], "dtype": "float32"}
    outputs: list[str]
    default: str                        # key into variants used when the graph names none
    variants: dict[str, StageFile] = field(default_factory=dict)

    def pick(self, precision: str | None = None, backend: str | None = None) -> StageFile:
        """The variant for a precision/backend; ``None`` means the bundle's default."""
        if precision is None and backend is None:
            return self.variants[self.default]
        for key, var in self.variants.items():
            if (precision is None or precision in (key, var.precision)) and (
                    backend is None or var.backend == backend):
                return var
        have = ", ".join(f"{k} ({v.backend}/{v.precision})" for k, v in self.variants.items())
        raise BundleError(f"no variant with precision={precision} backend={backend}; have: {have}")


@dataclass
class Normalization:
    mode: str
    mean: list[float] | None = None
    std: list[float] | None = None
    min: list[float] | None = None
    max: list[float] | None = None
    eps: float = 1e-8  # lerobot's NormalizerProcessorStep default

    def __post_init__(self) -> None:
        if self.mode not in NORM_MODES:
            raise BundleError(f"normalization mode must be one of {NORM_MODES}, got {self.mode!r}")

    def _arrays(self, shape_hint: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        if self.mode == "mean_std":
            off, scale = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32) + self.eps
        elif self.mode == "min_max":
            lo, hi = np.asarray(self.min, np.float32), np.asarray(self.max, np.float32)
            den = hi - lo
            den = np.where(den == 0, np.float32(self.eps), den)
            # lerobot maps min/max to [-1, 1]: x' = 2 (x - min) / (max - min) - 1
            off, scale = lo + den / 2, den / 2
        else:
            return np.float32(0), np.float32(1)
        return off.reshape(shape_hint or off.shape), scale.reshape(shape_hint or scale.shape)

    def normalize(self, x: np.ndarray, shape_hint: tuple[int, ...] = ()) -> np.ndarray:
        off, scale = self._arrays(shape_hint)
        return ((x - off) / scale).astype(np.float32)

    def unnormalize(self, x: np.ndarray, shape_hint: tuple[int, ...] = ()) -> np.ndarray:
        off, scale = self._arrays(shape_hint)
        return (x * scale + off).astype(np.float32)


@dataclass
class Manifest:
    policy: str
    model_id: str
    chunk_size: int
    action_dim: int
    state_dim: int
    fps: float
    cameras: list[str]
    image_hw: list[int]
    stages: dict[str, StageSpec]
    state_norm: Normalization
    action_norm: Normalization
    image_norm: dict[str, Normalization]
    extra: dict[str, Any] = field(default_factory=dict)  # policy-specific (layout, task tokens)
    # the arm's joints in the order of state and action, and the unit each is in (the dataset's:
    # the sim's radians or LeRobot's SO-101 units; `firmware_bridge/servos/joint_units.py`)
    joint_names: list[str] = field(default_factory=lambda: list(SO101_JOINTS))
    joint_units: list[str] = field(default_factory=lambda: list(UNIT_SETS["radians"]))
    format: str = FORMAT
    version: int = VERSION

    @property
    def dt_ns(self) -> int:
        return int(round(1e9 / self.fps))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["dt_ns"] = self.dt_ns
        return d

    def save(self, bundle_dir: str | Path) -> Path:
        path = Path(bundle_dir) / MANIFEST_FILE
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path


def _req(d: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise BundleError(f"{where}: missing field {key!r}")
    if not isinstance(d[key], kind):
        raise BundleError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                          f"got {type(d[key]).__name__} {d[key]!r:.60}")
    return d[key]


def load_manifest(bundle_dir: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate ``bundle_dir/manifest.json``; errors name the field that is wrong."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{bundle_dir}: not a model bundle (no manifest.json)")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: invalid JSON: {exc}") from None
    w = str(path)
    if d.get("format") != FORMAT:
        raise BundleError(f"{w}: format must be {FORMAT!r}, got {d.get('format')!r}")
    if d.get("version") != VERSION:
        raise BundleError(f"{w}: version {d.get('version')!r} unsupported (this runtime reads {VERSION})")
    policy = _req(d, "policy", w, str)
    if policy not in POLICIES:
        raise BundleError(f"{w}.policy: expected one of {sorted(POLICIES)}, got {policy!r}")
    stages_raw = _req(d, "stages", w, dict)
    stages: dict[str, StageSpec] = {}
    for name in POLICIES[policy]:
        sw = f"{w}.stages.{name}"
        s = _req(stages_raw, name, f"{w}.stages", dict)
        variants = {}
        for key, v in _req(s, "variants", sw, dict).items():
            f = _req(v, "file", f"{sw}.variants.{key}", str)
            if check_files and not (bundle_dir / f).is_file():
                raise BundleError(f"{sw}.variants.{key}.file: {bundle_dir / f} does not exist")
            if v.get("precision") not in PRECISIONS:
                raise BundleError(f"{sw}.variants.{key}.precision: expected one of {PRECISIONS}, "
                                  f"got {v.get('precision')!r}")
            prep = v.get("prep")
            if prep is not None:
                if not isinstance(prep, str):
                    raise BundleError(f"{sw}.variants.{key}.prep: expected str, got {prep!r:.60}")
                if check_files and not (bundle_dir / prep).is_file():
                    raise BundleError(f"{sw}.variants.{key}.prep: {bundle_dir / prep} does not exist")
            variants[key] = StageFile(file=f, backend=_req(v, "backend", f"{sw}.variants.{key}", str),
                                      precision=v["precision"], size_bytes=int(v.get("size_bytes", 0)),
                                      prep=prep)
        default = _req(s, "default", sw, str)
        if default not in variants:
            raise BundleError(f"{sw}.default: {default!r} is not one of the variants {sorted(variants)}")
        stages[name] = StageSpec(inputs=_req(s, "inputs", sw, dict),
                                 outputs=list(_req(s, "outputs", sw, list)),
                                 default=default, variants=variants)
    fps = float(_req(d, "fps", w, (int, float)))
    if fps <= 0:
        raise BundleError(f"{w}.fps: must be > 0, got {fps}")
    cams = _req(d, "cameras", w, list)
    if not cams:
        raise BundleError(f"{w}.cameras: at least one camera expected")
    image_norm_raw = _req(d, "image_norm", w, dict)
    missing = [c for c in cams if c not in image_norm_raw]
    if missing:
        raise BundleError(f"{w}.image_norm: no stats for camera(s) {missing}")

    def norm(raw: dict, where: str) -> Normalization:
        try:
            return Normalization(**raw)
        except TypeError as exc:
            raise BundleError(f"{where}: {exc}") from None

    names, units = _joints(d, w)
    return Manifest(
        policy=policy, model_id=str(d.get("model_id", "")),
        chunk_size=int(_req(d, "chunk_size", w, int)), action_dim=int(_req(d, "action_dim", w, int)),
        state_dim=int(_req(d, "state_dim", w, int)), fps=fps, cameras=list(cams),
        image_hw=list(_req(d, "image_hw", w, list)), stages=stages,
        state_norm=norm(_req(d, "state_norm", w, dict), f"{w}.state_norm"),
        action_norm=norm(_req(d, "action_norm", w, dict), f"{w}.action_norm"),
        image_norm={c: norm(image_norm_raw[c], f"{w}.image_norm.{c}") for c in cams},
        extra=dict(d.get("extra", {})), joint_names=names, joint_units=units)


def _joints(d: dict, w: str) -> tuple[list[str], list[str]]:
    """The manifest's joint names and units (bundles written before 2026-12-07: the SO-101's
    joints in the sim's radians)."""
    names = d.get("joint_names", list(SO101_JOINTS))
    units = d.get("joint_units", list(UNIT_SETS["radians"]))
    for key, v in (("joint_names", names), ("joint_units", units)):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise BundleError(f"{w}.{key}: expected a list of strings, got {v!r:.60}")
    if len(units) != len(names):
        raise BundleError(f"{w}.joint_units: {len(units)} units for {len(names)} joint_names")
    bad = [u for u in units if u not in UNITS]
    if bad:
        raise BundleError(f"{w}.joint_units: {bad[0]!r} is not one of {', '.join(UNITS)}")
    return list(names), list(units)


# --------------------------------------------------------------------------------------------
# Board bundle
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BoardTarget:
    """CPU layout of a board: which cores run real-time work and which run inference."""

    name: str
    cores: int
    rt_cores: tuple[int, ...]         # executor + bridge, away from inference
    inference_cores: tuple[int, ...]
    io_cores: tuple[int, ...]         # cameras, recorder, supervisor
    m7_firmware: str                  # file name under /lib/firmware
    remoteproc: str                   # sysfs remoteproc instance of the M7
    rpmsg_tty: str
    npu_delegate: str | None


TARGETS = {
    # i.MX 95: 6x Cortex-A55 (cpu0-5), Cortex-M7 via remoteproc, eIQ Neutron NPU.
    "imx95": BoardTarget(name="imx95", cores=6, rt_cores=(1,), io_cores=(0,),
                         inference_cores=(2, 3, 4, 5), m7_firmware="edgevla-fw.elf",
                         remoteproc="remoteproc0", rpmsg_tty="/dev/ttyRPMSG30",
                         npu_delegate="/usr/lib/libneutron_delegate.so"),
    # i.MX 8M Plus: 4x A53, M7, VeriSilicon NPU behind the VX delegate.
    "imx8mp": BoardTarget(name="imx8mp", cores=4, rt_cores=(1,), io_cores=(0,),
                          inference_cores=(2, 3), m7_firmware="edgevla-fw.elf",
                          remoteproc="remoteproc0", rpmsg_tty="/dev/ttyRPMSG30",
                          npu_delegate="/usr/lib/libvx_delegate.so"),
}


def board_graph(manifest: Manifest, target: BoardTarget, model_dir: str,
                denoise_steps: int | None = None, rtc: bool = True) -> dict[str, Any]:
    """The actor graph for a board (dict ready for YAML): stage actors on the inference cores,
    executor and MCU bridge pinned to their own core; a SmolVLA with real-time chunking unless
    ``rtc`` is false."""
    inf = list(target.inference_cores)
    half = max(1, len(inf) // 2)
    # ORT workers spin only while a run is in flight (no wake-up latency between the small ops
    # of a stage, no CPU burnt between runs): what `edgevla bench inference` measures
    spin = {"allow_spinning": "run"}
    cams = {f"cam_{c}": {"kind": "camera", "outputs": {"frames": f"frames/{c}"},
                         "params": {"camera": c, "source": f"/dev/video{i}",
                                    "width": manifest.image_hw[1], "height": manifest.image_hw[0]},
                         "rate_hz": manifest.fps, "cpu_affinity": list(target.io_cores)}
            for i, c in enumerate(manifest.cameras)}
    frame_inputs = {c: f"frames/{c}" for c in manifest.cameras}
    actors: dict[str, Any] = dict(cams)
    # the vision stage is the same for both policies: newest frames + state on each request
    actors["vision"] = {"kind": "vision", "inputs": {**frame_inputs, "state": "robot/state",
                                                     "request": "policy/request"},
                        "outputs": {"features": "policy/features"},
                        "params": {"model": "${GRAPH_DIR}/" + model_dir, **spin, "threads": half},
                        "cpu_affinity": inf[:half]}
    if manifest.policy == "act":
        actors["decoder"] = {"kind": "act_decoder", "inputs": {"features": "policy/features"},
                             "outputs": {"chunks": "policy/chunks"},
                             "params": {"model": "${GRAPH_DIR}/" + model_dir, **spin, "threads": len(inf) - half or 1},
                             "cpu_affinity": inf[half:] or inf}
    else:
        actors["prefill"] = {"kind": "prefill", "inputs": {"features": "policy/features"},
                             "outputs": {"prefix": "policy/prefix"},
                             "params": {"model": "${GRAPH_DIR}/" + model_dir, **spin, "threads": len(inf) - half or 1},
                             "cpu_affinity": inf[half:] or inf}
        actors["denoise"] = {"kind": "denoise", "inputs": {"prefix": "policy/prefix"},
                             "outputs": {"chunks": "policy/chunks"},
                             "params": {"model": "${GRAPH_DIR}/" + model_dir, **spin, "threads": len(inf) - half or 1,
                                        "denoise_steps": denoise_steps or
                                        int(manifest.extra.get("num_steps", 10))},
                             "cpu_affinity": inf[half:] or inf}
    actors["executor"] = {"kind": "executor", "rate_hz": 100,
                          "inputs": {"chunks": "policy/chunks"},
                          "outputs": {"commands": "robot/commands", "requests": "policy/request",
                                      "control": "executor/control", "robot_state": "robot/state"},
                          "params": {"mcu_port": target.rpmsg_tty, "strategy": "crossfade",
                                     "crossfade_ms": 300, "request_mode": "latency"},
                          "cpu_affinity": list(target.rt_cores), "realtime_priority": 50}
    if rtc:
        with_rtc(actors)
    return {"name": f"{manifest.policy}-{target.name}",
            "description": f"{manifest.policy} on {target.name}: executor + M7 bridge on core(s) "
                          f"{list(target.rt_cores)}, inference on {inf}, I/O on "
                          f"{list(target.io_cores)}",
            "actors": actors}


EM_ARM = 40  # ELF e_machine of 32-bit Arm (the Cortex-M7)


def check_m7_firmware(path: str | Path) -> Path:
    """``path`` if it is a 32-bit little-endian Arm ELF image; else BundleError saying why."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"--firmware {p}: no such file (expected the M7 ELF image, e.g. "
                          f"mcu/build/imx95/edgevla-fw.elf)")
    head = p.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise BundleError(f"--firmware {p}: not an ELF file (expected the M7 ELF image)")
    if head[4] != 1 or head[5] != 1:
        raise BundleError(f"--firmware {p}: not a 32-bit little-endian ELF (the Cortex-M7 "
                          f"runs 32-bit Arm code)")
    machine = int.from_bytes(head[18:20], "little")
    if machine != EM_ARM:
        raise BundleError(f"--firmware {p}: ELF for machine {machine}, not Arm ({EM_ARM}): "
                          f"build it with `make -C mcu imx95`")
    return p


CALIBRATION_FILE = "calibration.json"


def _with_calibration(graph: dict[str, Any], calibration: bool) -> dict[str, Any]:
    """The arm's calibration file on every actor that converts or clamps joint values."""
    if calibration:
        for a in graph["actors"].values():
            if a["kind"] in ("vision", "prefill", "denoise", "act_decoder", "policy", "executor"):
                a["params"]["calibration"] = "${GRAPH_DIR}/" + CALIBRATION_FILE
    return graph


def _write_bundle_files(out: Path, model_dir: Path, manifest: Manifest, tgt: "BoardTarget | None",
                        firmware: str | Path | None, denoise_steps: int | None,
                        board_files: Any, calibration: str | Path | None = None,
                        servo_device: str | None = None) -> None:
    import yaml

    (out / "model").mkdir(parents=True)
    if calibration:
        shutil.copy2(calibration, out / CALIBRATION_FILE)
    shutil.copy2(model_dir / MANIFEST_FILE, out / "model" / MANIFEST_FILE)
    for spec in manifest.stages.values():
        for var in spec.variants.values():
            for f in (var.file, var.prep):
                if f:
                    shutil.copy2(model_dir / f, out / "model" / f)
    vjp = manifest.extra.get("denoise_vjp")  # real-time chunking's full correction
    if vjp:
        shutil.copy2(model_dir / vjp["file"], out / "model" / vjp["file"])
    if tgt is None:  # the host profile: the arm on USB through the host firmware
        graph = host_profile.host_graph(manifest.policy, "model", manifest.fps, manifest.cameras,
                                        manifest.image_hw, CALIBRATION_FILE if calibration else None,
                                        servo_device or host_profile.DEFAULT_SERVO_DEVICE,
                                        denoise_steps)
    else:
        graph = _with_calibration(board_graph(manifest, tgt, "model", denoise_steps), bool(calibration))
    (out / "graph.yaml").write_text(
        "# edgevla board graph: generated by `edgevla bundle`; paths are relative to this file.\n"
        + yaml.safe_dump(graph, sort_keys=False))
    if tgt is None:
        (out / "README.md").write_text(host_profile.host_readme(
            manifest.policy, manifest.model_id, servo_device or host_profile.DEFAULT_SERVO_DEVICE,
            CALIBRATION_FILE if calibration else None))
        return
    fw_dir = out / "firmware"
    fw_dir.mkdir()
    if firmware:
        shutil.copy2(firmware, fw_dir / tgt.m7_firmware)
    units = out / "systemd"
    units.mkdir()
    for name, text in board_files.systemd_units(tgt).items():
        (units / name).write_text(text)
    (out / "install.sh").write_text(board_files.install_script(tgt))
    (out / "install.sh").chmod(0o755)
    (out / "README.md").write_text(board_files.readme(manifest, tgt, firmware_included=bool(firmware)))


def write_board_bundle(model_dir: str | Path, out: str | Path, target: str = "imx95",
                       firmware: str | Path | None = None, tarball: bool = True,
                       denoise_steps: int | None = None, calibration: str | Path | None = None,
                       servo_device: str | None = None) -> Path:
    """Copy a model bundle plus graph.yaml, systemd units and a README into ``out``.

    ``target`` "host" is the profile without an M7 (`host_profile.py`): the host firmware on
    ``servo_device``, no systemd units. ``calibration``: the arm's LeRobot calibration file,
    copied in and given to the stage actors and the executor; required when the model's joints
    are in LeRobot units."""

    if target != "host" and target not in TARGETS:
        raise BundleError(f"unknown target {target!r}; known: {', '.join(sorted([*TARGETS, 'host']))}")
    tgt = TARGETS.get(target)
    manifest = load_manifest(model_dir)
    if tgt is None and firmware:
        raise BundleError("--firmware: the host target runs the firmware's host build, not an M7 image")
    if calibration:
        try:
            load_calibration(calibration)
        except CalibrationError as exc:
            raise BundleError(f"--calibration {exc}") from None
    elif any(u != "radians" for u in manifest.joint_units):
        raise BundleError(f"{model_dir}: the model's joints are in "
                          f"{'/'.join(sorted(set(manifest.joint_units)))}: give the arm's LeRobot "
                          f"calibration file with --calibration PATH")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"{out} exists and is not empty; choose a new directory")
    if firmware:
        check_m7_firmware(firmware)
    # Written under a temporary name and renamed at the end: a failed or interrupted bundle
    # leaves nothing behind, and a retry is never refused for a half-written folder.
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_bundle_files(tmp, Path(model_dir), manifest, tgt, firmware, denoise_steps, board_files,
                            calibration, servo_device)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if tarball:
        def write_tar(tmp: Path) -> None:
            with tarfile.open(tmp, "w:gz") as tar:
                tar.add(out, arcname=out.name)

        write_whole(out.with_suffix(".tar.gz"), write_tar)
    return out
