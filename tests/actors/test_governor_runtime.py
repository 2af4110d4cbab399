"""The governor end to end: executor decisions travel to the supervisor and change an actor."""

from __future__ import annotations

import pytest

from runtime_helpers import run_until, start_graph

pytestmark = [pytest.mark.timing, pytest.mark.timeout(120)]

GRAPH = """\
name: gov
defaults: {heartbeat_timeout_s: 3}
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 30
  stage:
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: feat}
    params: {work_ms: 400}
  policy:
    kind: dummy_policy
    inputs: {features: feat}
    outputs: {chunks: chunks}
    params: {horizon: 15, fps: 30}
  executor:
    kind: executor
    inputs: {chunks: chunks}
    outputs: {control: exec/control, requests: exec/requests}
    rate_hz: 100
    params:
      # requests at a fixed rate: the governor's budget is the horizon left at the request
      # that preceded each capture, and the camera here is free-running
      request_rate_hz: 30
      governor:
        enabled: true
        cooldown_ms: 300
        knobs: [{actor: stage, param: work_ms, min: 20, max: 400, factor: 0.5}]
"""


@pytest.mark.parametrize("network", ["", "network: {curve: true}\n"], ids=["plain", "curve"])
def test_governor_lowers_the_slow_stage_through_the_supervisor(run_base, network):
    """Also when every socket uses CURVE: the supervisor hears the executor's commands."""
    sup = start_graph(GRAPH.replace("name: gov\n", "name: gov\n" + network), run_base)
    try:
        stage = sup.replicas["stage"][0]
        assert run_until(sup, lambda: (stage.last_stats.get("actor_stats", {})
                                       .get("work_ms", 400)) < 400, timeout_s=60), \
            sup.governor_commands
        cmds = [c for c in sup.governor_commands if c["name"] == "set_param"]
        assert cmds and all(c["ok"] for c in cmds)
        assert cmds[0]["args"] == {"actor": "stage", "name": "work_ms", "value": 200.0}
        assert cmds[0]["from"].startswith("executor")
    finally:
        sup.stop()
