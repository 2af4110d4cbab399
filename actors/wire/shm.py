"""Shared memory for large arrays on one host (dora-rs style): the bus carries a descriptor.

Producer side (`ShmWriter`, owned by one `bus.Publisher`): each array of at least ``min_bytes``
is copied into the next slot of a ring in a shared-memory segment the writer owns, and the
message header carries ``[segment, slot, generation]`` instead of a buffer frame (see
`messages`). A segment is a file in ``/dev/shm`` named ``edgevla-<uid>-<pid>-<n>``, created
``O_EXCL`` with mode 0600, sized once (fallocate + MAP_POPULATE: no page faults afterwards). An
array that does not fit, or a message with more large arrays than the ring was sized for, gets a
new larger segment; the previous ones stay until a few newer exist (in-flight descriptors) and
all are unlinked on close (and by the supervisor when the process dies, `cleanup_pid`).

Layout of a segment::

    0   magic "EVLASHM1" | u32 nslots | u32 0 | u64 slot_bytes | u64 data_offset  (32 bytes)
    64  u64 generation[nslots]                                  (one per slot, little-endian)
    data_offset (page aligned)  slot 0 | slot 1 | ...             (slot_bytes each)

Each slot's generation is a seqlock: the writer makes it odd before copying and even (the value
in the descriptor) after. The reader checks it before and after its own copy, so a slot reused
while being read is detected and the message dropped (kind ``shm_overwritten``).

Consumer side (`ShmReader`, one per process by default, `default_reader`): maps segments by
name (an LRU of a few mappings; mappings unused for a while are closed), refuses anything that is
not a regular file of this uid with mode 0600, bounds-checks slot and size against the mapping
(a descriptor is never trusted), and copies the slot into a buffer from a small per-(shape,
dtype) pool of pre-faulted arrays. A pooled array is handed out again only when nothing but the
pool references it, so a consumer owns what it receives and never sees it change; steady state
allocates and faults nothing. Failures raise `MalformedMessage` (``shm_missing``,
``shm_overwritten``, ``shm_bad_descriptor``) for the bus to count.

Memory ordering: the generation stores/loads are aligned 8-byte accesses on either side of a
bulk copy; that is ordered on x86 (TSO). On weakly ordered CPUs the seqlock relies on the
syscalls between the copy and the descriptor send/receive as barriers.
"""

from __future__ import annotations

import itertools
import mmap
import os
import re
import stat
import struct
import sys
import time
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np

from edgevla.actors.wire.errors import MalformedMessage

SHM_DIR = "/dev/shm"
DEFAULT_MIN_BYTES = 256 * 1024
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # per segment: the ring budget of one publisher
_MAGIC = b"EVLASHM1"
_HDR = struct.Struct("<8sIIQQ")
_GEN_OFFSET = 64
_PAGE = 4096
_NAME_RE = re.compile(r"edgevla-(\d{1,10})-(\d{1,10})-(\d{1,10})")
_COUNTER = itertools.count()
_RETIRED_KEEP = 2  # replaced segments kept mapped-able for descriptors still in flight


def enabled() -> bool:
    """False when ``EDGEVLA_SHM=0`` (or off/false/no) is set: every publisher stays inline."""
    return os.environ.get("EDGEVLA_SHM", "1").strip().lower() not in ("0", "off", "false", "no")


def supported() -> bool:
    return os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK)


def segment_prefix(pid: int | None = None, uid: int | None = None) -> str:
    return f"edgevla-{os.getuid() if uid is None else uid}-{os.getpid() if pid is None else pid}-"


def segment_files(pid: int | None = None) -> list[str]:
    """Paths of this uid's segments (of one pid, or all pids when ``pid`` is None)."""
    prefix = segment_prefix(pid) if pid is not None else f"edgevla-{os.getuid()}-"
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    return [os.path.join(SHM_DIR, n) for n in names
            if n.startswith(prefix) and _NAME_RE.fullmatch(n)]


def cleanup_pid(pid: int) -> int:
    """Unlink every segment a (dead) process of this uid left behind; returns how many."""
    n = 0
    for path in segment_files(pid):
        try:
            os.unlink(path)
            n += 1
        except OSError:
            pass
    return n


def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def _unlink_all(paths: list[str]) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except OSError:
            pass
    paths.clear()


class _Segment:
    """One writer-owned segment: the mapping and its generation/data views."""

    def __init__(self, nslots: int, slot_bytes: int) -> None:
        self.name = f"{segment_prefix()}{next(_COUNTER)}"
        self.path = os.path.join(SHM_DIR, self.name)
        self.nslots, self.slot_bytes = nslots, slot_bytes
        data_offset = _round_up(_GEN_OFFSET + 8 * nslots, _PAGE)
        size = data_offset + nslots * slot_bytes
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # exact, whatever the umask
            os.ftruncate(fd, size)
            try:
                os.posix_fallocate(fd, 0, size)  # allocate now: no faults (or SIGBUS) later
            except OSError:
                os.unlink(self.path)
                raise
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            self.mm = mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.mm[:_HDR.size] = _HDR.pack(_MAGIC, nslots, 0, slot_bytes, data_offset)
        self.gens = np.ndarray((nslots,), "<u8", buffer=self.mm, offset=_GEN_OFFSET)
        self.data = np.ndarray((nslots, slot_bytes), np.uint8, buffer=self.mm,
                               offset=data_offset)
        self.gen = [0] * nslots  # our mirror of the generations
        self.next = 0

    def close(self) -> None:
        self.gens = self.data = None  # type: ignore[assignment]
        try:
            self.mm.close()
        except BufferError:  # a view still alive: the mapping goes with it
            pass


class ShmWriter:
    """The producer side: a ring of slots for the large arrays of one publisher's messages.

    ``slots`` is how many messages the ring holds before a slot is reused (per large array of
    a message), bounded by ``max_bytes`` per segment but never fewer than 2 messages.
    """

    def __init__(self, min_bytes: int = DEFAULT_MIN_BYTES, slots: int = 8,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.min_bytes = max(1, int(min_bytes))
        self.slots = max(2, int(slots))
        self.max_bytes = int(max_bytes)
        self.seg: _Segment | None = None
        self.retired: list[_Segment] = []
        self._paths: list[str] = []  # every segment file not yet unlinked
        self._finalizer = weakref.finalize(self, _unlink_all, self._paths)
        self._per_msg = 1  # most large arrays seen in one message
        self._in_msg = 0
        self._grow = False
        self.puts = 0
        self.segments_created = 0

    def begin(self, n_large: int = 1) -> None:
        """Called once per message before its arrays are put, with how many may go here."""
        self._in_msg = 0
        if n_large > self._per_msg:
            self._per_msg = n_large  # more large arrays per message: the ring must grow
            self._grow = self.seg is not None and \
                self.seg.nslots < self._nslots(self.seg.slot_bytes)

    def _nslots(self, slot_bytes: int) -> int:
        k = self._per_msg
        return max(2 * k, min(self.slots * k, self.max_bytes // slot_bytes))

    def _new_segment(self, nbytes: int) -> _Segment:
        slot_bytes = _round_up(max(nbytes, self.seg.slot_bytes if self.seg else 0), _PAGE)
        nslots = self._nslots(slot_bytes)
        seg = _Segment(nslots, slot_bytes)
        self._paths.append(seg.path)
        self.segments_created += 1
        if self.seg is not None:
            self.retired.append(self.seg)
            while len(self.retired) > _RETIRED_KEEP:
                old = self.retired.pop(0)
                try:
                    os.unlink(old.path)
                except OSError:
                    pass
                if old.path in self._paths:
                    self._paths.remove(old.path)
                old.close()
        self.seg = seg
        return seg

    def put(self, arr: np.ndarray) -> list[Any] | None:
        """Copy a C-contiguous array into the next slot; its descriptor, or None (send inline)."""
        nbytes = arr.nbytes
        if nbytes < self.min_bytes:
            return None
        self._in_msg += 1
        if self._in_msg > self._per_msg:  # begin() not told: learn it now
            self._per_msg = self._in_msg
            self._grow = self.seg is not None and \
                self.seg.nslots < self._nslots(self.seg.slot_bytes)
        seg = self.seg
        if seg is None or nbytes > seg.slot_bytes or self._grow:
            self._grow = False
            try:
                seg = self._new_segment(nbytes)
            except OSError:
                return None  # no shared memory to be had: this array goes inline
        slot = seg.next
        seg.next = slot + 1 if slot + 1 < seg.nslots else 0
        g = seg.gen[slot] + 1  # odd: being written
        gens = seg.gens
        gens[slot] = g
        np.copyto(seg.data[slot, :nbytes], arr.reshape(-1).view(np.uint8))
        g += 1
        gens[slot] = g
        seg.gen[slot] = g
        self.puts += 1
        return [seg.name, slot, g]

    def close(self) -> None:
        """Unlink and unmap every segment (idempotent)."""
        _unlink_all(self._paths)
        for seg in [*self.retired, *([self.seg] if self.seg else [])]:
            seg.close()
        self.retired = []
        self.seg = None


class _Mapping:
    __slots__ = ("mm", "gens", "data", "nslots", "slot_bytes", "used")

    def __init__(self, mm: mmap.mmap, nslots: int, slot_bytes: int, data_offset: int) -> None:
        self.mm = mm
        self.nslots, self.slot_bytes = nslots, slot_bytes
        # np.frombuffer holds a buffer export on the mapping for as long as any array made from
        # it lives (np.ndarray(buffer=...) does not): closing the mapping while a consumer still
        # holds a borrowed view then fails with BufferError instead of unmapping the memory
        # under the view (a segfault at its next read)
        self.gens = np.frombuffer(mm, "<u8", count=nslots, offset=_GEN_OFFSET)
        self.data = np.frombuffer(mm, np.uint8, count=nslots * slot_bytes,
                                  offset=data_offset).reshape(nslots, slot_bytes)
        self.used = time.monotonic()

    def close(self) -> None:
        self.gens = self.data = None
        try:
            self.mm.close()
        except BufferError:
            pass  # views still borrowed: the mapping goes when the last of them does


def _missing(name: str, why: str) -> MalformedMessage:
    return MalformedMessage("shm_missing", f"segment {name!r}: {why}")


class ShmReader:
    """The consumer side: maps segments by name and copies slots into pooled, owned arrays."""

    def __init__(self, max_segments: int = 16, pool_per_key: int = 8,
                 idle_close_s: float = 10.0, borrow: bool = False) -> None:
        """``borrow``: hand out read-only views of the slots instead of copies (see `Lease`)."""
        self.borrow = borrow
        self.leases: list[Lease] = []  # of the message being decoded (taken by the subscriber)
        self.max_segments = max_segments
        self.pool_per_key = pool_per_key
        self.idle_close_s = idle_close_s
        self._maps: OrderedDict[str, _Mapping] = OrderedDict()
        self._pools: dict[tuple[tuple[int, ...], np.dtype], list[np.ndarray]] = {}
        self._uid_prefix = f"edgevla-{os.getuid()}-"
        self._t_sweep = time.monotonic()
        self.reads = 0
        self.pool_misses = 0

    # -- mappings
    def _open(self, name: str) -> _Mapping:
        path = os.path.join(SHM_DIR, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise _missing(name, exc.strerror or str(exc)) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or \
                    stat.S_IMODE(st.st_mode) & 0o077:
                raise _missing(name, "not a private (0600) file of this user")
            if st.st_size < _GEN_OFFSET:
                raise _missing(name, f"{st.st_size} bytes: too small")
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            try:
                mm = mmap.mmap(fd, st.st_size, flags=flags, prot=mmap.PROT_READ)
            except (OSError, ValueError) as exc:
                raise _missing(name, f"mmap: {exc}") from None
        finally:
            os.close(fd)
        magic, nslots, _, slot_bytes, data_offset = _HDR.unpack_from(mm, 0)
        if (magic != _MAGIC or nslots < 1 or slot_bytes < 1 or data_offset < _GEN_OFFSET
                + 8 * nslots or data_offset + nslots * slot_bytes > len(mm)):
            mm.close()
            raise _missing(name, "not an edgevla segment (bad header)")
        return _Mapping(mm, nslots, slot_bytes, data_offset)

    def _mapping(self, name: str) -> _Mapping:
        m = self._maps.get(name)
        if m is not None:
            self._maps.move_to_end(name)
            return m
        self._sweep(force=True)
        m = self._open(name)
        self._maps[name] = m
        while len(self._maps) > self.max_segments:
            _, old = self._maps.popitem(last=False)
            old.close()
        return m

    def _sweep(self, force: bool = False) -> None:
        """Close mappings of segments not used for ``idle_close_s`` (replaced or gone)."""
        now = time.monotonic()
        if not force and now - self._t_sweep < 1.0:
            return
        self._t_sweep = now
        for name in [n for n, m in self._maps.items() if now - m.used > self.idle_close_s]:
            self._maps.pop(name).close()

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        self._pools.clear()

    @property
    def mapped(self) -> list[str]:
        return list(self._maps)

    # -- buffers
    def _buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        key = (shape, dtype)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = []
        getrc = sys.getrefcount
        for a in pool:
            # references: the pool's list, this loop's name, getrefcount's argument
            if getrc(a) <= 3:
                return a
        a = np.empty(shape, dtype)
        a.reshape(-1).view(np.uint8).fill(0)  # fault the pages in now, once
        if len(pool) < self.pool_per_key:
            pool.append(a)
        else:
            self.pool_misses += 1
        return a

    # -- the read
    def read(self, desc: Any, dtype: np.dtype, shape: list[int], nbytes: int) -> np.ndarray:
        """Copy the slot a descriptor names into an owned array, or raise MalformedMessage."""
        if (type(desc) is not list or len(desc) != 3 or type(desc[0]) is not str
                or type(desc[1]) is not int or type(desc[2]) is not int):
            raise MalformedMessage("shm_bad_descriptor", f"descriptor {desc!r}")
        name, slot, gen = desc
        m = self._maps.get(name)
        if m is None:
            if not name.startswith(self._uid_prefix) or not _NAME_RE.fullmatch(name):
                raise MalformedMessage("shm_bad_descriptor", f"segment name {name!r}")
            m = self._mapping(name)
        if not 0 <= slot < m.nslots or nbytes > m.slot_bytes or gen <= 0 or gen & 1:
            raise MalformedMessage("shm_bad_descriptor", f"{name}: slot {slot} gen {gen} "
                                   f"{nbytes} bytes outside {m.nslots} x {m.slot_bytes}")
        m.used = time.monotonic()
        gens = m.gens
        if int(gens[slot]) != gen:
            raise MalformedMessage("shm_overwritten", f"{name} slot {slot}: generation "
                                   f"{int(gens[slot])}, wanted {gen}")
        if self.borrow:
            # The mapping is PROT_READ, so the view is read-only; it stays mapped while it lives.
            self.leases.append(Lease(gens, slot, gen))
            self.reads += 1
            return m.data[slot, :nbytes].view(dtype).reshape(shape)
        out = self._buffer(tuple(shape), dtype)
        np.copyto(out.reshape(-1).view(np.uint8), m.data[slot, :nbytes])
        if int(gens[slot]) != gen:
            raise MalformedMessage("shm_overwritten", f"{name} slot {slot}: reused while read")
        self.reads += 1
        if self.reads & 255 == 0:
            self._sweep()
        return out


class Lease:
    """A borrowed slot: valid while the writer has not reused it.

    A borrowing consumer reads the view first and asks afterwards (`still_valid`): if the slot
    was rewritten meanwhile, what it computed may mix two frames and must be dropped. With the
    default ring (queue depth + 4 slots, 8 for a camera) a 30 fps frame stays valid ~260 ms.
    """

    __slots__ = ("gens", "slot", "gen")

    def __init__(self, gens: np.ndarray, slot: int, gen: int) -> None:
        self.gens, self.slot, self.gen = gens, slot, gen

    def valid(self) -> bool:
        return int(self.gens[self.slot]) == self.gen


def still_valid(msg: Any) -> bool:
    """True when no shared-memory array a message borrowed has been overwritten since it was
    received (always True for messages that own their arrays)."""
    # called after every consumed message: no generator and no attribute miss on the
    # common message that borrowed nothing
    leases = msg.__dict__.get("shm_leases")
    if leases:
        for lease in leases:
            if not lease.valid():
                return False
    return True


_DEFAULT_READER: ShmReader | None = None


def default_reader() -> ShmReader:
    """The process's reader (one mapping cache and buffer pool for all its subscribers)."""
    global _DEFAULT_READER
    if _DEFAULT_READER is None:
        _DEFAULT_READER = ShmReader()
    return _DEFAULT_READER
