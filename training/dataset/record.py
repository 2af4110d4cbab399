"""Record the protocol as a LeRobot dataset, through lerobot's own dataset API.

Features: ``observation.images.{top,gripper,left}`` (HxWx3), ``observation.state`` (12: the 6
measured joints, rad, then the 6 goal positions the servos held when the frame was taken, i.e.
the previous action; `deploy/bundle/state_layout.py`), ``action`` (6 joint targets, rad) and the task
string. Per-episode protocol metadata is
written as per-frame int64 features of shape (1,) — ``episode.cluster``,
``episode.position_index``, ``episode.recovery`` (0/1), ``episode.recovery_kind``
(index into ``RECOVERY_KIND_CODES``), ``episode.split`` (0 train, 1 val) — because they are
ordinary columns that survive a reload, follow any episode subset and need no project code to
read; policies ignore them (lerobot only feeds ``observation.*`` and ``action`` to a policy).
``info.json`` gets LeRobot's ``splits`` ({"train": "0:N", "val": "N:M"}, the protocol orders the
held-out cluster last) and an ``edgevla`` block (protocol config, code tables, expert stats).

Images are stored as PNG images (``dtype="image"``, embedded in the parquet files) by default,
not video: at the training resolution they decode without any video backend (SETUP-NOTES: the
pyav backend is broken here and torchcodec depends on the system FFmpeg), bit-exactly (no codec
loss between what the expert saw and what the policy learns from) and fast (~7 ms an item).
``units="so101-degrees"`` (or ``so101-range``) records state and action in LeRobot's SO-101 units
instead of the sim's radians, through the sim arm's calibration file
(`training/sim/calibration.py`): what a real arm's dataset holds, so train -> export -> run
exercises the conversions a real arm needs. Each value goes through the servo count, as a real
arm's reading does; ``info.json``'s ``edgevla.joints`` block names the unit set, the units per
joint and the calibration.

``use_videos=True`` writes AV1/H.264 video instead (read back through torchcodec) for large
resolutions, where PNG gets heavy.

The scripted expert's demonstrations are filtered: an episode whose rollout does not end in a
success is discarded (`clear_episode_buffer`) and re-run with the next expert seed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevla.deploy.bundle.cameras import image_key
from edgevla.deploy.bundle.state_layout import DEFAULT_DIM as STATE_DIM
from edgevla.deploy.bundle.state_layout import policy_state
from edgevla.firmware_bridge.servos.joint_units import UNIT_SETS, JointUnits, joint_map
from edgevla.training.dataset.image_stats import patch_running_stats
from edgevla.training.dataset.info import contact_sheet as draw_sheet
from edgevla.training.dataset.schema import (META_KEYS, RECOVERY_KIND_CODES, REPO_ID, ROBOT_TYPE, SPLIT_CODES,
                                             dataset_features)
from edgevla.training.sim.calibration import SIM_CALIBRATION_FILE
from edgevla.training.sim.env import TeaBagEnv
from edgevla.training.sim.episode_spec import EpisodeSpec
from edgevla.training.sim.expert import ScriptedExpert
from edgevla.training.sim.kinematics import JOINT_NAMES
from edgevla.training.sim.scene import TASK, SceneConfig
from edgevla.training.sim.start_positions import ProtocolConfig, draw_map, make_protocol
from edgevla.training.torch_setup import ensure_torchvision


@dataclass
class RecordReport:
    out_dir: str
    episodes: int = 0
    frames: int = 0
    retries: int = 0
    failed_episodes: list[int] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_render: float = 0.0
    seconds_physics_expert: float = 0.0
    seconds_write: float = 0.0
    map_png: str = ""
    contact_sheet_png: str = ""
    interrupted: bool = False  # Ctrl-C: the episodes before it are saved, the one under way not
    planned: int = 0

    def summary(self) -> str:
        fps = self.frames / self.seconds_total if self.seconds_total else 0.0
        return (f"{self.episodes} episodes, {self.frames} frames in {self.seconds_total:.1f} s "
                f"({fps:.0f} frames/s; render {self.seconds_render:.1f} s, physics+expert "
                f"{self.seconds_physics_expert:.1f} s, dataset writes {self.seconds_write:.1f} s); "
                f"{self.retries} expert re-runs, {len(self.failed_episodes)} episodes dropped")


def _meta_values(spec: EpisodeSpec) -> dict[str, np.ndarray]:
    vals = {
        "episode.cluster": spec.cluster,
        "episode.position_index": spec.position_index,
        "episode.recovery": int(spec.recovery),
        "episode.recovery_kind": RECOVERY_KIND_CODES[spec.recovery_kind],
        "episode.split": SPLIT_CODES[spec.split],
    }
    return {k: np.array([v], dtype=np.int64) for k, v in vals.items()}


def _scalarise_meta(dataset: Any) -> None:
    # Trap (SETUP-NOTES): with numpy 2.4 lerobot's writer calls int() on (1,)-shaped buffered
    # values of int features; keeping the buffered value a numpy scalar of the same dtype
    # satisfies both the frame validation (done before buffering) and the writer.
    buf = dataset.episode_buffer
    for key in META_KEYS:
        if buf[key] and isinstance(buf[key][-1], np.ndarray):
            buf[key][-1] = buf[key][-1].reshape(())[()]


def record_dataset(out_dir: str | os.PathLike[str], protocol_cfg: ProtocolConfig | None = None,
                   scene_cfg: SceneConfig | None = None,
                   episodes: list[EpisodeSpec] | None = None, *,
                   use_videos: bool = False, vcodec: str = "h264", repo_id: str = REPO_ID,
                   max_episode_s: float | None = None, max_retries: int = 3,
                   progress: bool = True, contact_sheet: bool = True,
                   image_writer_threads: int = 2, log_every: int = 10,
                   units: str = "radians") -> RecordReport:
    """Record ``episodes`` (default: the whole protocol of ``protocol_cfg``) into ``out_dir``.

    ``out_dir`` must not exist (LeRobot creates it). Returns timings and counts; the dataset is
    finalized and readable with ``LeRobotDataset(repo_id, root=out_dir)`` afterwards.
    """

    ensure_torchvision()
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    _quiet_datasets_progress_bars()
    protocol_cfg = protocol_cfg or ProtocolConfig()
    scene_cfg = scene_cfg or SceneConfig()
    joints = _joint_map(units)
    out = Path(out_dir)
    specs = _episodes_to_record(episodes, protocol_cfg, out)
    max_steps = int(round((max_episode_s or max(scene_cfg.episode_s, 12.0)) * scene_cfg.fps))

    report = RecordReport(out_dir=str(out), planned=len(specs))
    t_start = time.perf_counter()
    ds = LeRobotDataset.create(
        repo_id=repo_id, fps=scene_cfg.fps, features=dataset_features(scene_cfg, use_videos),
        root=out, robot_type=ROBOT_TYPE, use_videos=use_videos, vcodec=vcodec,
        image_writer_threads=image_writer_threads,
    )
    env = TeaBagEnv(scene_cfg)
    expert = ScriptedExpert(env)
    recorded: list[EpisodeSpec] = []
    stats_rows: list[dict[str, Any]] = []
    # lerobot 0.4.4 writes std 0 for every image feature unless its stats see floats
    # (training/dataset/image_stats.py); the patch is undone when recording ends.
    undo_stats_patch = patch_running_stats()
    try:
        with _progress(progress) as prog:
            task_id = prog.add_task("recording", total=len(specs)) if prog else None
            for spec in specs:
                ok = _record_with_retries(ds, env, expert, spec, max_steps, max_retries, report,
                                          recorded, stats_rows, joints)
                if report.interrupted:
                    break
                if not ok:
                    report.failed_episodes.append(spec.index)
                if prog:
                    prog.update(task_id, advance=1,
                                description=f"recording c{spec.cluster} ({report.frames} frames)")
                elif log_every and (len(recorded) % log_every == 0 or spec is specs[-1]):
                    # without a progress bar (logs, CI) a line now and then
                    print(f"[record] {len(recorded)}/{len(specs)} episodes, {report.frames} "
                          f"frames, {time.perf_counter() - t_start:.0f} s", flush=True)
    finally:
        env.close()
        ds.finalize()
        undo_stats_patch()
    _write_edgevla_info(ds, recorded, stats_rows, protocol_cfg, scene_cfg, report.failed_episodes,
                        units, joints)
    report.seconds_total = time.perf_counter() - t_start
    report.map_png = draw_map(recorded or specs, protocol_cfg, str(out / "protocol_map.png"))
    if contact_sheet and recorded:
        report.contact_sheet_png = draw_sheet(out, str(out / "contact_sheet.png"),
                                              repo_id=repo_id)
    return report


def _joint_map(units: str) -> JointUnits:
    if units not in UNIT_SETS:
        raise ValueError(f"units: expected one of {', '.join(UNIT_SETS)}, got {units!r}")
    if units == "radians":
        return joint_map(UNIT_SETS[units], JOINT_NAMES)
    return joint_map(UNIT_SETS[units], JOINT_NAMES, SIM_CALIBRATION_FILE)


def _quiet_datasets_progress_bars() -> None:
    try:  # datasets prints a "Map:" bar per saved episode; ours is the one that counts
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _episodes_to_record(episodes: list[EpisodeSpec] | None, protocol_cfg: ProtocolConfig,
                        out: Path) -> list[EpisodeSpec]:
    specs = list(episodes) if episodes is not None else make_protocol(protocol_cfg)
    if not specs:
        raise ValueError("record_dataset: no episodes to record")
    if out.exists():
        raise FileExistsError(f"{out}: already exists; LeRobot datasets are created in a new "
                              "folder (choose another --out or delete it)")
    # Train episodes first, then val: LeRobot splits are index ranges.
    return sorted(specs, key=lambda s: (s.split != "train", s.index))


def _record_with_retries(ds: Any, env: Any, expert: Any, spec: EpisodeSpec, max_steps: int,
                         max_retries: int, report: RecordReport, recorded: list[EpisodeSpec],
                         stats_rows: list[dict[str, Any]], joints: JointUnits) -> bool:
    """Roll `spec` until the expert succeeds (new expert seed each time) and save that episode.

    Returns whether an episode was saved; a Ctrl-C sets ``report.interrupted`` instead."""
    for attempt in range(max_retries + 1):
        run_spec = spec if attempt == 0 else dataclasses.replace(
            spec, seed=spec.seed + 7919 * attempt)
        try:
            n, success, timing = _record_one(ds, env, expert, run_spec, max_steps, joints)
        except KeyboardInterrupt:
            # Stop between episodes: the half-recorded one is dropped, every saved
            # episode stays and the dataset is finalized by the caller, readable as it is.
            ds.clear_episode_buffer()
            report.interrupted = True
            return False
        report.seconds_render += timing[0]
        report.seconds_physics_expert += timing[1]
        report.seconds_write += timing[2]
        if success:
            t0 = time.perf_counter()
            ds.save_episode()
            report.seconds_write += time.perf_counter() - t0
            report.frames += n
            report.episodes += 1
            recorded.append(run_spec)
            stats_rows.append({"index": report.episodes - 1, "spec_index": spec.index,
                               "frames": n, "expert_attempts": expert.attempts + 1,
                               "rerun": attempt})
            return True
        ds.clear_episode_buffer()
        report.retries += 1
    return False


def _write_edgevla_info(ds: Any, recorded: list[EpisodeSpec], stats_rows: list[dict[str, Any]],
                        protocol_cfg: ProtocolConfig, scene_cfg: SceneConfig,
                        dropped: list[int], units: str, joints: JointUnits) -> None:
    """LeRobot's train/val `splits` and the `edgevla` block (protocol, codes, expert stats)."""
    from lerobot.datasets.utils import write_info

    n_train = sum(s.split == "train" for s in recorded)
    splits = {"train": f"0:{n_train}"}
    if n_train < len(recorded):
        splits["val"] = f"{n_train}:{len(recorded)}"
    ds.meta.info["splits"] = splits
    ds.meta.info["edgevla"] = {
        "task": TASK,
        "protocol": _jsonable(dataclasses.asdict(protocol_cfg)),
        "scene": _jsonable(dataclasses.asdict(scene_cfg)),
        "recovery_kind_codes": RECOVERY_KIND_CODES,
        "split_codes": SPLIT_CODES,
        "episodes": [dict(_jsonable(s.to_dict()), **row) for s, row in zip(recorded, stats_rows)],
        "dropped_spec_indices": dropped,
        "joints": {"set": units, "names": list(joints.names), "units": list(joints.units),
                   "calibration": {n: dict(vars(c)) for n, c in zip(joints.names, joints.calibration)}},
    }
    write_info(ds.meta.info, ds.root)


def _record_one(ds: Any, env: Any, expert: Any, spec: EpisodeSpec,
                max_steps: int, joints: JointUnits) -> tuple[int, bool, tuple[float, float, float]]:
    """Roll one episode into the dataset's episode buffer; (frames, success, timings)."""
    t_render = t_phys = t_write = 0.0
    t0 = time.perf_counter()
    env.reset(spec)
    expert.reset()
    meta = _meta_values(spec)
    fps = env.cfg.fps
    tail = int(round(0.5 * fps))
    done_at = None
    n = 0
    t_phys += time.perf_counter() - t0
    while n < max_steps:
        t0 = time.perf_counter()
        images = env.render()
        t1 = time.perf_counter()
        q, goal = env.joint_positions(), env.targets
        action = expert.act(None)
        if not joints.is_identity:  # the arm's units, through the count a servo reports
            q, goal = joints.from_servo_radians(q), joints.from_servo_radians(goal)
            recorded_action = joints.from_servo_radians(action).astype(np.float32)
        else:
            recorded_action = action
        state = policy_state(q, goal, STATE_DIM)
        t2 = time.perf_counter()
        frame: dict[str, Any] = {image_key(c): img for c, img in images.items()}
        frame["observation.state"] = state
        frame["action"] = recorded_action
        frame["task"] = TASK
        frame.update({k: v.copy() for k, v in meta.items()})
        ds.add_frame(frame)
        _scalarise_meta(ds)
        t3 = time.perf_counter()
        env.step(action, render=False)
        n += 1
        t4 = time.perf_counter()
        t_render += t1 - t0
        t_phys += (t2 - t1) + (t4 - t3)
        t_write += t3 - t2
        if expert.failed:
            break
        if expert.done and done_at is None:
            done_at = n
        if done_at is not None and n - done_at >= tail:
            break
    return n, bool(env.is_success() and not expert.failed), (t_render, t_phys, t_write)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else list(o) if isinstance(o, tuple) else str(o)))


class _NullProgress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NullProgress()
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn())
