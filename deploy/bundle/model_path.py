"""The model path rule, in one place.

A graph names a model bundle in ``params.model``. The value may start with ``~``; a relative
value is taken relative to the graph's folder when the bundle is there (a board bundle ships
``graph.yaml`` next to ``model/``), else relative to the working directory. A folder is a
bundle when it holds ``manifest.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevla.deploy.bundle.manifest import MANIFEST_FILE

def is_bundle(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def model_path(value: str | os.PathLike[str], graph_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``params.model: value`` points, by the rule above (not checked to be a bundle)."""
    p = Path(os.path.expanduser(str(value)))
    if not p.is_absolute() and graph_dir and (Path(graph_dir) / p).exists():
        return (Path(graph_dir) / p).resolve()
    return p


def require_bundle(value: str | os.PathLike[str], graph_dir: str | os.PathLike[str] | None,
                   who: str) -> Path:
    """`model_path`, refused with a one-line reason when it is not a bundle."""
    p = model_path(value, graph_dir)
    if not is_bundle(p):
        raise FileNotFoundError(f"{who}: params.model {str(value)!r} -> {p} is not a model "
                                f"bundle (no {MANIFEST_FILE}); export one with `edgevla export`")
    return p


def stage_model(params: dict, who: str) -> Path:
    """The bundle of a model stage's ``params``: ``model``, relative to ``params.graph_dir`` when
    given (`edgevla run` and `check` have already made it absolute by the graph's folder)."""
    if "model" not in params:
        raise ValueError(f"{who}: params.model (model bundle directory) is required")
    return require_bundle(params["model"], params.get("graph_dir"), who)
