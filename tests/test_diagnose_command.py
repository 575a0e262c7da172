"""dagnet-diagnose end to end on tiny scenes: reports that say SYNTHETIC, paired contrasts,
nothing trained twice, other settings refused, an interrupted run continued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagnet_layers.commands import diagnose

TINY = ["--images", "24", "--scene-size", "64", "--image-size", "32", "--epochs", "1",
        "--batch-size", "4", "--workers", "0", "--no-progress", "--seeds", "0", "1",
        "--presets", "baseline", "gsam", "full"]


@pytest.mark.slow  # trains 2 seeds x 3 presets (about 40 s on 2 cores)
def test_diagnose_runs_resumes_and_reports(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "diag"
    assert diagnose.main([*TINY, "--output-dir", str(out)]) == 0
    report = out / "report"
    text = (report / "report.md").read_text()
    assert text.startswith("# Diagnostic scene benchmark: SYNTHETIC")
    assert "| GSAM | gsam | baseline |" in text and "29.96" not in text  # no paper number
    record = json.loads((report / "report.json").read_text())
    assert record["synthetic"] is True and record["seeds"] == [0, 1]
    # each contrast is the per-seed difference of the two presets' own numbers
    for row in record["contrasts"]:
        for s, diff in zip(record["seeds"], row["local"]["values"], strict=True):
            a = record["runs"][row["with"]][str(s)]["family_map"]["local"]
            b = record["runs"][row["without"]][str(s)]["family_map"]["local"]
            assert diff == pytest.approx(a - b)
    for name in ("family_ap.png", "body_weights_full.png", "attention_gsam.png",
                 "attention_full.png", "adjacency.png"):
        assert (report / name).stat().st_size > 1000, name
    run = out / "runs" / "full" / "seed1"
    diag = json.loads((run / "diagnostic.json").read_text())
    assert diag["synthetic"] is True and set(diag) >= {"bam", "gsam", "lsam", "family_map"}
    # the run's own reports say synthetic too, with no paper column
    assert json.loads((run / "test_report.json").read_text())["data"]["synthetic"] is True
    assert "ap_DAG-Net" not in (run / "test_report.csv").read_text()

    # done is done: a second call trains and diagnoses nothing
    def no_training(argv):
        raise AssertionError(f"trained again: {argv}")

    monkeypatch.setattr("dagnet_layers.commands.train.main", no_training)
    before = (run / "diagnostic.json").stat().st_mtime_ns
    assert diagnose.main([*TINY, "--output-dir", str(out)]) == 0
    assert (run / "diagnostic.json").stat().st_mtime_ns == before

    # other settings in the same folder are refused, naming what differs
    with pytest.raises(SystemExit, match="epochs=1 there, 2 now"):
        diagnose.main([*TINY, "--epochs", "2", "--output-dir", str(out)])
    # scenes written with other settings are never mixed in, even without settings.json
    (out / "settings.json").unlink()
    with pytest.raises(SystemExit, match="n_images=24 there, 30 now"):
        diagnose.main([*TINY, "--images", "30", "--output-dir", str(out)])
    assert not (out / "settings.json").exists()  # nothing recorded for the refused call


def test_an_interrupted_run_is_continued_not_restarted(tmp_path: Path) -> None:
    args = diagnose.build_diagnose_parser().parse_args(["--workers", "0"])
    args.train_args = ["--amp", "none"]
    run = tmp_path / "run"
    fresh = diagnose.train_args_for(run, tmp_path / "s", tmp_path / "c", "full", 3, args)
    assert "--resume" not in fresh and fresh[-2:] == ["--amp", "none"]
    assert fresh[fresh.index("--seed") + 1] == "3" and "--no-pretrained" in fresh
    (run / "checkpoints").mkdir(parents=True)  # a run killed after its first checkpoint
    again = diagnose.train_args_for(run, tmp_path / "s", tmp_path / "c", "full", 3, args)
    assert "--resume" in again


@pytest.mark.parametrize(("argv", "message"), [
    (["--presets", "ful"], "unknown 'ful'"),
    (["--model", "nope"], "unknown 'nope'"),
    (["--corrupt-fraction", "2"], "corrupt-fraction"),
    (["--", "--seed", "3"], "--seed after '--'"),
    # the training runs' arguments, checked as dagnet-train checks them, before any scene
    (["--workers", "-1"], "dagnet-diagnose: error: argument --workers: must be >= 0, got -1"),
    (["--lr", "0"], "dagnet-diagnose: error: argument --lr: must be finite and > 0, got 0.0"),
    (["--", "--max-steps", "0"], "argument --max-steps: must be >= 1, got 0"),
    (["--", "--loss", "focall"], "argument --loss: unknown 'focall'"),
    (["--", "--bogus"], "unrecognized arguments: --bogus"),
    (["--report-dir", "{tmp}/a_file/r"], "argument --report-dir: {tmp}/a_file is a file"),
])
def test_bad_arguments_are_named(tmp_path: Path, argv, message, capsys) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as exc:
        diagnose.main(["--output-dir", str(tmp_path / "x"),
                       *[a.format(tmp=tmp_path) for a in argv]])
    assert exc.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before any scene or run
