"""`make test-under-load`: the timing-sensitive tests (marker ``timing``) beside CPU hogs.

CI runs on a shared 2-core machine that other jobs load; a test that passes only on an idle
machine rejects good work. This runs ``pytest -m timing`` ROUNDS times in a row while HOGS busy
loops compete for the cores, and writes one line per round to the log (out/test-under-load.log):
pass or fail, duration, and the failing tests. Exit 0 only if every round passed.

    python scripts/test_under_load.py [--rounds 10] [--hogs 2] [--log PATH] [-- PYTEST_ARGS]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HOG = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--hogs", type=int, default=2, help="busy-loop processes beside the tests")
    ap.add_argument("--log", default="out/test-under-load.log")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args(argv)
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    failed_rounds = 0
    try:
        with log.open("w") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} pytest -m timing, "
                      f"{args.hogs} CPU hogs, {os.cpu_count()} cores, {args.rounds} rounds\n")
            for k in range(1, args.rounds + 1):
                t0 = time.monotonic()
                r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "timing",
                                    "-p", "no:cacheprovider", *args.pytest_args],
                                   capture_output=True, text=True)
                dt = time.monotonic() - t0
                summary = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
                failing = sorted(set(re.findall(r"^FAILED (\S+)", r.stdout, flags=re.M)))
                line = (f"round {k}/{args.rounds}: {'pass' if r.returncode == 0 else 'FAIL'} "
                        f"in {dt:.0f} s: {summary}" + (f" {failing}" if failing else ""))
                print(line, flush=True)
                out.write(line + "\n")
                out.flush()
                if r.returncode != 0:
                    failed_rounds += 1
                    out.write(r.stdout[-6000:] + "\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"{args.rounds - failed_rounds}/{args.rounds} rounds passed; log: {log}")
    return 1 if failed_rounds else 0


if __name__ == "__main__":
    sys.exit(main())
