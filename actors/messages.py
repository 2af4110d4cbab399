"""Typed messages and their one wire codec.

A message on the bus is a multipart frame list ``[topic, header, *buffers]``:

* ``topic``   – utf-8 bytes, the graph's topic name;
* ``header``  – msgpack map: ``schema`` (message type name), ``v`` (schema version), the common
  fields ``seq``, ``t_capture_ns``, ``t_pub_ns``, ``producer``, the scalar fields of the message
  under ``f``, and for each array ``[name, dtype, shape]`` under ``a`` in buffer order;
* ``buffers`` – one raw, C-contiguous buffer per array (sent zero-copy by the bus, never pickled).

Array-valued fields are either ``np.ndarray`` or ``dict[str, np.ndarray]`` (flattened to
``field/key`` names). Decoding validates everything that crosses the process boundary and raises
`MalformedMessage` with a short ``kind`` so the bus can count drops per kind.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np

SCHEMA_VERSION = 1

# dtypes allowed on the wire: fixed-size numeric types only (no object arrays ever).
_WIRE_DTYPES = {
    np.dtype(t).str: np.dtype(t)
    for t in (
        "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "float16", "float32", "float64",
    )
}
_MAX_NDIM = 8


class MalformedMessage(ValueError):
    """A frame list that is not a valid message; ``kind`` groups drops for counting."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(kw_only=True)
class Message:
    """Fields every message carries (ARCHITECTURE.md, "The bus")."""

    SCHEMA: ClassVar[str] = "message"
    seq: int = 0
    t_capture_ns: int = 0  # CLOCK_MONOTONIC of the observation this derives from
    t_pub_ns: int = 0  # set by the publisher at send time
    producer: str = ""


@dataclass(kw_only=True)
class Frame(Message):
    """One camera image, HxWx3 uint8 RGB, stamped at capture."""

    SCHEMA: ClassVar[str] = "frame"
    camera: str
    image: np.ndarray


@dataclass(kw_only=True)
class Observation(Message):
    """What a policy sees at one instant: all cameras plus robot state, one capture time."""

    SCHEMA: ClassVar[str] = "observation"
    images: dict[str, np.ndarray]
    state: np.ndarray
    task: str = ""


@dataclass(kw_only=True)
class Features(Message):
    """Output of a vision encoder (per camera or merged), plus whatever later stages need."""

    SCHEMA: ClassVar[str] = "features"
    tensors: dict[str, np.ndarray]
    model_id: str = ""


@dataclass(kw_only=True)
class Prefix(Message):
    """LLM prefill output: the KV cache / prefix that the action expert attends to."""

    SCHEMA: ClassVar[str] = "prefix"
    tensors: dict[str, np.ndarray]
    model_id: str = ""


@dataclass(kw_only=True)
class ActionChunk(Message):
    """H future actions: action i is meant to run at ``t0_ns + i * dt_ns`` (host monotonic)."""

    SCHEMA: ClassVar[str] = "action_chunk"
    t0_ns: int
    dt_ns: int
    actions: np.ndarray  # H x D float32
    obs_seq: int = 0
    model_id: str = ""


@dataclass(kw_only=True)
class RobotState(Message):
    """Measured joint positions (joint units: rad for arm joints, normalised gripper)."""

    SCHEMA: ClassVar[str] = "robot_state"
    joints: np.ndarray
    commanded: np.ndarray | None = None
    faults: int = 0


@dataclass(kw_only=True)
class JointCommand(Message):
    """What the executor sent at one control tick: position target for time ``t_target_ns``."""

    SCHEMA: ClassVar[str] = "joint_command"
    t_target_ns: int
    positions: np.ndarray
    starved: bool = False
    chunk_seq: int = -1


@dataclass(kw_only=True)
class Request(Message):
    """The executor asks upstream for a new observation/inference, and says why."""

    SCHEMA: ClassVar[str] = "request"
    reason: str = ""
    horizon_left_ns: int = 0


@dataclass(kw_only=True)
class Command(Message):
    """Control-channel command (get stats, set rate, set param, stop, ...)."""

    SCHEMA: ClassVar[str] = "command"
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Heartbeat(Message):
    """Liveness and loop health of one actor process."""

    SCHEMA: ClassVar[str] = "heartbeat"
    actor: str
    pid: int
    loop_latency_ns: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.SCHEMA: cls
    for cls in (Frame, Observation, Features, Prefix, ActionChunk, RobotState, JointCommand,
                Request, Command, Heartbeat)
}
_COMMON = ("seq", "t_capture_ns", "t_pub_ns", "producer")


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "str": (str,), "bool": (bool,), "float": (int, float),
    "dict[str, Any]": (dict,),
}


_ANNOTATIONS: dict[type, dict[str, str]] = {}


def _annotations(cls: type[Message]) -> dict[str, str]:
    ann = _ANNOTATIONS.get(cls)
    if ann is None:
        ann = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        _ANNOTATIONS[cls] = ann
    return ann


def _is_array_field(tp: Any) -> str | None:
    """'array' / 'dict' / 'optarray' for array-valued annotations, else None."""
    text = str(tp)
    if text.startswith("dict[str, np.ndarray]"):
        return "dict"
    if text == "np.ndarray":
        return "array"
    if text.startswith("np.ndarray | None"):
        return "optarray"
    return None


_FIELD_KINDS: dict[type, list[tuple[str, str | None]]] = {}


def _field_kinds(cls: type[Message]) -> list[tuple[str, str | None]]:
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = [(f.name, _is_array_field(f.type)) for f in dataclasses.fields(cls)
                 if f.name not in _COMMON]
        _FIELD_KINDS[cls] = kinds
    return kinds


_DTYPE_STR = {d: d.str for d in _WIRE_DTYPES.values()}
_PACKER = msgpack.Packer(use_bin_type=True)


def _as_wire_array(name: str, arr: Any) -> np.ndarray:
    if type(arr) is np.ndarray and arr.dtype in _DTYPE_STR and arr.flags.c_contiguous:
        return arr  # the common case, checked cheaply: this runs per array per message
    a = np.asarray(arr)
    if a.dtype.str not in _WIRE_DTYPES:
        # Normalise byte order / equivalent spellings, reject object and string arrays.
        if a.dtype.kind in "biuf" and a.dtype.newbyteorder("=").str in _WIRE_DTYPES:
            a = a.astype(a.dtype.newbyteorder("="))
        elif a.dtype.kind in "biuf" and np.dtype(a.dtype.name).str in _WIRE_DTYPES:
            a = a.astype(a.dtype.name)
        else:
            raise TypeError(f"field {name!r}: dtype {a.dtype} cannot go on the wire")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def encode(topic: str, msg: Message) -> list[Any]:
    """Message -> ``[topic, header, *buffers]``; buffers are the arrays themselves (no copy)."""
    arrays_meta: list[list[Any]] = []
    buffers: list[Any] = []
    scalars: dict[str, Any] = {}

    def add(name: str, value: Any) -> None:
        a = _as_wire_array(name, value)
        arrays_meta.append([name, _DTYPE_STR[a.dtype], list(a.shape)])
        buffers.append(a)

    for name, kind in _field_kinds(type(msg)):
        value = getattr(msg, name)
        if kind == "array":
            add(name, value)
        elif kind == "optarray":
            if value is not None:
                add(name, value)
        elif kind == "dict":
            for key, arr in value.items():
                if "/" in key:
                    raise ValueError(f"field {name!r}: key {key!r} may not contain '/'")
                add(f"{name}/{key}", arr)
            scalars[name] = None  # marks the dict as present even when empty
        else:
            scalars[name] = value
    header = {
        "schema": msg.SCHEMA,
        "v": SCHEMA_VERSION,
        "seq": int(msg.seq),
        "t_capture_ns": int(msg.t_capture_ns),
        "t_pub_ns": int(msg.t_pub_ns),
        "producer": msg.producer,
        "f": scalars,
        "a": arrays_meta,
    }
    return [topic.encode(), _PACKER.pack(header), *buffers]


def decode_header(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(raw if isinstance(raw, bytes) else bytes(raw), raw=False,
                                 strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage("bad_header", f"msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedMessage("bad_header", "header is not a map")
    return header


def decode(frames: list[Any]) -> tuple[str, Message]:
    """``[topic, header, *buffers]`` -> (topic, message). Arrays view the received buffers."""
    if len(frames) < 2:
        raise MalformedMessage("frame_count", f"{len(frames)} frames, need at least 2")
    return decode_parts(bytes(frames[0]), frames[1], frames[2:])


def decode_parts(topic_raw: bytes, header_raw: Any, buffers: list[Any]) -> tuple[str, Message]:
    """Like `decode`, for callers that received the topic and header separately."""
    topic = topic_raw.decode("utf-8", "replace")
    header = decode_header(header_raw)
    if header.get("v") != SCHEMA_VERSION:
        raise MalformedMessage("schema_version", f"version {header.get('v')!r}, "
                               f"this runtime speaks {SCHEMA_VERSION}")
    cls = MESSAGE_TYPES.get(header.get("schema"))  # type: ignore[arg-type]
    if cls is None:
        raise MalformedMessage("unknown_schema", f"schema {header.get('schema')!r}")
    meta = header.get("a")
    scalars = header.get("f")
    if not isinstance(meta, list) or not isinstance(scalars, dict):
        raise MalformedMessage("bad_header", "missing 'a' or 'f'")
    if len(meta) != len(buffers):
        raise MalformedMessage("frame_count",
                               f"header lists {len(meta)} arrays, got {len(buffers)} buffers")
    arrays: dict[str, np.ndarray] = {}
    for entry, buf in zip(meta, buffers):
        arrays[entry[0] if isinstance(entry, list) and entry else "?"] = _array_from(entry, buf)
    kwargs: dict[str, Any] = {}
    for name in _COMMON:
        if name in header:
            value = header[name]
            if type(value) is not _COMMON_TYPES[name]:
                raise MalformedMessage("bad_fields", f"{cls.SCHEMA}.{name}: expected "
                                       f"{_COMMON_TYPES[name].__name__}, got {type(value).__name__}")
            kwargs[name] = value
    for name, kind, allowed in _plan(cls):
        if kind == "array":
            if name not in arrays:
                raise MalformedMessage("bad_fields", f"{cls.SCHEMA}: missing array {name!r}")
            kwargs[name] = arrays.pop(name)
        elif kind == "optarray":
            kwargs[name] = arrays.pop(name, None)
        elif kind == "dict":
            if name not in scalars:
                raise MalformedMessage("bad_fields", f"{cls.SCHEMA}: missing {name!r}")
            prefix = name + "/"
            kwargs[name] = {k[len(prefix):]: arrays.pop(k)
                            for k in [k for k in arrays if k.startswith(prefix)]}
        elif name in scalars:
            value = scalars[name]
            if allowed is not None and (not isinstance(value, allowed) or (
                    bool not in allowed and isinstance(value, bool))):
                raise MalformedMessage("bad_fields", f"{cls.SCHEMA}.{name}: expected "
                                       f"{'/'.join(t.__name__ for t in allowed)}, "
                                       f"got {type(value).__name__}")
            kwargs[name] = value
    if arrays:
        raise MalformedMessage("bad_fields", f"{cls.SCHEMA}: unexpected arrays {sorted(arrays)}")
    try:
        msg = cls(**kwargs)
    except TypeError as exc:  # a required scalar field is missing
        raise MalformedMessage("bad_fields", f"{cls.SCHEMA}: {exc}") from None
    return topic, msg


_COMMON_TYPES = {"seq": int, "t_capture_ns": int, "t_pub_ns": int, "producer": str}
_PLANS: dict[type, list[tuple[str, str | None, tuple[type, ...] | None]]] = {}


def _plan(cls: type[Message]) -> list[tuple[str, str | None, tuple[type, ...] | None]]:
    """Per message class: (field, array kind or None, allowed scalar types), computed once."""
    plan = _PLANS.get(cls)
    if plan is None:
        ann = _annotations(cls)
        plan = [(name, kind, None if kind else _SCALAR_TYPES.get(ann[name]))
                for name, kind in _field_kinds(cls)]
        _PLANS[cls] = plan
    return plan


def _array_from(entry: Any, buf: Any) -> np.ndarray:
    if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
        raise MalformedMessage("bad_header", f"array entry {entry!r}")
    _, dtype_str, shape = entry
    dtype = _WIRE_DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None:
        raise MalformedMessage("bad_dtype", f"dtype {dtype_str!r}")
    if type(shape) is not list or len(shape) > _MAX_NDIM or not all(
            type(s) is int and s >= 0 for s in shape):
        raise MalformedMessage("bad_shape", f"shape {shape!r}")
    mv = buf.buffer if hasattr(buf, "buffer") else memoryview(buf)
    expected = math.prod(shape) * dtype.itemsize
    if mv.nbytes != expected:
        raise MalformedMessage("buffer_size", f"{entry[0]}: {mv.nbytes} bytes, "
                               f"{dtype_str}{shape} needs {expected}")
    # a view of the received buffer: no copy
    return np.ndarray(shape, dtype, buffer=mv)
