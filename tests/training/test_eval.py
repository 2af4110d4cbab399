"""Closed-loop evaluation: positions, sync/async rollouts through the executor core, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.train


class HoldPolicy:
    """Always asks to stay where the arm is: never succeeds, easy to count inferences for."""

    name = "Hold"
    format = "test double"

    def __init__(self, chunk_size: int = 30, n_action_steps: int = 30, hw=(48, 64), fps: int = 30):
        self.chunk_size, self.n_action_steps, self.image_hw, self.fps = chunk_size, n_action_steps, hw, fps
        self.calls = 0
        self.image_shapes: set = set()
        self.goals: list = []

    def predict(self, images, joints, goal=None):
        self.calls += 1
        self.image_shapes |= {(k, v.shape, v.dtype.name) for k, v in images.items()}
        self.goals.append(None if goal is None else np.asarray(goal, np.float32).copy())
        return np.repeat(np.asarray(joints, np.float32)[None], self.chunk_size, axis=0)


def test_eval_positions_split_train_clusters_and_held_out_cluster():
    from edgevla.training.eval.eval_starts import eval_specs
    from edgevla.training.sim.start_positions import ProtocolConfig, make_protocol

    specs = eval_specs(12, 3, seed=1000)
    test = [s for s in specs if s.split == "train"]
    val = [s for s in specs if s.split == "val"]
    assert len(test) == 12 and len(val) == 3
    assert {s.cluster for s in val} == {6}
    assert 6 not in {s.cluster for s in test}
    assert len({s.cluster for s in test}) == 10  # round-robin over every training cluster
    assert not any(s.recovery for s in specs)
    # New positions: none coincides with a recorded (seed 0) start position.
    recorded = {tuple(np.round(s.bag_xy, 6)) for s in make_protocol(ProtocolConfig())}
    assert not recorded & {tuple(np.round(s.bag_xy, 6)) for s in specs}


def test_sync_executes_whole_chunks_and_async_never_starves():
    from edgevla.training.eval.eval_config import EvalConfig
    from edgevla.training.eval.evaluate import evaluate

    pol = HoldPolicy(chunk_size=30, n_action_steps=30)
    cfg = EvalConfig(episodes=1, val_episodes=1, mode="sync", max_seconds=2.0)
    report, episodes = evaluate("hold", cfg, progress=False, policy=pol)
    assert [e.steps for e in episodes] == [60, 60]
    assert [e.inferences for e in episodes] == [2, 2]  # 60 steps / 30 per chunk
    assert report.test == 0.0 and report.val == 0.0 and report.global_ == 0.0
    assert (report.n_test, report.n_val) == (1, 1)
    assert pol.image_shapes == {(f"{c}", (48, 64, 3), "uint8") for c in ("top", "gripper", "left")}
    # the servo goal goes with every observation: the start pose, then the last action held
    assert len(pol.goals) == pol.calls and all(g is not None and g.shape == (6,) for g in pol.goals)

    # Re-planning more often: 10 of each 30-action chunk executed -> 6 inferences per 60 steps
    pol = HoldPolicy(chunk_size=30, n_action_steps=30)
    cfg = EvalConfig(episodes=1, val_episodes=0, mode="sync", max_seconds=2.0, actions_per_chunk=10)
    report, episodes = evaluate("hold", cfg, progress=False, policy=pol)
    assert [e.inferences for e in episodes] == [6]
    assert report.row()["actions_per_chunk"] == 10

    # Async: 100 ms simulated latency < the 0.5 s left at request time -> no starvation, and a
    # new chunk is requested about every half chunk (threshold 0.5) instead of every chunk.
    cfg = EvalConfig(episodes=1, val_episodes=0, mode="async", max_seconds=3.0, latency_ms=100.0)
    report, episodes = evaluate("hold", cfg, progress=False, policy=HoldPolicy())
    (ep,) = episodes
    assert ep.steps == 90 and ep.starvation_ticks == 0
    assert 4 <= ep.inferences <= 7
    assert report.config["simulated_latency_ms"] == pytest.approx(100.0)


@pytest.mark.parametrize("latency_ms, starves", [(400.0, False), (700.0, True)])
def test_async_starves_exactly_when_latency_exceeds_the_horizon_left(latency_ms, starves):
    from edgevla.training.eval.eval_config import EvalConfig
    from edgevla.training.eval.evaluate import evaluate

    # 30-step chunks at 30 fps = 1 s of actions, a request when 0.5 s are left: a 400 ms
    # inference arrives in time, a 700 ms one leaves ~0.2 s of every chunk uncovered.
    cfg = EvalConfig(episodes=1, val_episodes=0, mode="async", max_seconds=4.0, latency_ms=latency_ms)
    _, (ep,) = evaluate("hold", cfg, progress=False, policy=HoldPolicy())
    assert (ep.starvation_ticks > 0) == starves, ep
    assert ep.dropped_chunks == 0


def test_async_chunk_observed_while_holding_runs_from_its_arrival():
    from edgevla.training.eval.eval_config import EvalConfig
    from edgevla.training.eval.evaluate import evaluate

    cfg = EvalConfig(episodes=1, val_episodes=0, mode="async", max_seconds=4.0, latency_ms=2000.0)
    _, (ep,) = evaluate("hold", cfg, progress=False, policy=HoldPolicy())
    # The first chunk (1 s of actions, observed at 0 s with the arm still) arrives at 2 s. By
    # time alone it would be entirely in the past and dropped; the arm held still all along, so
    # the executor runs it from its arrival (2-3 s). Later chunks are requested at 2 s at the
    # earliest and land at 4 s: 3-4 s the arm starves.
    assert ep.dropped_chunks == 0
    assert ep.startup_steps in (60, 61) and ep.starvation_ticks in (29, 30, 31)


def test_results_table_markdown_and_json(tmp_path):
    from edgevla.training.eval.eval_config import EvalConfig
    from edgevla.training.eval.evaluate import evaluate
    from edgevla.training.eval.results_files import write_outputs

    cfg = EvalConfig(episodes=1, val_episodes=1, mode="sync", max_seconds=1.0, frames_every=5)
    report, episodes = evaluate("hold", cfg, progress=False, policy=HoldPolicy())
    paths = write_outputs([report], tmp_path, contact=episodes)
    md = paths["markdown"].read_text().splitlines()
    assert md[0].startswith("| policy | format | mode | latency")
    assert md[2].startswith("| Hold | test double | sync |")
    data = json.loads(paths["json"].read_text())
    assert set(data["rows"][0]) >= {"policy", "format", "latency_ms", "test", "val", "global"}
    assert len(data["runs"][0]["episodes"]) == 2
    assert paths["contact_sheet"].stat().st_size > 2000


def test_eval_cli_runs_a_real_lerobot_checkpoint(tmp_path):
    """A tiny ACT checkpoint in the layout `edgevla train` writes, evaluated through the CLI."""
    import torch

    from edgevla.actors.cli.main import main
    from edgevla.training.learn import policies
    from edgevla.training.learn.checkpoints import save_checkpoint

    torch.manual_seed(0)
    stats = {"observation.state": {"mean": torch.zeros(12), "std": torch.ones(12)},
             "action": {"mean": torch.zeros(6), "std": torch.ones(6)}}
    for cam in policies.CAMERAS:
        stats[f"observation.images.{cam}"] = {"mean": torch.full((3, 1, 1), 0.5), "std": torch.full((3, 1, 1), 0.2)}
    cfg = policies.make_act_config(image_hw=(48, 64), chunk_size=20, n_action_steps=20, dim_model=32,
                                   n_heads=2, dim_feedforward=64, n_encoder_layers=1, n_vae_encoder_layers=1)
    policy, pre, post = policies.make_act(config=cfg, dataset_stats=stats)
    opt = torch.optim.AdamW(policy.parameters())
    save_checkpoint(tmp_path / "run", 1, policy, pre, post, opt, None, {"fps": 30, "task": "put the tea bag in the mug"})

    rc = main(["eval", "--policy", str(tmp_path / "run"), "--episodes", "1", "--val-episodes", "1",
               "--max-seconds", "1", "--mode", "both", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert rc == 0
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())["rows"]
    assert [(r["policy"], r["format"], r["mode"]) for r in rows] == [
        ("ACT", "PyTorch eager", "sync"), ("ACT", "PyTorch eager", "async")]
    assert all(r["latency_ms"] > 0 for r in rows)

    # A latency sweep: every latency in both modes, one table, and the plot.
    rc = main(["eval", "--policy", str(tmp_path / "run"), "--episodes", "1", "--val-episodes", "0",
               "--max-seconds", "2", "--mode", "both", "--latency-ms", "0,200",
               "--out", str(tmp_path / "sweep"), "--no-progress"])
    assert rc == 0
    rows = json.loads((tmp_path / "sweep" / "results.json").read_text())["rows"]
    assert [(r["mode"], r["simulated_latency_ms"]) for r in rows] == [
        ("sync", 0.0), ("async", 0.0), ("sync", 200.0), ("async", 200.0)]
    idle = {(r["mode"], r["simulated_latency_ms"]): r["idle_fraction"] for r in rows}
    # chunks of 20 ticks: sync waits 6 ticks before each; async (200 ms < half a chunk) only once
    assert idle[("sync", 0.0)] == 0.0 and idle[("sync", 200.0)] >= 0.2
    assert idle[("async", 200.0)] < idle[("sync", 200.0)] / 2
    assert (tmp_path / "sweep" / "latency_sweep.png").stat().st_size > 10_000
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--policy", str(tmp_path / "run"), "--latency-ms", "fast"])
    assert exc.value.code == 2


def test_sync_holds_still_for_the_latency_and_reports_idle_and_task_time():
    """Sync waits out each inference (arm still, physics running); async at the same latency does not."""
    from edgevla.training.eval.eval_config import EvalConfig
    from edgevla.training.eval.evaluate import evaluate
    from edgevla.training.eval.results_files import markdown_table

    cfg = EvalConfig(episodes=1, val_episodes=0, mode="sync", max_seconds=2.0, latency_ms=500.0)
    report, (ep,) = evaluate("hold", cfg, progress=False, policy=HoldPolicy(30, 30))
    # 15 idle ticks, 30 executed, 15 idle: 2 s of sim time with half of it spent waiting.
    assert (ep.steps, ep.inferences, ep.idle_steps, ep.startup_steps) == (60, 2, 30, 15)
    assert report.idle_fraction == pytest.approx(0.5)
    assert report.running_idle_fraction == pytest.approx(15 / 45)  # after the first chunk
    assert report.task_time_s is None  # nothing succeeded
    row = report.row()
    assert row["simulated_latency_ms"] == pytest.approx(500.0) and row["idle_fraction"] == 0.5
    assert "| 500 | all | - | 0.500 | 0.333 |" in markdown_table([row])

    cfg = EvalConfig(episodes=1, val_episodes=0, mode="async", max_seconds=2.0, latency_ms=500.0)
    report, (ep,) = evaluate("hold", cfg, progress=False, policy=HoldPolicy(60, 60))
    # only the first chunk is waited for (15-16 ticks: 500 ms on a 33.33 ms integer-ns clock),
    # later ones arrive while the arm moves
    assert ep.steps == 60 and ep.starvation_ticks == 0 and ep.idle_steps in (15, 16)
    assert ep.startup_steps == ep.idle_steps and report.running_idle_fraction == 0.0


def test_wilson_interval_and_exact_mcnemar_match_textbook_values():
    from edgevla.training.eval.significance import mcnemar_exact_p, wilson_interval

    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    lo, hi = wilson_interval(30, 70)  # the shipped model's global rate: about +-0.11
    assert hi - lo == pytest.approx(0.225, abs=0.01)
    assert mcnemar_exact_p(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(3, 3) == 1.0
    assert mcnemar_exact_p(10, 1) == pytest.approx(2 * 12 / 2 ** 11)


def test_async_and_sync_runs_are_compared_episode_by_episode(tmp_path):
    from edgevla.training.eval.report import EvalReport
    from edgevla.training.eval.results_files import write_outputs
    from edgevla.training.eval.significance import paired_comparisons

    def report(mode, successes, latency=320.0):
        eps = [{"index": i, "split": "test" if i < 4 else "val", "cluster": 0, "success": ok}
               for i, ok in enumerate(successes)]
        return EvalReport(policy="P", format="f", mode=mode, latency_ms=1.0, test=0.0, val=0.0, global_=0.0,
                          n_test=4, n_val=2, source="x", episodes=eps, seconds=1.0,
                          config={"simulated_latency_ms": latency, "protocol_seed": 1000})

    sync = report("sync", [True, True, False, False, True, False])
    asyn = report("async", [True, False, True, True, True, True])
    other = report("sync", [False] * 6, latency=1500.0)
    (c,) = paired_comparisons([sync, other, asyn])
    assert (c.simulated_latency_ms, c.pairs, c.both, c.only_sync, c.only_async, c.neither) == (320.0, 6, 2, 1, 3, 0)
    assert c.p_value == pytest.approx(0.625) and c.verdict() == "async better (not significant)"
    paths = write_outputs([sync, asyn], tmp_path)
    assert "| 320 | 6 | 2 | 1 | 3 | 0 | 0.62 | async better (not significant) |" in paths["markdown"].read_text()
    data = json.loads(paths["json"].read_text())
    assert data["paired"][0]["only_async"] == 3
    assert data["rows"][0]["global_ci95"] == [pytest.approx(0.188, abs=1e-3), pytest.approx(0.812, abs=1e-3)]
