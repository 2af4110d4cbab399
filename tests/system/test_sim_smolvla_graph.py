"""graphs/sim_smolvla.yaml: SmolVLA split into vision, prefill and denoise processes in the sim
profile, the governor holding the denoise steps. Run here on the tiny SmolVLA bundle (the graph
is made for the base-size one, `edgevla export --smolvla-base`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import run_until, with_model

pytestmark = [pytest.mark.train, pytest.mark.timing, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_smolvla_sim_graph_runs_its_three_stages_to_the_servos(run_base):
    from edgevla.actors.runtime.graph import RestartPolicy, load_graph
    from edgevla.actors.runtime.supervisor import Supervisor
    from edgevla.deploy.export.smolvla_local import tiny_bundle

    _, bundle = tiny_bundle("smolvla")
    fast = RestartPolicy(policy="on-failure", max_restarts=3, backoff_s=0.1, backoff_max_s=1.0)
    g = with_model(load_graph(ROOT / "graphs" / "sim_smolvla.yaml"), bundle, fast)
    assert {"vision", "prefill", "denoise"} <= set(g.actors)
    sup = Supervisor(g, base_dir=run_base)
    sup.start()
    try:
        def stat(actor, key, default=0):
            return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get(key, default)

        assert run_until(sup, lambda: stat("executor", "accepted_chunks") >= 3, timeout_s=120)
        assert all(r.restarts == 0 for rs in sup.replicas.values() for r in rs)
        assert stat("denoise", "denoise_steps") in range(2, 11)
        # each actor reports its peak resident set (VmHWM) beside the current one
        for a in sup.status()["actors"]:
            assert a["rss_peak_mb"] >= a["rss_mb"] > 0, a["actor"]
        gov = stat("executor", "governor", {})
        assert gov.get("enabled") and "denoise.denoise_steps" in gov.get("knobs", {}), gov
    finally:
        sup.stop()
