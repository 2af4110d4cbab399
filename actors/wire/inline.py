"""A wire message made self-contained: its shared-memory arrays copied into inline buffers.

A recording must not point into another process's memory, so the recorder stores every message
in this form.
"""

from __future__ import annotations

from typing import Any

from edgevla.actors.wire.codec import decode_header, pack_header, with_shm
from edgevla.actors.wire.shm import ShmReader, default_reader


def has_descriptors(header: dict[str, Any]) -> bool:
    meta = header.get("a")
    return type(meta) is list and any(type(e) is list and len(e) == 4 for e in meta)


def inline_frames(frames: list[Any], header: dict[str, Any] | None = None,
                  reader: ShmReader | None = None) -> tuple[list[Any], dict[str, Any]]:
    """A wire message with its shared-memory arrays materialised as inline buffers.

    Returns ``(frames, header)`` in the plain 3-element form (a recording must not point into
    another process's memory); frames without descriptors come back unchanged. Raises
    `MalformedMessage` when a descriptor cannot be read.
    """
    if header is None:
        header = decode_header(frames[1])
    if not has_descriptors(header):
        return frames, header
    meta = header["a"]
    bufs = with_shm(meta, list(frames[2:]), reader or default_reader())
    out = []
    new_meta = []
    for entry, buf in zip(meta, bufs):
        if type(entry) is list and len(entry) == 4:
            new_meta.append(entry[:3])
            out.append(buf.array.copy())  # not a pooled buffer: the recording keeps it
        else:
            new_meta.append(entry)
            out.append(buf)
    header = {**header, "a": new_meta}
    return [frames[0], pack_header(header), *out], header
