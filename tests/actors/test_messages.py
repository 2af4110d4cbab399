"""The wire codec: any dtype/shape round-trips; any garbage is rejected as MalformedMessage."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis_budget import examples

from edgevla.actors.wire.codec import LEGACY_SCHEMA_VERSION, decode, decode_header, encode, pack_header
from edgevla.actors.wire.errors import MalformedMessage
from edgevla.actors.wire.messages import (MESSAGE_TYPES, SCHEMA_VERSION, ActionChunk, Features, Frame,
                                          JointCommand, Observation, RobotState)

WIRE_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
               "float16", "float32", "float64"]


def wire(frames):
    """What a receiver gets: plain bytes per frame."""
    return [f.tobytes() if isinstance(f, np.ndarray) else bytes(f) for f in frames]


arrays = st.sampled_from(WIRE_DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                         max_side=5)))


@settings(max_examples=examples(150), deadline=None)
@given(arr=arrays, seq=st.integers(0, 2**63 - 1), t=st.integers(0, 2**63 - 1),
       producer=st.text(max_size=20))
def test_any_array_round_trips(arr, seq, t, producer):
    msg = Features(tensors={"a": arr, "b": arr.T}, seq=seq, t_capture_ns=t, producer=producer,
                   model_id="m")
    topic, out = decode(wire(encode("feat", msg)))
    assert topic == "feat"
    assert out.seq == seq and out.t_capture_ns == t and out.producer == producer
    for k, ref in (("a", arr), ("b", arr.T)):
        assert out.tensors[k].dtype == ref.dtype and out.tensors[k].shape == ref.shape
        np.testing.assert_array_equal(out.tensors[k], ref)


def test_typed_messages_round_trip():
    chunk = ActionChunk(t0_ns=10, dt_ns=33_333_333, actions=np.random.rand(50, 6).astype("f4"),
                        obs_seq=7, model_id="act", t_capture_ns=9)
    _, out = decode(wire(encode("chunks", chunk)))
    assert isinstance(out, ActionChunk) and out.obs_seq == 7 and out.dt_ns == 33_333_333
    np.testing.assert_array_equal(out.actions, chunk.actions)
    obs = Observation(images={"top": np.zeros((4, 5, 3), np.uint8)}, state=np.ones(6, "f4"),
                      task="put the tea bag in the mug")
    _, out = decode(wire(encode("obs", obs)))
    assert out.task == obs.task and out.images["top"].shape == (4, 5, 3)
    rs = RobotState(joints=np.arange(6, dtype="f8"))
    _, out = decode(wire(encode("state", rs)))
    assert out.commanded is None and out.joints.dtype == np.float64


def test_non_contiguous_and_big_endian_arrays_are_normalised():
    a = np.arange(24, dtype=">i4").reshape(4, 6)[:, ::2]
    _, out = decode(wire(encode("x", Frame(camera="c", image=a))))
    np.testing.assert_array_equal(out.image, a)


def test_object_arrays_refused_at_send():
    with pytest.raises(TypeError):
        encode("x", Frame(camera="c", image=np.array([object()])))


def _valid():
    return wire(encode("chunks", ActionChunk(t0_ns=1, dt_ns=2, actions=np.zeros((3, 2), "f4"))))


@pytest.mark.parametrize("mutate, kind", [
    (lambda f: f[:1], "frame_count"),
    (lambda f: [f[0], b"\xc1\xc1garbage"], "bad_header"),
    (lambda f: [f[0], f[1]], "frame_count"),
    (lambda f: [f[0], f[1], f[2][:-1]], "buffer_size"),
    (lambda f: [f[0], f[1], f[2], b"extra"], "frame_count"),
])
def test_malformed_kinds(mutate, kind):
    with pytest.raises(MalformedMessage) as exc:
        decode(mutate(_valid()))
    assert exc.value.kind == kind


def _header_with(**over):
    """The valid header with fields replaced, in the current (positional) wire form."""
    h = decode_header(_valid()[1])
    h.update(over)
    if h.get("v") != SCHEMA_VERSION or h.get("schema") not in MESSAGE_TYPES:
        return msgpack.packb(h)  # pack_header would refuse it: send the map as it is
    return pack_header(h)


@pytest.mark.parametrize("over, kind", [
    ({"v": SCHEMA_VERSION + 1}, "schema_version"),
    ({"schema": "nope"}, "unknown_schema"),
    ({"a": [["actions", "|O", [3, 2]]]}, "bad_dtype"),
    ({"a": [["actions", "<f4", [-3, 2]]]}, "bad_shape"),
    ({"f": {}}, "bad_fields"),
])
def test_malformed_headers(over, kind):
    f = _valid()
    with pytest.raises(MalformedMessage) as exc:
        decode([f[0], _header_with(**over), f[2]])
    assert exc.value.kind == kind


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype \
            and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b or (a != a and b != b)  # NaN equals NaN here


def _rejected_or_consistent(frames) -> bool:
    """Either a MalformedMessage, or a message whose own encoding decodes to the same fields:
    nothing else may come out of the decoder. True when it was rejected."""
    import dataclasses

    try:
        topic, msg = decode(frames)
    except MalformedMessage:
        return True
    _, again = decode(encode(topic, msg))
    assert type(again) is type(msg)
    for f in dataclasses.fields(msg):
        assert _same(getattr(msg, f.name), getattr(again, f.name)), f.name
    return False


def test_arrays_up_to_eight_dimensions_and_no_more():
    f = _valid()
    eight = decode([f[0], _header_with(a=[["actions", "<f4", [3, 2] + [1] * 6]]), f[2]])[1]
    assert eight.actions.shape == (3, 2, 1, 1, 1, 1, 1, 1)
    with pytest.raises(MalformedMessage) as exc:
        decode([f[0], _header_with(a=[["actions", "<f4", [3, 2] + [1] * 7]]), f[2]])
    assert exc.value.kind == "bad_shape"


@pytest.mark.parametrize("msg", [
    ActionChunk(t0_ns=1, dt_ns=2, actions=np.zeros((3, 2), "f4")),  # one array
    RobotState(joints=np.zeros(6, "f4")),  # arrays matched by name, one optional
    Features(tensors={"x": np.zeros(2, "f4")}),  # a dict of arrays
])
def test_an_array_the_message_does_not_have_is_refused(msg):
    f = wire(encode("t", msg))
    h = decode_header(f[1])
    h["a"] = h["a"] + [["bogus", "<f4", [2]]]
    with pytest.raises(MalformedMessage, match="unexpected array") as exc:
        decode([f[0], pack_header(h), *f[2:], np.zeros(2, "f4").tobytes()])
    assert exc.value.kind == "bad_fields"


@settings(max_examples=examples(300), deadline=None)
@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_random_frames_are_rejected_or_decode_consistently(frames):
    _rejected_or_consistent(frames)


@settings(max_examples=examples(200), deadline=None)
@given(pos=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_bit_flipped_headers_are_rejected_or_decode_consistently(pos, byte):
    f = _valid()
    h = bytearray(f[1])
    h[pos % len(h)] = byte
    _rejected_or_consistent([f[0], bytes(h), f[2]])


def test_the_consistency_check_can_fail():
    """The property above is not vacuous: a decoder that changed a field on the way would
    trip it (here: a valid message, and a decode that drops its producer)."""
    from unittest import mock

    f = _valid()
    assert _rejected_or_consistent([f[0], b"\xc1", f[2]])  # garbage header: rejected
    assert not _rejected_or_consistent(f)  # the valid message: accepted, round trips
    real = decode
    calls = []

    def lossy(frames, *a, **kw):
        topic, msg = real(frames, *a, **kw)
        calls.append(1)
        if len(calls) == 2:
            msg.producer = "someone else"
        return topic, msg

    with mock.patch(f"{__name__}.decode", lossy), pytest.raises(AssertionError):
        _rejected_or_consistent(f)


@pytest.mark.parametrize("field, value", [("seq", "x"), ("t_capture_ns", 1.5), ("producer", 3)])
def test_wrong_scalar_types_are_malformed(field, value):
    f = _valid()
    with pytest.raises(MalformedMessage) as exc:
        decode([f[0], _header_with(**{field: value}), f[2]])
    assert exc.value.kind == "bad_fields"


def test_wrong_message_field_type_is_malformed():
    f = _valid()
    h = decode_header(f[1])
    h["f"]["t0_ns"] = "soon"
    with pytest.raises(MalformedMessage):
        decode([f[0], pack_header(h), f[2]])


def _v1(frames):
    """The same message with a version-1 header (a map; recordings made before version 2)."""
    h = decode_header(frames[1])
    h["v"] = LEGACY_SCHEMA_VERSION
    return [frames[0], msgpack.packb(h), *frames[2:]]


def test_header_is_positional_and_version_1_maps_still_decode():
    chunk = ActionChunk(t0_ns=7, dt_ns=33, actions=np.arange(12, dtype=np.float32).reshape(6, 2),
                        obs_seq=4, model_id="m", seq=9, t_capture_ns=5, producer="p")
    frames = wire(encode("a", chunk))
    raw = msgpack.unpackb(frames[1], raw=False)
    assert raw == ["action_chunk", SCHEMA_VERSION, 9, 5, 0, "p", [7, 33, 4, "m"],
                   [["actions", "<f4", [6, 2]]]]
    obs = Observation(images={"top": np.zeros((2, 2, 3), np.uint8)}, state=np.ones(6, np.float32),
                      task="t")
    for msg in (chunk, obs):
        _, new = decode(wire(encode("a", msg)))
        _, old = decode(_v1(wire(encode("a", msg))))
        for got in (new, old):
            assert type(got) is type(msg)
            for name in msg.__dataclass_fields__:
                a, b = getattr(got, name), getattr(msg, name)
                if isinstance(b, dict):
                    assert a.keys() == b.keys()
                    for k in b:
                        np.testing.assert_array_equal(a[k], b[k])
                else:
                    np.testing.assert_array_equal(a, b)


def test_version_1_header_missing_a_defaulted_field_takes_the_default():
    h = decode_header(wire(encode("a", Features(tensors={"x": np.zeros(3, np.float32)})))[1])
    h["v"] = LEGACY_SCHEMA_VERSION
    del h["f"]["model_id"]
    _, msg = decode([b"a", msgpack.packb(h), np.zeros(3, np.float32).tobytes()])
    assert msg.model_id == ""


@pytest.mark.parametrize("header, kind", [
    (["action_chunk", SCHEMA_VERSION, 0, 0, 0, "", [1, 2, 3], []], "bad_fields"),  # 3 scalars
    (["action_chunk", SCHEMA_VERSION, 0, 0, 0, "", [1, 2, 3, ""], "x"], "bad_fields"),
    (["action_chunk", SCHEMA_VERSION, 0, 0, 0, ""], "bad_header"),  # 6 elements
    ([["x"], SCHEMA_VERSION, 0, 0, 0, "", [], []], "unknown_schema"),  # unhashable schema
    (["features", SCHEMA_VERSION, 0, 0, 0, "", [""], [[3, "<f4", [1]]]], "bad_header"),
    (["features", SCHEMA_VERSION, 0, 0, 0, "", [""], [["other/x", "<f4", [1]]]], "bad_fields"),
])
def test_malformed_positional_headers(header, kind):
    with pytest.raises(MalformedMessage) as exc:
        decode([b"a", msgpack.packb(header), b"\0" * 4])
    assert exc.value.kind == kind


def _every_field_set(cls, k: int):
    """An instance of ``cls`` whose every field holds a value of its own (no defaults)."""
    import dataclasses

    kwargs = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        t, v = str(f.type), 1000 * k + i + 1
        if t == "int":
            kwargs[f.name] = v
        elif t == "str":
            kwargs[f.name] = f"{f.name}-{v}"
        elif t == "bool":
            kwargs[f.name] = True
        elif t.startswith("np.ndarray"):
            kwargs[f.name] = (np.arange(6, dtype="f4") + v).reshape(2, 3)
        elif t == "dict[str, np.ndarray]":
            kwargs[f.name] = {"a": np.full(3, v, "i2"), "b": np.arange(v % 7 + 1, dtype="f8")}
        else:  # dict[str, Any] and the step trace's inputs
            kwargs[f.name] = {"x": [[f.name, v, "p", 3]]}
    return cls(**kwargs)


@pytest.mark.parametrize("schema", sorted(MESSAGE_TYPES))
def test_every_field_of_every_message_type_round_trips(schema):
    import dataclasses

    msg = _every_field_set(MESSAGE_TYPES[schema], k=3)
    topic, out = decode(wire(encode("t", msg)))
    assert topic == "t" and type(out) is type(msg)
    for f in dataclasses.fields(msg):
        a, b = getattr(msg, f.name), getattr(out, f.name)
        if isinstance(a, np.ndarray):
            assert b.dtype == a.dtype and np.array_equal(a, b), f.name
        elif isinstance(a, dict) and a and isinstance(next(iter(a.values())), np.ndarray):
            assert a.keys() == b.keys() and all(np.array_equal(a[x], b[x]) for x in a), f.name
        else:
            assert b == a and type(b) is type(a), f.name


def test_an_array_field_may_be_given_as_a_list():
    cmd = JointCommand(positions=[0.5, 1.5], t_target_ns=3)
    _, out = decode(wire(encode("c", cmd)))
    assert out.positions.tolist() == [0.5, 1.5]


# ------------------------------------------------------------------ codec rules, one case each

def _frame_header(**over):
    h = ["frame", SCHEMA_VERSION, 1, 2, 3, "cam", ["top"], [["image", "|u1", [4]]]]
    for k, v in over.items():
        h[["schema", "v", "seq", "t_capture_ns", "t_pub_ns", "producer", "scalars", "meta"].index(k)] = v
    return h


def _decode_raw(header, *buffers):
    return decode([b"t", msgpack.packb(header), *(buffers or (b"\0" * 4,))])


@pytest.mark.parametrize("v", [SCHEMA_VERSION - 1, SCHEMA_VERSION + 1, 0])
def test_only_this_schema_version_decodes_positional_headers(v):
    with pytest.raises(MalformedMessage) as exc:
        _decode_raw(_frame_header(v=v))
    assert exc.value.kind == "schema_version" and f"version {v}" in str(exc.value)
    assert _decode_raw(_frame_header())[1].image.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("name", ["aaa", "zzz"])
def test_a_single_array_under_another_name_is_refused(name):
    with pytest.raises(MalformedMessage, match=f"array '{name}'") as exc:
        _decode_raw(_frame_header(meta=[[name, "|u1", [4]]]))
    assert exc.value.kind == "bad_fields"


@pytest.mark.parametrize("field, pos", [("seq", 2), ("t_capture_ns", 3), ("t_pub_ns", 4),
                                        ("producer", 5)])
def test_a_common_field_of_the_wrong_type_is_named(field, pos):
    h = _frame_header()
    h[pos] = 1.5
    with pytest.raises(MalformedMessage, match=f"frame.{field}: expected") as exc:
        _decode_raw(h)
    assert exc.value.kind == "bad_fields"


@pytest.mark.parametrize("meta, kind", [
    ("not a list", "bad_fields"),
    ([["image", "|u1"]], "bad_header"),                 # an entry of 2
    ([["image", "|u1", [4], 1, 2]], "bad_header"),      # an entry of 5
])
def test_malformed_array_entries(meta, kind):
    with pytest.raises(MalformedMessage) as exc:
        _decode_raw(_frame_header(meta=meta))
    assert exc.value.kind == kind


def test_a_buffer_of_the_wrong_size_says_what_it_needs():
    with pytest.raises(MalformedMessage, match=r"image: 3 bytes, \|u1\[4\] needs 4") as exc:
        _decode_raw(_frame_header(), b"\0" * 3)
    assert exc.value.kind == "buffer_size"


def test_header_arrays_of_a_wrong_length_are_not_headers():
    for n in (7, 9):
        with pytest.raises(MalformedMessage) as exc:
            decode_header(msgpack.packb(list(range(n))))
        assert exc.value.kind == "bad_header"


def test_a_version_1_map_without_common_fields_takes_zero_and_empty():
    raw = pack_header({"schema": "request", "v": 1, "f": {"reason": "x", "horizon_left_ns": 5},
                       "a": []})
    _, out = decode([b"t", raw])
    assert (out.seq, out.t_capture_ns, out.t_pub_ns, out.producer) == (0, 0, 0, "")
    assert (out.reason, out.horizon_left_ns) == ("x", 5)


@pytest.mark.parametrize("dtype", [np.longdouble, np.complex64, "U3"])
def test_dtypes_the_wire_has_no_name_for_are_refused_at_send(dtype):
    with pytest.raises(TypeError, match="cannot go on the wire"):
        encode("t", Frame(camera="top", image=np.zeros(3, dtype)))


def test_bytes_in_free_form_fields_come_back_as_bytes():
    from edgevla.actors.wire.messages import Command

    cmd = Command(name="blob", args={"raw": b"\x00\xff\xfe", "text": "ok"})
    _, out = decode(wire(encode("c", cmd)))
    assert out.args == {"raw": b"\x00\xff\xfe", "text": "ok"}


def test_every_buffer_frame_is_c_contiguous_as_zmq_needs():
    img = np.arange(24, dtype=np.uint8).reshape(4, 6).T  # a transposed view
    frames = encode("f", Frame(camera="top", image=img))
    assert all(memoryview(f).c_contiguous for f in frames[2:])
    np.testing.assert_array_equal(decode(wire(frames))[1].image, img)


def test_decode_header_names_the_scalars_only_when_they_fit_the_type():
    raw = encode("f", Frame(camera="top", image=np.zeros(2, np.uint8)))[1]
    assert decode_header(raw)["f"] == {"camera": "top"}
    for scalars in (["top", "extra"], []):
        h = decode_header(msgpack.packb(_frame_header(scalars=scalars)))
        assert h["f"] == scalars  # left as sent: a tool shows what arrived


@pytest.mark.parametrize("over, kind, match", [
    ({"scalars": ["top", "extra"]}, "bad_fields", "header has 2 scalar fields, need 1"),
    ({"scalars": "top"}, "bad_fields", r"header has \? scalar fields, need 1"),
    ({"meta": []}, "bad_fields", "missing array 'image'"),
    ({"meta": [["image", "|u1", [-1]]]}, "bad_shape", "shape"),
    ({"meta": [["image", "|u1", [4]], ["x", "|u1", [1], ["s", 0, 2]]]}, "frame_count",
     r"header lists 2 arrays \(1 in shared memory\), got 0 buffers"),
])
def test_headers_that_do_not_add_up(over, kind, match):
    buffers = [] if kind == "frame_count" else [b"\0" * 4][:len(over.get("meta", [1]))]
    with pytest.raises(MalformedMessage, match=match) as exc:
        decode([b"t", msgpack.packb(_frame_header(**over)), *buffers])
    assert exc.value.kind == kind


def test_an_extra_buffer_frame_is_refused():
    with pytest.raises(MalformedMessage) as exc:
        decode([b"t", msgpack.packb(_frame_header()), b"\0" * 4, b"\0" * 4])
    assert exc.value.kind == "frame_count"


def test_a_longer_positional_header_is_not_a_message():
    with pytest.raises(MalformedMessage) as exc:
        decode([b"t", msgpack.packb(_frame_header() + [0]), b"\0" * 4])
    assert exc.value.kind == "bad_header"


def test_the_version_is_checked_with_a_warm_decoder_whatever_the_seq():
    assert _decode_raw(_frame_header())[1].seq == 1  # the frame decoder is built and cached
    with pytest.raises(MalformedMessage) as exc:
        _decode_raw(_frame_header(seq=SCHEMA_VERSION, v=SCHEMA_VERSION + 1))
    assert exc.value.kind == "schema_version"


def test_an_array_entry_that_is_not_a_list_is_refused_in_the_general_path():
    obs = ["observation", SCHEMA_VERSION, 1, 2, 3, "", ["task"], [7, ["state", "<f4", [1]]]]
    with pytest.raises(MalformedMessage) as exc:
        decode([b"t", msgpack.packb(obs), b"\0" * 4, b"\0" * 4])
    assert exc.value.kind == "bad_header"


def test_decode_header_refuses_what_msgpack_cannot_read():
    for raw in (b"\xc1", b"\x92\x01"):  # a reserved byte, an array cut short
        with pytest.raises(MalformedMessage) as exc:
            decode_header(raw)
        assert exc.value.kind == "bad_header"
