"""`make mutation`: mutation testing of the core modules with cosmic-ray.

Each module is mutated in a copy of the checkout (the checkout itself is never touched, so an
interrupted run leaves no mutant behind) and only its own fast tests run against each mutant.
Results go to docs/mutation/REPORT.md (per module: killed / survived / equivalent, and every
survivor with its line and the change) and docs/mutation/results.json.

Equivalent mutants (a change that cannot alter behaviour) are listed in
docs/mutation/equivalent.json as {module: {"LINE:OPERATOR": "why it is equivalent"}}; they
count apart from the score.

    python scripts/mutation.py [--modules NAME,...] [--timeout S]
    python scripts/mutation.py --recheck      # only the last run's survivors, current tests

cosmic-ray runs from its own environment (.venv-mutation, made by `make mutation`); the tests
run with the project's .venv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgevla.actors.console.output_files import write_text_whole

ROOT = Path(__file__).resolve().parents[1]
CR_VENV = ROOT / ".venv-mutation"
OUT = ROOT / "docs" / "mutation"

# module -> the tests that own it (fast, no processes). Operators that only multiply mutants
# without testing anything new (every binary operator swapped for every other: bit shifts and
# powers in float code) are filtered out by EXCLUDED_OPERATORS.
MODULES = {
    "restart_policy": ("actors/runtime/restart_policy.py", ["tests/actors/test_restart_policy.py"]),
    "blending": ("actors/executor/blending.py", ["tests/actors/test_blending.py"]),
    "request_policy": ("actors/executor/request_policy.py",
                       ["tests/actors/test_executor_core.py", "tests/actors/test_executor_actor.py"]),
    "clock_sync": ("firmware_bridge/link/clock_sync.py",
                   ["tests/firmware_bridge/test_bridge_feetech_clock.py"]),
    "link_codec": ("firmware_bridge/link/codec.py",
                   ["tests/firmware_bridge/test_bridge_protocol.py",
                    "tests/firmware_bridge/test_spec_vectors.py"]),
}
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod)_.*",
    r"core/ReplaceComparisonOperator_.*_(Is|IsNot|In|NotIn)$",
]


def _copy_tree(dst: Path) -> None:
    """The checkout's files as they are now (tracked and new), and an ``edgevla`` package that
    maps to them, put first on the path so the tests import the copy, not the checkout."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    pkg = dst / "_import" / "edgevla"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for sub in ("actors", "firmware_bridge", "training", "deploy"):
        (pkg / sub).symlink_to(dst / sub)


def _run_module(name: str, path: str, tests: list[str], timeout: float, work: Path) -> dict:
    cfg = work / f"{name}.toml"
    db = work / f"{name}.sqlite"
    py = ROOT / ".venv" / "bin" / "python"
    test_cmd = f"{py} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    cfg.write_text(f'[cosmic-ray]\nmodule-path = "{path}"\ntimeout = {timeout}\n'
                   f'excluded-modules = []\ntest-command = "{test_cmd}"\n'
                   f'[cosmic-ray.distributor]\nname = "local"\n'
                   f'[cosmic-ray.filters.operators-filter]\nexclude-operators = '
                   f'{json.dumps(EXCLUDED_OPERATORS)}\n')
    env = dict(os.environ, PYTHONPATH=str(work / "tree" / "_import"), HYPOTHESIS_PROFILE="mutation")
    cr = CR_VENV / "bin"
    tree = work / "tree"
    subprocess.run([cr / "cosmic-ray", "init", cfg, db], cwd=tree, env=env, check=True,
                   capture_output=True)
    subprocess.run([cr / "cr-filter-operators", db, cfg], cwd=tree, env=env, check=True,
                   capture_output=True)
    subprocess.run([cr / "cr-filter-pragma", db], cwd=tree, env=env, check=True,
                   capture_output=True)
    t0 = time.monotonic()
    subprocess.run([cr / "cosmic-ray", "exec", cfg, db], cwd=tree, env=env, check=True)
    rows = subprocess.run([cr / "python", str(ROOT / "scripts" / "mutation_results.py"), db],
                          cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return {"module": name, "path": path, "tests": tests, "seconds": round(time.monotonic() - t0),
            "mutants": json.loads(rows)}


def _apply(tree: Path, patch: str, reverse: bool = False) -> bool:
    """Apply one of cosmic-ray's mutation diffs (headers ``--- aPATH`` / ``+++ bPATH``)."""
    lines = patch.splitlines()
    body = [ln for ln in lines if not ln.startswith("--- mutation diff")]
    body = [("--- " + ln[5:] if ln.startswith("--- a") else "+++ " + ln[5:]
             if ln.startswith("+++ b") else ln) for ln in body]
    r = subprocess.run(["patch", "-p0", "-s", *(["-R"] if reverse else [])], cwd=tree,
                       input="\n".join(body) + "\n", text=True, capture_output=True)
    return r.returncode == 0


def _recheck(results: list[dict], tree: Path, timeout: float) -> None:
    """Run each survivor of the last run against the tests as they are now; a survivor the
    tests now catch is marked killed (``recheck``), measured, not assumed."""
    py = ROOT / ".venv" / "bin" / "python"
    env = dict(os.environ, PYTHONPATH=str(tree / "_import"), HYPOTHESIS_PROFILE="mutation")
    for res in results:
        for m in res["mutants"]:
            if m["outcome"] != "survived" or not m.get("patch"):
                continue
            if not _apply(tree, m["patch"]):
                m["recheck"] = "does not apply to the current code"
                continue
            try:
                r = subprocess.run([py, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                    *res["tests"]], cwd=tree, env=env, capture_output=True,
                                   timeout=timeout)
                caught = r.returncode != 0
            except subprocess.TimeoutExpired:
                caught = True
            finally:
                _apply(tree, m["patch"], reverse=True)
            if caught:
                m["outcome"], m["recheck"] = "killed", "killed by the current tests"
                m.pop("patch")
            print(f"recheck {res['path']}:{m['line']} {m['operator']}: "
                  f"{'killed' if caught else 'survives'}", flush=True)


def _summarise(res: dict, equivalent: dict[str, str]) -> dict:
    killed = survived = equiv = 0
    survivors = []
    for m in res["mutants"]:
        key = f"{m['line']}:{m['operator']}"
        if m["outcome"] == "killed":
            killed += 1
        elif key in equivalent:
            equiv += 1
        else:
            survived += 1
            survivors.append(m)
    total = killed + survived
    return {**res, "killed": killed, "survived": survived, "equivalent": equiv,
            "score": round(killed / total, 3) if total else None, "survivors": survivors}


def _report(summaries: list[dict], equivalents: dict[str, dict[str, str]]) -> str:
    lines = ["# Mutation testing", "",
             "`make mutation` (cosmic-ray on a copy of the checkout; each module against its own "
             "tests). Score = killed / (killed + survived); equivalent mutants apart, each with "
             "its reason in `equivalent.json`.", "",
             "`--recheck` runs the survivors again against the tests as they are now: those "
             "it catches count as killed (in brackets: how many of the killed that is).", "",
             "| module | tests | mutants run | killed | survived | equivalent | score | time |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        rechecked = sum(1 for m in s["mutants"] if m.get("recheck") == "killed by the current tests")
        not_run = f" (+{s['not_run']} not run: {s['not_run_why']})" if s.get("not_run") else ""
        lines.append(f"| `{s['path']}` | {', '.join(f'`{t}`' for t in s['tests'])} | "
                     f"{len(s['mutants'])}{not_run} | {s['killed']}"
                     f"{f' ({rechecked})' if rechecked else ''} | {s['survived']} | "
                     f"{s['equivalent']} | {s['score']} | "
                     f"{'-' if s['seconds'] is None else str(s['seconds']) + ' s'} |")
    for s in summaries:
        eq = equivalents.get(s["module"], {})
        if s["survivors"] or eq:
            lines += ["", f"## {s['path']}", ""]
        for m in s["survivors"]:
            lines.append(f"- survived: line {m['line']} `{m['operator']}`: {m['diff']}")
        for key, why in eq.items():
            lines.append(f"- equivalent: {key}: {why}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", default=",".join(MODULES),
                    help=f"comma list of: {', '.join(MODULES)}")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant's tests")
    ap.add_argument("--recheck", action="store_true",
                    help="run only the survivors of the last run against the current tests")
    args = ap.parse_args(argv)
    # a stop (timeout, kill) ends like Ctrl-C: the copy of the checkout is removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = [n for n in args.modules.split(",") if n]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        print(f"mutation: unknown module(s) {unknown}; known: {', '.join(MODULES)}",
              file=sys.stderr)
        return 2
    eq_path = OUT / "equivalent.json"
    equivalents = json.loads(eq_path.read_text()) if eq_path.is_file() else {}
    results_path = OUT / "results.json"
    previous = {r["module"]: r for r in json.loads(results_path.read_text())} \
        if results_path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="edgevla-mutation-") as tmp:
        work = Path(tmp)
        (work / "tree").mkdir()
        _copy_tree(work / "tree")
        if args.recheck:
            _recheck([previous[n] for n in names if n in previous], work / "tree", args.timeout)
        for name in [] if args.recheck else names:
            path, tests = MODULES[name]
            print(f"mutation: {path} against {', '.join(tests)}", flush=True)
            previous[name] = _run_module(name, path, tests, args.timeout, work)
    summaries = [_summarise(previous[n], equivalents.get(n, {})) for n in MODULES
                 if n in previous]
    write_text_whole(results_path, json.dumps([{k: v for k, v in s.items() if k != "survivors"}
                                               for s in summaries], indent=1) + "\n")
    write_text_whole(OUT / "REPORT.md", _report(summaries, equivalents))
    for s in summaries:
        print(f"{s['path']}: {s['killed']} killed, {s['survived']} survived, "
              f"{s['equivalent']} equivalent, score {s['score']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
