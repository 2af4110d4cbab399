"""Replay runs the shipped graph's actors offline: placeholders expanded as `run` does, no device."""

from __future__ import annotations

from pathlib import Path

from edgevla.actors.graph import load_graph
from edgevla.actors.replay import live_specs

SIM = Path(__file__).resolve().parents[1] / "graphs" / "sim.yaml"


def test_live_actors_of_the_shipped_graph_get_expanded_params_and_no_device():
    g = load_graph(SIM)
    assert "${RUN_DIR}" in g.actors["executor"].params["mcu_port"]
    live = live_specs(g, ["executor", "decoder", "vision"])
    assert "mcu_port" not in live["executor"].params  # offline: the M7 link is not opened
    for name in ("decoder", "vision"):
        model = Path(live[name].params["model"])
        assert "${" not in str(model) and (model / "manifest.json").is_file()
    # an override still wins over the graph's value
    live = live_specs(g, ["vision"], {"vision": {"model": "/elsewhere"}})
    assert live["vision"].params["model"] == "/elsewhere"
