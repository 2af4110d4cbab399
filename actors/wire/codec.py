"""The one wire codec of the typed messages (`messages`).

A message on the bus is a multipart frame list ``[topic, header, *buffers]``:

* ``topic``   – utf-8 bytes, the graph's topic name;
* ``header``  – msgpack array of 8, positional so that decoding does no key lookups:
  ``[schema, v, seq, t_capture_ns, t_pub_ns, producer, scalars, arrays]`` -- message type
  name, schema version, the common fields, the message's non-array fields in declaration order,
  and for each array ``[name, dtype, shape]`` in buffer order. `decode_header` gives tools the
  same header as a map, and version-1 headers (a msgpack map with these keys, scalars by name
  under ``f`` and arrays under ``a``: recordings made before version 2) still decode;
* ``buffers`` – one raw, C-contiguous buffer per array (sent zero-copy by the bus, never pickled).

An array entry may carry a 4th element, a shared-memory descriptor ``[segment, slot,
generation]`` (see `shm`): that array has no buffer frame (``buffers`` holds only the arrays of
3-element entries, in order) and the decoder copies it out of the producer's segment into an
array the consumer owns, or, for a borrowing subscriber (``Subscriber(borrow=True)``), hands out
a read-only view of the slot that `shm.still_valid` checks after use. Same-host publishers send large arrays that way; recordings, replays and
injected messages use the plain 3-element form, which every decoder keeps accepting.

Array-valued fields are either ``np.ndarray`` or ``dict[str, np.ndarray]`` (flattened to
``field/key`` names). Decoding validates everything that crosses the process boundary and raises
`MalformedMessage` with a short ``kind`` so the bus can count drops per kind."""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import msgpack
import numpy as np
import zmq

from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import (SCHEMA_VERSION, Message, annotations_of, field_kinds, message_type,
                                          scalar_field_names)
from edgevla.actors.wire.shm import default_reader

# dtypes allowed on the wire: fixed-size numeric types only (no object arrays ever).
_WIRE_DTYPES = {
    np.dtype(t).str: np.dtype(t)
    for t in (
        "bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
        "float16", "float32", "float64",
    )
}


_MAX_NDIM = 8


_SCALAR_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "str": (str,), "bool": (bool,), "float": (int, float),
    "dict[str, Any]": (dict,),
}


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


def encode(topic: str, msg: Message, shm: Any = None) -> list[Any]:
    """Message -> ``[topic, header, *buffers]``; buffers are the arrays themselves (no copy).

    With ``shm`` (an `shm.ShmWriter`), arrays it accepts go into shared memory and their header
    entry carries the descriptor instead of a buffer.
    """
    encoder = _ENCODERS.get(type(msg))
    if encoder is None:
        encoder = _ENCODERS[type(msg)] = _make_encoder(type(msg))
    return encoder(topic, msg, shm)


_ENCODERS: dict[type, Any] = {}


def _make_encoder(cls: type[Message]):
    """An encoder specialised for one message class (plan resolved once; see `_make_decoder`)."""
    kinds = field_kinds(cls)
    schema = cls.SCHEMA
    arrays = [n for n, k in kinds if k == "array"]
    scalars = [n for n, k in kinds if k is None]
    # array entries in declaration order: arrays, optional arrays and dicts as they come
    order = [(n, k) for n, k in kinds if k is not None]
    only_arrays = all(k == "array" for _, k in order)
    # the scalar list without a comprehension (a new frame per call on Python 3.11)
    if len(scalars) > 1:
        scalar_values = operator.attrgetter(*scalars)  # a tuple: msgpack packs it as an array
    elif scalars:
        one = operator.attrgetter(scalars[0])

        def scalar_values(msg: Message) -> list[Any]:
            return [one(msg)]
    else:
        def scalar_values(msg: Message) -> list[Any]:
            return []

    def encoder(topic: str, msg: Message, shm: Any = None) -> list[Any]:
        meta: list[list[Any]] = []
        buffers: list[Any] = []
        if only_arrays:
            for name in arrays:
                a = _as_wire_array(name, getattr(msg, name))
                meta.append([name, _DTYPE_STR[a.dtype], list(a.shape)])
                buffers.append(a)
        else:
            for name, kind in order:
                value = getattr(msg, name)
                if kind == "dict":
                    for key, arr in value.items():
                        if "/" in key:
                            raise ValueError(f"field {name!r}: key {key!r} may not contain '/'")
                        a = _as_wire_array(f"{name}/{key}", arr)
                        meta.append([f"{name}/{key}", _DTYPE_STR[a.dtype], list(a.shape)])
                        buffers.append(a)
                elif value is not None or kind == "array":
                    a = _as_wire_array(name, value)
                    meta.append([name, _DTYPE_STR[a.dtype], list(a.shape)])
                    buffers.append(a)
        if shm is not None:
            # Arrays big enough go to shared memory: their entry gets the descriptor and their
            # buffer frame goes away. Small messages pay only this scan.
            min_bytes = shm.min_bytes
            big = []
            for i, a in enumerate(buffers):
                if a.nbytes >= min_bytes:
                    big.append(i)
            if big:
                shm.begin(len(big))
                moved = set()
                for i in big:
                    desc = shm.put(buffers[i])
                    if desc is not None:
                        meta[i].append(desc)
                        moved.add(i)
                if moved:
                    buffers = [a for i, a in enumerate(buffers) if i not in moved]
        header = [schema, SCHEMA_VERSION, int(msg.seq), int(msg.t_capture_ns),
                  int(msg.t_pub_ns), msg.producer, scalar_values(msg), meta]
        return [topic.encode(), _PACKER.pack(header), *buffers]

    return encoder


def decode_header(raw: bytes | memoryview) -> dict[str, Any]:
    """The header as a map (``schema``, ``v``, ``seq``, ``t_capture_ns``, ``t_pub_ns``,
    ``producer``, ``f`` = scalar fields by name, ``a`` = array entries), for tools that read or
    rewrite headers (recorder, replay); `pack_header` is its inverse. Reads both versions."""
    try:
        # msgpack reads any buffer: no bytes() copy of a received frame
        header = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage("bad_header", f"msgpack: {exc}") from None
    if type(header) is dict:
        return header  # a version-1 header is this map already
    if type(header) is not list or len(header) != _HEADER_LEN:
        raise MalformedMessage("bad_header", "header is not an 8-element array")
    schema, v, seq, t_cap, t_pub, producer, scalars, meta = header
    cls = message_type(schema)
    names = scalar_field_names(cls) if cls is not None else None
    if names is not None and type(scalars) is list and len(scalars) == len(names):
        scalars = dict(zip(names, scalars))
    return {"schema": schema, "v": v, "seq": seq, "t_capture_ns": t_cap, "t_pub_ns": t_pub,
            "producer": producer, "f": scalars, "a": meta}


def pack_header(header: dict[str, Any]) -> bytes:
    """A header map (as `decode_header` returns it, either version) -> current wire header."""
    return _PACKER.pack(_from_map(header))


def decode(frames: list[Any], shm: Any = None) -> tuple[str, Message]:
    """``[topic, header, *buffers]`` -> (topic, message). Arrays view the received buffers.

    Arrays sent through shared memory are copied out with ``shm`` (an `shm.ShmReader`; the
    process's default reader when None) into arrays the message owns.
    """
    if len(frames) < 2:
        raise MalformedMessage("frame_count", f"{len(frames)} frames, need at least 2")
    return bytes(frames[0]).decode("utf-8", "replace"), decode_body(frames[1], frames[2:], shm)


def decode_body(header_raw: Any, buffers: list[Any], shm: Any = None) -> Message:
    """The message of a header frame and its buffer frames (for a receiver that has matched
    the topic itself)."""
    try:
        header = msgpack.unpackb(header_raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise MalformedMessage("bad_header", f"msgpack: {exc}") from None
    if type(header) is not list or len(header) != _HEADER_LEN:
        header = _from_map(header)  # a version-1 recording, or not a header at all
    schema = header[0]
    decoder = _DECODERS.get(schema) if type(schema) is str else None
    if decoder is None or header[1] != SCHEMA_VERSION:
        decoder = _decoder_or_raise(header)
    return decoder(header, buffers, shm)


def _decoder_or_raise(header: list[Any]):
    if header[1] != SCHEMA_VERSION:
        raise MalformedMessage("schema_version", f"version {header[1]!r}, this runtime speaks "
                               f"{SCHEMA_VERSION} (and reads {LEGACY_SCHEMA_VERSION})")
    schema = header[0]
    cls = message_type(schema)
    if cls is None:
        raise MalformedMessage("unknown_schema", f"schema {schema!r}")
    decoder = _DECODERS[schema] = _make_decoder(cls)
    return decoder


_HEADER_LEN = 8


LEGACY_SCHEMA_VERSION = 1  # header as a msgpack map: recordings made before version 2


COMMON_FIELDS_TYPES = {"seq": int, "t_capture_ns": int, "t_pub_ns": int, "producer": str}


_DECODERS: dict[Any, Any] = {}


def _from_map(header: Any) -> list[Any]:
    """A header map (version 1 on the wire, or `decode_header`'s view) -> the positional form.

    Scalar fields missing from ``f`` take their dataclass default (version 1 left nothing out,
    but a hand-written header may); a missing required one is ``bad_fields``.
    """
    if type(header) is not dict:
        raise MalformedMessage("bad_header", "header is neither an 8-element array nor a map")
    v = header.get("v")
    if v not in (LEGACY_SCHEMA_VERSION, SCHEMA_VERSION):
        raise MalformedMessage("schema_version", f"version {v!r}, this runtime speaks "
                               f"{SCHEMA_VERSION} (and reads {LEGACY_SCHEMA_VERSION})")
    schema = header.get("schema")
    cls = message_type(schema)
    if cls is None:
        raise MalformedMessage("unknown_schema", f"schema {schema!r}")
    f = header.get("f")
    if type(f) is not dict:
        raise MalformedMessage("bad_header", "missing 'f'")
    defaults = {x.name: x for x in dataclasses.fields(cls)}
    scalars = []
    for name in scalar_field_names(cls):
        if name in f:
            scalars.append(f[name])
        elif defaults[name].default is not dataclasses.MISSING:
            scalars.append(defaults[name].default)
        elif defaults[name].default_factory is not dataclasses.MISSING:
            scalars.append(defaults[name].default_factory())
        else:
            raise MalformedMessage("bad_fields", f"{schema}: missing field {name!r}")
    return [schema, SCHEMA_VERSION, header.get("seq", 0), header.get("t_capture_ns", 0),
            header.get("t_pub_ns", 0), header.get("producer", ""), scalars, header.get("a")]


def _make_decoder(cls: type[Message]):
    """A decoder specialised for one message class.

    Decoding runs per message in every consumer, usually on a cold cache between control
    ticks, where each extra Python step costs several times its warm price (measured: 35 µs
    cold vs 6 µs warm for the generic loop). So the plan is resolved once, the header is
    positional (no key lookups), the valid path does as little as it can, and the exact error
    is worked out only when a check fails.
    """
    plan = _plan(cls)
    schema = cls.SCHEMA
    arrays_req = [n for n, k, _ in plan if k == "array"]
    arrays_opt = [n for n, k, _ in plan if k == "optarray"]
    dicts = [(n, n + "/") for n, k, _ in plan if k == "dict"]
    scalars_typed = [(n, allowed) for n, k, allowed in plan if k is None]
    n_scalars = len(scalars_typed)
    # the common shapes, decoded without the general name matching below
    one_array = arrays_req[0] if len(arrays_req) == 1 and not arrays_opt and not dicts else None
    one_dict = dicts[0] if len(dicts) == 1 and not arrays_req and not arrays_opt else None
    new_obj = object.__new__

    def decoder(header: list[Any], buffers: list[Any], shm: Any = None) -> Message:
        _, _, seq, t_cap, t_pub, producer, scalars, meta = header
        if type(meta) is not list or type(scalars) is not list or len(scalars) != n_scalars:
            raise MalformedMessage("bad_fields", f"{schema}: header has "
                                   f"{len(scalars) if type(scalars) is list else '?'} scalar "
                                   f"fields, need {n_scalars}, and an array list")
        if len(meta) != len(buffers):
            buffers = with_shm(meta, buffers, shm)
        if (type(seq) is not int or type(t_cap) is not int or type(t_pub) is not int
                or type(producer) is not str):
            _common_error(schema, header)
        kwargs: dict[str, Any] = {"seq": seq, "t_capture_ns": t_cap, "t_pub_ns": t_pub,
                                  "producer": producer}
        for (name, allowed), value in zip(scalars_typed, scalars):
            if allowed is not None and type(value) not in allowed:
                raise MalformedMessage("bad_fields", f"{schema}.{name}: expected "
                                       f"{'/'.join(t.__name__ for t in allowed)}, "
                                       f"got {type(value).__name__}")
            kwargs[name] = value
        if one_array is not None and len(meta) == 1:
            arr = _array_from(meta[0], buffers[0])  # checks the entry, name included
            if meta[0][0] != one_array:
                raise MalformedMessage("bad_fields", f"{schema}: array {meta[0][0]!r}, "
                                       f"need {one_array!r}")
            kwargs[one_array] = arr
        elif one_dict is not None:
            name, prefix = one_dict
            out = {}
            for entry, buf in zip(meta, buffers):
                arr = _array_from(entry, buf)  # checks the entry, name included
                key = entry[0]
                if not key.startswith(prefix):
                    raise MalformedMessage("bad_fields", f"{schema}: unexpected array {key!r}")
                out[key[len(prefix):]] = arr
            kwargs[name] = out
        else:
            _match_arrays(schema, meta, buffers, arrays_req, arrays_opt, dicts, kwargs)
        # Every field is present and checked: fill the instance directly (the generated
        # __init__ costs ~4 µs cold and only re-assigns what is here).
        msg = new_obj(cls)
        msg.__dict__ = kwargs
        return msg

    return decoder


def _match_arrays(schema: str, meta: list[Any], buffers: list[Any], arrays_req: list[str],
                  arrays_opt: list[str], dicts: list[tuple[str, str]], kwargs: dict[str, Any]) -> None:
    """The general case of `_make_decoder`: arrays matched to fields by name, into ``kwargs``."""
    arrays = {}
    for entry, buf in zip(meta, buffers):
        arrays[entry[0] if type(entry) is list and entry else "?"] = _array_from(entry, buf)
    for name in arrays_req:
        if name not in arrays:
            raise MalformedMessage("bad_fields", f"{schema}: missing array {name!r}")
        kwargs[name] = arrays.pop(name)
    for name in arrays_opt:
        kwargs[name] = arrays.pop(name, None)
    for name, prefix in dicts:
        kwargs[name] = {k[len(prefix):]: arrays.pop(k)
                        for k in [k for k in arrays if type(k) is str and k.startswith(prefix)]}
    if arrays:
        raise MalformedMessage("bad_fields", f"{schema}: unexpected arrays {sorted(map(str, arrays))}")


def _common_error(schema: str, header: list[Any]) -> None:
    for (name, tp), value in zip(COMMON_FIELDS_TYPES.items(), header[2:6]):
        if type(value) is not tp:
            raise MalformedMessage("bad_fields", f"{schema}.{name}: expected {tp.__name__}, "
                                   f"got {type(value).__name__}")


_PLANS: dict[type, list[tuple[str, str | None, tuple[type, ...] | None]]] = {}


def _plan(cls: type[Message]) -> list[tuple[str, str | None, tuple[type, ...] | None]]:
    """Per message class: (field, array kind or None, allowed scalar types), computed once."""
    plan = _PLANS.get(cls)
    if plan is None:
        ann = annotations_of(cls)
        plan = [(name, kind, None if kind else _SCALAR_TYPES.get(ann[name]))
                for name, kind in field_kinds(cls)]
        _PLANS[cls] = plan
    return plan


def with_shm(meta: list[Any], buffers: list[Any], shm: Any) -> list[Any]:
    """Buffers for every entry of ``meta``: shared-memory entries copied out, in header order.

    Only reached when the header lists more arrays than there are buffer frames; anything that
    does not add up is ``frame_count``, a bad descriptor one of the ``shm_*`` kinds.
    """
    n_inline = sum(1 for e in meta if not (type(e) is list and len(e) == 4))
    if n_inline != len(buffers):
        raise MalformedMessage("frame_count",
                               f"header lists {len(meta)} arrays ({len(meta) - n_inline} in "
                               f"shared memory), got {len(buffers)} buffers")
    out: list[Any] = []
    it = iter(buffers)
    for entry in meta:
        if type(entry) is list and len(entry) == 4:
            name, dtype, shape, nbytes = _check_entry(entry[:3])
            if shm is None:
                shm = default_reader()
            out.append(_Owned(shm.read(entry[3], dtype, shape, nbytes)))
        else:
            out.append(next(it))
    return out


class _Owned:
    """An array copied out of shared memory: used as is by `_array_from` (no view, no copy)."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


def _check_entry(entry: Any) -> tuple[str, np.dtype, list[int], int]:
    if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
        raise MalformedMessage("bad_header", f"array entry {entry!r}")
    name, dtype_str, shape = entry
    dtype = _WIRE_DTYPES.get(dtype_str) if type(dtype_str) is str else None
    if dtype is None:
        raise MalformedMessage("bad_dtype", f"dtype {dtype_str!r}")
    if type(shape) is not list or len(shape) > _MAX_NDIM:
        raise MalformedMessage("bad_shape", f"shape {shape!r}")
    expected = dtype.itemsize
    for s in shape:
        if type(s) is not int or s < 0:
            raise MalformedMessage("bad_shape", f"shape {shape!r}")
        expected *= s
    return name, dtype, shape, expected


def _array_from(entry: Any, buf: Any) -> np.ndarray:
    if type(buf) is _Owned:
        return buf.array  # shape and dtype were checked before it was read
    name, dtype, shape, expected = _check_entry(entry)
    # len() is the byte count of a received zmq.Frame or bytes; anything else (an encoder's
    # own arrays in-process, memoryviews from a recording) is measured as a buffer
    nbytes = len(buf) if type(buf) in _BYTE_SIZED else memoryview(buf).nbytes
    if nbytes != expected:
        raise MalformedMessage("buffer_size", f"{name}: {nbytes} bytes, "
                               f"{entry[1]}{shape} needs {expected}")
    # a view of the received buffer, no copy (frombuffer + reshape: half the cold cost of
    # np.ndarray(shape, dtype, buffer=...))
    a = np.frombuffer(buf, dtype)
    return a if len(shape) == 1 else a.reshape(shape)


_BYTE_SIZED = (bytes, zmq.Frame)
