"""Recorder: MCAP layout readable by the stock `mcap` reader, bit-exact wire frames, crash
safety under SIGKILL (a real subprocess) and at every step of a commit, rotation, restarts into
new files, disk-full handling."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis_budget import examples
from mcap.reader import make_reader

from edgevla.actors.recording import checkpoint_file as recmod
from edgevla.actors.recording.mcap_format import pack_frames, unpack_frames
from edgevla.actors.recording.mcap_reader import read_recording, recording_files
from edgevla.actors.recording.mcap_writer import McapRecording
from edgevla.actors.recording.recorder import RecorderActor
from edgevla.actors.wire.clock import VirtualClock
from edgevla.actors.wire.codec import decode, encode
from edgevla.actors.wire.messages import ActionChunk, Frame, JointCommand

pytestmark = pytest.mark.timing  # wall time and processes: make test-under-load


def _plain_count(path: Path) -> list[tuple[str, int]]:
    """Read with the mcap library only: (topic, sequence) of every message."""
    with open(path, "rb") as f:
        return [(ch.topic, m.sequence) for _, ch, m in make_reader(f).iter_messages()]


def _frame(i: int, h: int = 24, w: int = 32) -> Frame:
    return Frame(camera="top", image=np.full((h, w, 3), i % 256, np.uint8), seq=i,
                 t_capture_ns=1000 * i, t_pub_ns=1000 * i + 7, producer="cam.0")


# ------------------------------------------------------------------ layout and codec

@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_pack_frames_is_plain_msgpack_and_roundtrips(items):
    data = pack_frames(items[0], items[1:])
    assert msgpack.unpackb(data, raw=False) == items  # any msgpack decoder reads it
    assert [bytes(x) for x in unpack_frames(data)] == items


@settings(max_examples=examples(40), deadline=None)
@given(hnp.arrays(dtype=st.sampled_from(["uint8", "float32", "int64", "float16", "bool"]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)),
       st.integers(0, 2**62), st.text(max_size=8))
def test_reencoding_a_decoded_message_is_bit_identical(arr, seq, model):
    """The recorder re-encodes what the runtime decoded: it must get the sender's bytes back."""
    actions = arr.reshape(arr.shape[0], -1)
    msg = ActionChunk(t0_ns=5, dt_ns=33_000_000, actions=actions, obs_seq=3, model_id=model,
                      seq=seq, t_capture_ns=1, t_pub_ns=2, producer="policy.0")
    wire = encode("chunks", msg)
    again = encode("chunks", decode(wire)[1])
    assert [bytes(memoryview(x).cast("B")) for x in again] == \
        [bytes(memoryview(x).cast("B")) for x in wire]


def test_file_opens_with_the_plain_mcap_reader_and_names_schemas(tmp_path):
    p = tmp_path / "run.mcap"
    rec = McapRecording(p)
    sent = []
    for i in range(1, 6):
        sent.append(encode("cam/top", _frame(i)))
        rec.write_frames(sent[-1], log_time_ns=1000 * i + 50)
    cmd = JointCommand(t_target_ns=9, positions=np.arange(6, dtype=np.float32), seq=1,
                       t_pub_ns=123, producer="executor.0")
    sent.append(encode("commands", cmd))
    rec.write_frames(sent[-1], log_time_ns=200)
    rec.close()
    with open(p, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary.statistics.message_count == 6
        assert {s.name for s in summary.schemas.values()} == {"edgevla.frame.v2",
                                                              "edgevla.joint_command.v2"}
        assert {c.message_encoding for c in summary.channels.values()} == {"msgpack"}
        got = list(reader.iter_messages(log_time_order=False))
    assert [c.topic for _, c, _ in got] == ["cam/top"] * 5 + ["commands"]
    _, ch, m = got[-1]
    assert (m.log_time, m.publish_time, m.sequence) == (200, 123, 1)
    # message data = exact wire frames: a plain msgpack decode gives header + buffers
    items = msgpack.unpackb(m.data, raw=False)
    assert items == [bytes(sent[-1][1]), cmd.positions.tobytes()]
    # and the project's reader gives back every frame byte for byte
    back = read_recording(p)  # in t_pub order: the command (t_pub 123) comes first
    assert [r.topic for r in back] == ["commands"] + ["cam/top"] * 5
    for r, frames in zip(back, [sent[-1], *sent[:-1]]):
        assert [bytes(memoryview(x).cast("B")) for x in r.frames] == \
            [bytes(memoryview(x).cast("B")) for x in frames]


# ------------------------------------------------------------------ crash safety

class _KillAt(Exception):
    pass


@pytest.mark.parametrize("kill_at", [0, 1, 2])
def test_a_crash_at_any_write_of_a_commit_leaves_a_readable_file(tmp_path, monkeypatch, kill_at):
    """A commit is three pwrites (new end, body, blank old end): die before each of them."""
    p = tmp_path / "crash.mcap"
    rec = McapRecording(p, chunk_size=1 << 20)
    for i in range(1, 11):
        rec.write_message("cam/top", _frame(i), 1000 * i)
    rec.flush()  # 10 messages committed
    for i in range(11, 21):
        rec.write_message("cam/top", _frame(i), 1000 * i)
    calls = {"n": 0}
    real = os.pwrite

    def dying_pwrite(fd, data, offset):
        if calls["n"] == kill_at:
            # SIGKILL during a write: whole pages land, a write within one page is all or
            # nothing (the kernel checks for a fatal signal between page copies)
            first_page_end = (offset // 4096 + 1) * 4096
            if offset + len(data) > first_page_end:
                real(fd, bytes(memoryview(data)[: first_page_end - offset]), offset)
            raise _KillAt()
        calls["n"] += 1
        return real(fd, data, offset)

    monkeypatch.setattr(recmod.os, "pwrite", dying_pwrite)
    with pytest.raises(_KillAt):
        rec.flush()
    monkeypatch.undo()
    got = _plain_count(p)
    seqs = [s for _, s in got]
    if kill_at < 2:
        assert seqs == list(range(1, 11)), "everything up to the last commit, nothing torn"
    else:  # killed before the old end was blanked: it still ends the data
        assert seqs == list(range(1, 11))


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from edgevla.actors.wire.clock import WallClock
    from edgevla.actors.wire.messages import Frame
    from edgevla.actors.recording.recorder import RecorderActor
    rec = RecorderActor("recorder")
    rec.setup({"path": sys.argv[1], "flush_ms": 20, "chunk_size": 200000})
    clock = WallClock()
    seq = 0
    while True:
        batch = []
        for _ in range(5):
            seq += 1
            batch.append(Frame(camera="top", image=np.full((120, 160, 3), seq % 256, np.uint8),
                               seq=seq, t_pub_ns=clock.now_ns(), producer="cam.0"))
        rec.step(clock, {"cam/top": batch})
        print(rec.stats()["committed"], flush=True)  # messages safe against SIGKILL now
""")


def test_sigkill_mid_run_leaves_a_file_the_mcap_reader_opens(tmp_path):
    p = tmp_path / "killed.mcap"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(p)], stdout=subprocess.PIPE,
                             text=True)
    committed = 0
    try:
        deadline = time.monotonic() + 30
        while committed < 400 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            committed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert committed >= 400, "the recorder subprocess did not make progress"
    got = _plain_count(p)  # the stock reader, no project code
    seqs = [s for _, s in got]
    assert len(seqs) >= committed
    assert seqs == list(range(1, len(seqs) + 1)), "a gap-free prefix of what was sent"
    # a recorder restarted on the same path never touches the killed file
    size = p.stat().st_size
    rec = RecorderActor("recorder")
    rec.setup({"path": str(p)})
    rec.step(VirtualClock(5), {"cam/top": [_frame(1)]})
    rec.close()
    assert rec.stats()["files"] == [str(tmp_path / "killed.1.mcap")]
    assert p.stat().st_size == size
    assert [s for _, s in _plain_count(tmp_path / "killed.1.mcap")] == [1]


# ------------------------------------------------------------------ rotation, restarts

def test_a_torn_tail_keeps_every_message_before_it(tmp_path, caplog):
    """Below the recorder's own commits (a power loss, a filesystem that reorders writes) a file
    can end anywhere: the reader returns the messages before the tear, in order, never nothing;
    a file that is no MCAP is an error naming it."""
    p = tmp_path / "run.mcap"
    rec = McapRecording(p, chunk_size=4096)  # several chunks: tears inside and between them
    for i in range(1, 61):
        rec.write_frames(encode("cam/top", _frame(i)), log_time_ns=1000 * i + 50)
    rec.close()
    data = p.read_bytes()
    assert [m.decode().seq for m in read_recording(p)] == list(range(1, 61))
    torn = tmp_path / "torn.mcap"
    counts = []
    for cut in np.linspace(16, len(data) - 1, 40).astype(int):
        torn.write_bytes(data[:cut])
        seqs = [m.decode().seq for m in read_recording(torn)]
        assert seqs == list(range(1, len(seqs) + 1)), cut  # a prefix, nothing invented
        counts.append(len(seqs))
    assert counts == sorted(counts) and counts[-1] >= 55 and counts[len(counts) // 2] >= 20
    assert "torn record" in caplog.text
    for junk in (b"", b"# not a recording\n", data[:5]):
        torn.write_bytes(junk)
        with pytest.raises(ValueError, match="torn.mcap: not a readable MCAP recording"):
            read_recording(torn)


def test_rotation_by_size_and_time_loses_nothing(tmp_path):
    path = tmp_path / "rot.mcap"
    rec = RecorderActor("recorder")
    rec.setup({"path": str(path), "max_bytes": 60_000, "chunk_size": 20_000})
    clock = VirtualClock(0)
    for i in range(1, 101):
        clock.advance_ns(10_000_000)
        rec.step(clock, {"cam/top": [_frame(i)]})
    rec.close()
    files = recording_files(path)
    assert len(files) >= 3 and files == [Path(f) for f in rec.stats()["files"]]
    seqs = [s for f in files for _, s in _plain_count(f)]
    assert seqs == list(range(1, 101))
    # time-based
    rec = RecorderActor("recorder")
    rec.setup({"path": str(tmp_path / "t.mcap"), "max_seconds": 0.25})
    clock = VirtualClock(0)
    for i in range(1, 101):
        clock.advance_ns(10_000_000)
        rec.step(clock, {"cam/top": [_frame(i)]})
    rec.close()
    assert len(rec.stats()["files"]) == 4  # 1 s of data, a new file every 0.25 s


def test_params_are_checked_with_clear_errors(tmp_path):
    rec = RecorderActor("recorder")
    with pytest.raises(ValueError, match="params.path"):
        rec.setup({})
    with pytest.raises(ValueError, match="unknown.*chunksize"):
        rec.setup({"path": str(tmp_path / "x.mcap"), "chunksize": 3})
    with pytest.raises(ValueError, match="compression"):
        rec.setup({"path": str(tmp_path / "x.mcap"), "compression": "gzip"})


def test_topic_selection(tmp_path):
    rec = RecorderActor("recorder")
    rec.setup({"path": str(tmp_path / "sel.mcap"), "topics": ["commands", "cam/top"],
               "exclude": ["cam/top"]})
    cmd = JointCommand(t_target_ns=1, positions=np.zeros(6, np.float32), seq=1)
    rec.step(VirtualClock(1), {"cam/top": [_frame(1)], "commands": [cmd], "other": [cmd]})
    rec.close()
    assert _plain_count(tmp_path / "sel.mcap") == [("commands", 1)]


# ------------------------------------------------------------------ slow disk, disk full

def test_a_slow_disk_never_stalls_the_step_and_overflow_is_counted(tmp_path, monkeypatch):
    """The writer thread takes the disk time; past max_queue_mb the recorder drops and says so."""
    import threading

    gate = threading.Event()
    real = os.pwrite

    def stuck_pwrite(fd, data, offset):
        gate.wait(20)  # a disk that does not answer
        return real(fd, data, offset)

    rec = RecorderActor("recorder")
    rec.setup({"path": str(tmp_path / "slow.mcap"), "max_queue_mb": 0.05, "flush_ms": 1})
    monkeypatch.setattr(recmod.os, "pwrite", stuck_pwrite)
    clock = VirtualClock(0)
    t0 = time.monotonic()
    for i in range(1, 41):  # 40 frames of 2.3 kB while the disk is stuck
        clock.advance_ns(10_000_000)
        rec.step(clock, {"cam/top": [_frame(i)]})
    stepping_s = time.monotonic() - t0
    s = rec.stats()
    gate.set()
    rec.close()
    assert stepping_s < 10, "step waited for the disk"  # the disk alone would take 20 s
    assert s["dropped_queue_full"] > 0 and "falling behind" in s["error"]
    kept = [q for _, q in _plain_count(tmp_path / "slow.mcap")]
    assert len(kept) + s["dropped_queue_full"] == 40 and kept == sorted(kept)


def test_disk_full_is_reported_and_the_recorder_keeps_going(tmp_path, monkeypatch, caplog):
    path = tmp_path / "full.mcap"
    rec = RecorderActor("recorder")
    rec.setup({"path": str(path), "flush_ms": 1, "retry_s": 1.0, "writer_thread": False})
    clock = VirtualClock(0)
    for i in range(1, 11):
        clock.advance_ns(5_000_000)
        rec.step(clock, {"cam/top": [_frame(i)]})
    real = os.pwrite
    full = {"on": True}

    def pwrite(fd, data, offset):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(recmod.os, "pwrite", pwrite)
    for i in range(11, 31):  # step never raises while the disk is full
        clock.advance_ns(5_000_000)
        assert rec.step(clock, {"cam/top": [_frame(i)]}) is None
    s = rec.stats()
    assert s["error"] and "disk full (ENOSPC)" in s["error"]
    assert s["dropped_write_error"] == 20
    assert sum("disk full" in r.message for r in caplog.records) == 1  # logged once
    # the first file is still valid up to its last commit
    assert [q for _, q in _plain_count(path)] == list(range(1, 11))
    # space comes back: after retry_s a new file takes over
    full["on"] = False
    for i in range(31, 41):
        clock.advance_ns(200_000_000)
        rec.step(clock, {"cam/top": [_frame(i)]})
    rec.close()
    s = rec.stats()
    assert s["error"] is None and len(s["files"]) >= 2
    resumed = [q for f in s["files"][1:] for _, q in _plain_count(Path(f))]
    assert resumed and resumed == list(range(41 - len(resumed), 41))
