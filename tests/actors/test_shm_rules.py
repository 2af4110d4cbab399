"""Shared-memory transport rules, each reached directly (no processes): segment files and their
cleanup, the writer's ring sizing and failure paths, the reader's header and descriptor checks,
its buffer pool and idle sweep."""

from __future__ import annotations

import os
import struct
import time

import numpy as np
import pytest

from edgevla.actors.wire import shm
from edgevla.actors.wire.errors import MalformedMessage

pytestmark = pytest.mark.skipif(not shm.supported(), reason="no writable /dev/shm")


def _arr(nbytes: int, fill: int = 7) -> np.ndarray:
    return np.full(nbytes, fill, np.uint8)


def _read(reader: shm.ShmReader, desc, a: np.ndarray) -> np.ndarray:
    return reader.read(desc, a.dtype, list(a.shape), a.nbytes)


def test_segment_files_of_one_pid_or_all_and_cleanup_counts_what_it_removed():
    fake_pid = 4_000_000_000 + os.getpid() % 1000  # no such process
    paths = [os.path.join(shm.SHM_DIR, f"{shm.segment_prefix(fake_pid)}{k}") for k in (0, 1)]
    for p in paths:
        with open(p, "wb") as f:
            f.write(b"x")
    try:
        assert sorted(shm.segment_files(fake_pid)) == sorted(paths)
        assert set(paths) <= set(shm.segment_files())  # every pid of this uid
        assert not set(paths) & set(shm.segment_files(os.getpid()))
        assert shm.cleanup_pid(fake_pid) == 2
        assert shm.segment_files(fake_pid) == []
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)


def test_a_ring_never_holds_fewer_than_two_messages_and_puts_are_counted():
    w = shm.ShmWriter(min_bytes=1, slots=1)
    try:
        assert w.slots == 2
        descs = []
        for k in range(5):
            w.begin(1)
            descs.append(w.put(_arr(100, k)))
        assert w.puts == 5 and w.seg.nslots >= 2
        assert [d[1] for d in descs] == [0, 1, 0, 1, 0]
        w.begin(1)
        assert w.put(np.zeros(0, np.uint8)) is None and w.puts == 5  # below min_bytes: inline
    finally:
        w.close()


@pytest.mark.parametrize("announce", [True, False])
def test_every_array_of_the_previous_message_stays_readable(announce):
    """Three large arrays a message, announced with begin(3) or learnt while putting (begin(1)
    said one): the ring grows so that the next message never overwrites the one before it."""
    w, r = shm.ShmWriter(min_bytes=1, slots=2), shm.ShmReader()
    try:
        prev: list = []
        for m in range(6):
            w.begin(3 if announce else 1)
            cur = [(w.put(_arr(5000, 10 * m + k)), _arr(5000, 10 * m + k)) for k in range(3)]
            for desc, a in prev:
                np.testing.assert_array_equal(_read(r, desc, a), a)
            prev = cur
        assert w.seg.nslots >= 6
        assert w.segments_created == (1 if announce else 3)
    finally:
        r.close()
        w.close()


def test_a_ring_at_its_byte_budget_is_not_rebuilt_for_nothing():
    w = shm.ShmWriter(min_bytes=1, slots=8, max_bytes=4 * 4096)
    try:
        w.begin(1)
        w.put(_arr(4096))
        assert w.seg.nslots == 4
        w.begin(2)  # 2 x 2 messages fit the 4 slots the budget allows: nothing to grow
        w.put(_arr(4096))
        w.put(_arr(4096))
        assert w.segments_created == 1
    finally:
        w.close()


def test_no_shared_memory_to_be_had_sends_inline_and_leaves_no_file(monkeypatch):
    def no_space(fd, offset, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shm.os, "posix_fallocate", no_space)
    before = set(shm.segment_files(os.getpid()))
    w = shm.ShmWriter(min_bytes=1)
    try:
        assert w.put(_arr(100)) is None
        assert set(shm.segment_files(os.getpid())) == before
    finally:
        w.close()


def test_close_tolerates_a_segment_file_already_gone():
    w = shm.ShmWriter(min_bytes=1)
    w.put(_arr(100))
    os.unlink(w.seg.path)
    w.close()
    w.close()  # idempotent


@pytest.mark.parametrize("exc", [OSError(12, "Cannot allocate memory"), ValueError("mmap")])
def test_a_segment_that_cannot_be_mapped_is_a_malformed_message(monkeypatch, exc):
    w = shm.ShmWriter(min_bytes=1)
    try:
        desc = w.put(_arr(100))

        def fail(*a, **kw):
            raise exc

        monkeypatch.setattr(shm.mmap, "mmap", fail)
        with pytest.raises(MalformedMessage, match="mmap") as err:
            _read(shm.ShmReader(), desc, _arr(100))
        assert err.value.kind == "shm_missing"
    finally:
        w.close()


def _fake_segment(nslots: int, slot_bytes: int = 4096, data_offset: int = 4096) -> str:
    name = f"{shm.segment_prefix()}{900_000 + nslots}"
    path = os.path.join(shm.SHM_DIR, name)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(struct.pack("<8sIIQQ", b"EVLASHM1", nslots, 0, slot_bytes, data_offset))
        f.truncate(data_offset + max(nslots, 1) * slot_bytes)
    return path


def test_a_header_without_slots_is_refused():
    path = _fake_segment(0)
    try:
        with pytest.raises(MalformedMessage, match="bad header"):
            shm.ShmReader().read([os.path.basename(path), 0, 2], np.dtype(np.uint8), [4], 4)
    finally:
        os.unlink(path)


def test_a_slot_past_the_ring_is_refused():
    w = shm.ShmWriter(min_bytes=1, slots=2)
    try:
        name, _, gen = w.put(_arr(100))
        r = shm.ShmReader()
        n = w.seg.nslots
        with pytest.raises(MalformedMessage, match=f"slot {n} gen") as err:
            r.read([name, n, gen], np.dtype(np.uint8), [100], 100)
        assert err.value.kind == "shm_bad_descriptor"
        assert _read(r, [name, 0, gen], _arr(100)).sum() == 700
    finally:
        w.close()


def test_the_reader_pools_owned_buffers_and_counts_misses():
    w, r = shm.ShmWriter(min_bytes=1), shm.ShmReader(pool_per_key=1)
    try:
        desc = w.put(_arr(64, 3))
        held = [_read(r, desc, _arr(64)) for _ in range(3)]  # all still referenced
        assert r.pool_misses == 2
        pooled = id(held[0])
        del held
        assert id(_read(r, desc, _arr(64))) == pooled  # the pooled buffer, free again, is reused
    finally:
        r.close()
        w.close()


def test_the_idle_sweep_closes_mappings_unused_for_idle_close_s_only():
    old_w, new_w, r = shm.ShmWriter(min_bytes=1), shm.ShmWriter(min_bytes=1), \
        shm.ShmReader(idle_close_s=10.0)
    try:
        _read(r, old_w.put(_arr(100)), _arr(100))
        _read(r, new_w.put(_arr(100)), _arr(100))
        old_name, new_name = r.mapped
        r._maps[old_name].used -= 60  # last used a minute ago
        r._t_sweep = time.monotonic() - 5  # the last sweep was 5 s ago
        r._sweep()
        assert r.mapped == [new_name]
    finally:
        r.close()
        old_w.close()
        new_w.close()


def test_mapping_a_new_segment_sweeps_at_once():
    a, b, r = shm.ShmWriter(min_bytes=1), shm.ShmWriter(min_bytes=1), shm.ShmReader()
    try:
        _read(r, a.put(_arr(100)), _arr(100))
        r._maps[r.mapped[0]].used -= 60
        r._t_sweep = time.monotonic()  # a periodic sweep just ran
        _read(r, b.put(_arr(100)), _arr(100))
        assert r.mapped == [b.seg.name]
        mappings = list(r._maps.values())
        r.close()
        assert r.mapped == [] and all(m.mm.closed for m in mappings)
    finally:
        a.close()
        b.close()


def test_a_generation_from_the_future_is_refused_and_reads_are_counted():
    w, r = shm.ShmWriter(min_bytes=1), shm.ShmReader()
    try:
        name, slot, gen = w.put(_arr(100))
        with pytest.raises(MalformedMessage, match=f"generation {gen}, wanted {gen + 2}") as err:
            r.read([name, slot, gen + 2], np.dtype(np.uint8), [100], 100)
        assert err.value.kind == "shm_overwritten"  # refused before anything is copied
        for _ in range(3):
            _read(r, [name, slot, gen], _arr(100))
        assert r.reads == 3
    finally:
        r.close()
        w.close()


def test_a_ring_holds_two_messages_even_past_its_byte_budget():
    w, r = shm.ShmWriter(min_bytes=1, slots=8, max_bytes=3 * 4096), shm.ShmReader()
    try:
        prev: list = []
        for m in range(4):
            w.begin(3)
            cur = [(w.put(_arr(4096, 10 * m + k)), _arr(4096, 10 * m + k)) for k in range(3)]
            for desc, a in prev:
                np.testing.assert_array_equal(_read(r, desc, a), a)
            prev = cur
        assert w.seg.nslots == 6
    finally:
        r.close()
        w.close()


def test_a_header_whose_data_overlaps_the_generation_table_is_refused():
    path = _fake_segment(100, data_offset=128)  # 100 generations need 64 + 800 bytes
    try:
        with pytest.raises(MalformedMessage, match="bad header"):
            shm.ShmReader().read([os.path.basename(path), 0, 2], np.dtype(np.uint8), [4], 4)
    finally:
        os.unlink(path)


def test_closing_unmaps_segments_and_tolerates_borrowed_views():
    w, r = shm.ShmWriter(min_bytes=1), shm.ShmReader(borrow=True)
    seg = None
    try:
        view = _read(r, w.put(_arr(100)), _arr(100))
        seg = w.seg
        r.close()  # a view still borrows the mapping: closing must not raise
        assert view.sum() == 700
    finally:
        w.close()
    assert seg.mm.closed and w.seg is None


def test_a_ring_of_many_slots_keeps_its_data_clear_of_the_generation_table():
    w, r = shm.ShmWriter(min_bytes=1, slots=600), shm.ShmReader()
    try:
        w.begin(1)
        desc = w.put(_arr(100, 9))
        assert w.seg.nslots == 600
        np.testing.assert_array_equal(_read(r, desc, _arr(100, 9)), _arr(100, 9))
    finally:
        r.close()
        w.close()
