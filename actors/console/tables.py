"""Tables for a terminal of any width: below 100 columns a compact set of columns, and cells
that fold onto a second line instead of being cut, so no number is ever shown as "148…"."""

from __future__ import annotations

from typing import Sequence

from rich.table import Table

COMPACT_BELOW_COLUMNS = 100


def fitted_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]],
                 width: int | None, compact: Sequence[str] = ()) -> Table:
    """``rows`` under ``columns``; where ``width`` is below `COMPACT_BELOW_COLUMNS` only the
    ``compact`` columns (all when empty), in the given order."""
    keep = list(columns)
    if compact and width is not None and width < COMPACT_BELOW_COLUMNS:
        keep = [c for c in columns if c in compact]
    index = [list(columns).index(c) for c in keep]
    t = Table(title=title, title_justify="left")
    for c in keep:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*(row[i] for i in index))
    return t
