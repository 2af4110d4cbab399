"""Saving a matplotlib figure the one way: PNG, whole or not at all, at the path it reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def png_path(path: str | os.PathLike) -> Path:
    """``path`` with ``.png`` added when it has no suffix (what matplotlib writes then)."""
    p = Path(path)
    return p if p.suffix else p.with_name(p.name + ".png")


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kw: Any) -> Path:
    """Write ``fig`` to ``path`` (``.png`` added if it has no suffix) through a temporary file
    renamed into place, close it, and return the path written."""
    import matplotlib.pyplot as plt

    out = png_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}{out.suffix}")
    try:
        fig.savefig(tmp, **savefig_kw)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return out
