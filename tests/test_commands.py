"""The installed commands: declared, answering --help before torch loads, real defaults shown."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dagnet_layers.commands import args as cmd_args

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"dagnet-train": "train_entry", "dagnet-predict": "predict_entry",
            "dagnet-diagnose": "diagnose_entry", "dagnet-demo": "demo_entry",
            "dagnet-emotic-cache": "cache_entry"}


@pytest.mark.parametrize("entry", [pytest.param(e, marks=pytest.mark.quick)
                                   if e == "train_entry" else e
                                   for e in sorted(COMMANDS.values())])  # fmt: skip
def test_help_answers_without_loading_torch(entry: str) -> None:
    code = textwrap.dedent(f"""
        import sys
        from dagnet_layers.commands.entry import {entry}
        try:
            {entry}(["--help"])
        except SystemExit as exit:
            assert exit.code == 0
        heavy = [m for m in ("torch", "timm", "numpy", "PIL") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("HEAVY []"), result.stdout[-300:]
    assert "usage: dagnet-" in result.stdout


def test_train_help_shows_the_real_defaults() -> None:
    text = cmd_args.build_train_parser().format_help()
    assert "(default: None)" not in text
    for key, flag in (("epochs", "--epochs"), ("lr", "--lr"), ("batch_size", "--batch-size"),
                      ("image_size", "--image-size")):  # fmt: skip
        paper, demo = cmd_args.PAPER_DEFAULTS[key], cmd_args.DEMO_DEFAULTS[key]
        assert f"{paper} with a dataset" in " ".join(text.split()), flag
        assert f"{demo} for the demo" in " ".join(text.split()), flag
    assert "runs/dagnet" in text and "default: kl" in " ".join(text.split())


def test_the_commands_are_declared_and_resolve() -> None:
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(COMMANDS)  # every installed command is tested above
    for command, function in COMMANDS.items():
        assert scripts[command] == f"dagnet_layers.commands.entry:{function}"
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_restated_constants_match_the_library() -> None:
    from dagnet_layers.emotic.data import MAX_IMAGE_PIXELS
    from dagnet_layers.emotic.diagnostic import SET_MODULES

    assert cmd_args.MAX_IMAGE_PIXELS == MAX_IMAGE_PIXELS
    from dagnet_layers.emotic.data import EMOTIC_SPLITS

    assert cmd_args.EMOTIC_SPLITS == EMOTIC_SPLITS
    # dagnet-diagnose runs every module's set, in the report's order
    assert cmd_args.DIAGNOSE_MODULES == SET_MODULES == cmd_args.DIAGNOSE_DEFAULTS["modules"]


@pytest.mark.parametrize(("flag", "value", "hint"), [
    ("--model", "dagnet_r50_r81", "dagnet_r50_r18"),
    ("--ablation", "bam_gasm", "bam_gsam"),
    ("--loss", "focall", "focal"),
])
def test_names_are_checked_after_parsing(flag: str, value: str, hint: str, capsys) -> None:
    from dagnet_layers.commands import train

    with pytest.raises(SystemExit) as info:
        train.main([flag, value])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2
    assert err.startswith(f"dagnet-train: error: argument {flag}: unknown {value!r}")
    assert f"did you mean {hint!r}" in err


class _FakeCuda:
    """``torch.cuda`` as a machine with ``count`` GPUs shows it, where no tensor may go."""

    def __init__(self, count: int) -> None:
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count


@pytest.mark.parametrize(("value", "build", "gpus", "says"), [
    ("gpu", "13.0", 1, "'gpu' is not a torch device; give cpu, cuda, cuda:N"),
    ("", "13.0", 1, "'' is not a torch device"),
    ("cuda", None, 0, "CPU-only build"),
    ("cuda", "13.0", 0, "torch finds no CUDA GPU"),
    ("cuda:1", "13.0", 0, "torch finds no CUDA GPU"),
    ("cuda:2", "13.0", 2, "this machine has 2 CUDA GPU(s): cuda:0 to cuda:1"),
    ("cuda:1", "13.0", 2, None),
    ("cuda", "13.0", 1, None),
    ("cpu", None, 0, None),
])
def test_a_device_is_checked_against_this_machine(
    value: str, build: str | None, gpus: int, says: str | None,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import argparse

    import torch

    from dagnet_layers.commands.checks import usable_device

    monkeypatch.setattr(torch.version, "cuda", build)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch, "cuda", _FakeCuda(gpus))
    real_empty = torch.empty

    def empty(*shape, device=None, **kw):  # a CUDA tensor would open a context per process
        assert torch.device(device).type != "cuda", "a tensor was made on the GPU"
        return real_empty(*shape, device=device, **kw)

    monkeypatch.setattr(torch, "empty", empty)
    parser = argparse.ArgumentParser(prog="tool")
    if says is None:
        assert usable_device(parser, value) == torch.device(value)
        return
    with pytest.raises(SystemExit) as info:
        usable_device(parser, value)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err[-1].startswith(f"tool: error: argument --device: {value!r} ") and says in err[-1]


@pytest.mark.parametrize("command", ["train", "diagnose", "predict", "demo"])
def test_every_command_refuses_an_unusable_device_before_it_starts(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """No demo set written, no run folder made, no checkpoint read: one line, status 2."""
    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = {"train": ["--output-dir", str(out)],
            "diagnose": ["--output-dir", str(out)],
            "predict": ["--checkpoint", str(tmp_path), "--output-dir", str(out), "x.jpg"],
            "demo": ["--checkpoint", str(tmp_path)]}[command]  # fmt: skip
    if command == "predict":  # it reads the checkpoint first: give it a real one
        from dagnet_layers import create_model

        create_model("test_dagnet").save_pretrained(tmp_path)
        (tmp_path / "x.jpg").touch()
        monkeypatch.chdir(tmp_path)
    if command == "demo":
        pytest.importorskip("gradio")
    module = importlib.import_module(f"dagnet_layers.commands.{command}")
    with pytest.raises(SystemExit) as info:
        module.main([*argv, "--device", "gpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err[-1].endswith("error: argument --device: 'gpu' is not a torch device; give cpu, "
                            "cuda, cuda:N (the N-th GPU) or another torch device type such as mps")
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("argv", "flag", "says"), [
    (["--epochs", "0"], "--epochs", "must be >= 1, got 0"),
    (["--batch-size", "0"], "--batch-size", "must be >= 1, got 0"),
    (["--partition", "0"], "--partition", "must be >= 1, got 0"),  # was a ZeroDivisionError
    (["--max-steps", "0"], "--max-steps", "must be >= 1, got 0"),  # trained nothing, then saved
    (["--workers", "-1"], "--workers", "must be >= 0, got -1"),
    (["--lr", "0"], "--lr", "must be finite and > 0, got 0.0"),
    (["--lr", "nan"], "--lr", "must be finite and > 0, got nan"),
    (["--grad-clip", "0"], "--grad-clip", "> 0 (0 would zero every gradient), got 0.0"),
    (["--weight-decay", "-1"], "--weight-decay", "must be finite and >= 0, got -1.0"),
    (["--vad-weight", "inf"], "--vad-weight", "must be finite and >= 0, got inf"),
    (["--flip", "1.5"], "--flip", "must be finite and in [0, 1], got 1.5"),
    (["--jitter", "1"], "--jitter", "must be finite and in [0, 1), got 1.0"),
    (["--demo-images", "11"], "--demo-images", "must be >= 12"),
    (["--no-cache", "--cache-dir", "{tmp}/c"], "--no-cache", "--cache-dir or --no-cache, not "
     "both"),  # the cache was used and --no-cache ignored
    (["--data-root", "{tmp}/nowhere"], "--data-root", "{tmp}/nowhere: no such folder"),
    (["--body-weights", "{tmp}/r50.pth"], "--body-weights", "{tmp}/r50.pth: no such file"),
    (["--context-weights", "{tmp}"], "--context-weights", "{tmp} is a folder, not a file"),
    (["--preprocessed", "{tmp}/a_file"], "--preprocessed", "{tmp}/a_file is a file, not a folder"),
    (["--output-dir", "{tmp}/a_file"], "--output-dir", "{tmp}/a_file is a file, not a folder"),
    (["--output-dir", "{tmp}/a_file/run"], "--output-dir", "{tmp}/a_file is a file, not a "
     "folder"),
    (["--cache-dir", "{tmp}/a_file"], "--cache-dir", "{tmp}/a_file is a file, not a folder"),
    (["--resume", "{tmp}"], "--resume", "{tmp} is not a checkpoint folder (no model.safetensors)"),
])
def test_training_values_are_checked_before_anything_is_written(
    argv: list[str], flag: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from dagnet_layers.commands import train

    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "a_file").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        train.main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2
    assert err.startswith(f"dagnet-train: error: argument {flag}: ")
    assert says.format(tmp=tmp_path) in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["--partition", "100", "--partition-policy", "pad"], "partition=...) must be at most 32"),
    (["--body-backbone", "resnet5"], "'resnet5' is not a timm model name"),
])
def test_a_model_the_flags_cannot_build_fails_before_the_data_is_written(
    argv: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from dagnet_layers.commands import train

    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=re.escape(says)):
        train.main([*argv, "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_resume_with_flags_for_another_model_fails_before_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """It used to fail after the data, as a state-dict size mismatch in the weights."""
    import json

    from dagnet_layers import create_model
    from dagnet_layers.commands import train

    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    saved = {**create_model("test_dagnet").config.to_dict(), "image_size": 64}  # the demo's
    (out / "checkpoints" / "last").mkdir(parents=True)
    (out / "checkpoints" / "last" / "config.json").write_text(json.dumps({"config": saved}))
    argv = ["--output-dir", str(out), "--resume"]
    with pytest.raises(SystemExit, match=r"holds another model than these flags build "
                       r"\(partition 4 there, 2 now; use_lsam True there, False now\)"):
        train.main([*argv, "--partition", "2", "--ablation", "bam_gsam"])
    assert not (tmp_path / "cache").exists()  # no demo set written, no cache built
    # gsam_block is no flag's: an older run recorded "abn" where the light block was built
    args = train.build_train_parser().parse_args(argv)
    train.check_resume(args, {**saved, "gsam_block": "light"})
    (out / "checkpoints" / "last" / "config.json").write_text("{torn")  # the load's to judge
    train.check_resume(args, {**saved, "partition": 2})


def test_a_resume_from_a_checkpoint_with_an_edited_config_is_not_blamed_on_the_flags(
    tmp_path: Path,
) -> None:
    """An edited but valid ``config.json`` in the newest checkpoint fails its manifest's
    checksum: it is damaged (the resume quarantines it), not a model the flags differ
    from. The flags are compared with the checkpoint the resume will load instead, and a
    folder without a manifest is still compared."""
    from dagnet_layers import create_model
    from dagnet_layers.commands import train
    from dagnet_layers.emotic.engine import RunCheckpoints

    out = tmp_path / "run"
    model = create_model("test_dagnet")
    store = RunCheckpoints(out / "checkpoints")
    for epoch in (0, 1):
        store.save(model, epoch=epoch, progress={"best_epoch": 0, "log": []})  # both kept
    config = out / "checkpoints" / "epoch-0001" / "config.json"
    config.write_text(config.read_text().replace('"partition": 4', '"partition": 3'))
    args = train.build_train_parser().parse_args(["--output-dir", str(out), "--resume"])
    train.check_resume(args, model.config.to_dict())  # no "holds another model"
    other = {**model.config.to_dict(), "partition": 2}  # flags for another model
    with pytest.raises(SystemExit, match=r"epoch-0000 holds another model .*partition 4 there"):
        train.check_resume(args, other)  # compared with the one the resume loads
    (out / "checkpoints" / "epoch-0001" / "MANIFEST.json").unlink()
    named = train.build_train_parser().parse_args(
        ["--output-dir", str(out), "--resume", str(out / "checkpoints" / "epoch-0001")])
    with pytest.raises(SystemExit, match="partition 3 there, 4 now"):
        train.check_resume(named, model.config.to_dict())


def test_examples_are_thin_wrappers() -> None:
    for script, entry in (("train_emotic.py", "train_entry"), ("predict.py", "predict_entry")):
        text = (ROOT / "examples" / script).read_text()
        assert f"from dagnet_layers.commands.entry import {entry}" in text
        result = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0 and result.stdout.startswith(f"usage: {script}")


# ---------------------------------------------------------------- the default data path
def test_a_dataset_gets_the_decoded_cache_by_default_when_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from dagnet_layers.emotic.data import (
        estimate_cache_bytes,
        make_synthetic_emotic,
        read_emotic_annotations,
    )
    from dagnet_layers.emotic.data import sources as train  # the data policy's home

    root = Path(make_synthetic_emotic(tmp_path / "emotic", n_images=12, image_size=(64, 48)))
    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "home-cache"))
    folder = train.default_cache_dir(root, 32)
    assert folder.parent == tmp_path / "home-cache" / "emotic-cache"
    assert folder.name.startswith("emotic-") and folder.name.endswith("-32px")
    assert folder not in (train.default_cache_dir(tmp_path, 32), train.default_cache_dir(root, 64))
    with caplog.at_level("INFO"):
        assert train.choose_cache(root, 32) == folder
    assert "decoding the images once into the cache" in caplog.text
    # the room asked for: every split's persons and images at 32 px, plus the headroom
    needed = 0
    for split in ("train", "val", "test"):
        records = read_emotic_annotations(root, split, check_images=False)
        needed += estimate_cache_bytes(len(records), len({r.image_path for r in records}), 32)

    class Disk:
        free = needed + train.CACHE_HEADROOM

    monkeypatch.setattr(train.shutil, "disk_usage", lambda path: Disk)
    assert train.choose_cache(root, 32) == folder
    Disk.free -= 1
    assert train.choose_cache(root, 32) is None

    class Full:
        free = 10 << 20  # 10 MiB: less than the headroom

    monkeypatch.setattr(train.shutil, "disk_usage", lambda path: Full)
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert train.choose_cache(root, 32) is None
    assert "no room for the decoded-image cache" in caplog.text


def test_a_cache_folder_is_named_by_its_size_unless_an_older_one_holds_it(
    tmp_path: Path,
) -> None:  # fmt: skip
    import json

    from dagnet_layers.emotic.data import CACHE_MANIFEST
    from dagnet_layers.emotic.data import sources as train

    folder = tmp_path / "emotic-0a1b2c3d"
    assert train.sized_cache_dir(folder, 224) == tmp_path / "emotic-0a1b2c3d-224px"
    folder.mkdir()
    (folder / CACHE_MANIFEST).write_text(json.dumps({"size": 224}))  # an earlier version's
    assert train.sized_cache_dir(folder, 224) == folder  # reused, not decoded again
    assert train.sized_cache_dir(folder, 112) == tmp_path / "emotic-0a1b2c3d-112px"
    (folder / CACHE_MANIFEST).write_text("{not json")
    assert train.sized_cache_dir(folder, 224) == tmp_path / "emotic-0a1b2c3d-224px"


def test_default_workers_share_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cmd_args.default_workers() == 12
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert cmd_args.default_workers() == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert cmd_args.default_workers() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cmd_args.default_workers() == 1


@pytest.mark.slow
def test_training_on_a_dataset_reads_it_through_the_default_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagnet_layers.commands import train
    from dagnet_layers.emotic.data import cache_is_complete, make_synthetic_emotic

    root = Path(make_synthetic_emotic(tmp_path / "emotic", n_images=24, image_size=(64, 48)))
    monkeypatch.setenv("DAGNET_CACHE", str(tmp_path / "home-cache"))
    argv = ["--data-root", str(root), "--model", "test_dagnet", "--image-size", "32",
            "--batch-size", "4", "--epochs", "1", "--no-pretrained", "--no-progress",
            "--workers", "0", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    assert train.run_cli(argv) == 0
    from dagnet_layers.emotic.data import default_cache_dir

    folder = default_cache_dir(root, 32)
    assert all(cache_is_complete(folder, s, size=32) for s in ("train", "val", "test"))
    assert train.run_cli([*argv[:-1], str(tmp_path / "run2"), "--no-cache"]) == 0
    # another size gets a cache of its own (one folder for both refused the second size)
    sized = [*argv[:-1], str(tmp_path / "run4")]
    sized[sized.index("--image-size") + 1] = "48"
    assert train.run_cli(sized) == 0
    assert cache_is_complete(default_cache_dir(root, 48), "train", size=48)
    assert cache_is_complete(folder, "train", size=32)  # the first one untouched
    # the cache itself given as the data root is read as it is, not cached again
    argv[1] = str(folder)
    assert train.run_cli([*argv[:-1], str(tmp_path / "run3")]) == 0


def test_decoding_on_the_device_refuses_what_holds_decoded_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dagnet_layers.commands import train
    from dagnet_layers.emotic.data import JPEG_DECODE_MODES, make_synthetic_emotic

    assert JPEG_DECODE_MODES == ("auto", "workers", "device")  # what --jpeg-decode offers
    root = Path(make_synthetic_emotic(tmp_path / "emotic", n_images=12, image_size=(64, 48)))
    base = ["--data-root", str(root), "--model", "test_dagnet", "--image-size", "32",
            "--no-pretrained", "--workers", "0", "--output-dir", str(tmp_path / "run"),
            "--jpeg-decode", "device"]  # fmt: skip
    for extra, says in ((["--cache-dir", str(tmp_path / "cache")], "--cache-dir reads them"),
                        (["--preprocessed", str(tmp_path)], "--preprocessed arrays hold")):
        with pytest.raises(SystemExit) as exit_:
            train.run_cli([*base[2:], *extra])
        assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # a folder in another layout is refused as it is found
    from dagnet_layers.emotic.data import build_emotic_cache

    build_emotic_cache(root, tmp_path / "cache", size=32)
    assert train.run_cli(["--data-root", str(tmp_path / "cache"), *base[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dagnet-train: error: --jpeg-decode device")
    assert "in the cache layout" in err


@pytest.mark.slow
def test_decoding_on_the_device_trains_exactly_as_the_workers_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the same samples in the same order, the same augmentation draws: the same run
    import csv

    from dagnet_layers.commands import train
    from dagnet_layers.emotic.data import make_synthetic_emotic

    root = Path(make_synthetic_emotic(tmp_path / "emotic", n_images=24, image_size=(64, 48)))
    argv = ["--data-root", str(root), "--model", "test_dagnet", "--image-size", "32",
            "--batch-size", "4", "--epochs", "2", "--no-pretrained", "--no-progress",
            "--workers", "0", "--no-cache"]  # fmt: skip
    logs = {}
    for mode in ("workers", "device"):
        out = tmp_path / mode
        caplog.clear()
        with caplog.at_level("INFO"):
            assert train.run_cli([*argv, "--jpeg-decode", mode, "--output-dir", str(out)]) == 0
        where = "batched on cpu" if mode == "device" else "in the DataLoader workers"
        assert f"decoding JPEGs every epoch, {where}" in caplog.text
        with open(out / "log.csv", newline="") as f:
            logs[mode] = [{k: v for k, v in row.items() if k not in ("samples_per_s", "seconds")}
                          for row in csv.DictReader(f)]  # fmt: skip
        logs[mode + " test"] = (out / "test_report.json").read_text()
    assert logs["workers"] == logs["device"] and len(logs["device"]) == 2
    import json

    w, d = (json.loads(logs[m + " test"]) for m in ("workers", "device"))
    assert w["mean_ap"] == d["mean_ap"] and w["per_category_ap"] == d["per_category_ap"]


@pytest.mark.slow
def test_what_the_device_decoder_refuses_is_logged_with_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a JPEG whose scan is zeroed half-way: torchvision refuses it (so the batch, then
    # the file alone), Pillow reads it (so the run goes on): slower, and said so
    import io

    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg

    from dagnet_layers.commands import train
    from dagnet_layers.emotic.data import make_synthetic_emotic
    from dagnet_layers.emotic.data.jpeg import _quiet_torchvision

    root = Path(make_synthetic_emotic(tmp_path / "emotic", n_images=12, image_size=(64, 48)))
    for path in sorted(root.rglob("*.jpg")):
        good = path.read_bytes()
        sos = good.index(b"\xff\xda")
        cut = sos + 2 + int.from_bytes(good[sos + 2 : sos + 4], "big")
        cut += (len(good) - cut) // 2
        odd = good[:cut] + bytes(len(good) - cut)
        try:
            with _quiet_torchvision():  # torchvision 0.29 deprecates its decoders
                decode_jpeg(torch.frombuffer(bytearray(odd), dtype=torch.uint8))
            continue
        except RuntimeError:
            pass
        try:
            Image.open(io.BytesIO(odd)).load()
        except OSError:
            continue
        path.write_bytes(odd)
        break
    else:
        pytest.fail("no image could be spoiled as the test needs")
    argv = ["--data-root", str(root), "--model", "test_dagnet", "--image-size", "32",
            "--batch-size", "4", "--epochs", "1", "--no-pretrained", "--no-progress",
            "--workers", "0", "--no-cache", "--jpeg-decode", "device",
            "--output-dir", str(tmp_path / "run")]  # fmt: skip
    with caplog.at_level("WARNING"):
        assert train.run_cli(argv) == 0
    said = [r.getMessage() for r in caplog.records if "device decoder refused" in r.getMessage()]
    assert said and all(f"Pillow on the host: {path}" in s for s in said), said
    assert all(s.startswith(("epoch 0 train:", "epoch 0 val:", "test:")) for s in said), said
    assert all("refused 1 batch(es)" in s and "1 file(s)" in s for s in said), said


@pytest.mark.parametrize("missing", ["scipy.io", "sklearn.metrics"])
def test_train_names_the_missing_extra_before_touching_data(tmp_path: Path, monkeypatch,
                                                            missing: str) -> None:  # fmt: skip
    """A core install (no [emotic]): one line naming the extra, and no demo data written."""
    from dagnet_layers.commands import train
    from dagnet_layers.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    out = tmp_path / "run"
    with pytest.raises(MissingDependencyError, match=r"dagnet-layers\[emotic\]"):
        train.main(["--output-dir", str(out), "--epochs", "1"])
    assert not out.exists() and not any(tmp_path.iterdir())
