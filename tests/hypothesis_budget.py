"""Example counts for hypothesis properties, which `make mutation` may cap.

A property's own count (``examples(200)``) is what the suite runs. The mutation run sets
EDGEVLA_MAX_EXAMPLES for its first pass over every mutant (hundreds of runs of the same tests);
each survivor of that pass is then run again with the full counts before it is reported, so the
cap only makes the run faster, never the score better or worse.
"""

from __future__ import annotations

import os


def example_cap() -> int | None:
    cap = os.environ.get("EDGEVLA_MAX_EXAMPLES", "")
    return int(cap) if cap.isdigit() and int(cap) > 0 else None


def examples(n: int) -> int:
    cap = example_cap()
    return min(n, cap) if cap else n
