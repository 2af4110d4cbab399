"""Reading recordings back: messages with their exact wire frames, rotated files, torn tails."""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgevla.actors.recording.mcap_format import MCAP_MAGIC, MESSAGE_ENCODING, unpack_frames
from edgevla.actors.wire.codec import decode, decode_header
from edgevla.actors.wire.messages import TRACE_PREFIX, Message

log = logging.getLogger("edgevla.recorder")


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
