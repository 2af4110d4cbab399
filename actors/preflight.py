"""Checks of a graph against this machine before anything starts.

The graph parser (`edgevla.actors.graph`) judges the file alone; this looks at what the file
points to. Today: the model bundle of every model stage exists and its manifest is valid, so a
wrong path is one clear line from `edgevla check` / `edgevla run` instead of a stage actor that
fails its setup and restarts with back-off until someone reads its log.
"""

from __future__ import annotations

from typing import Any

# kinds whose ``params.model`` is a model bundle (`edgevla.actors.stages`)
MODEL_STAGE_KINDS = frozenset({"vision", "prefill", "denoise", "act_decoder", "policy"})


def preflight(graph: Any) -> list[str]:
    """Problems as ``file:line: actor: ...`` lines; empty when the graph can start here."""
    from edgevla.actors.stages import resolve_model
    from edgevla.actors.supervisor import expand_placeholders
    from edgevla.deploy.bundle import load_manifest

    problems: list[str] = []
    for name, a in graph.actors.items():
        if a.kind not in MODEL_STAGE_KINDS:
            continue
        params = expand_placeholders(dict(a.params), graph.path, None)
        try:
            load_manifest(resolve_model(params, name))
        except (ValueError, FileNotFoundError) as exc:  # BundleError is a ValueError
            problems.append(f"{graph.path}:{a.line}: {exc}")
    return problems
