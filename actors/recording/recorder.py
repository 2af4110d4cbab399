"""The recorder actor: writes every message it receives to MCAP, without ever stalling the graph.

Graph: ``{kind: recorder, inputs: "*", params: {path: out.mcap}}``. The file layout is
`mcap_format`'s, crash safety `checkpoint_file`'s, one file `mcap_writer`'s.

Rotation: ``max_bytes`` / ``max_seconds`` start a new file (``out.1.mcap``, ``out.2.mcap`` ...),
which is also what a recorder restarted by the supervisor does: it never truncates an existing
recording.

Writing happens on a writer thread (``writer_thread``): ``step`` only encodes and enqueues, so
a slow disk never stalls the actor loop, its heartbeats or the bus. The queue is bounded
(``max_queue_mb``); past it the recorder drops new messages, counts them
(``dropped_queue_full``) and says "falling behind" in `stats()` and the log.

Disk full: any OSError while writing (ENOSPC, EDQUOT, EIO) closes the current file where its last
commit left it (still valid), records the error in `stats()` and the log (once per error kind),
counts the messages it could not write, and retries a new file every ``retry_s``. ``step``
never raises: a full disk must not take the graph down.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevla.actors.recording.mcap_writer import McapRecording, next_free_path
from edgevla.actors.runtime.actor import Actor
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.codec import encode
from edgevla.actors.wire.messages import TRACE_PREFIX, StepTrace

log = logging.getLogger("edgevla.recorder")


def _frames_nbytes(frames: Any) -> int:
    return sum(memoryview(f).nbytes for f in frames[1:]) if isinstance(frames, list) else 0


@dataclass
class RecorderConfig:
    """``params:`` of a recorder actor (all optional except ``path``)."""

    path: str
    topics: list[str] | None = None  # None / ["*"]: everything the actor receives
    exclude: list[str] = field(default_factory=list)
    chunk_size: int = 1 << 20  # bytes of uncompressed messages per MCAP chunk
    flush_ms: float = 200.0  # commit at least this often: a SIGKILL loses < flush_ms of data
    compression: str = "none"  # none | lz4 | zstd (frames are big: none/lz4 keep up best)
    max_bytes: int = 0  # rotate when a file reaches this size (0: never)
    max_seconds: float = 0.0  # rotate after this long (0: never)
    retry_s: float = 5.0  # after a write error, try a new file this often
    fsync: bool = False  # fsync each commit (power-loss safety; costs throughput)
    writer_thread: bool = True  # write off the actor loop (False: inline, for tests)
    max_queue_mb: float = 512.0  # messages waiting for the disk before the recorder drops
    # Which run the files belong to (`edgevla run` passes its run dir): a restarted or rotated
    # recorder writes out.1.mcap, out.2.mcap ... with the same id, so readers join only those.
    run_id: str = ""

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "RecorderConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"recorder params: unknown {unknown}; known: {sorted(known)}")
        if not params.get("path"):
            raise ValueError("recorder params.path: expected an output file like out.mcap")
        cfg = cls(**params)
        if isinstance(cfg.topics, str):
            cfg.topics = [cfg.topics]
        if cfg.compression not in ("none", "lz4", "zstd"):
            raise ValueError(f"recorder params.compression: expected none, lz4 or zstd, "
                             f"got {cfg.compression!r}")
        for name in ("chunk_size", "max_bytes"):
            if int(getattr(cfg, name)) < 0:
                raise ValueError(f"recorder params.{name}: expected >= 0")
        if cfg.flush_ms <= 0:
            raise ValueError(f"recorder params.flush_ms: expected > 0, got {cfg.flush_ms}")
        return cfg


class RecorderActor(Actor):
    """Writes every message it receives to MCAP. Graph: ``{kind: recorder, inputs: "*",
    params: {path: out.mcap}}``; inputs arrive as ports named after the topics, every message
    since the last step (``collect_all``). ``log_time`` is the message's ``t_recv_ns`` attribute
    when the runtime sets one, else the clock at this step.
    """

    inputs = ()
    outputs = ()
    collect_all = True

    def setup(self, params: dict[str, Any]) -> None:
        self.cfg = RecorderConfig.from_params(dict(params))
        self._rec: McapRecording | None = None
        self._files: list[str] = []
        self._t_open_ns: int | None = None
        self._t_flush_ns: int | None = None
        self._t_retry_ns = 0
        self.recorded = 0
        self._committed_closed = 0
        self.bytes = 0
        self.dropped_write_error = 0
        self.error: str | None = None
        self._errors_logged: set[str] = set()
        self._per_topic: dict[str, int] = {}
        self._topics = None if not self.cfg.topics or "*" in self.cfg.topics else set(self.cfg.topics)
        self._exclude = set(self.cfg.exclude)
        self.dropped_queue_full = 0
        self._behind: str | None = None
        self._behind_logged = False
        self._clock: Clock | None = None
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._open(None)
        if self.cfg.writer_thread:
            # Disk writes happen off the actor loop, so a slow disk never stalls heartbeats or
            # the bus; the queue is bounded (max_queue_mb) and overflow is counted, not hidden.
            self._thread = threading.Thread(target=self._writer_loop, name="mcap-writer",
                                            daemon=True)
            self._thread.start()

    # -- file management
    def _open(self, now_ns: int | None) -> bool:
        path = next_free_path(self.cfg.path)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._rec = McapRecording(path, chunk_size=int(self.cfg.chunk_size),
                                      compression=self.cfg.compression, fsync=self.cfg.fsync,
                                      metadata={"recorder": self.name, "pid": os.getpid(),
                                                "run_id": self.cfg.run_id})
        except OSError as exc:
            self._rec = None
            self._fail(exc, "open", now_ns)
            return False
        self._files.append(str(path))
        self._t_open_ns = now_ns  # None until the first step tells the time
        self._t_flush_ns = now_ns
        if self.error is not None:
            log.warning("%s: recording again into %s", self.name, path)
        self.error = None
        return True

    def _fail(self, exc: OSError, what: str, now_ns: int | None) -> None:
        kind = errno.errorcode.get(exc.errno or 0, "OSError")
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        self.error = (f"{'disk full' if full else 'write error'} ({kind}) on {what} "
                      f"{exc.filename or (self._rec.path if self._rec else self.cfg.path)}: "
                      f"{exc.strerror or exc}; recording paused, retrying every "
                      f"{self.cfg.retry_s:g} s")
        if kind not in self._errors_logged:
            self._errors_logged.add(kind)
            log.error("%s: %s", self.name, self.error)
        if self._rec is not None:
            try:
                self._rec.file.close()  # the file stays valid up to its last commit
            except OSError:
                pass
            self._committed_closed += self._rec.committed
            self._rec = None
        self._t_retry_ns = (now_ns or 0) + int(self.cfg.retry_s * 1e9)

    def _rotate(self, now_ns: int) -> None:
        self._close_current()
        self._open(now_ns)

    def _close_current(self) -> None:
        rec, self._rec = self._rec, None
        if rec is None:
            return
        try:
            rec.close()
        except OSError as exc:
            self._fail(exc, "close", None)
        self._committed_closed += rec.committed

    # -- the step: cheap (encode, enqueue); the writer thread does the disk work
    def _wanted(self, topic: str) -> bool:
        if topic in self._exclude:
            return False
        # step traces go with what they describe: a replay of the recorded topics needs them
        return self._topics is None or topic in self._topics or topic.startswith(TRACE_PREFIX)

    def step(self, clock: Clock, inputs: dict[str, Any]) -> None:
        now = clock.now_ns()
        self._clock = clock
        items: list[tuple[int, str, Any, int]] = []  # (t_pub, topic, frames, t_recv)
        for topic, value in inputs.items():
            if not self._wanted(topic):
                continue
            for msg in (value if isinstance(value, list) else [value]):
                t_recv = getattr(msg, "t_recv_ns", None) or now
                if isinstance(msg, StepTrace):  # an actor's step, published for the recording
                    items.append((msg.t_pub_ns, None, (msg.actor, msg.record()), t_recv))
                    continue
                items.append((msg.t_pub_ns, topic, encode(topic, msg), t_recv))
        items.sort(key=lambda it: it[0])  # causal order across topics within one step
        if self._thread is None:
            self._write_batch(now, items)
            return None
        nbytes = sum(_frames_nbytes(it[2]) for it in items)
        with self._cond:
            if self._queued_bytes + nbytes > self.cfg.max_queue_mb * 1e6 and self._queue:
                self.dropped_queue_full += len(items)
                self._behind = (f"recorder falling behind: {self._queued_bytes / 1e6:.0f} MB "
                                f"queued (max_queue_mb {self.cfg.max_queue_mb:g}); dropping "
                                f"messages (the disk is slower than the streams)")
                if not self._behind_logged:
                    self._behind_logged = True
                    log.error("%s: %s", self.name, self._behind)
                return None
            self._queue.append((now, items, nbytes))
            self._queued_bytes += nbytes
            self._cond.notify()
        return None

    def _writer_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    if not self._cond.wait(timeout=self.cfg.flush_ms / 1000):
                        break  # idle for flush_ms: commit what is open
                if not self._queue:
                    if self._stopping:
                        return
                    batch = None
                else:
                    batch = self._queue.popleft()
                    self._queued_bytes -= batch[2]
            if batch is None:
                self._idle_flush()
                continue
            self._write_batch(batch[0], batch[1])

    def _idle_flush(self) -> None:
        rec = self._rec
        if rec is None or rec.committed == rec.messages or self._clock is None:
            return
        try:
            rec.flush()
            self._t_flush_ns = self._clock.now_ns()
        except OSError as exc:
            self._fail(exc, "write", self._clock.now_ns())

    def _write_batch(self, now: int, items: list[tuple[int, str, Any, int]]) -> None:
        if self._rec is None and now >= self._t_retry_ns:
            self._open(now)
        if self._rec is None:
            self.dropped_write_error += sum(1 for it in items if it[1] is not None)
            return
        if self._t_open_ns is None:
            self._t_open_ns = self._t_flush_ns = now
        if items and ((self.cfg.max_bytes and self._rec.size >= self.cfg.max_bytes) or (
                self.cfg.max_seconds and now - self._t_open_ns >= self.cfg.max_seconds * 1e9)):
            self._rotate(now)  # before writing: no empty file at the end of a recording
            if self._rec is None:
                self.dropped_write_error += len(items)
                return
        try:
            for _, topic, frames, t_recv in items:
                if topic is None:  # a step trace: frames = (actor, record)
                    actor, record = frames
                    self._rec.write_raw(TRACE_PREFIX + actor, "step_trace", record, t_recv,
                                        t_recv)
                    continue
                self.bytes += self._rec.write_frames(frames, t_recv)
                self.recorded += 1
                self._per_topic[topic] = self._per_topic.get(topic, 0) + 1
            if now - (self._t_flush_ns or 0) >= self.cfg.flush_ms * 1e6:
                self._rec.flush()
                self._t_flush_ns = now
            else:
                self._rec.commit_finished_chunks()
        except OSError as exc:
            self.dropped_write_error += len(items)  # upper bound: the open chunk is lost too
            self._fail(exc, "write", now)

    def write_trace(self, actor: str, record: bytes, t_ns: int) -> None:
        """Step traces from the in-process driver (see `inprocess`): topic ``_trace/<actor>``."""
        item = [(t_ns, None, (actor, record), t_ns)]
        if self._thread is None:
            self._write_batch(t_ns, item)
            return
        with self._cond:
            self._queue.append((t_ns, item, 0))
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            # recorded messages already safe against a SIGKILL (the rest sits in the open chunk)
            "committed": self._committed_closed + (self._rec.committed if self._rec else 0),
            "bytes": self.bytes,
            "file": str(self._rec.path) if self._rec else None,
            "files": list(self._files),
            "dropped_write_error": self.dropped_write_error,
            "dropped_queue_full": self.dropped_queue_full,
            "queued_mb": round(self._queued_bytes / 1e6, 1),
            "error": self.error or self._behind,
            "per_topic": dict(self._per_topic),
        }

    def close(self) -> None:
        if self._thread is not None:
            with self._cond:
                self._stopping = True
                self._cond.notify()
            self._thread.join()
            self._thread = None
        self._close_current()
