"""The model benchmark's per-module timing times the modules on what the model gives them.

Checked against what the benchmark does not compute itself: torch's own
FlopCounterMode on a whole training step, and each module's output inside the
model (recorded by a forward hook) against its output on the captured inputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench_model():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_model
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_model


def _args(**kw) -> argparse.Namespace:
    base = dict(model="test_dagnet", batch=2, image_size=32, num_classes=26, warmup=1,
                min_run_time=0.01, rounds=1, min_runs=1)
    base.update(kw)
    return argparse.Namespace(**base)


def test_captured_inputs_are_the_ones_the_model_gives(bench_model) -> None:
    torch.manual_seed(0)
    model = bench_model.build_model("dagnet", _args())
    body, context, _ = bench_model.make_inputs(2, 32, 26, torch.device("cpu"), False)
    inside: dict[str, torch.Tensor] = {}

    def keep(name, _module, _args, out):
        inside[name] = out[0] if isinstance(out, tuple) else out

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_hook(lambda m, a, o, n=n: keep(n, m, a, o))
               for n in ("body_backbone", "context_backbone.stem", "context_attention",
                         "context_backbone.last_stage", "patch_encoder", "local_graph",
                         "fusion", "classifier")]
    calls = bench_model.capture_module_calls(model, (body, context), torch.device("cpu"),
                                             "fp32")
    for h in handles:
        h.remove()
    # The direct children, with the context backbone's two called parts in its place.
    assert "context_backbone" not in calls
    assert set(inside) <= set(calls)
    for name, expected in inside.items():
        module, args = calls[name]
        with torch.no_grad():
            out = module(*args)
        got = out[0] if isinstance(out, tuple) else out
        torch.testing.assert_close(got, expected.detach(), msg=name)
    # Input gradients only where the model needs them: not for the images.
    assert not calls["patch_encoder"][1][0].requires_grad
    assert not calls["body_backbone"][1][0].requires_grad
    assert calls["context_attention"][1][0].requires_grad


def test_module_flops_add_up_to_the_whole_training_step(bench_model) -> None:
    args = _args()
    report = bench_model.time_modules(bench_model.Variant.parse("fp32"), torch.device("cpu"),
                                      args)
    summed = sum(r["train_gflop_per_sample"] for r in report["modules"]) * 1e9
    # torch's counter on the whole model's forward + backward, loss included
    torch.manual_seed(0)
    model = bench_model.build_model("dagnet", args).train()
    body, context, targets = bench_model.make_inputs(2, 32, 26, torch.device("cpu"), False)
    counter = FlopCounterMode(display=False)
    with counter:
        bench_model._logits_loss(model(body, context), targets).backward()
    whole = counter.get_total_flops() / 2
    # the only FLOPs outside the modules are the loss's and the context pooling's
    assert summed == pytest.approx(whole, rel=1e-3)
    groups = report["summary"]["groups"]
    assert groups["backbone"]["time_share"] + groups["extra"]["time_share"] == pytest.approx(1)
    assert groups["backbone"]["flop_share"] + groups["extra"]["flop_share"] == pytest.approx(1)
    targets = bench_model.module_targets([report])
    assert [t["comparison"] for t in targets] == ["<=", "<="]
    assert {t["variant"] for t in targets} == {"fp32"}
