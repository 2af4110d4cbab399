"""Choose which of a cosmic-ray work database's mutants run (run by scripts/mutation.py inside the
cosmic-ray environment). Those left out are marked skipped with the reason; prints a JSON
count of each reason.

Two reductions, both stated in the report:

- Relational operators: of the five replacements cosmic-ray makes for each comparison, only the
  two that the others' tests imply are run. A test set that tells ``a < b`` from ``a <= b`` and
  from ``a != b`` also tells it from ``>``, ``>=`` and ``==`` (Kaminski, Ammann, Offutt, "Better
  predicate testing", AST 2011: the sufficient ROR subset, whose third member, the constant
  ``False``/``True``, cosmic-ray has no operator for). ``is``/``in`` tests are only negated
  (``is`` <-> ``is not``, ``in`` <-> ``not in``): ``x is not None`` made ``x < None`` is a
  TypeError any test finds and says nothing of the tests.
- ``--sample N``: a module with more mutants than N runs a random N of them (fixed seed), when a
  full run does not fit the time; the report gives the count that did not run.

    python scripts/mutation_select.py WORK_DB.sqlite [--sample N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
import re

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import WorkerOutcome, WorkResult

SUFFICIENT_ROR = {
    "Lt": {"LtE", "NotEq"}, "LtE": {"Lt", "Eq"}, "Gt": {"GtE", "NotEq"}, "GtE": {"Gt", "Eq"},
    "Eq": {"LtE", "GtE"}, "NotEq": {"Lt", "Gt"},
    "Is": {"IsNot"}, "IsNot": {"Is"}, "In": {"NotIn"}, "NotIn": {"In"},
}
_ROR = re.compile(r"core/ReplaceComparisonOperator_([A-Za-z]+?)_([A-Za-z]+)$")


def subsumed(operator: str) -> bool:
    m = _ROR.match(operator)
    return bool(m) and m.group(2) not in SUFFICIENT_ROR.get(m.group(1), ())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work_db")
    ap.add_argument("--sample", type=int, default=0, help="run at most N mutants (0: all)")
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args(argv)
    counts = {"subsumed": 0, "not_sampled": 0, "to_run": 0}
    with use_db(args.work_db, WorkDB.Mode.open) as db:
        pending = sorted(db.pending_work_items, key=lambda w: w.job_id)
        keep = []
        for item in pending:
            if subsumed(item.mutations[0].operator_name):
                db.set_result(item.job_id, WorkResult(
                    worker_outcome=WorkerOutcome.SKIPPED, output="subsumed relational mutant"))
                counts["subsumed"] += 1
            else:
                keep.append(item)
        if 0 < args.sample < len(keep):
            chosen = {w.job_id for w in random.Random(args.seed).sample(keep, args.sample)}
            for item in keep:
                if item.job_id not in chosen:
                    db.set_result(item.job_id, WorkResult(
                        worker_outcome=WorkerOutcome.SKIPPED, output="not sampled"))
                    counts["not_sampled"] += 1
            keep = [w for w in keep if w.job_id in chosen]
        counts["to_run"] = len(keep)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
