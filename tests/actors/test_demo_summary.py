"""The demo's episode bookkeeping and the picture of a failed episode."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgevla.actors.cli.demo_sim import EpisodeLog, EpisodeManager
from edgevla.actors.wire.messages import ActionChunk, JointCommand, RobotState

from runtime_helpers import Recorded

S = 1_000_000_000


class _Rep:
    def __init__(self) -> None:
        self.last_stats: dict[str, Any] = {}


class _Sup:
    def __init__(self) -> None:
        self.replicas = {"sim": [_Rep()]}
        self.params: list[tuple[str, str, Any]] = []

    def set_param(self, actor: str, name: str, value: Any) -> None:
        self.params.append((actor, name, value))


def _sim(sup: _Sup, **stats: Any) -> None:
    sup.replicas["sim"][0].last_stats = {"actor_stats": stats}


def test_episode_manager_logs_phases_and_times_out_into_the_next_episode():
    sup = _Sup()
    specs = [{"cluster": 3, "split": "train"}, {"cluster": 6, "split": "val"}]
    m = EpisodeManager(specs=specs, timeout_s=5.0)
    _sim(sup, sim_time_s=0.0, episodes=0, success=False, task_phase="reaching")
    m.on_tick(sup)
    for t, phase in ((1.0, "reaching"), (2.0, "grasped"), (3.0, "grasped"), (4.0, "carrying")):
        _sim(sup, sim_time_s=t, episodes=0, success=False, task_phase=phase)
        m.on_tick(sup)
    _sim(sup, sim_time_s=5.5, episodes=0, success=False, task_phase="reaching")  # dropped it
    m.on_tick(sup)
    (ep,) = m.results
    assert not ep.success and ep.cluster == 3 and ep.task_time_s == 5.5
    assert [p for _, p in ep.phases] == ["reaching", "grasped", "carrying", "reaching"]
    assert ep.last_phase == "reaching" and ep.end_ns >= ep.start_ns > 0
    assert sup.params == [("sim", "reset", specs[1])]


def test_failed_episode_plot_shows_phases_and_numbered_chunks(tmp_path):
    from edgevla.actors.cli.demo_plots import plot_episode

    t0 = 100 * S
    msgs = []
    for k in range(3):  # three chunks, one a second
        t_cap = t0 + k * S
        actions = np.tile(np.linspace(0, 1, 30, dtype=np.float32)[:, None], (1, 6)) + k
        msgs.append(Recorded("action_chunk", t_cap + S // 5, ActionChunk(
            t0_ns=t_cap, dt_ns=S // 30, actions=actions, obs_seq=k, seq=k + 1,
            t_capture_ns=t_cap)))
    for i in range(90):
        t = t0 + i * S // 30
        msgs.append(Recorded("joint_command", t, JointCommand(
            t_target_ns=t, positions=np.full(6, i / 30, np.float32), chunk_seq=1 + i // 30)))
        msgs.append(Recorded("robot_state", t, RobotState(
            joints=np.full(6, i / 31, np.float32), commanded=np.full(6, i / 30, np.float32),
            t_capture_ns=t)))
    msgs.sort(key=lambda m: m.publish_time_ns)
    ep = EpisodeLog(index=4, cluster=2, split="train", success=False, task_time_s=3.0,
                    start_ns=t0, end_ns=t0 + 3 * S,
                    phases=[(t0, "reaching"), (t0 + S, "grasped"), (t0 + 2 * S, "reaching")])
    out = plot_episode(msgs, ep, tmp_path / "ep.png", title="failed in 'reaching'")
    assert out.stat().st_size > 20_000
    assert not list(tmp_path.glob("*.tmp*"))  # written whole, then renamed
