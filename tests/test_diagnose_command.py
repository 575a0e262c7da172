"""dagnet-diagnose end to end on tiny sets: reports that say SYNTHETIC, contrasts that are the
runs' own differences, nothing trained twice, other settings refused, names checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagnet_layers.commands import diagnose

TINY = ["--scale", "0.05", "--epochs", "1", "--seeds", "0", "1", "--no-progress"]


@pytest.mark.slow  # trains 3 modules x 21 arms x 2 seeds on tiny sets (about 15 s on 2 cores)
def test_diagnose_runs_resumes_and_reports(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "diag"
    assert diagnose.main([*TINY, "--output-dir", str(out)]) == 0
    report = out / "report"
    text = (report / "report.md").read_text()
    assert text.startswith("# Diagnostic benchmark: SYNTHETIC")
    assert "29.96" not in text  # no paper number beside synthetic ones
    record = json.loads((report / "report.json").read_text())
    assert record["synthetic"] is True and record["seeds"] == [0, 1]
    assert set(record["verdicts"]) == {"bam", "gsam", "lsam"}
    # each contrast is the per-seed difference of the two arms' own primary numbers
    from dagnet_layers.emotic.diagnostic import primary_value

    for c in record["contrasts"]:
        for s, diff in zip(record["seeds"], c["values"], strict=True):
            a = primary_value(record["runs"][c["module"]][c["a"]][str(s)])
            b = primary_value(record["runs"][c["module"]][c["b"]][str(s)])
            assert diff == pytest.approx(a - b)
    primary = [c for c in record["contrasts"] if c["family"] == "primary"]
    assert len(primary) == 10 and all("p_holm" in c and "verdict" in c for c in primary)
    for name in ("arms.png", "scenes.png", "bam_weights_bam.png", "gsam_maps.png",
                 "lsam_graphs.png"):
        assert (report / name).stat().st_size > 1000, name
    run = json.loads((out / "runs" / "lsam" / "gcn" / "seed1.json").read_text())
    assert run["synthetic"] is True and run["arm"] == "gcn" and run["seed"] == 1

    # done is done: a second call trains nothing, and rewrites the report
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr("dagnet_layers.emotic.diagnostic.run_arm", no_training)
    before = (out / "runs" / "lsam" / "gcn" / "seed1.json").stat().st_mtime_ns
    assert diagnose.main([*TINY, "--output-dir", str(out), "--arms", "lsam/gcn",
                          "lsam/patch_sum"]) == 0
    assert (out / "runs" / "lsam" / "gcn" / "seed1.json").stat().st_mtime_ns == before
    assert set(json.loads((report / "report.json").read_text())["runs"]) == {"lsam"}

    # other sizes in the same folder are refused, naming what differs
    with pytest.raises(SystemExit, match="epochs"):
        diagnose.main([*TINY[:2], "--epochs", "2", "--seeds", "0", "--output-dir", str(out)])


@pytest.mark.parametrize(("argv", "message"), [
    (["--modules", "bam", "gcn"], "unknown module 'gcn'"),
    (["--arms", "bam/gate"], "bam has no arm 'gate'; its arms: none, bam"),
    (["--modules", "lsam", "--arms", "bam/oracle"], "MODULE among --modules"),
    (["--scale", "0"], "--scale: must be a finite number > 0"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--seeds", "1", "1"], "repeats a seed"),
])
def test_bad_arguments_are_refused_in_one_line(argv, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        diagnose.main([*argv, "--output-dir", str(tmp_path / "d")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything is written


def test_a_file_in_the_way_of_the_output_folder_is_named(tmp_path, capsys) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit):
        diagnose.main(["--output-dir", str(tmp_path / "taken" / "d")])
    assert "is a file, not a folder" in capsys.readouterr().err
