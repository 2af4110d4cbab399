"""The C side of the firmware under ASan/UBSan: shared vectors, unit tests, decoder fuzzing,
and the Cortex-M7 cross build (-Werror, size budget)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from edgevla.firmware_bridge.firmware.build import ensure_built, ensure_tool, mcu_dir
from edgevla.firmware_bridge.link.vectors import VECTORS_PATH

SAN_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")


@pytest.fixture(scope="module")
def asan_bin():
    return ensure_tool("host-asan")


def _run(args, timeout=120):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=SAN_ENV,
                       timeout=timeout)
    assert r.returncode == 0, f"{args[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    assert "runtime error" not in r.stderr, r.stderr  # UBSan report
    return r.stdout


def test_c_codec_matches_shared_vectors(asan_bin):
    out = _run([asan_bin / "test_vectors", VECTORS_PATH])
    m = re.search(r"valid=(\d+) invalid=(\d+) streams=(\d+) cobs=(\d+) crc=ok failures=0", out)
    assert m, out
    assert int(m.group(1)) >= 16 and int(m.group(2)) >= 10 and int(m.group(3)) >= 4


def test_c_core_unit_tests(asan_bin):
    out = _run([asan_bin / "test_core"])
    assert re.search(r"test_core: \d+ checks, 0 failures", out), out


def test_decoder_fuzz_million_random_and_mutated_frames(asan_bin):
    n = 1_000_000
    out = _run([asan_bin / "fuzz_decoder", n, n, 20261124], timeout=300)
    fields = dict(re.findall(r"(\w+)=(\d+)", out))
    assert int(fields["random"]) == n and int(fields["mutated"]) == n
    assert int(fields["accepted_corrupt"]) == 0
    assert int(fields["resync_fail"]) == 0
    assert int(fields["accepted_random"]) == 0
    # every mutated frame was either rejected or (mutation undone / cut off) re-encodes intact
    assert int(fields["frames"]) >= n  # the resync probes all came through
    assert int(fields["crc"]) > 0 and int(fields["cobs"]) > 0 and int(fields["oversize"]) > 0


def test_vectors_file_is_up_to_date():
    from edgevla.firmware_bridge.link import vectors as make_vectors

    assert make_vectors.main(["--check"]) == 0


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="gcc-arm-none-eabi not installed (make install adds it)")
def test_cortex_m7_image_builds_with_werror_and_fits():
    elf = ensure_built("qemu-m7")
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    text, data, bss = (int(x) for x in out.splitlines()[1].split()[:3])
    assert text + data < 64 * 1024, out  # fits easily in the M7's 256 KiB TCM
    assert data + bss < 64 * 1024, out
    # no heap: nothing pulls malloc into the image
    symbols = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True,
                             check=True).stdout
    assert not re.search(r"\b_?malloc(_r)?\b", symbols), "malloc linked into the firmware"


def test_core_has_no_platform_includes():
    core = mcu_dir() / "core"
    allowed = {"stdint.h", "stddef.h", "string.h", "math.h", "stdio.h", "stdarg.h"}
    for f in core.glob("*.[ch]"):
        for inc in re.findall(r'#include <([^>]+)>', f.read_text()):
            assert inc in allowed, f"{f.name} includes <{inc}>: core must stay portable"
    # stdio only in the host-only formatter
    for f in core.glob("*.c"):
        if f.name != "evla_proto_format.c":
            assert "<stdio.h>" not in f.read_text(), f.name


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                    reason="gcc-arm-none-eabi not installed (make install adds it)")
def test_imx95_port_typechecks_against_sdk_stand_ins():
    r = subprocess.run(["make", "-s", "-C", str(mcu_dir()), "imx95-check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_imx95_build_without_sdk_explains_itself():
    r = subprocess.run(["make", "-s", "-C", str(mcu_dir()), "imx95"], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "SDK_DIR" in r.stdout + r.stderr and "README" in r.stdout + r.stderr
