"""The size and import rules of the product code (actors, training, deploy, firmware_bridge).

No file over 500 lines and no function over 80, so each module keeps one job; project modules
imported at module level, so the import contract (`.importlinter`) sees every dependency. A
project import inside a function is allowed only where the imported module loads torch at import,
and the line (or the comment line heading its group of imports) says so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("actors", "training", "deploy", "firmware_bridge")
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
                  if "__pycache__" not in p.parts)


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_the_walk_finds_the_product_code():
    assert len(_modules()) > 100


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_stay_small(path):
    text = path.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_FILE_LINES, f"{path.relative_to(ROOT)}: {n_lines} lines"
    long = [f"{f.name} ({f.end_lineno - f.lineno + 1} lines)" for f in _functions(ast.parse(text))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.relative_to(ROOT)}: {', '.join(long)}"


def _unexplained_lazy_imports(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for func in _functions(ast.parse(text)):
        for node in ast.walk(func):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module is None and isinstance(node, ast.Import):
                module = next((a.name for a in node.names if a.name.startswith("edgevla")), None)
            if not (module or "").startswith("edgevla"):
                continue
            above = node.lineno - 2  # the comment may head a group of such imports
            while above >= 0 and lines[above].strip().startswith(("from edgevla", "import edgevla")):
                above -= 1
            if "#" not in lines[node.lineno - 1] and not lines[above].strip().startswith("#"):
                found.append(f"{path.relative_to(root)}:{node.lineno} {module}")
    return found


def test_project_imports_inside_functions_say_why():
    found = [line for p in _modules() for line in _unexplained_lazy_imports(p)]
    assert not found, "imported inside a function with no reason given:\n" + "\n".join(found)


def test_the_import_rule_notices_an_unexplained_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from edgevla.actors.wire.messages import Frame\n    return Frame\n")
    assert _unexplained_lazy_imports(probe, tmp_path) == ["probe.py:2 edgevla.actors.wire.messages"]
