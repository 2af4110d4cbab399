"""Recording a real multi-process run (`edgevla run GRAPH --record`): SIGKILL the recorder
mid-run; its file stays readable with the stock mcap reader, the rest of the graph keeps
running, the supervisor restarts the recorder into a new file; a pure stage replays from it."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from mcap.reader import make_reader

from edgevla.actors.cli_runtime import add_recorder
from edgevla.actors.graph import parse_graph
from edgevla.actors.recorder import recording_files
from edgevla.actors.replay import load_recording, replay_step
from edgevla.actors.supervisor import Supervisor

sys.path.insert(0, str(Path(__file__).parent))
from runtime_helpers import actor_stats, run_for, run_until  # noqa: E402

GRAPH = """\
name: rec
defaults:
  restart: {policy: on-failure, max_restarts: 3, backoff_s: 0.1}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 20
    params: {camera: top, width: 64, height: 48}
  vision:
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: features}
    params: {work_ms: 2}
  policy:
    kind: dummy_policy
    inputs: {features: features}
    outputs: {chunks: chunks}
    params: {horizon: 20, fps: 30}
  sink:
    kind: counter_sink
    inputs: {in: chunks}
"""


def _plain(path: Path) -> list[tuple[str, int]]:
    with open(path, "rb") as f:
        return [(c.topic, m.sequence) for _, c, m in make_reader(f).iter_messages()]


def test_sigkill_recorder_mid_run_graph_survives_and_restart_opens_new_file(run_base, tmp_path):
    out = tmp_path / "run.mcap"
    graph = add_recorder(parse_graph(GRAPH, "rec.yaml"), str(out))
    sup = Supervisor(graph, base_dir=run_base)
    sup.start()
    try:
        rec = sup.replicas["recorder"][0]
        # wait until the recorder has committed a good part of the stream
        assert run_until(sup, lambda: rec.last_stats.get("actor_stats", {}).get("committed", 0)
                         > 60, timeout_s=30), rec.last_stats
        sink_before = actor_stats(sup, "sink")["actor_stats"]["count"]
        committed = actor_stats(sup, "recorder")["actor_stats"]["committed"]
        old_pid = rec.pid
        os.kill(old_pid, signal.SIGKILL)
        assert run_until(sup, lambda: rec.pid not in (None, old_pid) and rec.state == "running"
                         and rec.last_stats.get("pid") == rec.pid
                         and rec.last_stats.get("actor_stats", {}).get("committed", 0) > 20,
                         timeout_s=30)
        run_for(sup, 0.5)
        sink_after = actor_stats(sup, "sink")["actor_stats"]["count"]
        others = {n: sup.replicas[n][0].restarts for n in ("cam", "vision", "policy", "sink")}
        new_stats = actor_stats(sup, "recorder")["actor_stats"]
    finally:
        sup.stop()
    assert rec.restarts == 1
    assert others == {"cam": 0, "vision": 0, "policy": 0, "sink": 0}  # nobody else noticed
    assert sink_after > sink_before  # chunks kept flowing through the kill
    assert new_stats["files"] == [str(tmp_path / "run.1.mcap")]
    killed = _plain(out)  # the killed file, stock reader
    assert len(killed) >= committed
    for topic in ("cam/top", "chunks"):  # (features carry the frame seq: a stage may skip)
        seqs = [s for t, s in killed if t == topic]
        assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), topic  # no holes
    assert len(_plain(tmp_path / "run.1.mcap")) > 20  # the restarted recorder, closed cleanly
    assert recording_files(out) == [out, tmp_path / "run.1.mcap"]

    # the policy is a pure function of its input: step replay reproduces every chunk's content
    msgs, _ = load_recording(out)
    res = replay_step(msgs, graph, ["policy"])
    rec_by_obs = {m.decode().obs_seq: m.decode() for m in msgs if m.topic == "chunks"}
    live = [p for p in res.replayed["chunks"]]
    assert len(live) > 30
    matched = 0
    from edgevla.actors.messages import decode

    for p in live:
        c = decode(p.frames)[1]
        r = rec_by_obs.get(c.obs_seq)
        if r is not None:
            assert r.t0_ns == c.t0_ns and r.actions.tobytes() == c.actions.tobytes()
            matched += 1
    assert matched >= len(live) - 2  # at most the edges of the recording lack a partner
