"""Every `edgevla ...` command the README shows verbatim is one the CLI accepts.

Commands are taken from fenced code blocks (inline code spans in prose name a command, they
are not meant to be copied whole); lines with placeholders (``[...]``, ``...``, upper-case
words such as FILE or GRAPH) are usage syntax and are left out. Each command is parsed by the real argument parser, so a
flag the README names but the CLI lacks (or that needs a value the README does not give) fails
here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from edgevla.actors.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "models" / "default" / "README.md"]


def _commands(text: str) -> list[str]:
    found = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("edgevla "):
                found.append(line)
    out = []
    for cmd in found:
        words = cmd.split()
        if "..." in cmd or "[" in cmd or " / " in cmd or any(
                w.isupper() and len(w) > 1 and w.isalpha() for w in words[1:]):
            continue  # usage syntax
        out.append(cmd)
    return sorted(set(out))


def _all_commands() -> list[str]:
    return [c for doc in DOCS if doc.is_file() for c in _commands(doc.read_text())]


def test_the_readme_shows_commands_at_all():
    assert len(_all_commands()) >= 5


@pytest.mark.parametrize("cmd", _all_commands())
def test_readme_command_parses(cmd):
    parser = build_parser()
    try:
        args = parser.parse_args(shlex.split(cmd)[1:])
    except SystemExit as exc:  # argparse's way of refusing
        pytest.fail(f"README command does not parse (exit {exc.code}): {cmd}")
    assert getattr(args, "func", None) is not None, cmd
