"""Shared-memory path for large arrays: round trip, ownership, bad descriptors, cleanup.

Only ipc/loopback endpoints and bounded loops; no timing asserts.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import stat
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.recording.mcap_reader import read_recording
from edgevla.actors.recording.mcap_writer import McapRecording
from edgevla.actors.wire import shm
from edgevla.actors.wire.bus import Publisher, Subscriber
from edgevla.actors.wire.codec import decode, decode_header, encode, pack_header
from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import Features, Frame, Observation

from runtime_helpers import replica, run_until, start_graph

pytestmark = [pytest.mark.timing, pytest.mark.timeout(120)]

H, W = 480, 640


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _raw_frames(sock: zmq.Socket, timeout_ms: int = 2000) -> list[bytes]:
    assert sock.poll(timeout_ms), "nothing arrived"
    return sock.recv_multipart()


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.term()


@pytest.fixture
def ep(tmp_path):
    return f"ipc://{tmp_path}/t.sock"


def _joined(pub_sock: zmq.Socket, *sub_socks: zmq.Socket, timeout_s: float = 30.0) -> None:
    """Wait until every subscriber hears the publisher (a PUB drops what it sends before a
    subscription arrives, later on a loaded machine). Probes go on topic ``cam~probe``, which
    the "cam" subscriptions receive (ZeroMQ matches prefixes) and which are read off raw here,
    so they use no sequence number and no shared-memory slot. Bounded far above the usual
    few milliseconds."""
    waiting = list(sub_socks)
    deadline = time.monotonic() + timeout_s
    while waiting:
        assert time.monotonic() < deadline, "subscribers never connected"
        pub_sock.send_multipart([b"cam~probe", b""])
        waiting = [s for s in waiting if not s.poll(10)]
    time.sleep(0.05)
    for s in sub_socks:  # the probes still queued
        while s.poll(0):
            s.recv_multipart()


def _pair(ctx, ep, **pub_kw):
    pub = Publisher(ctx, ep, producer="p", **pub_kw)
    sub = Subscriber(ctx, [ep], ["cam"], shm_reader=shm.ShmReader())
    _joined(pub.sock, sub.sock)
    return pub, sub


# ------------------------------------------------------------------ two processes

def _producer(endpoint: str, n: int, go, done, bound) -> None:
    ctx = zmq.Context()
    pub = Publisher(ctx, endpoint, producer="child")
    assert pub.shm is not None
    bound.set()
    go.wait(30)
    for i in range(n):
        pub.send("cam", Frame(camera="c", image=_image(i), seq=i + 1))
        time.sleep(0.01)
    done.wait(30)  # keep the segment until the consumer has read everything
    pub.close()
    ctx.term()


def test_frames_round_trip_bit_exact_between_processes(ctx, ep):
    spawn = mp.get_context("spawn")
    go, done, bound = spawn.Event(), spawn.Event(), spawn.Event()
    n = 20
    proc = spawn.Process(target=_producer, args=(ep, n, go, done, bound), daemon=True)
    proc.start()
    sub = Subscriber(ctx, [ep], ["cam"])
    raw = ctx.socket(zmq.SUB)
    raw.setsockopt(zmq.SUBSCRIBE, b"cam")
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(ep)
    try:
        assert bound.wait(60), "producer did not start"
        time.sleep(0.5)  # subscriptions propagate (slow joiner)
        go.set()
        got = []
        for _ in range(n):
            r = sub.recv(5000)
            assert r is not None, sub.counters.as_dict()
            got.append(r[1])
            frames = _raw_frames(raw)
            header = decode_header(frames[1])
            assert len(frames) == 2 and len(header["a"][0]) == 4  # pixels went via shm
        for msg in got:
            assert msg.image.flags.writeable and msg.image.flags.owndata  # owned, not a view
            np.testing.assert_array_equal(msg.image, _image(msg.seq - 1))
        assert [m.seq for m in got] == list(range(1, n + 1))
        assert sub.counters.malformed_total() == 0
    finally:
        done.set()
        proc.join(10)
        sub.close()
        raw.close()
    assert not shm.segment_files(proc.pid)  # the child's close unlinked it


# ------------------------------------------------------------------ ownership

def test_held_array_survives_more_publishes_than_the_ring_holds(ctx, ep):
    pub, sub = _pair(ctx, ep, shm_slots=4)
    try:
        pub.send("cam", Frame(camera="c", image=_image(0)))
        held = sub.recv(2000)[1].image
        ref = held.copy()
        for i in range(1, 25):  # 6x the ring
            pub.send("cam", Frame(camera="c", image=_image(i)))
            r = sub.recv(2000)
            assert r is not None, sub.counters.as_dict()
            assert r[1].image is not held
            np.testing.assert_array_equal(r[1].image, _image(i))
        assert pub.shm.seg.nslots == 4
        np.testing.assert_array_equal(held, ref)
        assert sub.counters.malformed_total() == 0
    finally:
        pub.close()
        sub.close()


def test_pool_reuses_buffers_nobody_holds(ctx, ep):
    pub, sub = _pair(ctx, ep)
    try:
        ids = set()
        for i in range(10):
            pub.send("cam", Frame(camera="c", image=_image(i)))
            r = sub.recv(2000)
            ids.add(id(r[1].image))
            del r
        assert len(ids) == 1  # steady state: one pre-faulted buffer, reused
    finally:
        pub.close()
        sub.close()


def test_multi_array_messages_and_small_arrays_inline(ctx, ep):
    pub, sub = _pair(ctx, ep)
    raw = ctx.socket(zmq.SUB)
    raw.setsockopt(zmq.SUBSCRIBE, b"cam")
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(ep)
    _joined(pub.sock, raw)
    try:
        imgs = {k: _image(i) for i, k in enumerate(("top", "gripper", "left"))}
        state = np.arange(6, dtype=np.float32)
        for _ in range(3):
            pub.send("cam", Observation(images=imgs, state=state, task="t"))
            out = sub.recv(2000)[1]
            for k in imgs:
                np.testing.assert_array_equal(out.images[k], imgs[k])
            np.testing.assert_array_equal(out.state, state)
            frames = _raw_frames(raw)
            header = decode_header(frames[1])
            assert [len(e) for e in header["a"]] == [4, 4, 4, 3]  # images shm, state inline
            assert len(frames) == 3
        assert pub.shm.seg.nslots >= 3 * 2
    finally:
        pub.close()
        sub.close()
        raw.close()


# ------------------------------------------------------------------ bad descriptors

def test_overwritten_slots_are_dropped_and_counted(ctx, ep):
    pub, sub = _pair(ctx, ep, shm_slots=4)
    try:
        for i in range(10):  # nobody reads: the ring wraps 2.5 times
            pub.send("cam", Frame(camera="c", image=_image(i)))
        got = []
        deadline = time.monotonic() + 30  # all ten arrive within ms, later under load
        while len(got) + sub.counters.malformed_total() < 10 and time.monotonic() < deadline:
            got += sub.drain_all()
            time.sleep(0.01)
        assert [m.seq for _, m in got] == [7, 8, 9, 10]
        for _, m in got:
            np.testing.assert_array_equal(m.image, _image(m.seq - 1))
        assert sub.counters.malformed["cam"]["shm_overwritten"] == 6
    finally:
        pub.close()
        sub.close()


def _shm_wire(ctx, ep):
    pub = Publisher(ctx, ep, producer="p")
    frames = encode("cam", Frame(camera="c", image=_image(1)), pub.shm)
    header = decode_header(frames[1])
    return pub, frames, header


def _with_desc(frames, header, desc, shape=None):
    h = dict(header)
    entry = list(h["a"][0][:3]) + [desc]
    if shape is not None:
        entry[2] = shape
    h["a"] = [entry]
    return [frames[0], pack_header(h)]


def test_garbage_descriptors_are_counted_by_kind(ctx, ep, tmp_path):
    pub, frames, header = _shm_wire(ctx, ep)
    name, slot, gen = header["a"][0][3]
    reader = shm.ShmReader()
    other_uid = f"edgevla-{os.getuid() + 1}-1-0"
    fake = f"{shm.segment_prefix()}999999"
    loose = f"{shm.segment_prefix()}999998"
    try:
        for n, mode, body in ((fake, 0o600, b"x" * 100_000), (loose, 0o644, b"\0" * 100_000)):
            fd = os.open(os.path.join(shm.SHM_DIR, n), os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o600)
            os.write(fd, body)
            os.fchmod(fd, mode)
            os.close(fd)
        cases = [
            ([name, slot, gen], None),  # the good one
            ([name, slot, gen + 2], "shm_overwritten"),
            ([name, 10**6, gen], "shm_bad_descriptor"),
            ([name, -1, gen], "shm_bad_descriptor"),
            ([name, slot, gen + 1], "shm_bad_descriptor"),  # odd: mid-write
            ([name, slot, 0], "shm_bad_descriptor"),
            ([name, slot, 2**64 - 1], "shm_bad_descriptor"),
            (["../../etc/passwd", 0, 2], "shm_bad_descriptor"),
            ([other_uid, 0, 2], "shm_bad_descriptor"),
            ([name + "x", 0, 2], "shm_bad_descriptor"),
            ([name, "0", gen], "shm_bad_descriptor"),
            ([name, slot], "shm_bad_descriptor"),
            ("not a list", "shm_bad_descriptor"),
            (None, "shm_bad_descriptor"),
            ([f"{shm.segment_prefix()}424242", 0, 2], "shm_missing"),
            ([fake, 0, 2], "shm_missing"),  # not a segment (bad magic)
            ([loose, 0, 2], "shm_missing"),  # group/world readable: refused
        ]
        for desc, kind in cases:
            wire = _with_desc(frames, header, desc)
            if kind is None:
                _, msg = decode(wire, reader)
                np.testing.assert_array_equal(msg.image, _image(1))
                continue
            with pytest.raises(MalformedMessage) as exc:
                decode(wire, reader)
            assert exc.value.kind == kind, (desc, exc.value)
        # a shape bigger than the slot: never read past it
        with pytest.raises(MalformedMessage) as exc:
            decode(_with_desc(frames, header, [name, slot, gen], shape=[H * 4, W, 3]), reader)
        assert exc.value.kind == "shm_bad_descriptor"
        # descriptor and an extra buffer frame / missing frames: frame_count
        with pytest.raises(MalformedMessage) as exc:
            decode(_with_desc(frames, header, [name, slot, gen]) + [b"x", b"y"], reader)
        assert exc.value.kind in ("frame_count", "bad_header")
    finally:
        for n in (fake, loose):
            try:
                os.unlink(os.path.join(shm.SHM_DIR, n))
            except OSError:
                pass
        pub.close()


@settings(max_examples=examples(200), deadline=None)
@given(desc=st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                         | st.text(max_size=40)
                         | st.binary(max_size=20), lambda c: st.lists(c, max_size=4), max_leaves=8),
       shape=st.lists(st.integers(-2, 2000), max_size=3))
def test_random_descriptors_are_all_refused(desc, shape):
    # no segment of this process exists, so no descriptor can name a readable slot
    h = {"schema": "frame", "v": 1, "seq": 1, "t_capture_ns": 0, "t_pub_ns": 0, "producer": "",
         "f": {"camera": "c"}, "a": [["image", "|u1", shape, desc]]}
    with pytest.raises(MalformedMessage):
        decode([b"cam", msgpack.packb(h, use_bin_type=True)], shm.ShmReader())


def test_bus_counts_bad_descriptors_and_keeps_going(ctx, ep, tmp_path):
    pub, sub = _pair(ctx, ep)
    inj_ep = f"ipc://{tmp_path}/inj.sock"
    inj = ctx.socket(zmq.PUB)
    inj.setsockopt(zmq.LINGER, 0)
    inj.bind(inj_ep)
    sub.sock.connect(inj_ep)
    _joined(inj, sub.sock)
    try:
        frames = encode("cam", Frame(camera="c", image=_image(2)), pub.shm)
        header = decode_header(frames[1])
        inj.send_multipart(_with_desc(frames, header, [f"edgevla-{os.getuid() + 1}-0-0", 5, 2]))
        inj.send_multipart(_with_desc(frames, header, [f"{shm.segment_prefix()}77777", 0, 2]))
        pub.send("cam", Frame(camera="c", image=_image(3)))
        deadline = time.monotonic() + 5
        good = []
        while time.monotonic() < deadline and (not good or sub.counters.malformed_total() < 2):
            good += sub.drain_all()
            time.sleep(0.01)
        assert [m.seq for _, m in good] == [1]
        np.testing.assert_array_equal(good[0][1].image, _image(3))
        kinds = sub.counters.malformed["cam"]
        assert kinds["shm_missing"] == 1 and kinds["shm_bad_descriptor"] == 1
    finally:
        inj.close()
        pub.close()
        sub.close()


# ------------------------------------------------------------------ where shm is off

def test_tcp_endpoints_stay_inline(ctx):
    pub = Publisher(ctx, "tcp://127.0.0.1:*", producer="p", shm_min_bytes=1)
    try:
        assert pub.shm is None
        assert len(encode("cam", Frame(camera="c", image=_image(0)), pub.shm)) == 3
    finally:
        pub.close()


def test_env_switch_and_zero_disable(ctx, tmp_path, monkeypatch):
    for kw in ({"shm_min_bytes": 0}, {"shm_min_bytes": None}):
        p = Publisher(ctx, f"ipc://{tmp_path}/a{len(kw)}{kw['shm_min_bytes']}.sock", **kw)
        assert p.shm is None
        p.close()
    monkeypatch.setenv("EDGEVLA_SHM", "0")
    p = Publisher(ctx, f"ipc://{tmp_path}/b.sock")
    assert p.shm is None
    p.close()


# ------------------------------------------------------------------ files and cleanup

def test_segment_files_are_private_and_removed_on_close(ctx, ep):
    pub = Publisher(ctx, ep, producer="p")
    pub.send("cam", Frame(camera="c", image=_image(0)))
    files = shm.segment_files(os.getpid())
    try:
        assert len(files) == 1 and os.path.basename(files[0]) == pub.shm.seg.name
        st_ = os.stat(files[0])
        assert stat.S_IMODE(st_.st_mode) == 0o600 and st_.st_uid == os.getuid()
        # a bigger array: a new, bigger segment
        pub.send("cam", Frame(camera="c", image=np.zeros((2 * H, W, 3), np.uint8)))
        assert pub.shm.segments_created == 2
    finally:
        pub.close()
    assert not shm.segment_files(os.getpid())


SHM_PIPE = """\
name: shmpipe
defaults:
  heartbeat_timeout_s: 3
  restart: {policy: always, max_restarts: 5, backoff_s: 0.1}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 30
    params: {width: 640, height: 480}
  sink:
    kind: counter_sink
    inputs: {in: cam/top}
"""


def test_sigkilled_publisher_leaves_no_segments(run_base):
    from runtime_helpers import actor_stats

    sup = start_graph(SHM_PIPE, run_base)
    pids = []
    try:
        assert run_until(sup, lambda: replica(sup, "cam").pid is not None
                         and bool(shm.segment_files(replica(sup, "cam").pid)))
        old = replica(sup, "cam").pid
        pids.append(old)
        assert run_until(sup, lambda: actor_stats(sup, "sink")["actor_stats"]["count"] > 3)
        os.kill(old, signal.SIGKILL)
        assert run_until(sup, lambda: replica(sup, "cam").restarts == 1
                         and replica(sup, "cam").pid not in (None, old))
        assert not shm.segment_files(old)  # reaped with the process
        new = replica(sup, "cam").pid
        pids.append(new)
        before = actor_stats(sup, "sink")["actor_stats"]["count"]
        assert run_until(sup, lambda: actor_stats(sup, "sink")["actor_stats"]["count"]
                         > before + 3)  # frames flow again, through the new segment
        assert shm.segment_files(new)
    finally:
        sup.stop()
    for pid in pids:
        assert not shm.segment_files(pid)


# ------------------------------------------------------------------ recorder

def test_recorder_writes_inline_buffers(ctx, ep, tmp_path):
    pub = Publisher(ctx, ep, producer="p")
    try:
        wire = encode("cam", Frame(camera="c", image=_image(5), seq=1), pub.shm)
        feat = encode("feat", Features(tensors={"x": np.ones((512, 256), np.float32),
                                                "y": np.arange(4.0)}, seq=2), pub.shm)
        assert len(wire) == 2 and len(feat) == 3
        path = tmp_path / "r.mcap"
        rec = McapRecording(path)
        rec.write_frames(wire, 10)
        rec.write_frames(feat, 20)
        rec.close()
    finally:
        pub.close()  # the recording must not need the segment any more
    msgs = read_recording(path, order="log")
    assert [m.topic for m in msgs] == ["cam", "feat"]
    for m in msgs:
        assert all(len(e) == 3 for e in m.header["a"])
        assert len(m.frames) == 2 + len(m.header["a"])
    np.testing.assert_array_equal(msgs[0].decode().image, _image(5))
    np.testing.assert_array_equal(msgs[1].decode().tensors["x"], np.ones((512, 256), np.float32))


# ------------------------------------------------------------------ borrowed views

def test_borrowed_views_are_read_only_zero_copy_and_report_reuse(ctx, ep):
    from edgevla.actors.kinds.stages import _ObservationInputs
    from edgevla.actors.wire.messages import RobotState

    pub = Publisher(ctx, ep, producer="p", shm_slots=4)
    sub = Subscriber(ctx, [ep], ["cam"], borrow=True)
    owned = Subscriber(ctx, [ep], ["cam"], shm_reader=shm.ShmReader())
    _joined(pub.sock, sub.sock, owned.sock)
    try:
        pub.send("cam", Frame(camera="c", image=_image(0)))
        first = sub.recv(2000)[1]
        copy = owned.recv(2000)[1]
        assert not first.image.flags.writeable  # a view of the producer's ring, read-only
        with pytest.raises(ValueError):
            first.image[0, 0, 0] = 1
        np.testing.assert_array_equal(first.image, _image(0))
        assert shm.still_valid(first) and shm.still_valid(copy)
        assert len(first.shm_leases) == 1 and not hasattr(copy, "shm_leases")
        later = []
        for i in range(1, 5):  # the 5th frame reuses the first one's slot
            pub.send("cam", Frame(camera="c", image=_image(i)))
            later.append(sub.recv(2000)[1])
        assert not shm.still_valid(first)  # the consumer learns its frame changed under it
        np.testing.assert_array_equal(first.image, _image(4))  # ...which it did
        assert all(shm.still_valid(m) for m in later)
        np.testing.assert_array_equal(copy.image, _image(0))  # an owned copy never changes
        # A stage drops what it computed from a frame whose slot was reused.
        obs = _ObservationInputs(["top"], "vision", 6)
        obs.update({"top": first, "state": RobotState(joints=np.zeros(6))})
        assert obs.ready() and not obs.intact()
        obs.update({"top": later[-1]})
        assert obs.intact()
        assert sub.counters.malformed_total() == 0
    finally:
        pub.close()
        sub.close()
        owned.close()


# ------------------------------------------------------------------ the checks, each reached

def _put(w: shm.ShmWriter, arr: np.ndarray) -> list:
    w.begin(1)  # one large array a message, as the encoder says
    desc = w.put(arr)
    assert desc is not None
    return desc


def _written_segment() -> tuple[shm.ShmWriter, list]:
    w = shm.ShmWriter(min_bytes=16, slots=2)
    return w, _put(w, np.arange(64, dtype=np.uint8))


def test_a_valid_segment_that_others_may_read_is_refused_for_its_mode():
    """The segment is a copy of a good one (right magic, header, generations), so only the
    permission check can refuse it."""
    w, (name, slot, gen) = _written_segment()
    copy = f"{name.rsplit('-', 1)[0]}-987654"  # same user and pid, another segment number
    src, dst = os.path.join(shm.SHM_DIR, name), os.path.join(shm.SHM_DIR, copy)
    try:
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
        os.chmod(dst, 0o600)
        assert shm.ShmReader().read([copy, slot, gen], np.dtype(np.uint8), [64], 64)[5] == 5
        os.chmod(dst, 0o644)
        with pytest.raises(MalformedMessage, match="not a private") as exc:
            shm.ShmReader().read([copy, slot, gen], np.dtype(np.uint8), [64], 64)
        assert exc.value.kind == "shm_missing"
    finally:
        os.unlink(dst)
        w.close()


def test_a_valid_segment_of_another_user_is_refused(monkeypatch):
    w, desc = _written_segment()
    try:
        reader = shm.ShmReader()
        monkeypatch.setattr(shm.os, "getuid", lambda: os.geteuid() + 4242)
        with pytest.raises(MalformedMessage, match="not a private"):
            reader._open(desc[0])
    finally:
        monkeypatch.undo()
        w.close()


def test_a_slot_overwritten_while_it_is_copied_is_refused(monkeypatch):
    """The reader checks the generation after its copy too: the writer came round the ring
    and refilled the slot between the reader's first check and the end of its copy."""
    w = shm.ShmWriter(min_bytes=16, slots=2)
    desc = _put(w, np.zeros(64, np.uint8))
    reader = shm.ShmReader()
    take = reader._buffer

    def overwrite_then_buffer(shape, dtype):
        _put(w, np.ones(64, np.uint8))
        again = _put(w, np.ones(64, np.uint8))
        assert again[:2] == desc[:2]  # round the ring: the same slot, refilled
        return take(shape, dtype)

    monkeypatch.setattr(reader, "_buffer", overwrite_then_buffer)
    try:
        with pytest.raises(MalformedMessage, match="reused while read") as exc:
            reader.read(desc, np.dtype(np.uint8), [64], 64)
        assert exc.value.kind == "shm_overwritten"
    finally:
        w.close()


def test_a_slot_is_marked_odd_while_written_so_no_reader_takes_it_half_done(monkeypatch):
    w = shm.ShmWriter(min_bytes=16, slots=2)
    old = _put(w, np.zeros(64, np.uint8))
    _put(w, np.zeros(64, np.uint8))  # the other slot: the next put refills old's
    reader = shm.ShmReader()
    seen = []

    class CopySpy:
        """numpy as shm sees it, with a look at the slot in the middle of the writer's copy."""

        def __getattr__(self, name):
            return getattr(np, name)

        def copyto(self, dst, src, **kw):
            if not seen:  # the writer's copy (the reads below copy too)
                seen.append(int(w.seg.gens[old[1]]))
                with pytest.raises(MalformedMessage, match="generation"):
                    reader.read(old, np.dtype(np.uint8), [64], 64)  # old contents: going
                with pytest.raises(MalformedMessage, match="gen"):
                    reader.read([old[0], old[1], seen[0]], np.dtype(np.uint8), [64], 64)
            return np.copyto(dst, src, **kw)

    monkeypatch.setattr(shm, "np", CopySpy())
    try:
        new = _put(w, np.ones(64, np.uint8))
    finally:
        monkeypatch.undo()
    try:
        assert new[:2] == old[:2] and seen == [old[2] + 1]  # odd during the copy
        assert new[2] == old[2] + 2  # even again after it
        assert reader.read(new, np.dtype(np.uint8), [64], 64)[0] == 1
    finally:
        w.close()
