"""The benchmarks' interleaved timer gives every figure enough samples, and no more calls."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def common():
    spec = importlib.util.spec_from_file_location("bench_common_timing", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_train():
    spec = importlib.util.spec_from_file_location("bench_train_timing",
                                                  BENCHMARKS / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class Counted:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.seconds:
            time.sleep(self.seconds)


def test_a_slow_call_is_repeated_up_to_min_runs(common) -> None:
    slow = Counted(0.03)  # longer than a round's 10 ms budget
    fast = Counted(0.0)
    got = common.time_group({"slow": slow, "fast": fast}, torch.device("cpu"), warmup=1,
                            min_run_time=0.03, rounds=3, min_runs=7)
    # ceil(7 / 3) = 3 timed calls per round, 3 rounds
    assert got["slow"].runs == 9
    assert slow.calls == 1 + 9  # the estimate, then the timed calls: no hidden warm-ups
    assert got["slow"].median_ms == pytest.approx(30, rel=0.5)
    assert got["fast"].runs >= 7  # blocked_autorange's blocks, topped up


def test_without_min_runs_a_slow_call_is_timed_once_per_round(common) -> None:
    slow = Counted(0.03)
    got = common.time_group({"slow": slow}, torch.device("cpu"), warmup=2, min_run_time=0.03,
                            rounds=4)
    assert got["slow"].runs == 4
    assert slow.calls == 2 + 4  # warm-up (the last one is the estimate), timed calls


@pytest.mark.parametrize(
    "capability,slug",
    [
        ("AVX2", "cpu-amd-epyc-avx2"),
        ("AVX512", "cpu-amd-epyc-avx512"),
        ("DEFAULT", "cpu-amd-epyc"),
        (None, "cpu-amd-epyc"),
    ],
)
def test_cpu_result_names_tell_vector_units_apart(common, monkeypatch, capability, slug) -> None:
    """Two CPUs of one name, one dispatching to AVX2 and one to AVX512, write their
    results to different files; a CPU torch reports no vector unit for keeps the name."""
    monkeypatch.setattr(common, "cpu_model_name", lambda: "AMD EPYC")
    monkeypatch.setattr(common, "_cpu_capability", lambda: capability)
    assert common.device_slug(torch.device("cpu")) == slug
    out = common.default_output("model", torch.device("cpu"), quick=False)
    assert out.name == f"model_{slug}.json"


def test_results_are_replaced_whole_or_not_at_all(common, tmp_path, monkeypatch) -> None:
    """A benchmark rewrites its files after every round: a failure while writing keeps
    the previous complete files and leaves no temporary file behind."""
    out = tmp_path / "train.json"
    common.write_outputs({"round": 1}, "# one round", out)
    assert out.read_text() == '{\n  "round": 1\n}\n'
    assert out.with_suffix(".md").read_text() == "# one round\n"

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(common.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        common.write_outputs({"round": 2}, "# two rounds", out)
    assert out.read_text() == '{\n  "round": 1\n}\n'
    assert out.with_suffix(".md").read_text() == "# one round\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json", "train.md"]


def test_a_train_benchmark_stopped_early_says_how_many_rounds_it_holds(bench_train,
                                                                         tmp_path) -> None:
    bench = bench_train
    variants = [bench._Variant("m, cache, fp32, eager", None, None, None, None, None, [10.0]),
                bench._Variant("loader alone, cache", None, None, None, None, None, [30.0])]
    cfg = dict(models=("m",), images=5, image_size=32, batch=4, min_time=1.0)
    args = argparse.Namespace(rounds=3, quick=True)
    out = tmp_path / "t.json"
    md, _ = bench._report(variants, cfg, args, torch.device("cpu"), 4, 0, 1, out)
    assert "median samples/s of 1 interleaved rounds" in md
    assert "Only 1 of 3 rounds had run" in md
    report = json.loads(out.read_text())
    assert report["environment"]["rounds_done"] == 1
    assert report["loader_headroom"] == {"m, cache, fp32, eager": 3.0}
    variants[0].runs += [12.0, 14.0]
    variants[1].runs += [30.0, 30.0]
    md, _ = bench._report(variants, cfg, args, torch.device("cpu"), 4, 0, 3, out)
    assert "Only" not in md and "| m, cache, fp32, eager | 2.50x | yes |" in md


@pytest.mark.parametrize(
    "name,slug",
    [
        ("Intel(R) Xeon(R) Processor", "intel-xeon-processor"),
        ("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", "intel-xeon-platinum-8480-cpu-2-00ghz"),
        ("Intel\u00ae Core\u2122 i7-1185G7", "intel-core-i7-1185g7"),
        ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"),
        ("AMD Ryzen 9 7950X 16-Core Processor", "amd-ryzen-9-7950x-16-core-processor"),
        ("(R)", "unknown"),
    ],
)
def test_result_names_leave_out_trademark_marks(common, name, slug) -> None:
    """A CPU's "(R)" and "(TM)" are not part of the name a result file needs; letters
    that merely follow a bracket ("(Rev 2)") are kept."""
    assert common.slugify(name) == slug
    assert common.slugify("Foo (Rev 2)") == "foo-rev-2"


def test_the_cuda_suite_names_devices_as_the_benchmarks_do(common) -> None:
    """The suite names its result files itself, without importing torch; the names in
    the benchmarks' own environment tables must be the same."""
    spec = importlib.util.spec_from_file_location("cuda_suite_slug",
                                                  BENCHMARKS / "cuda_suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX\u2122 4090",
                 "Intel(R) Data Center GPU Max 1550", "Tesla V100-SXM2-16GB"):
        assert suite._slug(name) == common.slugify(name)


def test_a_loader_alone_is_timed_after_its_prefetched_batches(bench_train, tmp_path) -> None:
    """The loader's headroom divides by the loader's own rate: the batches its workers
    made while a model variant was timed must not count, and a round goes by time, not
    by a batch count sized from one (possibly prefetched, so free) batch."""
    bench = bench_train

    class Stream:
        """4 batches ready at once, then one every 10 ms, as a loader's workers make them."""

        def __init__(self) -> None:
            self.taken = 0

        def __next__(self):
            self.taken += 1
            if self.taken > 4:
                time.sleep(0.01)
            return {"body": torch.zeros(8, 3, 2, 2)}

    stream = Stream()
    v = bench._Variant("loader alone, jpeg", None, None, stream, lambda b: b, None, [])
    samples, seconds = bench._load(v, 1, torch.device("cpu"), 0.1, skip=4)
    assert samples == 8 * (stream.taken - 4)  # the prefetched batches are not counted
    assert seconds >= 0.1 and samples / seconds <= 8 / 0.01 * 1.05  # no free batches


def test_where_a_data_paths_time_goes_is_reported_and_a_profiler_failure_kept(
    bench_train,
) -> None:
    """The loader-alone table: device busy share = the profile's device ms over the
    rounds' wall ms per batch; a profiler that cannot start is a line in the report,
    not a lost run."""
    bench = bench_train
    dev = bench._Variant("loader alone, jpeg-device", None, None, None, None, None, [80.0],
                         waits=[0.1])  # fmt: skip
    dev.profile = {"batches": 3, "host_ops_per_batch": 4000.0,
                   "device_events_per_batch": 2500.0, "device_ms_per_batch": 20.0}
    cache = bench._Variant("loader alone, cache", None, None, None, None, None, [400.0],
                           waits=[0.5], profile={"batches": 3, "error": "RuntimeError: a|b"})
    where = bench._where_time_goes([dev, cache], {dev.name: 80.0, cache.name: 400.0}, 8)
    # 8 samples at 80/s: 100 ms a batch, of which the device is busy 20
    assert where[dev.name]["wall_ms_per_batch"] == pytest.approx(100.0)
    assert where[dev.name]["device_busy_share"] == pytest.approx(0.2)
    assert "device_busy_share" not in where[cache.name]
    md = bench._where_markdown(where)
    assert "| jpeg-device | 100.0 | 10% | 4,000 | 2,500 | 20.00 | 20% |" in md
    assert "| cache | 20.0 | 50% | profiler failed: RuntimeError: a/b |" in md

    class Broken:
        prefetched = 0

        def __next__(self):
            raise RuntimeError("no batch")

    failed = bench._profile(bench._Variant("loader alone, x", None, None, Broken(), None, None,
                                           []), torch.device("cpu"), 2)  # fmt: skip
    assert failed == {"batches": 2, "error": "RuntimeError: no batch"}


def test_the_decoders_fallbacks_add_up_over_a_train_benchmarks_rounds(bench_train) -> None:
    """What each device decoder refused, popped after every round, adds up over the run."""
    from dagnet_layers.emotic.data import JpegBatchDecoder

    bench = bench_train
    decoder = JpegBatchDecoder(8)
    v = bench._Variant("x", None, None, None, decoder, None, [])
    other = bench._Variant("y", None, None, None, lambda b: b, None, [])
    decoder._refused_batches, decoder._host_decoded["a.jpg"] = 2, 3
    bench._fallbacks([v, other])
    decoder._refused_batches = 1
    decoder._host_decoded.update({"a.jpg": 1, "b.jpg": 1})
    bench._fallbacks([v, other])
    bench._fallbacks([v, other])  # nothing new since
    assert (v.refused, v.host_files) == (3, {"a.jpg", "b.jpg"})
    assert decoder.pop_fallbacks() == (0, {})


# three workers on a 2-core machine is the point of the last case, not a mistake
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("workers,prefetch,ready", [(0, None, 0), (2, None, 4), (3, 4, 12)])
def test_a_loaders_prefetched_batches_come_from_the_loader(common, workers, prefetch,
                                                           ready) -> None:
    """What a timed section drains first is what the DataLoader itself holds ready:
    ``prefetch_factor`` (2 unless given) per worker, nothing without workers."""
    from torch.utils.data import DataLoader

    kwargs = {} if prefetch is None else {"prefetch_factor": prefetch}
    stream = common.EndlessLoader(DataLoader(range(8), num_workers=workers, **kwargs))
    assert stream.prefetched == ready
