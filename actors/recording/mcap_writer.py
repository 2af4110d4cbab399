"""Writing one MCAP recording file (`McapRecording`) and naming the files of a recording.

Rotation and restarts never overwrite: files are named ``out.mcap``, ``out.1.mcap``,
``out.2.mcap`` ... (the next free index, `next_free_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgevla.actors.recording.checkpoint_file import CheckpointFile
from edgevla.actors.recording.mcap_format import (MESSAGE_ENCODING, PROFILE, SCHEMA_ENCODING, pack_frames,
                                                  schema_json, schema_name)
from edgevla.actors.wire.codec import decode_header, encode
from edgevla.actors.wire.inline import has_descriptors, inline_frames
from edgevla.actors.wire.messages import SCHEMA_VERSION, Message


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
                                                  schema_json(schema, version))
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
