"""Print a cosmic-ray work database's results as JSON rows (run by scripts/mutation.py inside the
cosmic-ray environment, which has cosmic_ray importable)."""

from __future__ import annotations

import json
import sys

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome


def main(db_path: str) -> None:
    rows = []
    with use_db(db_path, WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue  # filtered: an excluded operator or a `pragma: no mutate` line
            (m,) = item.mutations
            # a mutant the tests time out on, or that cannot even import, is caught as well
            caught = result.test_outcome in (TestOutcome.KILLED, TestOutcome.INCOMPETENT)
            diff = [ln for ln in (result.diff or "").splitlines()
                    if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
            row = {"line": m.start_pos[0], "operator": m.operator_name,
                   "outcome": "killed" if caught else "survived",
                   "diff": " / ".join(d.strip() for d in diff)[:200]}
            if not caught:  # kept whole, so `mutation.py --recheck` can apply it again
                row["patch"] = result.diff
            rows.append(row)
    rows.sort(key=lambda r: (r["line"], r["operator"]))
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1])
