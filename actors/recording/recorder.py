"""Recording message streams to MCAP: the `RecorderActor` and the MCAP writer/reader helpers.

File format (readable by any MCAP tool: ``mcap info``, Foxglove, ``mcap.reader.make_reader``):

* one MCAP channel per (topic, schema, version); ``message_encoding = "msgpack"``;
* the channel's schema is named ``edgevla.<SCHEMA>.v<version>`` (e.g. ``edgevla.frame.v2``),
  encoding ``jsonschema``, describing the layout below and the message's fields;
* ``log_time`` = when the recorder received the message, ``publish_time`` = the message's
  ``t_pub_ns``, ``sequence`` = its ``seq`` (all host CLOCK_MONOTONIC nanoseconds);
* message data is the exact wire form of the message as ONE msgpack array of bin items::

      [ header: bin (the msgpack header frame, byte for byte),
        buffer_0: bin, buffer_1: bin, ... (the raw array buffers, in the header's array order) ]

  i.e. ``0x9N`` / ``0xdc`` array tag, then each frame as ``bin32`` (``0xc6`` + big-endian u32
  length + bytes). Any msgpack decoder unpacks it into a list of byte strings; `unpack_frames`
  reads it without copying. ``[topic, *that list]`` is exactly the frame list the producer
  sent, so a replay republishes bit-identical messages (`pack_frames` / `unpack_frames`).
  Arrays a producer sent through shared memory (4-element ``a`` entries, see `messages`) are
  recorded inline: the recorder decodes (copies them out) and re-encodes, and `write_frames`
  materialises any raw frames that still carry descriptors, so a file never points into
  another process's memory.

Crash safety ("checkpointed MCAP"): the writer appends through `CheckpointFile`, which keeps
the file a complete, valid MCAP after every commit (every ``flush_ms`` and every finished
chunk). After each commit the file ends with an empty-summary footer (``Footer(0, 0, 0)`` +
magic), so the stock reader treats it as an unindexed file and reads it linearly. The next
commit (1) writes a new footer at the new end of file, (2) fills the gap before it with the new
chunks, (3) overwrites the previous footer with a 37-byte private record (opcode 0x80, which
every MCAP reader skips). A SIGKILL between any two of these steps leaves a file whose first
footer ends the data: every message up to the previous commit is readable with
``mcap.reader.make_reader``, with no error. A clean close writes the normal summary and index.
Below that protocol (power loss, a filesystem that reorders writes) a file can still end
anywhere; `read_recording` then reads it linearly up to the tear and warns, rather than losing
the whole file.

Rotation: ``max_bytes`` / ``max_seconds`` start a new file; files are named ``out.mcap``,
``out.1.mcap``, ``out.2.mcap`` ... (the next free index), which is also what a recorder restarted
by the supervisor does: it never truncates an existing recording.

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
import json
import logging
import os
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgevla.actors.runtime.actor import Actor
from edgevla.actors.wire.clock import Clock
from edgevla.actors.wire.inline import has_descriptors, inline_frames
from edgevla.actors.wire.codec import decode, decode_header, encode
from edgevla.actors.wire.messages import MESSAGE_TYPES, SCHEMA_VERSION, Message, scalar_field_names

log = logging.getLogger("edgevla.recorder")

MCAP_MAGIC = b"\x89MCAP0\r\n"
MESSAGE_ENCODING = "msgpack"
SCHEMA_ENCODING = "jsonschema"
PROFILE = "edgevla"
# A Footer record with no summary: opcode 0x02, length 20, summary_start 0, offsets 0, crc 0.
_EMPTY_FOOTER = struct.pack("<BQQQI", 0x02, 20, 0, 0, 0)
TRAILER = _EMPTY_FOOTER + MCAP_MAGIC  # 37 bytes
# Private record (opcodes 0x80-0xFF are reserved for private use; readers skip them) of the
# trailer's exact size: used to blank an old trailer in place.
_PAD_BODY = b"edgevla-checkpoint".ljust(len(TRAILER) - 9, b"\0")
PAD_RECORD = struct.pack("<BQ", 0x80, len(_PAD_BODY)) + _PAD_BODY
assert len(PAD_RECORD) == len(TRAILER) == 37
_PAGE = 4096


def pad_record(n: int) -> bytes:
    """A private record of exactly ``n`` >= 9 bytes (skipped by readers)."""
    return struct.pack("<BQ", 0x80, n - 9) + b"\0" * (n - 9)


# --------------------------------------------------------------------------------------------
# wire frames <-> MCAP message data


def pack_frames(header: bytes | memoryview, buffers: list[Any]) -> bytes:
    """``header`` + raw buffers -> one msgpack array of bin32 items (one copy of the data)."""
    items = [header, *buffers]
    n = len(items)
    parts: list[Any] = [bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)]
    for item in items:
        mv = memoryview(item)
        if not mv.c_contiguous:
            raise ValueError("wire buffers must be C-contiguous")
        mv = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
        parts.append(b"\xc6" + struct.pack(">I", mv.nbytes))
        parts.append(mv)
    return b"".join(parts)


def unpack_frames(data: bytes | memoryview) -> list[memoryview]:
    """Inverse of `pack_frames`: ``[header, *buffers]`` as zero-copy memoryviews.

    Accepts any msgpack array of bin items (bin8/16/32), so files written by other tools in the
    same layout read too. Raises ValueError naming the offset on anything else.
    """
    mv = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if not len(mv):
        raise ValueError("empty message data")
    tag = mv[0]
    if 0x90 <= tag <= 0x9F:
        n, pos = tag & 0x0F, 1
    elif tag == 0xDC:
        n, pos = struct.unpack_from(">H", mv, 1)[0], 3
    elif tag == 0xDD:
        n, pos = struct.unpack_from(">I", mv, 1)[0], 5
    else:
        raise ValueError(f"message data offset 0: expected a msgpack array, got byte 0x{tag:02x}")
    out: list[memoryview] = []
    for i in range(n):
        if pos >= len(mv):
            raise ValueError(f"message data truncated before item {i}")
        t = mv[pos]
        if t == 0xC4:
            size, pos = mv[pos + 1], pos + 2
        elif t == 0xC5:
            size, pos = struct.unpack_from(">H", mv, pos + 1)[0], pos + 3
        elif t == 0xC6:
            size, pos = struct.unpack_from(">I", mv, pos + 1)[0], pos + 5
        else:
            raise ValueError(f"message data offset {pos}: item {i} is not msgpack bin "
                             f"(byte 0x{t:02x})")
        if pos + size > len(mv):
            raise ValueError(f"message data item {i}: {size} bytes declared, "
                             f"{len(mv) - pos} left")
        out.append(mv[pos:pos + size])
        pos += size
    if pos != len(mv):
        raise ValueError(f"message data: {len(mv) - pos} trailing bytes after {n} items")
    return out


def schema_name(schema: str, version: int = SCHEMA_VERSION) -> str:
    return f"edgevla.{schema}.v{version}"


def _schema_json(schema: str, version: int) -> bytes:
    """A JSON Schema for the layout, so a person opening the file in a tool knows what it is."""
    import dataclasses

    cls = MESSAGE_TYPES.get(schema)
    fields = [f.name for f in dataclasses.fields(cls)] if cls else []
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": schema_name(schema, version),
        "description": (
            "edgevla wire message as a msgpack array of bin items: [header, *buffers]. "
            + (f"header is a msgpack array [schema, v, seq, t_capture_ns, t_pub_ns, producer, "
               f"[{', '.join(scalar_field_names(cls)) if cls else '...'}], "
               f"[[name, dtype, shape], ...]]" if version >= 2 else
               "header is a msgpack map {schema, v, seq, t_capture_ns, t_pub_ns, producer, "
               "f: scalar fields, a: [[name, dtype, shape], ...]}")
            + "; buffer i holds array i, raw C-order bytes. Message fields: "
            + ", ".join(fields)),
        "type": "array",
        "items": {"type": "string", "contentEncoding": "binary"},
        "minItems": 1,
    }
    return json.dumps(doc, sort_keys=True).encode()


# --------------------------------------------------------------------------------------------
# crash-safe file


class CheckpointFile:
    """Append-only sink for `mcap.writer.Writer` that keeps the file valid after each commit.

    The MCAP writer sees a stream (``write``/``tell``/``flush``); bytes stay in memory until
    `commit`. See the module docstring for the three-step commit.
    """

    def __init__(self, path: str | os.PathLike, fsync: bool = False) -> None:
        self.path = Path(path)
        # O_EXCL: a recording is never overwritten (a restarted recorder picks a new name).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._fsync = fsync
        self._pending = bytearray()
        self._end = 0  # where the live trailer starts (= bytes of real MCAP data so far)
        self._has_trailer = False
        self.closed = False

    # -- the stream interface the mcap writer uses
    def write(self, data: Any) -> int:
        self._pending += data
        return len(data)

    def tell(self) -> int:
        return self._base() + len(self._pending)

    def flush(self) -> None:  # the mcap writer's flush(); durability is commit()'s job
        pass

    def seekable(self) -> bool:
        return False

    # --
    def _base(self) -> int:
        return self._end + (len(TRAILER) if self._has_trailer else 0)

    @property
    def size(self) -> int:
        return self.tell() + (0 if self.closed else len(TRAILER))

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def _pwrite_all(self, data: bytes | memoryview, offset: int) -> None:
        mv = memoryview(data)
        while mv.nbytes:
            n = os.pwrite(self._fd, mv, offset)
            if n <= 0:  # pwrite reports a full disk as an exception; be safe anyway
                raise OSError(errno.ENOSPC, "short write", str(self.path))
            mv, offset = mv[n:], offset + n

    def commit(self, final: bool = False) -> None:
        """Make everything written so far durable against SIGKILL (not power loss unless fsync)."""
        if self.closed:
            return
        if not self._pending and not final:
            return
        start = self._base()
        data = bytes(self._pending)
        if final:
            if not data.endswith(MCAP_MAGIC):
                raise ValueError("final commit must end with the MCAP footer and magic")
            body, tail = data[:-len(TRAILER)], data[-len(TRAILER):]
        else:
            body, tail = data, TRAILER
        body_end = start + len(body)
        temp_end = body_end
        if not final:
            # Keep the trailer inside one page: a write within a page is all-or-nothing under
            # SIGKILL, so the file never ends in half a footer.
            r = body_end % _PAGE
            if r + len(TRAILER) > _PAGE:
                n = _PAGE - r if _PAGE - r >= 9 else _PAGE - r + _PAGE
                body = body + pad_record(n)
                body_end += n
                temp_end = body_end
        else:
            # the temporary end goes to the next page boundary after the real one; the file is
            # cut back to the real end at the very last step
            temp_end = -(-(body_end + len(TRAILER)) // _PAGE) * _PAGE
        self._pwrite_all(TRAILER, temp_end)  # 1: a valid end of file beyond the gap
        self._pwrite_all(body, start)  # 2: fill the gap (a kill here leaves the old end in force)
        if self._has_trailer:
            self._pwrite_all(PAD_RECORD, self._end)  # 3: the old end becomes a skipped record
        if final:
            self._pwrite_all(tail, body_end)  # 4: the real footer with its summary
            os.ftruncate(self._fd, body_end + len(tail))  # 5: drop the temporary end
        if self._fsync:
            os.fsync(self._fd)
        self._pending.clear()
        self._end = body_end
        self._has_trailer = not final

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)


def next_free_path(path: str | os.PathLike) -> Path:
    """``out.mcap`` if free, else ``out.1.mcap``, ``out.2.mcap``, ... (never an existing file)."""
    p = Path(path)
    if not p.exists():
        return p
    suffix = p.suffix or ".mcap"
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    i = 1
    while True:
        cand = p.with_name(f"{stem}.{i}{suffix}")
        if not cand.exists():
            return cand
        i += 1


class McapRecording:
    """One open MCAP file: channels per (topic, schema, v), checkpointed commits."""

    def __init__(self, path: str | os.PathLike, *, chunk_size: int = 1 << 20,
                 compression: str = "none", fsync: bool = False,
                 metadata: dict[str, str] | None = None) -> None:
        from mcap.writer import CompressionType, Writer

        comp = {"none": CompressionType.NONE, "lz4": CompressionType.LZ4,
                "zstd": CompressionType.ZSTD}.get(compression)
        if comp is None:
            raise ValueError(f"recorder compression must be none, lz4 or zstd, got {compression!r}")
        self.path = Path(path)
        self.file = CheckpointFile(self.path, fsync=fsync)
        self.writer = Writer(self.file, chunk_size=chunk_size, compression=comp)
        self.writer.start(profile=PROFILE, library="edgevla-recorder")
        if metadata:
            self.writer.add_metadata("edgevla", {k: str(v) for k, v in metadata.items()})
        self._schemas: dict[tuple[str, int], int] = {}
        self._channels: dict[tuple[str, str, int], int] = {}
        self.messages = 0
        self.committed = 0  # messages a SIGKILL now would not lose
        self.t_first_log_ns: int | None = None
        self.file.commit()  # an empty but valid file from the first moment

    def _channel(self, topic: str, schema: str, version: int) -> int:
        key = (topic, schema, version)
        cid = self._channels.get(key)
        if cid is None:
            sid = self._schemas.get((schema, version))
            if sid is None:
                sid = self.writer.register_schema(schema_name(schema, version), SCHEMA_ENCODING,
                                                  _schema_json(schema, version))
                self._schemas[(schema, version)] = sid
            cid = self.writer.register_channel(topic, MESSAGE_ENCODING, sid, {
                "edgevla.schema": schema, "edgevla.schema_version": str(version)})
            self._channels[key] = cid
        return cid

    def write_frames(self, frames: list[Any], log_time_ns: int,
                     header: dict[str, Any] | None = None) -> int:
        """Write one wire message; returns its stored size in bytes."""
        topic = bytes(frames[0]).decode() if not isinstance(frames[0], str) else frames[0]
        if header is None:
            header = decode_header(frames[1])
        if has_descriptors(header):
            # shared-memory arrays become inline buffers: the file must be self-contained
            frames, header = inline_frames(frames, header)
        cid = self._channel(topic, str(header.get("schema")), int(header.get("v", 0)))
        data = pack_frames(frames[1], list(frames[2:]))
        self.writer.add_message(cid, log_time=int(log_time_ns), data=data,
                                publish_time=int(header.get("t_pub_ns", 0)),
                                sequence=int(header.get("seq", 0)) & 0xFFFFFFFF)
        if self.t_first_log_ns is None:
            self.t_first_log_ns = int(log_time_ns)
        self.messages += 1
        return len(data)

    def write_message(self, topic: str, msg: Message, log_time_ns: int) -> int:
        return self.write_frames(encode(topic, msg), log_time_ns)

    def write_raw(self, topic: str, schema: str, data: bytes, log_time_ns: int,
                  publish_time_ns: int = 0, seq: int = 0) -> None:
        """Non-bus records (e.g. step traces from the in-process driver), same channel rules."""
        cid = self._channel(topic, schema, SCHEMA_VERSION)
        self.writer.add_message(cid, log_time=int(log_time_ns), data=data,
                                publish_time=int(publish_time_ns), sequence=seq & 0xFFFFFFFF)
        self.messages += 1

    def flush(self) -> None:
        """Close the chunk in progress and commit: everything so far survives a SIGKILL."""
        self.writer.flush()
        self.file.commit()
        self.committed = self.messages

    def commit_finished_chunks(self) -> None:
        """Commit chunks the writer already closed (by size) without cutting the open one."""
        self.file.commit()

    @property
    def size(self) -> int:
        return self.file.size

    def close(self) -> None:
        try:
            self.writer.finish()
            self.file.commit(final=True)
            self.committed = self.messages
        finally:
            self.file.close()


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class RecordedMessage:
    """One message of a recording, with its exact wire frames."""

    topic: str
    schema: str
    log_time_ns: int
    publish_time_ns: int
    frames: list[Any]  # [topic bytes, header bytes, *buffers] exactly as published
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def producer(self) -> str:
        return str(self.header.get("producer", ""))

    @property
    def seq(self) -> int:
        return int(self.header.get("seq", 0))

    @property
    def t_capture_ns(self) -> int:
        return int(self.header.get("t_capture_ns", 0))

    @property
    def nbytes(self) -> int:
        return sum(memoryview(f).nbytes for f in self.frames)

    def decode(self) -> Message:
        return decode(self.frames)[1]


def read_recording(path: str | os.PathLike, topics: list[str] | None = None,
                   order: str = "publish", include_internal: bool = False
                   ) -> list[RecordedMessage]:
    """All bus messages of a recording (or a rotated set: pass each file), sorted.

    ``order="publish"`` sorts by t_pub_ns (causal order on one host), ``"log"`` by receive time.
    Channels whose encoding is not edgevla msgpack are skipped; internal channels (``_trace/``)
    only with ``include_internal``.
    """
    out = list(iter_recording(path, topics, include_internal))
    key = (lambda m: (m.publish_time_ns, m.log_time_ns)) if order == "publish" else \
        (lambda m: (m.log_time_ns, m.publish_time_ns))
    out.sort(key=key)  # stable: equal stamps keep file order
    return out


def iter_recording(path: str | os.PathLike, topics: list[str] | None = None,
                   include_internal: bool = False) -> Iterator[RecordedMessage]:
    with open(path, "rb") as f:
        for schema, channel, rec in _mcap_records(path, f, topics):
            if channel.message_encoding != MESSAGE_ENCODING:
                continue
            if channel.topic.startswith(TRACE_PREFIX):
                if not include_internal:
                    continue
                yield RecordedMessage(channel.topic, schema.name if schema else "",
                                      rec.log_time, rec.publish_time, [rec.data], {})
                continue
            items = unpack_frames(rec.data)
            header = decode_header(items[0])
            yield RecordedMessage(
                topic=channel.topic, schema=str(header.get("schema", "")),
                log_time_ns=rec.log_time, publish_time_ns=rec.publish_time,
                frames=[channel.topic.encode(), *items], header=header)


MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first 8 bytes of every MCAP file (spec: "Magic")


def _mcap_records(path: str | os.PathLike, f: Any, topics: list[str] | None) -> Iterator[Any]:
    """(schema, channel, message) in file order, as mcap's reader gives them. A file the indexed
    reader cannot open (a tail torn by a power loss or a full disk below the recorder's own
    commits) is read linearly up to the tear instead of being lost whole; a file that is no
    MCAP is a ValueError naming it."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    torn = (McapError, EOFError, struct.error)
    try:
        records = make_reader(f).iter_messages(topics=topics, log_time_order=False)
        item = next(records, None)
    except (*torn, OSError):
        f.seek(0)
        yield from _mcap_records_linear(path, f, topics)
        return
    n = 0
    while item is not None:
        yield item
        n += 1
        try:
            item = next(records, None)
        except torn as exc:
            log.warning("%s: the recording ends in a torn record after %d messages (%s); "
                        "returning those", path, n, str(exc) or type(exc).__name__)
            return


def _mcap_records_linear(path: str | os.PathLike, f: Any,
                         topics: list[str] | None) -> Iterator[Any]:
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
        raise ValueError(f"{path}: not a readable MCAP recording (no MCAP magic at the start)")
    f.seek(0)
    schemas: dict[int, Any] = {}
    channels: dict[int, Any] = {}
    n = 0
    try:
        for r in StreamReader(f, skip_magic=False, emit_chunks=False).records:
            if isinstance(r, Schema):
                schemas[r.id] = r
            elif isinstance(r, Channel):
                channels[r.id] = r
            elif isinstance(r, Message):
                ch = channels.get(r.channel_id)
                if ch is not None and (not topics or ch.topic in topics):
                    n += 1
                    yield schemas.get(ch.schema_id), ch, r
    except (McapError, EOFError, struct.error) as exc:
        log.warning("%s: the recording ends in a torn record after %d messages (%s); "
                    "returning those", path, n, str(exc) or type(exc).__name__)


def recording_files(path: str | os.PathLike) -> list[Path]:
    """``out.mcap`` plus its rotations/restarts ``out.1.mcap``, ``out.2.mcap`` ... in order.

    Only files of the same run: a continuation whose ``run_id`` differs from the first file's is
    another recording that happens to have the next name, and ends the list (with a warning).
    """
    p = Path(path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    if not p.exists():
        return []
    files = [p]
    run = recording_run_id(p)
    i = 1
    while True:
        cand = p.with_name(f"{stem}.{i}{p.suffix or '.mcap'}")
        if not cand.exists():
            break
        other = recording_run_id(cand)
        if other != run:
            log.warning("%s belongs to another run (%s, not %s): not read with %s", cand,
                        other or "no run id", run or "no run id", p)
            break
        files.append(cand)
        i += 1
    return files


def recording_run_id(path: str | os.PathLike) -> str:
    """The ``run_id`` the recorder wrote at the start of ``path`` ("" when it has none)."""
    from mcap.exceptions import McapError
    from mcap.records import Chunk, Message, Metadata
    from mcap.stream_reader import StreamReader

    try:
        with open(path, "rb") as fh:
            for record in StreamReader(fh, skip_magic=False).records:
                if isinstance(record, Metadata) and record.name == "edgevla":
                    return str(record.metadata.get("run_id", ""))
                if isinstance(record, (Chunk, Message)):  # metadata comes before any data
                    return ""
    except (McapError, EOFError, struct.error, OSError):
        pass
    return ""


TRACE_PREFIX = "_trace/"


# --------------------------------------------------------------------------------------------
# the actor


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
        return self._topics is None or topic in self._topics

    def step(self, clock: Clock, inputs: dict[str, Any]) -> None:
        now = clock.now_ns()
        self._clock = clock
        items: list[tuple[int, str, Any, int]] = []  # (t_pub, topic, frames, t_recv)
        for topic, value in inputs.items():
            if not self._wanted(topic):
                continue
            for msg in (value if isinstance(value, list) else [value]):
                t_recv = getattr(msg, "t_recv_ns", None) or now
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
