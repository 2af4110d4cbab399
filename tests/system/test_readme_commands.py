"""Every `edgevla ...` command the README shows verbatim works.

Commands are taken from fenced code blocks (inline code spans in prose name a command, they
are not meant to be copied whole); lines with placeholders (``[...]``, ``...``, upper-case
words such as FILE or GRAPH) are usage syntax and are left out. Each command is parsed by the
real argument parser, so a flag the README names but the CLI lacks (or that needs a value the
README does not give) fails here.

Then each one is run as typed, in order, in an empty folder, unless the README marks it with a
trailing comment (it takes longer than a minute, or needs the board or its SDK). What the
marked ones would have made is made small by the project's own commands: a one-episode
dataset, a two-step training run, a running graph for `status`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edgevla.actors.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "models" / "default" / "README.md"]


def _command_lines(text: str) -> list[tuple[str, str]]:
    """(command, its trailing comment) of every verbatim command, in the README's order."""
    out = []
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            cmd, _, comment = line.partition("#")
            cmd = cmd.strip()
            if not cmd.startswith("edgevla "):
                continue
            words = cmd.split()
            if "..." in cmd or "[" in cmd or " / " in cmd or any(
                    w.isupper() and len(w) > 1 and w.isalpha() for w in words[1:]):
                continue  # usage syntax
            out.append((cmd, comment.strip()))
    return out


def _commands(text: str) -> list[str]:
    return sorted({c for c, _ in _command_lines(text)})


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


# The commands a folder needs before the README's next unmarked command can run, made small.
# Keyed by the marked command they stand in for.
SMALL_STAND_INS = {
    "edgevla dataset record": ["dataset", "record", "--out", "data/teabag", "--only-clusters", "0",
                               "--episodes", "1", "--no-progress"],
    "edgevla train": ["train", "--policy", "act", "--dataset", "data/teabag", "--out", "runs/act",
                      "--steps", "2", "--save-every", "2", "--batch-size", "2", "--no-progress",
                      "--set", "dim_model=32", "--set", "dim_feedforward=64",
                      "--set", "n_encoder_layers=1", "--set", "n_decoder_layers=1"],
}


def _edgevla(args: list[str], cwd: Path, env: dict, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "edgevla.actors.cli.main", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_every_unmarked_readme_command_runs_as_typed(tmp_path):
    lines = _command_lines((ROOT / "README.md").read_text())
    unmarked = [c for c, comment in lines if not comment]
    assert len(unmarked) >= 3, lines
    env = {**os.environ, "EDGEVLA_RUN_BASE": tempfile.mkdtemp(prefix="ev")}
    running = None
    try:
        for cmd, comment in lines:
            stand_in = next((v for k, v in SMALL_STAND_INS.items() if cmd.startswith(k)), None)
            if comment:
                if stand_in is not None:
                    r = _edgevla(stand_in, tmp_path, env)
                    assert r.returncode == 0, (stand_in, r.stdout[-1500:], r.stderr[-1500:])
                continue
            if cmd.split()[1] in ("status", "stop", "scale", "restart") and running is None:
                # they talk to a running graph: start one that needs no model or device
                running = subprocess.Popen(
                    [sys.executable, "-m", "edgevla.actors.cli.main", "run",
                     str(ROOT / "graphs" / "skeleton.yaml"), "--headless", "--duration", "60"],
                    cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _wait_for_live_run(Path(env["EDGEVLA_RUN_BASE"]))
            r = _edgevla(shlex.split(cmd)[1:], tmp_path, env)
            print(f"{cmd}: exit {r.returncode}")
            assert r.returncode == 0, (cmd, r.stdout[-1500:], r.stderr[-1500:])
    finally:
        if running is not None:
            running.terminate()
            running.wait(timeout=30)


def _wait_for_live_run(base: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(base.glob("*/supervisor.pid")):
            return
        time.sleep(0.2)
    raise AssertionError(f"no run appeared under {base}")
