"""Checks of a graph against this machine before anything starts.

The graph parser (`edgevla.actors.runtime.graph`) judges the file alone; this looks at what the file
points to. The model bundle of every model stage exists, its manifest is valid and holds a
policy that the stage's kind runs, so a
wrong path is one clear line from `edgevla check` / `edgevla run` instead of a stage actor that
fails its setup and restarts with back-off until someone reads its log.
"""

from __future__ import annotations

from typing import Any

from edgevla.actors.runtime.graph import expand_placeholders
from edgevla.actors.runtime.registry import resolve
from edgevla.deploy.bundle.manifest import load_manifest
from edgevla.deploy.bundle.model_path import stage_model

# kinds whose ``params.model`` is a model bundle (`edgevla.actors.kinds.stages`)
MODEL_STAGE_KINDS = frozenset({"vision", "prefill", "denoise", "act_decoder", "policy"})


def preflight(graph: Any) -> list[str]:
    """Problems as ``file:line: actor: ...`` lines; empty when the graph can start here."""
    problems: list[str] = []
    for name, a in graph.actors.items():
        if a.kind not in MODEL_STAGE_KINDS:
            continue
        params = expand_placeholders(dict(a.params), graph.path, None)
        try:
            path = stage_model(params, name)
            manifest = load_manifest(path)
        except (ValueError, FileNotFoundError) as exc:  # BundleError is a ValueError
            problems.append(f"{graph.path}:{a.line}: {exc}")
            continue
        runs = resolve(a.kind).policies
        if manifest.policy not in runs:
            problems.append(f"{graph.path}:{a.line}: {name}: kind {a.kind} runs {'/'.join(runs)} "
                            f"bundles, {path} holds a {manifest.policy} model")
    return problems
