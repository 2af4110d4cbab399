"""Wrong files and values on the command line: one line naming what is wrong, exit 2, nothing
created, no traceback."""

from __future__ import annotations

import pytest

from edgevla.actors.cli.main import main
from edgevla.actors.console.user_files import UserFileError, read_text, usable_file

MCAP_MAGIC = b"\x89MCAP0\r\n"


@pytest.fixture
def files(tmp_path):
    rec = tmp_path / "run.mcap"
    rec.write_bytes(MCAP_MAGIC + bytes(range(256)))
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x9C]) * 64)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"rec": rec, "noise": noise, "empty": empty, "folder": folder}


def _one_line(capsys) -> str:
    out = capsys.readouterr()
    text = (out.out + out.err).strip()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1]


def test_user_file_reader_names_the_file_and_what_was_expected(files, tmp_path):
    with pytest.raises(UserFileError, match="holds an MCAP recording, not text"):
        read_text(files["rec"], "a graph")
    with pytest.raises(UserFileError, match="holds binary data"):
        read_text(files["noise"], "a graph")
    with pytest.raises(UserFileError, match="is empty"):
        usable_file(files["empty"], "a graph")
    with pytest.raises(UserFileError, match="is a directory"):
        usable_file(files["folder"], "a recording")
    with pytest.raises(UserFileError, match="no such file"):
        usable_file(tmp_path / "nope", "a recording")


@pytest.mark.parametrize("cmd", ["check", "run"])
@pytest.mark.parametrize("which", ["rec", "noise", "empty"])
def test_check_and_run_refuse_files_that_are_no_graph(cmd, which, files, capsys):
    argv = [cmd, str(files[which])] + (["--duration", "1", "--headless"] if cmd == "run" else [])
    assert main(argv) == 2
    line = _one_line(capsys)
    assert str(files[which]) in line and "expected a graph YAML file" in line


def test_inspect_and_replay_refuse_a_directory_and_bad_values(files, tmp_path, capsys,
                                                             monkeypatch):
    assert main(["inspect", str(files["folder"])]) == 2
    assert "is a directory" in _one_line(capsys)
    assert main(["replay", str(files["folder"]), "--step"]) == 2
    assert "is a directory" in _one_line(capsys)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert main(["replay", str(files["rec"]), "--speed", "0"]) == 2
    assert "--speed must be > 0" in _one_line(capsys)
    assert not (tmp_path / "xdg").exists()  # no run directory made for a refused replay


def test_bench_refuses_a_directory_for_json_before_measuring(files, capsys, monkeypatch):
    import edgevla.actors.cli.bench as bench

    monkeypatch.setattr(bench, "load", lambda name: pytest.fail("the benchmark ran"))
    assert main(["bench", "bus", "--quick", "--json", str(files["folder"])]) == 2
    assert "is a directory" in _one_line(capsys)


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_run_and_demo_refuse_a_duration_that_is_not_positive(value, files, capsys):
    for cmd in (["run", str(files["rec"])], ["demo"]):
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--duration", value])
        assert exc.value.code == 2
        assert "--duration" in capsys.readouterr().err


def test_continuations_of_another_run_are_not_joined(tmp_path, caplog):
    from edgevla.actors.recording.mcap_reader import recording_files
    from edgevla.actors.recording.mcap_writer import McapRecording, next_free_path

    def write(run_id: str):
        rec = McapRecording(next_free_path(tmp_path / "out.mcap"), metadata={"run_id": run_id})
        rec.close()

    write("/run/a")
    write("/run/a")  # the same run's recorder restarted: out.1.mcap
    write("/run/b")  # another run recorded onto the same name: out.2.mcap
    assert [p.name for p in recording_files(tmp_path / "out.mcap")] == ["out.mcap", "out.1.mcap"]
    assert "belongs to another run" in caplog.text


def test_run_refuses_to_record_onto_an_existing_file(tmp_path, capsys):
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "graphs" / "skeleton.yaml"
    old = tmp_path / "old.mcap"
    old.write_bytes(MCAP_MAGIC)
    assert main(["run", str(shipped), "--duration", "1", "--headless", "--record", str(old)]) == 2
    assert "exists" in _one_line(capsys)
    assert old.read_bytes() == MCAP_MAGIC and not (tmp_path / "old.1.mcap").exists()


def test_figures_are_png_whole_and_at_the_path_reported(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgevla.actors.console.figures import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "plots" / "timeline")
    assert out == tmp_path / "plots" / "timeline.png" and out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in (tmp_path / "plots").iterdir()] == ["timeline.png"]  # no temp left


def test_an_output_that_cannot_be_written_is_one_line_naming_it(tmp_path, capsys):
    from edgevla.actors.console.output_files import write_json_whole

    # a failed write leaves the old file as it was and no temporary file
    old = tmp_path / "summary.json"
    old.write_text("{}")
    with pytest.raises(TypeError):
        write_json_whole(old, {"x": 1}, indent=object())  # fails half-way through the write
    assert old.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    # a destination that cannot exist: the command says which path, exit 2
    assert main(["dataset", "map", "--out", "/proc/edgevla-no/map.png"]) == 2
    assert _one_line(capsys) == "edgevla dataset: /proc/edgevla-no: No such file or directory"


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "nosuch"])
    assert exc.value.code == 2
    assert "invalid choice: 'nosuch'" in _one_line(capsys)


@pytest.mark.parametrize("cmd", ["train", "eval", "train-default"])
def test_help_shows_each_default_once_and_never_none(cmd, capsys):
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    import re

    # a help that names its default gets no second one
    assert not re.search(r"\(default[^)]*\)\s*\(default", text)


@pytest.mark.parametrize("argv, says", [
    (["demo", "--episodes", "0"], "argument --episodes: expected a whole number >= 1, got '0'"),
    (["dataset", "expert-eval", "--episodes-per-cluster", "-1"],
     "expected a whole number >= 1, got '-1'"),
    (["mcu", "sim", "--watchdog-ms", "-1"], "expected a whole number >= 0, got '-1'"),
])
def test_counts_below_their_least_are_usage_errors(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and says in _one_line(capsys)


def test_a_protocol_argparse_cannot_judge_alone_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "record", "--out", str(tmp_path / "ds"), "--val-cluster", "40"])
    assert exc.value.code == 2
    assert _one_line(capsys) == ("edgevla dataset: ProtocolConfig.val_cluster must be in "
                                 "[0, 10] or None, got 40")
    assert not (tmp_path / "ds").exists()


def test_a_replayed_actor_given_a_parameter_it_does_not_know_is_a_setup_error():
    from edgevla.actors.runtime.inprocess import ActorSetupError, InProcessGraph

    graph = {"executor": {"kind": "executor", "inputs": {"chunks": "c"}, "rate_hz": 100,
                          "params": {"bogus": 1}}}
    with pytest.raises(ActorSetupError, match="actor 'executor' \\(executor\\).*unknown params"):
        InProcessGraph(graph)


def test_a_zero_watchdog_or_state_period_is_accepted_as_the_protocol_defines_it():
    from edgevla.actors.cli.main import build_parser

    args = build_parser().parse_args(["mcu", "sim", "--watchdog-ms", "0", "--state-period-ms", "0"])
    assert (args.watchdog_ms, args.state_period_ms) == (0, 0)  # off / only on GET_STATE
