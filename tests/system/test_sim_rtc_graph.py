"""graphs/sim_rtc.yaml: the project's SmolVLA in three processes with real-time chunking, through
the host firmware to the simulated servos. The executor's requests carry its commitment, the
denoise stage guides every chunk towards it, and with the inference delay (500 ms) well inside
the chunk's horizon (1.67 s) the arm never starves."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from runtime_helpers import run_until

pytestmark = [pytest.mark.train, pytest.mark.timing, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_rtc_sim_graph_guides_every_chunk_and_never_starves(run_base):
    from edgevla.actors.runtime.graph import RestartPolicy, load_graph
    from edgevla.actors.runtime.supervisor import Supervisor

    fast = RestartPolicy(policy="on-failure", max_restarts=3, backoff_s=0.1, backoff_max_s=1.0)
    g = load_graph(ROOT / "graphs" / "sim_rtc.yaml")
    g = replace(g, actors={n: replace(a, restart=fast) for n, a in g.actors.items()})
    assert g.actors["denoise"].inputs["request"] == g.actors["executor"].outputs["requests"]
    sup = Supervisor(g, base_dir=run_base)
    sup.start()
    try:
        def stat(actor, key, default=0):
            return (sup.replicas[actor][0].last_stats or {}).get("actor_stats", {}).get(key, default)

        assert run_until(sup, lambda: stat("executor", "accepted_chunks") >= 8, timeout_s=150)
        ex = sup.replicas["executor"][0].last_stats["actor_stats"]
        rtc = stat("denoise", "rtc", {})
        assert rtc.get("enabled") and rtc["guided"] >= 4, rtc
        # only what the startup requests asked for, before anything was committed, ran unguided
        assert rtc["unguided"] <= ex["requests"]["startup"] and rtc["wrong_shape"] == 0, (rtc, ex)
        # the delay the denoiser guided over: 500 ms simulated + the pipeline, in 33 ms steps
        assert 15 <= rtc["delay_steps"] <= 40, rtc
        assert ex["commitments_sent"] >= 4 and ex["starvation_ticks"] == 0, ex
        assert all(r.restarts == 0 for rs in sup.replicas.values() for r in rs)
        # settable at run time, through the supervisor as `edgevla set` sends it
        assert sup.set_param("denoise", "rtc_schedule", "exp")["ok"]
        bad = sup.set_param("denoise", "rtc_schedule", "cosine")
        assert not bad["ok"] and "rtc_schedule" in bad["errors"][0]
        assert run_until(sup, lambda: stat("denoise", "rtc", {}).get("schedule") == "exp", timeout_s=20)
    finally:
        sup.stop()
