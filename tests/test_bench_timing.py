"""The benchmarks' interleaved timer gives every figure enough samples, and no more calls."""

from __future__ import annotations

import importlib.util
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
