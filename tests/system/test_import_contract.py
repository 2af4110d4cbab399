"""The import contract (`.importlinter`) holds, and the board set imports without torch.

The contract itself is import-linter's; these tests run it, show that it notices an import
against the layers, and import every module of the board set on an interpreter where the
training stack cannot be imported at all (as on a board with only the base install).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"

# Run in a fresh interpreter: import-linter keeps its settings in module globals.
_LINT = textwrap.dedent("""
    import sys
    from importlinter import configuration
    from importlinter.adapters.building import GraphBuilder
    from importlinter.application.app_config import settings
    from importlinter.application.use_cases import lint_imports

    extra = sys.argv[2:]  # importer imported: one import added to the real graph

    class WithExtraImport(GraphBuilder):
        def build(self, **kwargs):
            graph = super().build(**kwargs)
            if extra:
                graph.add_import(importer=extra[0], imported=extra[1], line_number=1,
                                 line_contents=f"import {extra[1]}")
            return graph

    configuration.configure()
    settings.configure(GRAPH_BUILDER=WithExtraImport())
    sys.exit(0 if lint_imports(config_filename=sys.argv[1], cache_dir=None, no_logo=True) else 1)
""")


def _lint(*extra_import: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _LINT, str(CONFIG), *extra_import], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds():
    r = _lint()
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize("importer, imported, contract", [
    # the wire reaching up into the runtime: against the layers
    ("edgevla.actors.wire.bus", "edgevla.actors.runtime.supervisor", "Layers"),
    # the executor loading torch: against the board boundary
    ("edgevla.actors.executor.core", "torch", "The board set imports no"),
    # two modules of one package importing each other
    ("edgevla.actors.wire.shm", "edgevla.actors.wire.codec", "No circles"),
])
def test_the_contract_notices_an_import_against_it(importer, imported, contract):
    r = _lint(importer, imported)
    assert r.returncode == 1, r.stdout[-3000:]
    broken = [line for line in r.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), r.stdout[-3000:]


BOARD_SET = ("edgevla.actors.wire", "edgevla.actors.console", "edgevla.actors.runtime",
             "edgevla.actors.executor", "edgevla.actors.kinds", "edgevla.actors.recording",
             "edgevla.deploy.bundle", "edgevla.deploy.inference", "edgevla.firmware_bridge")
# The `train` extra of pyproject.toml: none of it is installed on a board.
TRAINING_STACK = ("torch", "torchvision", "lerobot", "mujoco", "transformers", "matplotlib", "onnx",
                  "onnxscript", "datasets", "safetensors", "imageio", "av", "torchcodec",
                  "accelerate", "diffusers", "huggingface_hub", "draccus", "gymnasium", "einops",
                  "tqdm")

_BOARD_IMPORT = textwrap.dedent("""
    import importlib, pkgutil, sys
    blocked, board = set(sys.argv[1].split(",")), sys.argv[2].split(",")

    class NotOnTheBoard:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is not installed on the board")
            return None

    sys.meta_path.insert(0, NotOnTheBoard())
    count, failed = 0, []
    for root in board:
        package = importlib.import_module(root)
        for info in pkgutil.walk_packages(package.__path__, root + "."):
            count += 1
            try:
                importlib.import_module(info.name)
            except ImportError as exc:
                failed.append(f"{info.name}: {exc}")
    import edgevla.actors.cli.main as cli
    try:
        cli.build_parser()  # every subcommand registers without the training stack
    except ImportError as exc:
        failed.append(f"edgevla --help: {exc}")
    print(count)
    print("\\n".join(failed))
    sys.exit(1 if failed else 0)
""")


def test_every_board_module_imports_without_the_training_stack():
    r = subprocess.run([sys.executable, "-c", _BOARD_IMPORT, ",".join(TRAINING_STACK), ",".join(BOARD_SET)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert int(r.stdout.split()[0]) >= 40  # the walk found the modules (not an empty package list)


def test_the_board_set_of_the_contract_is_the_one_tested_here():
    text = CONFIG.read_text()
    source = text.split("source_modules =")[1].split("forbidden_modules")[0].split()
    assert sorted(source) == sorted(BOARD_SET)
