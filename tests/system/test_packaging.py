"""The wheel holds every module of every folder, mapped into the edgevla namespace."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("actors", "firmware_bridge", "training", "deploy")


@pytest.mark.timeout(300)
def test_wheel_contains_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("edgevla-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (path.suffix in (".yaml", ".xml", ".json")
                                        and path.parent.name in ("graphs", "assets", "vectors")):
                rel = path.relative_to(ROOT / folder)
                if f"edgevla/{folder}/{rel.as_posix()}" not in names:
                    missing.append(f"{folder}/{rel.as_posix()}")
    assert not missing, f"not in the wheel: {missing}"
    entry = [n for n in names if n.endswith("entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry[0]).decode()
    assert "edgevla = edgevla.actors.cli.main:main" in text


def test_runtime_import_loads_no_torch():
    code = ("import sys; import edgevla.actors.cli.main, edgevla.actors.runtime.supervisor, "
            "edgevla.actors.runtime.process, edgevla.actors.kinds.synthetic, edgevla.firmware_bridge; "
            "edgevla.actors.cli.main.build_parser(); "
            "assert 'torch' not in sys.modules and 'lerobot' not in sys.modules, 'torch loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
