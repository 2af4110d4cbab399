"""Saving a matplotlib figure the one way: PNG, whole or not at all, at the path it reports."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgevla.actors.console.output_files import write_whole


def png_path(path: str | os.PathLike) -> Path:
    """``path`` with ``.png`` added when it has no suffix (what matplotlib writes then)."""
    p = Path(path)
    return p if p.suffix else p.with_name(p.name + ".png")


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kw: Any) -> Path:
    """Write ``fig`` to ``path`` (``.png`` added if it has no suffix) through a temporary file
    renamed into place, close it, and return the path written."""
    import matplotlib.pyplot as plt

    try:
        return write_whole(png_path(path), lambda tmp: fig.savefig(tmp, **savefig_kw))
    finally:
        plt.close(fig)
