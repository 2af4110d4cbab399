"""The MCAP layout of a recording: how one wire message becomes one MCAP message, and back.

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
  recorded inline: the recorder decodes (copies them out) and re-encodes, and
  `McapRecording.write_frames` materialises any raw frames that still carry descriptors, so a
  file never points into another process's memory.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

from edgevla.actors.wire.messages import MESSAGE_TYPES, SCHEMA_VERSION, scalar_field_names

MCAP_MAGIC = b"\x89MCAP0\r\n"  # the first 8 bytes of every MCAP file (spec: "Magic")
MESSAGE_ENCODING = "msgpack"
SCHEMA_ENCODING = "jsonschema"
PROFILE = "edgevla"
# Channels `messages.TRACE_PREFIX` + actor hold step records, not bus messages: msgpack
# {actor, t_ns, inputs} (`messages.StepTrace`'s fields).


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


def schema_json(schema: str, version: int) -> bytes:
    """A JSON Schema for the layout, so a person opening the file in a tool knows what it is."""
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
