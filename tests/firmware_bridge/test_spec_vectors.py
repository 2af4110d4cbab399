"""Both codecs against vectors written from mcu/PROTOCOL.md by a second encoder (`spec_link`),
not by the Python codec the shared vectors come from: a bug the two codecs share cannot pass
here by agreeing with itself."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from edgevla.firmware_bridge.link import codec as p

import spec_link

VECTORS = json.loads(spec_link.SPEC_VECTORS.read_text())


def test_the_spec_vectors_file_is_what_the_spec_encoder_writes():
    assert spec_link.SPEC_VECTORS.read_text() == spec_link.vectors_text(), \
        "regenerate: python tests/firmware_bridge/spec_link.py"


def test_the_spec_encoders_crc_and_cobs_meet_the_specs_check_values():
    assert spec_link.crc32_bitwise(b"123456789") == 0xCBF43926  # PROTOCOL.md, "Framing"
    for dec, enc in spec_link.COBS_EXAMPLES:
        assert spec_link.cobs(bytes.fromhex(dec)).hex() == enc


@pytest.mark.parametrize("vec", VECTORS["valid"], ids=lambda v: v["name"])
def test_python_codec_reads_and_writes_every_spec_frame(vec):
    wire = bytes.fromhex(vec["wire_hex"])
    f = p.decode_frame(wire[:-1])
    assert f.canonical() == vec["canonical"]
    assert p.encode_frame(f.msg, f.seq) == wire
    assert p.encode_raw(f.msg, f.seq).hex() == vec["raw_hex"]


@pytest.mark.parametrize("vec", VECTORS["invalid"], ids=lambda v: v["name"])
def test_python_codec_rejects_what_the_spec_rejects(vec):
    with pytest.raises(p.FrameError) as exc:
        p.decode_frame(bytes.fromhex(vec["wire_hex"])[:-1])
    assert exc.value.kind == vec["error"]


def test_python_codec_cobs_and_stream_match_the_spec():
    for v in VECTORS["cobs"]:
        assert p.cobs_encode(bytes.fromhex(v["decoded_hex"])).hex() == v["encoded_hex"]
        assert p.cobs_decode(bytes.fromhex(v["encoded_hex"])).hex() == v["decoded_hex"]
    (s,) = VECTORS["streams"]
    dec = p.StreamDecoder()
    assert [f.canonical() for f in dec.feed(bytes.fromhex(s["stream_hex"]))] == s["frames"]
    assert sum(dec.errors.values()) == s["errors"]


def test_c_codec_reads_writes_and_rejects_every_spec_vector():
    from edgevla.firmware_bridge.firmware.build import ensure_tool

    binary = ensure_tool("host-asan") / "test_vectors"
    r = subprocess.run([str(binary), str(spec_link.SPEC_VECTORS)], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert r.returncode == 0 and "runtime error" not in r.stderr, r.stdout + r.stderr
    m = re.search(r"valid=(\d+) invalid=(\d+) streams=(\d+) cobs=(\d+) crc=ok failures=0",
                  r.stdout)
    assert m, r.stdout
    counts = [int(x) for x in m.groups()]
    assert counts == [len(VECTORS["valid"]), len(VECTORS["invalid"]), 1, len(VECTORS["cobs"])]
