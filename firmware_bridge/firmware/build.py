"""Find and build the firmware in mcu/ (make), one build at a time across processes."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

TARGETS = {
    "host": "build/host/edgevla-fw",
    "host-asan": "build/host-asan/edgevla-fw",
    "qemu-m7": "build/qemu-m7/edgevla-fw.elf",
}
NEEDS = {"host": ["make", "cc"], "host-asan": ["make", "cc"],
         "qemu-m7": ["make", "arm-none-eabi-gcc"]}


class FirmwareBuildError(RuntimeError):
    pass


def mcu_dir() -> Path:
    """mcu/ of this checkout (EDGEVLA_MCU_DIR overrides, e.g. for an installed wheel)."""
    env = os.environ.get("EDGEVLA_MCU_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "mcu"
    if not (d / "Makefile").is_file():
        raise FirmwareBuildError(f"firmware sources not found: {d}/Makefile is missing "
                                 "(set EDGEVLA_MCU_DIR to the repository's mcu/ folder)")
    return d


def missing_tools(target: str) -> list[str]:
    return [t for t in NEEDS.get(target, ["make"]) if shutil.which(t) is None]


def ensure_built(target: str = "host") -> Path:
    """Run `make -C mcu TARGET` (a no-op when up to date); returns the firmware binary."""
    if target not in TARGETS:
        raise FirmwareBuildError(f"unknown firmware target {target!r}; known: "
                                 f"{', '.join(TARGETS)}")
    missing = missing_tools(target)
    if missing:
        raise FirmwareBuildError(f"building {target} needs {', '.join(missing)} on PATH "
                                 "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                 "qemu-system-arm, or `make install`)")
    d = mcu_dir()
    (d / "build").mkdir(exist_ok=True)
    with open(d / "build" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest workers and CLIs may build concurrently
        r = subprocess.run(["make", "-s", "-C", str(d), target], capture_output=True,
                           text=True)
    if r.returncode != 0:
        raise FirmwareBuildError(f"make -C {d} {target} failed:\n{r.stdout}\n{r.stderr}")
    return d / TARGETS[target]


def ensure_tool(target: str) -> Path:
    """Build the host test tools (ctl_replay, fuzz_decoder, ...) of `host` or `host-asan`."""
    ensure_built(target)
    return mcu_dir() / "build" / target
