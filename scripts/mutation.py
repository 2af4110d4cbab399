"""`make mutation`: mutation testing of the core modules with cosmic-ray.

Each module is mutated in its own copy of the checkout (the checkout itself is never touched,
so an interrupted run leaves no mutant behind) and only its own fast tests run against each
mutant; modules run side by side (``--jobs``). Results go to docs/mutation/REPORT.md (per
module: killed / survived / equivalent, and every survivor with its line and the change) and
docs/mutation/results.json.

Two passes per module: every mutant against the tests with hypothesis properties capped at
``--examples`` examples (hundreds of runs of the same tests), then each survivor of that pass
again with the properties' full counts; only what survives both is reported as survived.

Equivalent mutants (a change that cannot alter behaviour) are listed in
docs/mutation/equivalent.json as {module: {"LINE:OPERATOR": "why it is equivalent"}}; they
count apart from the score.

    python scripts/mutation.py [--modules NAME,...] [--jobs N] [--sample N] [--timeout S]
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from edgevla.actors.console.output_files import write_text_whole

ROOT = Path(__file__).resolve().parents[1]
CR_VENV = ROOT / ".venv-mutation"
OUT = ROOT / "docs" / "mutation"
PY = ROOT / ".venv" / "bin" / "python"

# module -> the tests that own it (fast, no processes)
MODULES = {
    "executor_core": ("actors/executor/core.py", ["tests/actors/test_executor_core_rules.py",
                                                  "tests/actors/test_executor_core.py"]),
    "blending": ("actors/executor/blending.py", ["tests/actors/test_blending.py"]),
    "request_policy": ("actors/executor/request_policy.py",
                       ["tests/actors/test_request_policy_rules.py", "tests/actors/test_governor.py"]),
    "governor": ("actors/executor/governor.py", ["tests/actors/test_governor_rules.py",
                                                 "tests/actors/test_governor.py"]),
    # shm's tests send messages whose large arrays travel as segment descriptors
    "message_codec": ("actors/wire/codec.py", ["tests/actors/test_messages.py",
                                               "tests/actors/test_shm.py"]),
    "shm": ("actors/wire/shm.py", ["tests/actors/test_shm_rules.py", "tests/actors/test_shm.py"]),
    "restart_policy": ("actors/runtime/restart_policy.py", ["tests/actors/test_restart_policy.py"]),
    "link_codec": ("firmware_bridge/link/codec.py",
                   ["tests/firmware_bridge/test_link_codec_rules.py",
                    "tests/firmware_bridge/test_bridge_protocol.py",
                    "tests/firmware_bridge/test_spec_vectors.py"]),
    "clock_sync": ("firmware_bridge/link/clock_sync.py",
                   ["tests/firmware_bridge/test_clock_sync.py",
                    "tests/firmware_bridge/test_bridge_feetech_clock.py"]),
    "recorder_commit": ("actors/recording/checkpoint_file.py",
                        ["tests/actors/test_checkpoint_file_rules.py", "tests/actors/test_recorder.py"]),
    # the manifest's own tests; the export round trips in the same file take minutes per mutant
    "bundle_manifest": ("deploy/bundle/manifest.py",
                        ["tests/deploy/test_manifest_rules.py"] +
                        [f"tests/deploy/test_deploy.py::{t}" for t in (
                            "test_mean_std_roundtrip", "test_min_max_maps_range_to_unit_interval",
                            "test_identity_and_bad_mode", "test_manifest_errors_name_the_field",
                            "test_manifest_contents", "test_board_bundle")]),
}
# Modules whose every mutant would take too long for `make mutation` on 2 cores run a fixed
# random sample of them (seed 20; --sample 0 runs all): the executor core's properties simulate
# whole runs, shm's tests publish through real segments, the manifest's export a bundle.
SAMPLE = {"executor_core": 150, "shm": 150, "bundle_manifest": 60}
# Operators that only multiply mutants without testing anything new (every binary operator
# swapped for every other: bit shifts and powers in float code). Relational replacements are
# narrowed further by scripts/mutation_select.py.
EXCLUDED_OPERATORS = [
    r"core/ReplaceBinaryOperator_.*_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod)_.*",
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


def _env(tree: Path, capped: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree / "_import"))
    env.pop("EDGEVLA_MAX_EXAMPLES", None)
    if capped:
        env["EDGEVLA_MAX_EXAMPLES"] = str(capped)
    return env


def _tests_fail(tree: Path, tests: list[str], timeout: float, capped: int | None) -> bool:
    try:
        r = subprocess.run([PY, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                           cwd=tree, env=_env(tree, capped), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True  # a mutant that hangs the tests is caught as well
    return r.returncode != 0


def _run_module(name: str, args: argparse.Namespace, work: Path) -> dict:
    path, tests = MODULES[name]
    tree = work / name
    tree.mkdir()
    _copy_tree(tree)
    t_base = time.monotonic()
    if _tests_fail(tree, tests, 600, args.examples):
        raise RuntimeError(f"{name}: the tests fail on the unmutated code: {' '.join(tests)}")
    # a mutant that makes the tests loop runs into this, far above the clean run's time
    timeout = max(args.timeout, 5 * (time.monotonic() - t_base))
    cfg, db = work / f"{name}.toml", work / f"{name}.sqlite"
    test_cmd = f"{PY} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    cfg.write_text(f'[cosmic-ray]\nmodule-path = "{path}"\ntimeout = {timeout:.0f}\n'
                   f'excluded-modules = []\ntest-command = "{test_cmd}"\n'
                   f'[cosmic-ray.distributor]\nname = "local"\n'
                   f'[cosmic-ray.filters.operators-filter]\nexclude-operators = '
                   f'{json.dumps(EXCLUDED_OPERATORS)}\n')
    env, cr = _env(tree, args.examples), CR_VENV / "bin"
    for step in (["cosmic-ray", "init", cfg, db], ["cr-filter-operators", db, cfg],
                 ["cr-filter-pragma", db]):
        subprocess.run([cr / step[0], *step[1:]], cwd=tree, env=env, check=True,
                       capture_output=True)
    chosen = json.loads(subprocess.run(
        [cr / "python", ROOT / "scripts" / "mutation_select.py", db, "--sample",
         str(SAMPLE.get(name, 0) if args.sample is None else args.sample)],
        cwd=tree, env=env, check=True, capture_output=True, text=True).stdout)
    print(f"mutation: {path}: {chosen['to_run']} mutants against {', '.join(tests)} "
          f"(timeout {timeout:.0f} s each)", flush=True)
    t0 = time.monotonic()
    _exec_stoppable([cr / "cosmic-ray", "exec", cfg, db], cwd=tree, env=env)
    rows = subprocess.run([cr / "python", ROOT / "scripts" / "mutation_results.py", db],
                          cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    res = {"module": name, "path": path, "tests": tests, "mutants": json.loads(rows),
           "examples_cap": args.examples, "subsumed": chosen["subsumed"],
           "not_run": chosen["not_sampled"],
           "not_run_why": f"a random {chosen['to_run']} of them ran (seed 20)"
           if chosen["not_sampled"] else ""}
    _recheck([res], tree, timeout * 4, "killed with the properties' full example counts")
    res["seconds"] = round(time.monotonic() - t0)
    return res


# the cosmic-ray runs under way: a SIGTERM reaches only this process, and stops them too
_CR_RUNS: set[subprocess.Popen] = set()


def _exec_stoppable(cmd: list, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _CR_RUNS.add(proc)
    try:
        _, err = proc.communicate()
    finally:
        _CR_RUNS.discard(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"cosmic-ray exec stopped (exit {proc.returncode}): "
                           f"{err.decode(errors='replace')[-500:]}")


def _stop(*_) -> None:
    for proc in list(_CR_RUNS):
        proc.terminate()
    sys.exit(143)


def _apply(tree: Path, patch: str, reverse: bool = False) -> bool:
    """Apply one of cosmic-ray's mutation diffs (headers ``--- aPATH`` / ``+++ bPATH``)."""
    lines = patch.splitlines()
    body = [ln for ln in lines if not ln.startswith("--- mutation diff")]
    body = [("--- " + ln[5:] if ln.startswith("--- a") else "+++ " + ln[5:]
             if ln.startswith("+++ b") else ln) for ln in body]
    r = subprocess.run(["patch", "-p0", "-s", *(["-R"] if reverse else [])], cwd=tree,
                       input="\n".join(body) + "\n", text=True, capture_output=True)
    return r.returncode == 0


def _recheck(results: list[dict], tree: Path, timeout: float, why: str,
             equivalents: dict[str, dict[str, str]] | None = None) -> None:
    """Run each survivor against the tests as they are now, with full example counts; a
    survivor they catch is marked killed (``recheck``), measured, not assumed. Survivors
    already reasoned equivalent are not run again."""
    for res in results:
        equivalent = (equivalents or {}).get(res["module"], {})
        for m in res["mutants"]:
            if m["outcome"] != "survived" or not m.get("patch") or \
                    f"{m['line']}:{m['operator']}" in equivalent:
                continue
            if not _apply(tree, m["patch"]):
                m["recheck"] = "does not apply to the current code"
                continue
            try:
                caught = _tests_fail(tree, res["tests"], timeout, None)
            finally:
                _apply(tree, m["patch"], reverse=True)
            if caught:
                m["outcome"], m["recheck"] = "killed", why
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
             "`make mutation` (cosmic-ray 8.4.6 on a copy of the checkout; each module against "
             "its own tests). Score = killed / (killed + survived); equivalent mutants apart, "
             "each with its reason in `equivalent.json`.", "",
             "Each mutant runs first against the tests with hypothesis properties capped at a "
             "few examples; every survivor of that pass runs again with the full counts (in "
             "brackets: how many of the killed that second pass caught). `--recheck` runs the "
             "survivors again against the tests as they are now.", "",
             "Relational mutants: only the sufficient subset runs (for `a < b`: `<=` and `!=`; "
             "Kaminski, Ammann, Offutt 2011); `is`/`in` only negated "
             "(`scripts/mutation_select.py`). Column 'subsumed' counts those left out.", "",
             "Time: wall time of a module's run on this 2-core machine, with other modules' runs "
             "beside it (`--jobs 2`, the default).", "",
             "| module | tests | mutants run | killed | survived | equivalent | subsumed | score "
             "| time |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        rechecked = sum(1 for m in s["mutants"] if m.get("recheck", "").startswith("killed"))
        not_run = f" (+{s['not_run']} not run: {s['not_run_why']})" if s.get("not_run") else ""
        lines.append(f"| `{s['path']}` | {', '.join(f'`{t}`' for t in s['tests'])} | "
                     f"{len(s['mutants'])}{not_run} | {s['killed']}"
                     f"{f' ({rechecked})' if rechecked else ''} | {s['survived']} | "
                     f"{s['equivalent']} | {s.get('subsumed', '-')} | {s['score']} | "
                     f"{'-' if s.get('seconds') is None else str(s['seconds']) + ' s'} |")
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
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="modules mutated side by side")
    ap.add_argument("--examples", type=int, default=25,
                    help="hypothesis examples per property in the first pass")
    ap.add_argument("--sample", type=int, default=None,
                    help="run a random N of each module's mutants when it has more (0: all; "
                         f"default: all, except {SAMPLE})")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="least seconds per mutant's tests (5x the clean run when more)")
    ap.add_argument("--recheck", action="store_true",
                    help="run only the survivors of the last run against the current tests")
    args = ap.parse_args(argv)
    # a stop (timeout, kill) ends like Ctrl-C: the copies of the checkout are removed on the way out
    signal.signal(signal.SIGTERM, _stop)
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

    finished: dict[str, dict] = {}

    def save() -> list[dict]:  # after each module: a run stopped later keeps what it finished
        # merged into the file as it is now: runs of other modules side by side keep theirs
        if results_path.is_file():
            previous.update({r["module"]: r for r in json.loads(results_path.read_text())})
        previous.update(finished)
        summaries = [_summarise(previous[n], equivalents.get(n, {})) for n in MODULES
                     if n in previous]
        write_text_whole(results_path, json.dumps(
            [{k: v for k, v in s.items() if k != "survivors"} for s in summaries], indent=1) + "\n")
        write_text_whole(OUT / "REPORT.md", _report(summaries, equivalents))
        return summaries

    with tempfile.TemporaryDirectory(prefix="edgevla-mutation-") as tmp:
        work = Path(tmp)
        if args.recheck:
            (work / "tree").mkdir()
            _copy_tree(work / "tree")
            for n in names:  # against the module's tests as they are listed now
                if n in previous:
                    previous[n]["tests"] = MODULES[n][1]
            _recheck([previous[n] for n in names if n in previous], work / "tree",
                     args.timeout * 4, "killed by the current tests", equivalents)
            finished.update({n: previous[n] for n in names if n in previous})
        else:
            with ThreadPoolExecutor(max(1, args.jobs)) as pool:
                futures = [pool.submit(_run_module, n, args, work) for n in names]
                try:
                    for done in as_completed(futures):
                        res = done.result()
                        finished[res["module"]] = res
                        save()
                        print(f"mutation: {res['path']} done", flush=True)
                except BaseException:  # Ctrl-C, SIGTERM, a failed module: no module starts after
                    pool.shutdown(wait=False, cancel_futures=True)
                    for proc in list(_CR_RUNS):
                        proc.terminate()
                    raise
    for s in save():
        print(f"{s['path']}: {s['killed']} killed, {s['survived']} survived, "
              f"{s['equivalent']} equivalent, score {s['score']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
