"""A recording of the shipped graph replays exactly: each stage, replaced by itself, gives the
recorded outputs again (the README's "bring recordings back" workflow, as a user types it).

`edgevla run graphs/sim.yaml --record` (real processes, wall clock, the shipped model), then
`edgevla replay --step --graph graphs/sim.yaml --replace A --compare` for the executor, the
decoder and the vision stage. The runtime publishes a step trace per step while a recorder
runs, so every replayed step is fed what it consumed live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgevla.actors.recording.replay_setup import load_recording

pytestmark = pytest.mark.timing  # wall time and processes: make test-under-load

ROOT = Path(__file__).resolve().parents[2]
EDGEVLA = [sys.executable, "-m", "edgevla.actors.cli.main"]
# The recorder's connections to every producer complete within this long of its first message
CONNECT_NS = 2_000_000_000


def _edgevla(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # ipc socket paths must stay under ~100 bytes: run dirs under a short base
    base = tempfile.mkdtemp(prefix="ev")
    env = {**os.environ, "EDGEVLA_RUN_BASE": base}
    return subprocess.run([*EDGEVLA, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    if not (ROOT / "models" / "default" / "bundle" / "manifest.json").is_file():
        pytest.skip("the shipped model bundle is not in this checkout")
    work = tmp_path_factory.mktemp("rec")
    out = work / "run.mcap"
    r = _edgevla("run", str(ROOT / "graphs" / "sim.yaml"), "--duration", "20", "--headless",
                 "--record", str(out), cwd=work, timeout=240)
    assert out.is_file(), r.stdout[-2000:] + r.stderr[-2000:]
    return out


@pytest.mark.parametrize("actor", ["executor", "decoder", "vision"])
def test_a_stage_replaced_by_itself_reproduces_its_recorded_outputs(recording, actor):
    report = recording.parent / f"{actor}.json"
    r = _edgevla("replay", str(recording), "--step", "--graph", str(ROOT / "graphs" / "sim.yaml"),
                 "--replace", actor, "--compare", "--json", str(report), cwd=recording.parent,
                 timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads(report.read_text())
    assert rep["tick_source"][actor] == "step trace"
    outputs = [t for t in rep["topics"] if t["recorded"]]
    assert outputs, rep
    msgs, _ = load_recording(recording)
    # A loaded machine can make the recorder drop messages mid-run (its queue to a producer
    # full): a replay cannot run a step it has no record of, and every output of the actor
    # after such a hole may then differ (its own counters moved on without it)
    t_hole = None
    # The same for a message the actor consumed that the recording lost (a traced step the
    # replay could not feed) later than the recorder's connections complete at the start
    not_found = rep["inputs_not_found_ns"].get(actor, [])
    print(actor, "steps fed by the delivery rule:",
          [round((t - msgs[0].publish_time_ns) / 1e9, 3) for t in not_found])
    lost = [t for t in not_found if t > msgs[0].publish_time_ns + CONNECT_NS]
    if lost:
        t_hole = lost[0]
    for topic in {t["topic"] for t in outputs}:
        ms = sorted((m for m in msgs if m.topic == topic), key=lambda m: m.seq)
        for a, b in zip(ms, ms[1:]):
            if b.seq != a.seq + 1:
                t_hole = min(t_hole or a.publish_time_ns, a.publish_time_ns)
    if t_hole is not None:
        print(actor, f"hole in the recording at +{(t_hole - msgs[0].publish_time_ns) / 1e9:.3f} s")
    # The recorder may also join after the actor's first step (its trace sent before the
    # connection completed): the replay starts the actor fresh one step or more later, so what
    # it numbers from its own start (a request's seq; startup requests run on their own period)
    # may be offset by the requests it never saw, while its step-for-step outputs still match.
    joined = rep["joined_at_step"].get(actor, 0)
    print(actor, "recording joined at step", joined)
    for t in outputs:
        print(actor, t["topic"], t["recorded"], t["replayed"], t["compared"],
              t["identical_payload"], t["first_diff"], t["last_diff"])
        # The recorder may miss what was sent before its connection to a producer completed
        # (a PUB drops it); a step that consumed such a message is the only one allowed to
        # differ, and only at the start. Every other paired message has the recorded content.
        warm_up = 0 if t["first_diff"] is None else t["last_diff"] + 1
        if t_hole is not None and t["first_diff"] not in (None, 0):
            before = sum(1 for m in msgs if m.topic == t["topic"] and m.publish_time_ns <= t_hole)
            print(f"{t['topic']}: the recording has a hole; {before} messages before it")
            assert t["first_diff"] >= before - 1, t
            continue
        if t["topic"] == "exec/commands":
            assert t["paired_by"] == "step", t  # commands pair step for step, never renumbered
        if joined and t["paired_by"] == "seq" and t["first_diff"] not in (None, 0):
            assert abs(t["recorded"] - t["replayed"]) <= 1, t  # the same requests, renumbered
            continue
        assert t["first_diff"] in (None, 0), t
        assert t["identical_payload"] == t["compared"] - warm_up, t
        unpaired = t["recorded"] - t["compared"]
        assert unpaired >= 0 and warm_up + unpaired <= (60 if actor == "executor" else 1), t
        assert t["compared"] >= 3, t
