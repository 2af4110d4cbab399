"""`edgevla inspect`: on a virtual-time recording every number is known exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevla.actors.recording.inspect import inspect_file, inspect_messages
from edgevla.actors.recording.mcap_reader import read_recording
from edgevla.actors.runtime.inprocess import InProcessGraph
from edgevla.actors.wire.clock import VirtualClock

sys.path.insert(0, str(Path(__file__).parent))
from test_replay_standins import KINDS, pipeline_graph  # noqa: E402


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ins") / "run.mcap"
    g = InProcessGraph(pipeline_graph(str(path), cam_hz=5.0), clock=VirtualClock(10**12),
                       kinds=KINDS, latency_ns={"vision": 20_000_000, "policy": 700_000_000})
    g.run_for(4_000_000_000)
    g.flush_collectors()
    g.close()
    return path


def test_counts_rates_and_stage_latency_are_exact(recording):
    ins, _ = inspect_file(recording)
    topics = {t.topic: t for t in ins.topics}
    assert topics["commands"].rate_hz == pytest.approx(100.0)
    assert topics["robot/state"].rate_hz == pytest.approx(50.0)
    assert topics["cam/top"].count == 21 and topics["cam/top"].rate_hz == pytest.approx(5.0)
    assert topics["cam/top"].gap_max_ms == pytest.approx(200.0)
    assert all(t.seq_missing == 0 and t.long_gaps == 0 for t in ins.topics)
    assert ins.stages["capture->features"]["p50_ms"] == pytest.approx(20.0, abs=0.01)  # + 1 µs delivery
    assert ins.stages["capture->chunk"]["p99_ms"] == pytest.approx(720.0, abs=0.01)
    # a chunk of 20 actions at 30 fps covers 667 ms but arrives 720 ms after capture:
    # it is entirely stale and the stand-in executor starves
    assert ins.chunks["late_at_arrival_p50_ms"] == pytest.approx(720.0, abs=0.01)
    assert ins.commands["starved_fraction"] == 1.0
    assert ins.commands["longest_starvation_ticks"] == ins.commands["count"]


def test_gaps_and_lost_messages_are_found(recording):
    msgs = read_recording(recording)
    cams = [m for m in msgs if m.topic == "cam/top"]
    dropped = {cams[5].seq, cams[6].seq, cams[7].seq}  # three frames lost in a row
    ins = inspect_messages([m for m in msgs if not (m.topic == "cam/top" and m.seq in dropped)])
    cam = {t.topic: t for t in ins.topics}["cam/top"]
    assert cam.seq_missing == 3
    assert cam.long_gaps == 1 and cam.gap_max_ms == pytest.approx(800.0)


def test_cli_inspect_prints_writes_json_and_plots(recording, tmp_path, capsys):
    from edgevla.actors.cli.main import main

    png, js = tmp_path / "tl.png", tmp_path / "stats.json"
    assert main(["inspect", str(recording), "--plot", str(png), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "capture->chunk" in text and "commands" in text
    data = json.loads(js.read_text())
    assert {t["topic"] for t in data["topics"]} >= {"cam/top", "chunks", "commands"}
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 20_000
    assert main(["inspect", str(tmp_path / "missing.mcap")]) == 2


def test_latency_staleness_reported_for_fresh_chunks(tmp_path):
    path = tmp_path / "fresh.mcap"
    g = InProcessGraph(pipeline_graph(str(path)), clock=VirtualClock(10**12), kinds=KINDS,
                       latency_ns={"policy": 100_000_000})
    g.run_for(2_000_000_000)
    g.flush_collectors()
    g.close()
    ins, _ = inspect_file(path)
    assert ins.commands["starved_ticks"] == 0
    # command staleness = target (now + 5 ms link) - capture of the chunk's observation
    assert 105.0 <= ins.commands["staleness_p50_ms"] <= 205.0
    assert np.isfinite(ins.stages["capture->executed"]["p99_ms"])
