"""Smoke tests of the benchmark CLIs: they run in --quick mode and write the expected JSON.

No timing is asserted (a benchmark, never a test, holds the speed targets);
only that the scripts run end to end on CPU, that their reports have the
documented keys and that every reference implementation agrees numerically
with ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of the quick default run; --full runs it

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
ENV_KEYS = {
    "device", "device_name", "torch", "torch_cuda_build", "timm", "torch_geometric",
    "dtype", "compile", "channels_last", "date",
}


def _run(script: str, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--device", "cpu",
         "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert out.with_suffix(".md").is_file()
    assert "| " in proc.stdout  # the markdown table went to stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def layers_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run("bench_layers.py", tmp_path_factory.mktemp("bench") / "layers.json")


@pytest.fixture(scope="module")
def model_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _run("bench_model.py", tmp_path_factory.mktemp("bench") / "model.json")


def test_layers_report_keys(layers_report: dict) -> None:
    assert layers_report["benchmark"] == "layers"
    assert ENV_KEYS <= set(layers_report["env"])
    assert layers_report["env"]["device"] == "cpu"
    layers = {r["layer"] for r in layers_report["results"]}
    assert layers == {"body_attention", "attention_branch", "patch_encoder", "gcn"}
    for record in layers_report["results"]:
        assert {"case", "batch", "n", "dtype", "compile", "pass", "ours", "references"} <= set(
            record
        )
        assert record["ours"]["median_ms"] > 0
        assert record["pass"] in ("fwd", "fwd+bwd")
    assert layers_report["targets"], "the layer targets are evaluated"


def test_layers_references_agree_with_ours(layers_report: dict) -> None:
    expected = {
        "patch_encoder": {"per_patch_loop", "per_position_loop"},
        "gcn": {"dense_gcn_conv", "sparse_gcn_conv"},
    }
    seen: dict[str, set[str]] = {k: set() for k in expected}
    for record in layers_report["results"]:
        for name, ref in record["references"].items():
            if "skipped" in ref:
                continue
            assert "error" not in ref, (record["layer"], name, ref)
            assert ref["check"]["passed"], (record["layer"], record["case"], name, ref["check"])
            assert ref["ratio"] > 0
            seen[record["layer"]].add(name)
    assert seen == expected


def test_model_report_keys(model_report: dict) -> None:
    assert model_report["benchmark"] == "model"
    assert ENV_KEYS <= set(model_report["env"])
    assert {r["model"] for r in model_report["results"]} == {
        "dagnet", "dagnet_light", "backbones_only", "two_stream"
    }
    for record in model_report["results"]:
        assert record["train"]["samples_per_s"] > 0
        assert record["inference"]["samples_per_s"] > 0
        assert record["max_batch"] is None  # CPU: largest batch is CUDA-only
    for model, flops in model_report["flops"].items():
        assert flops["train_per_sample"] > flops["forward_per_sample"] > 0, model
    breakdown = model_report["flops"]["dagnet"]["forward_breakdown_per_sample"]
    assert {"body_backbone", "context_backbone", "patch_encoder", "local_graph"} <= set(breakdown)
    versus = {(c["versus"], c["phase"]) for c in model_report["comparisons"]}
    assert ("backbones_only", "train") in versus
    assert any("FLOP ratio" in t["target"] for t in model_report["targets"])
    # ABN's attention block against the light one: FLOPs and time share of a step.
    gsam = {g["block"]: g for g in model_report["gsam"]}
    assert set(gsam) == {"abn", "light"}
    for g in gsam.values():
        assert 0 < g["branch_forward_flop_share"] < 1 and g["branch_train_time_share"] > 0
    assert gsam["abn"]["branch_forward_gflop"] != gsam["light"]["branch_forward_gflop"]
    # Every module alone: its time against its FLOPs, and the two per-module targets.
    (timing,) = model_report["module_timings"]
    modules = {r["module"]: r for r in timing["modules"]}
    assert {"body_backbone", "context_backbone.stem", "context_backbone.last_stage",
            "patch_encoder", "local_graph", "classifier"} <= set(modules)
    assert sum(r["time_share"] for r in modules.values()) == pytest.approx(1.0)
    assert modules["patch_encoder"]["kind"] == "extra"
    assert modules["context_backbone.stem"]["kind"] == "backbone"
    per_module = {t["target"].split(" ")[0] for t in model_report["targets"]
                  if t["target"].startswith(("DAG-Net extras'", "patch encoder"))}
    assert per_module == {"DAG-Net", "patch"}


def test_variant_parsing() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from bench_model import Variant
    finally:
        sys.path.remove(str(BENCHMARKS))
    v = Variant.parse("bf16+cl+compile")
    assert (v.dtype, v.channels_last, v.compile, v.checkpoint) == ("bf16", True, True, False)
    with pytest.raises(Exception, match="fp32 or bf16"):
        Variant.parse("fp16")
    with pytest.raises(Exception, match="unknown token"):
        Variant.parse("fp32+fast")


def test_data_benchmark_runs_and_reports_every_path(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_data.py"), "--quick", "--workers", "0",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    paths = {"jpeg", "jpeg+batch", "cache", "cache+batch", "jpeg-loader", "cache-loader"}
    assert set(report["samples_per_s"]) == paths
    assert all(v > 0 for v in report["samples_per_s"].values())
    assert "cache-loader/jpeg-loader" in report["speedups"]
    # the environment every benchmark records: which machine, which code, how busy
    env = report["environment"]
    assert {"device_name", "device_slug", "cpu_capability", "git_commit", "torch",
            "loadavg_1min_start", "loadavg_1min_end", "workers", "rounds"} <= set(env)
    assert env["workers"] == 0 and env["quick"] is True
    md = out.with_suffix(".md").read_text()
    assert md.startswith(f"# Data pipeline benchmark: {env['device_name']}")
    assert "| device_slug |" in md


def test_storage_benchmark_reports_checksum_costs(tmp_path: Path) -> None:
    out = tmp_path / "storage.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_storage.py"), "--quick", "--dir",
         str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    checkpoint, cache = report["checkpoint"], report["cache"]
    assert checkpoint["bytes"] > 0 and 0 < checkpoint["hash_share_of_save"] < 1
    assert 0 < checkpoint["verify_share_of_load"] < 1
    assert cache["seconds_per_gb"] > 0 and cache["cheap_check"]["median_s"] > 0
    assert out.with_suffix(".md").read_text().startswith("# Storage benchmarks")


def test_training_throughput_benchmark_times_each_data_path(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_train.py"), "--quick", "--device", "cpu",
         "--rounds", "1", "--workers", "0", "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    rates = report["samples_per_s"]
    models = {f"test_dagnet, {d}, fp32, eager" for d in ("jpeg", "jpeg-device", "cache")}
    alone = {f"loader alone, {d}" for d in ("jpeg", "jpeg-device", "cache")}
    assert set(rates) == models | alone
    assert all(v > 0 for v in rates.values())
    assert sorted(report["ratios"]) == ["test_dagnet, cache, fp32, eager / jpeg",
                                        "test_dagnet, jpeg-device, fp32, eager / jpeg"]
    # the headroom: each variant's own data path alone over the variant, never inverted
    assert set(report["loader_headroom"]) == models
    for name, headroom in report["loader_headroom"].items():
        data = name.split(", ")[1]
        assert headroom == pytest.approx(rates[f"loader alone, {data}"] / rates[name])
    md = out.with_suffix(".md").read_text()
    assert "loader alone / variant" in md
    assert {"loadavg_1min_start", "loadavg_1min_end", "git_commit"} <= set(report["environment"])
    # where each path's time goes: its wall time per batch from its own rate, the share
    # spent in the loader (without workers, where the host path decodes: more than the
    # cache's reads) and the operators it issues; no device figures on a CPU
    where = report["loader_alone"]
    assert set(where) == alone and "| data path | wall ms | waiting for the loader |" in md
    for name, entry in where.items():
        assert entry["wall_ms_per_batch"] == pytest.approx(1000 * 4 / rates[name])
        assert 0 < entry["wait_share"] < 1
        assert entry["profile"]["batches"] == 3 and entry["profile"]["host_ops_per_batch"] > 0
        assert "device_ms_per_batch" not in entry["profile"] and "device_busy_share" not in entry
    assert where["loader alone, jpeg"]["wait_share"] > where["loader alone, cache"]["wait_share"]
    # decoding on the device is more work for the process than reading decoded pixels
    assert (where["loader alone, jpeg-device"]["profile"]["host_ops_per_batch"]
            > where["loader alone, cache"]["profile"]["host_ops_per_batch"])
    # the device decoder's path was the one timed: it never fell back
    none = {"batches_refused": 0, "files_decoded_by_pillow": 0}
    assert report["decoder_fallbacks"] == {"test_dagnet, jpeg-device, fp32, eager": none,
                                           "loader alone, jpeg-device": none}
    assert "fell back" not in md



def test_cache_memory_benchmark_compares_the_two_readers(tmp_path: Path) -> None:
    out = tmp_path / "cache_memory.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_cache_memory.py"), "--quick", "--images", "24",
         "--workers", "1", "--dir", str(tmp_path), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert {"loadavg_1min_start", "loadavg_1min_end", "git_commit"} <= set(report["environment"])
    readers = report["readers"]
    assert set(readers) == {"pread (NpyRows)", "memory map"}
    for figures in readers.values():
        assert figures["peak_rss_mib"]["median"] > 0 and figures["samples_per_s"]["median"] > 0


def test_predict_benchmark_times_detector_and_model_apart(tmp_path: Path) -> None:
    out = tmp_path / "predict.json"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_predict.py"), "--quick", "--device", "cpu",
         "--rounds", "1", "--min-run-time", "0.05", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert {"dagnet batch 1", "preprocess 1 person",
            "detector ssdlite320_mobilenet_v3_large"} <= set(results)
    assert all(r["rate"] > 0 and r["iqr_ms"] >= 0 for r in results.values())
    assert {r["unit"] for r in results.values()} == {"persons/s", "frames/s"}


def test_cuda_suite_dry_runs_on_cpu(tmp_path: Path) -> None:
    """The one-command CUDA suite cannot rot: on a machine without CUDA every stage is
    listed with its command and the reason it is skipped, and nothing is written."""
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "cuda_suite.py"),
                           "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for stage in ("env", "tests", "model", "layers", "layers_cl", "data", "predict",
                  "throughput", "train", "ddp"):
        assert f"[{stage}] skipped: no CUDA device" in out
    for script in ("bench_model.py", "bench_layers.py", "bench_data.py", "bench_predict.py",
                   "bench_train.py"):
        assert str(BENCHMARKS / script) in out and (BENCHMARKS / script).is_file()
    assert "dagnet_layers.commands.train" in out and "pytest -m cuda" in out
    assert list(tmp_path.iterdir()) == []
    dry = subprocess.run([sys.executable, str(BENCHMARKS / "cuda_suite.py"), "--dry-run",
                          "--stages", "tests"], capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    assert dry.returncode == 0 and "[tests] skipped: dry run" in dry.stdout


def test_the_cuda_tests_rehearse_on_the_cpu() -> None:
    """What the suite's ``tests`` stage runs works as code: the CUDA tests, moved to the
    CPU by ``DAGNET_TEST_DEVICE``, all run and pass (a GPU is lent for minutes, and a
    broken test there costs them), but for those that say they need CUDA's own
    machinery (streams, nvJPEG), which the CPU does not have."""
    import os

    tests = Path(__file__).resolve().parent
    env = {**os.environ, "DAGNET_TEST_DEVICE": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rs",
                           "-p", "no:cacheprovider", str(tests / "test_cuda.py")],
                          capture_output=True, text=True, timeout=900, check=False,
                          cwd=tests.parent, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:]
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1]
    assert " passed" in summary, summary
    skips = [line for line in lines if line.startswith("SKIPPED")]
    assert all("nothing to rehearse on the CPU" in line for line in skips), skips
    assert len(skips) <= 1, skips  # the nvJPEG stream test alone


def test_benchmarks_never_overwrite_committed_results_by_default() -> None:
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "_common.py")
    common = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = common  # its dataclasses look their module up there
    spec.loader.exec_module(common)
    out = common.default_output("model", torch.device("cpu"), quick=False)
    assert BENCHMARKS / "results" not in out.parents
    assert out.parent.name == "benchmarks" and out.parent.parent.name == "runs"  # git-ignored


def _cuda_suite_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_cuda_suite", BENCHMARKS / "cuda_suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    return suite


def test_cuda_suite_short_keeps_to_its_deadline(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--short`` on a (pretended) GPU: each stage's limit is its cap or what is left of
    the deadline, whichever is less; a stage with too little left is skipped and says
    why; the summary on disk holds every stage."""
    suite = _cuda_suite_module()

    def sleep(seconds: float) -> list[str]:
        return [sys.executable, "-c", f"import time; time.sleep({seconds})"]

    # "tests" starts a child of its own, as a loader's workers are: the kill takes both
    pid_file = tmp_path / "child.pid"
    spawner = [sys.executable, "-c",
               "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', "
               f"'import time; time.sleep(60)']); open({str(pid_file)!r}, 'w').write("
               "str(c.pid)); time.sleep(30)"]  # fmt: skip
    monkeypatch.setattr(suite, "_cuda", lambda: (True, 1, "Fake GPU"))
    monkeypatch.setattr(suite, "commands", lambda out, slug, n, **kw: {
        "env": sleep(0), "tests": spawner, "throughput": sleep(0), "train": sleep(30),
        "model": sleep(0)})
    monkeypatch.setattr(suite, "SHORT", {"env": 20, "tests": 1, "throughput": 20,
                                         "train": 20, "model": 20})
    monkeypatch.setattr(suite, "MIN_STAGE_S", 1.5)
    archive = tmp_path / "back" / "suite.tar.gz"
    rc = suite.main(["--short", "--deadline", "4", "--out-dir", str(tmp_path / "res"),
                     "--archive", str(archive)])
    assert rc == 1  # two stages timed out
    printed = capsys.readouterr().out
    assert "[tests] running, time limit 1 s" in printed
    summary_file = tmp_path / "res" / "cuda_suite_cuda-fake-gpu.json"
    summary = json.loads(summary_file.read_text())
    assert summary["profile"] == "short" and summary["deadline_s"] == 4
    # the archive holds the results as they are at the end, one file to carry back
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
        assert json.loads(tar.extractfile("cuda_suite_cuda-fake-gpu.json").read()) == summary
    assert names == ["cuda_suite_cuda-fake-gpu.json",
                     *(f"logs/{stage}_cuda-fake-gpu.log" for stage in ("env", "tests",
                                                                        "throughput", "train"))]
    stages = summary["stages"]
    assert list(stages) == ["env", "tests", "throughput", "train", "model"]
    assert stages["env"]["status"] == stages["throughput"]["status"] == "passed"
    assert stages["tests"]["status"] == "timed out after 1 s"
    # train got what was left of the 4 s (about 2.7 s), not its 20 s cap
    assert stages["train"]["status"].startswith("timed out after")
    assert 1.5 <= stages["train"]["seconds"] <= 3.5
    assert stages["model"]["status"] == "skipped"
    assert stages["model"]["why"].startswith("deadline:")
    child = Path(f"/proc/{int(pid_file.read_text())}/status")
    assert not child.exists() or "State:\tZ" in child.read_text()  # gone, or a zombie


def test_cuda_suite_names_a_bad_archive(capsys) -> None:
    suite = _cuda_suite_module()
    with pytest.raises(SystemExit):
        suite.main(["--dry-run", "--archive", "results.zip"])
    assert "--archive must name a .tar.gz or .tgz file, got results.zip" in capsys.readouterr().err


def test_cuda_suite_keeps_a_runs_results_not_its_checkpoints(tmp_path: Path) -> None:
    suite = _cuda_suite_module()
    run = tmp_path / "scratch" / "train_cuda-x"
    for name in ("log.csv", "test_report.json", "figures/curves.png", "checkpoints/last.pt",
                 "tensorboard/events"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    suite._keep_run(run, tmp_path / "out" / "train_cuda-x")
    kept = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                  if p.is_file())  # fmt: skip
    assert kept == ["train_cuda-x/figures/curves.png", "train_cuda-x/log.csv",
                    "train_cuda-x/test_report.json"]


def test_cuda_suite_short_names_a_stage_it_does_not_have(capsys) -> None:
    suite = _cuda_suite_module()
    with pytest.raises(SystemExit):
        suite.main(["--short", "--stages", "layers", "--dry-run"])
    assert "--short has no stage layers" in capsys.readouterr().err
