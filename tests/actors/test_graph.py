"""Graph files are validated before anything starts; every error names file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis_budget import examples

from edgevla.actors.runtime.graph import GraphError, load_graph, parse_graph

GOOD = """\
name: t
actors:
  cam:
    kind: synthetic_camera
    outputs: {frames: cam/top}
    rate_hz: 30
  stage:
    kind: dummy_stage
    inputs: {in: cam/top}
    outputs: {out: feat}
    replicas: 2
    max_replicas: 3
    restart: {policy: always, max_restarts: 3, backoff_s: 0.1}
    cpu_affinity: [0]
  sink:
    kind: counter_sink
    inputs: {in: feat}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(GraphError) as exc:
        parse_graph(text, "g.yaml")
    return exc.value.problems


def test_good_graph_parses():
    g = parse_graph(GOOD, "g.yaml")
    assert list(g.actors) == ["cam", "stage", "sink"]
    assert g.actors["stage"].replicas == 2 and g.actors["stage"].restart.policy == "always"
    assert g.start_order() == ["cam", "stage", "sink"]
    assert g.balanced_topics() == {"cam/top"}
    assert g.producers()["feat"] == "stage"


def test_example_graphs_are_valid():
    for path in sorted((Path(__file__).parents[2] / "graphs").glob("*.yaml")):
        load_graph(path)


@pytest.mark.parametrize("old, new, line, pattern", [
    ("rate_hz: 30", "rate_hz: -5", 6, r"actors\.cam\.rate_hz must be > 0, got -5"),
    ("kind: dummy_stage", "kind: dummy_stag", 8, r"did you mean 'dummy_stage'"),
    ("replicas: 2", "replicas: two", 11, r"actors\.stage\.replicas must be an integer"),
    ("policy: always", "policy: sometimes", 13, r"must be one of never, on-failure, always"),
    ("cpu_affinity: [0]", "cpu_afinity: [0]", 14, r"cpu_afinity is not a known field "
                                                   r"\(did you mean 'cpu_affinity'\?\)"),
    ("inputs: {in: feat}", "inputs: {in: feet}", 17, r"reads topic 'feet' that no actor "
                                                      r"produces \(did you mean 'feat'\?\)"),
    ("outputs: {out: feat}", "outputs: {bogus: feat}", 10, r"outputs\.bogus is not an output port of kind 'dummy_stage'"),
])
def test_errors_name_file_line_and_field(old, new, line, pattern):
    problems = errors_of(GOOD.replace(old, new))
    assert any(p.startswith(f"g.yaml:{line}: ") and re.search(pattern, p) for p in problems), \
        problems


def test_all_problems_reported_at_once():
    text = GOOD.replace("rate_hz: 30", "rate_hz: 0").replace("replicas: 2", "replicas: 0")
    assert len(errors_of(text)) == 2


def test_missing_rate_for_rate_driven_kind():
    problems = errors_of(GOOD.replace("    rate_hz: 30\n", ""))
    assert any("g.yaml:3: actors.cam.rate_hz is required" in p for p in problems), problems


def test_duplicate_producer_and_yaml_errors():
    dup = GOOD.replace("outputs: {out: feat}", "outputs: {out: cam/top}")
    assert any("already produced by actor 'cam'" in p for p in errors_of(dup))
    assert errors_of("actors: [unclosed")[0].startswith("g.yaml:1: not valid YAML")
    assert "empty" in errors_of("")[0]


def test_remote_binding_requires_curve():
    text = "network: {transport: tcp, host: 0.0.0.0}\n" + GOOD
    assert any("network.curve must be true" in p for p in errors_of(text))


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=300))
@example("=")  # found by this test: YAML's value tag parses but constructs nothing
@example("a: !!int x")  # a tag whose constructor raises ValueError
@example("actors:\n  a: !!timestamp 2020-13-45\n")
def test_arbitrary_text_gives_graph_error_only(text):
    try:
        parse_graph(text, "fuzz.yaml")
    except GraphError as exc:
        assert all(p.startswith("fuzz.yaml") for p in exc.problems)


@settings(max_examples=examples(150), deadline=None)
@given(st.data())
def test_mutated_graphs_give_graph_error_only(data):
    lines = GOOD.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    junk = data.draw(st.sampled_from(["", "  x: [", "rate_hz: {}", "    replicas: -1",
                                      "    kind: 7", "    inputs: 5", "  - a", "\t"]))
    lines[i] = junk
    try:
        parse_graph("\n".join(lines), "fuzz.yaml")
    except GraphError as exc:
        assert all(re.match(r"fuzz\.yaml:\d+: ", p) for p in exc.problems), exc.problems


def test_every_registered_kind_is_an_actor_class():
    from edgevla.actors.runtime.actor import Actor
    from edgevla.actors.runtime.registry import KINDS, resolve

    for kind in KINDS:
        cls = resolve(kind)
        assert isinstance(cls, type) and issubclass(cls, Actor), kind
    with pytest.raises(KeyError, match="unknown actor kind 'nope'"):
        resolve("nope")


def test_check_and_run_refuse_a_graph_whose_model_bundle_is_missing(tmp_path, capsys):
    """`edgevla check` / `run` look at what the graph points to: a wrong model path is one line
    naming file, line and actor, exit 2, and nothing is started."""
    from edgevla.actors.cli.main import main

    shipped = Path(__file__).resolve().parents[2] / "graphs" / "sim.yaml"
    assert main(["check", str(shipped)]) == 0
    assert ": ok" in capsys.readouterr().out
    text = shipped.read_text()
    assert text.count("${GRAPH_DIR}/../../models/default/bundle") == 2
    bad = tmp_path / "sim.yaml"
    bad.write_text(text.replace("${GRAPH_DIR}/../../models/default/bundle", "${GRAPH_DIR}/nope"))
    assert main(["check", str(bad)]) == 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(f"{bad}:" in ln and "is not a model bundle" in ln for ln in lines)
    assert {ln.split(": ")[1] for ln in lines} == {"vision", "decoder"}
    assert main(["run", str(bad), "--duration", "1", "--headless"]) == 2
    assert "graph cannot start here" in capsys.readouterr().out


@pytest.mark.train
def test_check_refuses_a_stage_pointed_at_a_bundle_of_another_policy(tmp_path, capsys):
    # an act_decoder given a SmolVLA bundle would crash-loop under run: check says so up front
    from edgevla.actors.cli.main import main
    from edgevla.deploy.export.smolvla_local import tiny_bundle

    _, smolvla = tiny_bundle("smolvla")
    capsys.readouterr()  # what building it printed
    shipped = Path(__file__).resolve().parents[2] / "graphs" / "sim.yaml"
    bad = tmp_path / "sim.yaml"
    bad.write_text(shipped.read_text().replace("${GRAPH_DIR}/../../models/default/bundle", str(smolvla)))
    assert main(["check", str(bad)]) == 2
    (line,) = capsys.readouterr().out.splitlines()  # vision runs both policies: only the decoder
    assert f"{bad}:" in line and "decoder: kind act_decoder runs act bundles" in line
    assert "holds a smolvla model" in line
