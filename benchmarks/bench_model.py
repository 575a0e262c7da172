"""Model-level benchmark: DAG-Net against its backbones alone and the two-stream baseline.

Measures, for each model and each precision/layout/compile variant:

- training-step throughput (samples/s): forward, BCE loss on the category
  logits (plus the attention branch's auxiliary logits for DAG-Net),
  backward, SGD step;
- inference throughput (samples/s): ``forward_logits`` in eval mode under
  ``torch.inference_mode``;
- FLOPs per sample from :class:`torch.utils.flop_counter.FlopCounterMode`
  (one forward in eval mode, and one counted forward + backward), with a
  per-module breakdown, so the time ratio between two models can be read
  against their FLOP ratio;
- on CUDA, peak memory of a training step at the benchmark batch and the
  largest batch that fits (binary search with out-of-memory catch), with and
  without activation checkpointing (``+ckpt``: ``torch.utils.checkpoint``
  around the backbones and the patch encoder, applied here, not in the library).

Models: ``dagnet`` (``--model``, default ``dagnet_r50_r18``, the paper's
configuration, whose GSAM starts with ABN's stride-1 copy of the context
backbone's last stage), ``dagnet_light`` (the same with the light,
width-preserving attention block, ``gsam_block="light"``), ``backbones_only``
(the same body and context backbones, pooled, concatenated, one linear layer)
and ``two_stream`` (the standard EMOTIC baseline, ``two_stream_r18_r18``:
ResNet-18 body + ResNet-18 context + fusion MLP).

The per-module section answers where DAG-Net's time goes against its
arithmetic: each module (the two backbones, the attention layers, the patch
encoder, the graph, the head) runs forward + backward alone on the inputs it
gets inside the model, all timed interleaved, with its FLOPs counted on the
same call; its time share over its FLOP share says whether it costs more than
its arithmetic (``--module-variants``).

The GSAM section reads the cost of ABN's attention block: the attention
branch's forward FLOPs and their share of the model, and the branch's own
training time (forward + backward on its input feature map, the two blocks
timed interleaved) as a share of a whole DAG-Net training step.

Example::

    python benchmarks/bench_model.py                         # CPU defaults (112 px)
    python benchmarks/bench_model.py --device cuda            # CUDA suite, 224 px
    python benchmarks/bench_model.py --quick --out /tmp/model.json
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_run_arguments,
    autocast,
    configure_torch,
    default_output,
    environment,
    environment_markdown,
    fill_defaults,
    fmt,
    free_memory,
    is_oom,
    loadavg,
    markdown_table,
    resolve_device,
    synchronize,
    time_group,
    write_outputs,
)

from dagnet_layers import create_model

MODELS = ("dagnet", "dagnet_light", "backbones_only", "two_stream")
BASELINE_VARIANT = "fp32"
FAST_VARIANT = "bf16+cl+compile"


# --------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """How a model runs: precision, memory format, compilation, checkpointing.

    Written as ``+``-joined tokens: ``fp32`` or ``bf16`` first, then any of
    ``cl`` (channels_last), ``compile`` (``torch.compile``), ``ckpt``
    (activation checkpointing). Example: ``bf16+cl+compile``.
    """

    name: str
    dtype: str
    channels_last: bool
    compile: bool
    checkpoint: bool

    @classmethod
    def parse(cls, text: str) -> Variant:
        """Parse ``fp32``, ``bf16+cl``, ``bf16+cl+compile``, ``fp32+ckpt``..."""
        tokens = text.split("+")
        if tokens[0] not in ("fp32", "bf16"):
            raise argparse.ArgumentTypeError(
                f"variant {text!r} must start with fp32 or bf16, e.g. bf16+cl+compile"
            )
        extra = set(tokens[1:])
        unknown = extra - {"cl", "compile", "ckpt"}
        if unknown:
            raise argparse.ArgumentTypeError(
                f"variant {text!r} has unknown token(s) {sorted(unknown)}; "
                "allowed after the dtype: cl, compile, ckpt"
            )
        return cls(text, tokens[0], "cl" in extra, "compile" in extra, "ckpt" in extra)


# ----------------------------------------------------------------- models
class BackbonesOnly(nn.Module):
    """DAG-Net's two backbones alone: pooled body and context features, one linear layer.

    Args:
        body_backbone: Pooled-feature model (B, 3, H, W) -> (B, C_b).
        context_backbone: Feature-map model (B, 3, H, W) -> (B, C_c, h, w).
        num_classes: Output logits.
    """

    def __init__(
        self, body_backbone: nn.Module, context_backbone: nn.Module, num_classes: int = 26
    ) -> None:
        super().__init__()
        self.body_backbone = body_backbone
        self.context_backbone = context_backbone
        width = body_backbone.num_features + context_backbone.num_features
        self.head = nn.Linear(width, num_classes)

    def forward(self, body: Tensor, context: Tensor) -> Tensor:
        """Logits (B, num_classes)."""
        pooled_context = self.context_backbone(context).mean(dim=(2, 3))
        return self.head(torch.cat([self.body_backbone(body), pooled_context], dim=1))

    def forward_logits(self, body: Tensor, context: Tensor) -> Tensor:
        """Same as :meth:`forward` (the inference entry point shared with DAGNet)."""
        return self.forward(body, context)


class Checkpointed(nn.Module):
    """Run ``module`` under ``torch.utils.checkpoint`` when training with gradients."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        """Recompute ``module(x)`` in the backward pass instead of storing its activations."""
        if self.training and torch.is_grad_enabled():
            return checkpoint(self.module, x, use_reentrant=False)
        return self.module(x)


def apply_checkpointing(model: nn.Module) -> None:
    """Wrap the backbones (and DAG-Net's patch encoder) of ``model`` in :class:`Checkpointed`.

    The context backbone is a :class:`~dagnet_layers.models.SplitBackbone`
    whose two parts DAG-Net calls separately, so both parts are wrapped.
    """
    model.body_backbone = Checkpointed(model.body_backbone)
    context = getattr(model, "context_backbone", None)
    if context is not None:
        context.stem = Checkpointed(context.stem)
        context.last_stage = Checkpointed(context.last_stage)
    if getattr(model, "patch_encoder", None) is not None:
        model.patch_encoder = Checkpointed(model.patch_encoder)


def build_model(kind: str, args: argparse.Namespace) -> nn.Module:
    """A freshly initialised model (no pretrained weights, no network access)."""
    if kind == "dagnet":
        return create_model(args.model)
    if kind == "dagnet_light":
        return create_model(args.model, gsam_block="light")
    if kind == "two_stream":
        return create_model(args.baseline, **args.baseline_overrides)
    if kind == "backbones_only":
        source = create_model(args.model)
        assert source.context_backbone is not None
        return BackbonesOnly(source.body_backbone, source.context_backbone, source.num_classes)
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODELS)}")


# ------------------------------------------------------------------ steps
def _logits_loss(out: Any, targets: Tensor) -> Tensor:
    """Multi-label BCE on the logits, plus the auxiliary (attention-branch) logits if any."""
    logits = out if isinstance(out, Tensor) else out.logits
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
    aux = None if isinstance(out, Tensor) else out.aux_logits
    if aux is not None:
        loss = loss + F.binary_cross_entropy_with_logits(aux.float(), targets)
    return loss


def make_inputs(
    batch: int, image_size: int, num_classes: int, device: torch.device, channels_last: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Random body crops, context images and multi-hot targets."""
    body = torch.randn(batch, 3, image_size, image_size, device=device)
    context = torch.randn(batch, 3, image_size, image_size, device=device)
    if channels_last:
        body = body.to(memory_format=torch.channels_last)
        context = context.to(memory_format=torch.channels_last)
    targets = (torch.rand(batch, num_classes, device=device) < 0.15).float()
    return body, context, targets


@dataclass
class Runner:
    """A model prepared for one variant: train and inference callables on given inputs."""

    model: nn.Module
    train_forward: Callable[..., Any]
    infer_forward: Callable[..., Any]
    optimizer: torch.optim.Optimizer
    variant: Variant
    device: torch.device

    def train_step(self, body: Tensor, context: Tensor, targets: Tensor) -> None:
        """One optimisation step."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.variant.dtype):
            loss = _logits_loss(self.train_forward(body, context), targets)
        loss.backward()
        self.optimizer.step()

    def infer_step(self, body: Tensor, context: Tensor) -> None:
        """One inference forward."""
        with torch.inference_mode(), autocast(self.device, self.variant.dtype):
            self.infer_forward(body, context)


def prepare(kind: str, variant: Variant, device: torch.device, args: argparse.Namespace) -> Runner:
    """Build ``kind`` for ``variant`` on ``device``."""
    torch.manual_seed(0)
    model = build_model(kind, args)
    if variant.checkpoint:
        apply_checkpointing(model)
    model = model.to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    train_forward: Callable[..., Any] = model
    infer_forward: Callable[..., Any] = model.forward_logits
    if variant.compile:
        train_forward = torch.compile(model)
        infer_forward = torch.compile(model.forward_logits)
    return Runner(model, train_forward, infer_forward, optimizer, variant, device)


# ------------------------------------------------------------------ FLOPs
def _breakdown(counts: dict[str, dict[Any, int]], root: str, batch: int) -> dict[str, float]:
    """FLOPs per sample of each direct child of ``root`` in a FlopCounterMode report.

    A child that was never called itself (DAG-Net calls the two parts of its
    context backbone directly) is the sum of its called sub-modules.
    """
    per_child: dict[str, float] = {}
    for name, ops in counts.items():
        parts = name.split(".")
        if parts[0] != root or len(parts) < 2:
            continue
        child = parts[1]
        direct = f"{root}.{child}" in counts
        if (direct and len(parts) == 2) or (not direct and len(parts) == 3):
            per_child[child] = per_child.get(child, 0.0) + sum(ops.values()) / batch
    return per_child


def count_flops(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """FLOPs per sample of one inference forward and one training forward + backward.

    Counted on CPU in fp32 at batch 2 (FLOPs are linear in the batch; BatchNorm1d
    needs more than one sample in training mode), then divided by 2. The
    breakdown lists the forward FLOPs of each direct child module.
    """
    batch = 2
    torch.manual_seed(0)
    model = build_model(kind, args)
    body, context, targets = make_inputs(
        batch, args.image_size, args.num_classes, torch.device("cpu"), False
    )
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(body, context)  # through __call__, so the module tracker names the children
    forward = counter.get_total_flops() / batch
    return_breakdown = _breakdown(counter.get_flop_counts(), type(model).__name__, batch)
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        _logits_loss(model(body, context), targets).backward()
    train = counter.get_total_flops() / batch
    return {
        "forward_per_sample": forward,
        "train_per_sample": train,
        "forward_breakdown_per_sample": return_breakdown,
        "params": sum(p.numel() for p in model.parameters()),
    }


# ------------------------------------------------------------- max batch
def _fits(runner: Runner, batch: int, args: argparse.Namespace) -> bool:
    """Whether two training steps at ``batch`` run without running out of memory."""
    device = runner.device
    try:
        inputs = make_inputs(
            batch, args.image_size, args.num_classes, device, runner.variant.channels_last
        )
        for _ in range(2):  # the first step also allocates the optimizer state
            runner.train_step(*inputs)
        synchronize(device)
        return True
    except Exception as err:
        if not is_oom(err):
            raise
        return False
    finally:
        inputs = None  # type: ignore[assignment]
        runner.optimizer.zero_grad(set_to_none=True)
        free_memory(device)


def largest_batch(runner: Runner, start: int, cap: int, args: argparse.Namespace) -> int:
    """Largest training batch (multiple of 8, at most ``cap``) that fits, by doubling then
    bisection; 0 when not even 8 fits."""
    lo, hi, b = 0, None, max(8, start)
    while b <= cap:
        if _fits(runner, b, args):
            lo, b = b, b * 2
        else:
            hi = b
            break
    if hi is None:
        return lo
    while hi - lo > 8:
        mid = (lo + hi) // 2 // 8 * 8
        if mid <= lo:
            break
        if _fits(runner, mid, args):
            lo = mid
        else:
            hi = mid
    return lo


# ------------------------------------------------------------------ GSAM
def time_attention_blocks(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """Training time of the attention branch alone, ABN's block against the light one.

    Each branch runs forward + backward (a sum of its attended features and
    logits as the loss) on a random map of the shape the context backbone
    gives it, in fp32, timed interleaved. Divided by the DAG-Net training step
    of the same variant, this is the branch's share of a step.
    """
    out: dict[str, Any] = {}
    branches = {}
    for kind, block in (("abn", "abn"), ("light", "light")):
        torch.manual_seed(0)
        model = create_model(args.model, gsam_block=block)
        if model.context_attention is None or model.context_backbone is None:
            return {}
        with torch.no_grad():
            g = model.context_backbone.stem(torch.zeros(1, 3, args.image_size, args.image_size))
        branches[kind] = (model.context_attention.to(device).train(), g.shape[1:])
        out[kind] = {
            "params": sum(p.numel() for p in model.context_attention.parameters()),
            "input_shape": list(g.shape[1:]),
        }

    def step(branch: nn.Module, x: Tensor) -> None:
        branch.zero_grad(set_to_none=True)
        features, _, logits = branch(x)
        (features.float().sum() + logits.float().sum()).backward()

    fns = {}
    for kind, (branch, shape) in branches.items():
        x = torch.randn(args.batch, *shape, device=device, requires_grad=True)
        fns[kind] = partial(step, branch, x)
    timings = time_group(fns, device, warmup=args.warmup, min_run_time=args.min_run_time,
                         rounds=args.rounds, min_runs=args.min_runs)
    for kind, t in timings.items():
        out[kind]["train"] = {"error": _error(t)} if isinstance(t, Exception) else t.to_dict()
    return out


def gsam_summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per attention block: branch FLOPs, their share, the branch's share of a training step."""
    flops, blocks = report["flops"], report.get("attention_blocks") or {}
    rows = []
    for block, kind in (("abn", "dagnet"), ("light", "dagnet_light")):
        if kind not in flops or block not in blocks:
            continue
        f = flops[kind]
        branch = f["forward_breakdown_per_sample"].get("context_attention")
        step = _find(report["results"], kind, BASELINE_VARIANT)
        step_ms = (step or {}).get("train", {}).get("median_ms")
        branch_ms = blocks[block].get("train", {}).get("median_ms")
        branch_iqr = blocks[block].get("train", {}).get("iqr_ms")
        rows.append({
            "block": block,
            "branch_params": blocks[block]["params"],
            "branch_forward_gflop": None if branch is None else branch / 1e9,
            "branch_forward_flop_share": None if branch is None else
            branch / f["forward_per_sample"],
            "branch_train_ms": branch_ms,
            "branch_train_iqr_ms": branch_iqr,
            "model_train_step_ms": step_ms,
            "branch_train_time_share": branch_ms / step_ms if branch_ms and step_ms else None,
        })
    return rows


# ------------------------------------------------------------- per module
BACKBONE_MODULES = ("body_backbone", "context_backbone")


def capture_module_calls(
    model: nn.Module, inputs: tuple[Tensor, Tensor], device: torch.device, dtype: str
) -> dict[str, tuple[nn.Module, tuple[Any, ...]]]:
    """Each module DAG-Net calls in a training forward, with a copy of what it was given.

    The modules are the model's direct children, or, for a child never called
    itself (DAG-Net calls the stem and the last stage of its context backbone
    separately), that child's called children: the same rule as the FLOP
    breakdown. Tensors are detached copies keeping ``requires_grad`` as in the
    model, so that a module's backward computes the input gradients it
    computes there and no others.
    """
    calls: dict[str, list[tuple[Any, ...]]] = {}
    handles = []

    def record(name: str, _module: nn.Module, args: tuple[Any, ...]) -> None:
        copied = tuple(
            a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a
            for a in args
        )
        calls.setdefault(name, []).append(copied)

    modules = dict(model.named_modules())
    for name, module in modules.items():
        if name and name.count(".") <= 1:
            handles.append(module.register_forward_pre_hook(partial(record, name)))
    try:
        model.train()
        with autocast(device, dtype):
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    chosen: dict[str, tuple[nn.Module, tuple[Any, ...]]] = {}
    for name in calls:
        parent = name.rpartition(".")[0]
        if parent and parent in calls:
            continue  # inside a module that is timed whole
        if len(calls[name]) != 1:
            raise RuntimeError(f"module {name} is called {len(calls[name])} times in one "
                               "forward; the per-module timing expects one call")
        chosen[name] = (modules[name], calls[name][0])
    return chosen


def _module_step(module: nn.Module, args: tuple[Any, ...], device: torch.device,
                 dtype: str) -> Callable[[], None]:
    """Forward + backward of ``module`` alone on ``args``: a fixed random gradient for
    each differentiable output, parameter and input gradients set to None first."""
    leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]

    def differentiable_outputs() -> list[Tensor]:
        with autocast(device, dtype):
            out = module(*args)
        return [o for o in (out if isinstance(out, (tuple, list)) else (out,))
                if isinstance(o, Tensor) and o.requires_grad]

    generator = torch.Generator(device=device).manual_seed(0)
    grads = [torch.randn(o.shape, generator=generator, device=device, dtype=o.dtype)
             for o in differentiable_outputs()]

    def step() -> None:
        module.zero_grad(set_to_none=True)
        for leaf in leaves:
            leaf.grad = None
        torch.autograd.backward(differentiable_outputs(), grads)

    return step


def time_modules(variant: Variant, device: torch.device, args: argparse.Namespace
                 ) -> dict[str, Any]:
    """Training time and FLOPs of each of DAG-Net's modules alone, timed interleaved.

    Every module runs forward + backward on the very inputs it got in a
    training forward of the whole model (:func:`capture_module_calls`). The
    FLOPs are counted on the same call. Backbones are ``body_backbone`` and
    both parts of ``context_backbone``; every other module is one of DAG-Net's
    extras. Glue outside any module (the concatenation, the pooling of the
    context map, the loss, the optimizer) is in the whole step but in no row.
    """
    torch.manual_seed(0)
    model = build_model("dagnet", args).to(device)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    body, context, _ = make_inputs(
        args.batch, args.image_size, args.num_classes, device, variant.channels_last
    )
    calls = capture_module_calls(model, (body, context), device, variant.dtype)
    steps: dict[str, Callable[[], None]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name, (module, call_args) in calls.items():
        step = _module_step(module, call_args, device, variant.dtype)
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        steps[name] = step
        rows[name] = {
            "module": name,
            "kind": "backbone" if name.split(".")[0] in BACKBONE_MODULES else "extra",
            "train_gflop_per_sample": counter.get_total_flops() / args.batch / 1e9,
        }
    timings = time_group(steps, device, warmup=args.warmup, min_run_time=args.min_run_time,
                         rounds=args.rounds, min_runs=args.min_runs)
    for name, t in timings.items():
        if isinstance(t, Exception):
            rows[name]["error"] = _error(t)
        else:
            rows[name].update(
                median_ms=t.median_ms, iqr_ms=t.iqr_ms, runs=t.runs,
                gflop_per_s=rows[name]["train_gflop_per_sample"] * args.batch
                / (t.median_ms / 1e3),
            )
    return {"variant": variant.name, "modules": list(rows.values()),
            "summary": module_summary(list(rows.values()))}


def module_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Time and FLOP shares of each module and of the extras, over all timed modules.

    ``time_over_flop`` of a row is its time share over its FLOP share: 1 means it
    runs at the average speed of the model's modules, below 1 faster. The
    targets on these (:func:`module_targets`) are the extras' time share at most
    their FLOP share, and the patch encoder's ratio at most the backbones'.
    """
    if not rows or any(not r.get("median_ms") for r in rows):
        return {}  # a module failed: no shares
    total_ms = sum(r["median_ms"] for r in rows)
    total_flop = sum(r["train_gflop_per_sample"] for r in rows)
    if total_flop <= 0:
        return {}
    for r in rows:
        r["time_share"] = r["median_ms"] / total_ms
        r["flop_share"] = r["train_gflop_per_sample"] / total_flop
        # a module without FLOPs (dropout) has a time but no time per FLOP
        r["time_over_flop"] = r["time_share"] / r["flop_share"] if r["flop_share"] else None
    groups: dict[str, dict[str, float]] = {}
    for kind in ("backbone", "extra"):
        members = [r for r in rows if r["kind"] == kind]
        time_share = sum(r["time_share"] for r in members)
        flop_share = sum(r["flop_share"] for r in members)
        groups[kind] = {"time_share": time_share, "flop_share": flop_share,
                        "time_over_flop": time_share / flop_share if flop_share else None}
    return {"total_module_ms": total_ms, "groups": groups}


# ------------------------------------------------------------------- run
def _error(err: BaseException) -> str:
    if is_oom(err):
        return "out of memory"
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def _own_peak_mib(runner: Runner, inputs: tuple[Tensor, ...]) -> float | None:
    """Peak CUDA memory of one training step as if ``runner``'s model were alone on the GPU.

    The models of a variant share the GPU while they are timed, so the
    absolute peak would include the others. This is the step's growth above
    what was allocated before it (activations, gradients, temporaries) plus
    this model's own persistent state: parameters, SGD momentum and the inputs.
    """
    device = runner.device
    if device.type != "cuda":
        return None
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    runner.train_step(*inputs)
    synchronize(device)
    growth = torch.cuda.max_memory_allocated(device) - before
    param_bytes = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    input_bytes = sum(t.numel() * t.element_size() for t in inputs)
    return (growth + 2 * param_bytes + input_bytes) / 2**20


def run_variant(
    variant: Variant, device: torch.device, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Throughput, peak memory and largest batch of every model for one variant.

    The models are timed interleaved (``--rounds``), so that a drifting machine
    load affects them alike and their time ratios stay meaningful.
    """
    records = {
        kind: {"model": kind, "variant": variant.name, "batch": args.batch, "max_batch": None}
        for kind in args.models
    }
    runners = {kind: prepare(kind, variant, device, args) for kind in args.models}
    inputs = make_inputs(
        args.batch, args.image_size, args.num_classes, device, variant.channels_last
    )
    for phase in ("train", "inference"):
        fns = {
            kind: (partial(r.train_step, *inputs) if phase == "train"
                   else partial(r.infer_step, *inputs[:2]))
            for kind, r in runners.items()
        }
        timings = time_group(
            fns, device, warmup=args.warmup, min_run_time=args.min_run_time, rounds=args.rounds,
            min_runs=args.min_runs,
        )
        for kind, t in timings.items():
            if isinstance(t, Exception):
                records[kind][phase] = {"error": _error(t)}
            else:
                result = t.to_dict()
                result.pop("peak_mem_mib")
                result["samples_per_s"] = args.batch / (t.median_ms / 1e3)
                records[kind][phase] = result
            print(
                f"  {kind:<15} {variant.name:<16} {phase:<9} "
                f"{fmt(records[kind][phase].get('samples_per_s'))} samples/s",
                file=sys.stderr,
                flush=True,
            )
    for kind, runner in runners.items():
        train = records[kind]["train"]
        if "error" not in train:
            train["peak_mem_mib"] = _own_peak_mib(runner, inputs)
    del fns, inputs
    runners.clear()
    free_memory(device)
    if device.type == "cuda" and args.max_batch and not variant.compile:
        for kind in args.models:  # one model at a time on the GPU
            runner = prepare(kind, variant, device, args)
            records[kind]["max_batch"] = largest_batch(runner, args.batch, args.max_batch_cap, args)
            print(f"  {kind:<15} {variant.name:<16} largest batch {records[kind]['max_batch']}",
                  file=sys.stderr, flush=True)
            del runner
            free_memory(device)
    return list(records.values())


def _find(records: Sequence[dict[str, Any]], model: str, variant: str) -> dict[str, Any] | None:
    return next((r for r in records if r["model"] == model and r["variant"] == variant), None)


def compare(
    records: Sequence[dict[str, Any]], flops: dict[str, Any], variants: Sequence[Variant]
) -> list[dict[str, Any]]:
    """DAG-Net's time ratio over each reference model against their FLOP ratio."""
    rows = []
    for variant in variants:
        ours = _find(records, "dagnet", variant.name)
        for other in ("dagnet_light", "backbones_only", "two_stream"):
            ref = _find(records, other, variant.name)
            if ours is None or ref is None:
                continue
            for phase, flop_key in (("train", "train_per_sample"), ("inference",
                                                                   "forward_per_sample")):
                t_ours = ours.get(phase, {}).get("median_ms")
                t_ref = ref.get(phase, {}).get("median_ms")
                if t_ours is None or t_ref is None:
                    continue
                time_ratio = t_ours / t_ref
                flop_ratio = flops["dagnet"][flop_key] / flops[other][flop_key]
                rows.append(
                    {
                        "variant": variant.name,
                        "phase": phase,
                        "versus": other,
                        "time_ratio": time_ratio,
                        "flop_ratio": flop_ratio,
                        "time_over_flop_ratio": time_ratio / flop_ratio,
                    }
                )
    return rows


def evaluate_targets(
    records: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The issue's model-level targets."""
    targets = []
    for c in comparisons:
        if c["versus"] == "backbones_only" and c["phase"] == "train":
            targets.append(
                {
                    "target": "DAG-Net step time / backbones-only step time <= 1.1x their "
                              "FLOP ratio",
                    "variant": c["variant"],
                    "measured": c["time_over_flop_ratio"],
                    "threshold": 1.1,
                    "comparison": "<=",
                    "met": c["time_over_flop_ratio"] <= 1.1,
                }
            )
    base = _find(records, "dagnet", BASELINE_VARIANT)
    fast = _find(records, "dagnet", FAST_VARIANT)
    if base is not None and fast is not None:
        t_base = base.get("train", {}).get("samples_per_s")
        t_fast = fast.get("train", {}).get("samples_per_s")
        ratio = t_fast / t_base if t_base and t_fast else None
        targets.append(
            {
                "target": f"DAG-Net training throughput {FAST_VARIANT} / eager {BASELINE_VARIANT} "
                          ">= 1.3 (CUDA target)",
                "variant": FAST_VARIANT,
                "measured": ratio,
                "threshold": 1.3,
                "comparison": ">=",
                "met": None if ratio is None else ratio >= 1.3,
            }
        )
    return targets


def module_targets(module_timings: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-module targets of ``benchmarks/README.md``, per timed variant."""
    targets = []
    for timing in module_timings:
        summary = timing.get("summary") or {}
        groups = summary.get("groups")
        if not groups:
            continue
        extra = groups["extra"]
        targets.append({
            "target": "DAG-Net extras' time share <= their FLOP share (time share / FLOP share)",
            "variant": timing["variant"],
            "measured": extra["time_over_flop"],
            "threshold": 1.0,
            "comparison": "<=",
            "met": extra["time_over_flop"] <= 1.0,
        })
        encoder = next((r for r in timing["modules"] if r["module"] == "patch_encoder"), None)
        backbone = groups["backbone"]["time_over_flop"]
        if encoder is not None and encoder.get("time_over_flop") and backbone:
            ratio = encoder["time_over_flop"] / backbone
            targets.append({
                "target": "patch encoder time/FLOP <= the backbones' (encoder's over theirs)",
                "variant": timing["variant"],
                "measured": ratio,
                "threshold": 1.0,
                "comparison": "<=",
                "met": ratio <= 1.0,
            })
    return targets


# ----------------------------------------------------------------- output
def _gflops(value: float) -> str:
    return fmt(value / 1e9, 2)


def _ms_iqr(timing: dict[str, Any]) -> str:
    """``median (IQR)`` in milliseconds, or ``n/a``."""
    if timing.get("median_ms") is None:
        return "n/a"
    return f"{fmt(timing['median_ms'], 1)} ({fmt(timing.get('iqr_ms'), 1)})"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def to_markdown(report: dict[str, Any]) -> str:
    """Throughput, FLOP, comparison and target tables, then the environment."""
    env = report["env"]
    s = report["settings"]
    parts = [
        f"# Model benchmarks: {env['device_name']} ({env['device']})",
        "",
        f"Batch {s['batch']}, {s['image_size']} x {s['image_size']} body and context images, "
        f"DAG-Net variant `{s['model']}`, baseline `{s['baseline']}`. Throughput in samples/s "
        "(median step time); training step = forward + BCE loss + backward + SGD step. "
        "Peak memory and largest batch: CUDA only.",
        "",
        "## Throughput",
        "",
    ]
    rows = []
    for r in report["results"]:
        train, infer = r.get("train", {}), r.get("inference", {})
        rows.append(
            (
                r["model"], r["variant"],
                fmt(train.get("samples_per_s"), 1), _ms_iqr(train),
                fmt(infer.get("samples_per_s"), 1), _ms_iqr(infer),
                fmt(train.get("peak_mem_mib"), 0),
                "n/a" if r["max_batch"] is None else r["max_batch"],
                train.get("error", "") or infer.get("error", ""),
            )
        )
    parts.append(
        markdown_table(
            ["model", "variant", "train samples/s", "train step ms (IQR)", "infer samples/s",
             "infer ms (IQR)", f"train peak MiB (B={s['batch']})", "largest batch", "error"],
            rows,
        )
    )
    parts += ["", "## FLOPs per sample", ""]
    flops = report["flops"]
    parts.append(
        markdown_table(
            ["model", "params (M)", "forward GFLOP", "train (fwd+bwd) GFLOP"],
            [
                (m, fmt(f["params"] / 1e6, 1), _gflops(f["forward_per_sample"]),
                 _gflops(f["train_per_sample"]))
                for m, f in flops.items()
            ],
        )
    )
    breakdown = flops.get("dagnet", {}).get("forward_breakdown_per_sample", {})
    if breakdown:
        total = flops["dagnet"]["forward_per_sample"]
        parts += ["", "DAG-Net forward FLOPs by module:", ""]
        parts.append(
            markdown_table(
                ["module", "GFLOP / sample", "share"],
                [(k, _gflops(v), f"{100 * v / total:.1f}%") for k, v in breakdown.items()],
            )
        )
    if report.get("gsam"):
        parts += ["", f"## GSAM attention block: ABN's stride-1 last stage vs the light block "
                  f"({BASELINE_VARIANT})", "",
                  "Branch = the whole attention branch (block, BN, 1x1 convs, map). Its training "
                  "time is forward + backward alone on its input map, timed interleaved; its "
                  "share is that time over the whole model's training step.", ""]
        parts.append(
            markdown_table(
                ["block", "branch params (M)", "branch fwd GFLOP / sample",
                 "share of model fwd FLOPs", "branch train ms (IQR)", "model train step ms",
                 "share of the step's time"],
                [
                    (g["block"], fmt(g["branch_params"] / 1e6, 2),
                     fmt(g["branch_forward_gflop"], 3),
                     _percent(g["branch_forward_flop_share"]),
                     _ms_iqr({"median_ms": g["branch_train_ms"],
                              "iqr_ms": g.get("branch_train_iqr_ms")}),
                     fmt(g["model_train_step_ms"], 1),
                     _percent(g["branch_train_time_share"]))
                    for g in report["gsam"]
                ],
            )
        )
    for timing in report.get("module_timings") or []:
        parts += ["", f"## DAG-Net's modules alone: time against FLOPs ({timing['variant']})", "",
                  "Each module runs forward + backward alone on the inputs it gets in a "
                  "training forward of the whole model, all modules timed interleaved; "
                  "FLOPs counted on the same call. Shares are over the modules' sum; "
                  "time / FLOP = time share / FLOP share (below 1: faster than the "
                  "modules' average). Glue outside any module (concatenation, context "
                  "pooling, loss, optimizer) is in the whole step only.", ""]
        summary = timing.get("summary") or {}
        body_rows = []
        for r in timing["modules"]:
            body_rows.append((
                r["module"], r["kind"], fmt(r["train_gflop_per_sample"], 4),
                r.get("error") or _ms_iqr(r),
                fmt(r.get("gflop_per_s"), 1),
                _percent(r.get("time_share")), _percent(r.get("flop_share")),
                fmt(r.get("time_over_flop"), 3),
            ))
        for kind, g in (summary.get("groups") or {}).items():
            body_rows.append((f"**{kind}s**", "", "", "", "", _percent(g["time_share"]),
                              _percent(g["flop_share"]), fmt(g["time_over_flop"], 3)))
        parts.append(markdown_table(
            ["module", "kind", "train GFLOP / sample", "train ms (IQR)", "GFLOP/s",
             "time share", "FLOP share", "time / FLOP"],
            body_rows,
        ))
        step = _find(report["results"], "dagnet", timing["variant"])
        step_ms = (step or {}).get("train", {}).get("median_ms")
        if step_ms and summary.get("total_module_ms"):
            parts += ["", f"The modules alone sum to {fmt(summary['total_module_ms'], 1)} ms; "
                      f"the whole training step takes {fmt(step_ms, 1)} ms."]
    if report["comparisons"]:
        parts += ["", "## Time ratio against FLOP ratio", ""]
        parts.append(
            markdown_table(
                ["variant", "phase", "DAG-Net vs", "time ratio", "FLOP ratio", "time / FLOP ratio"],
                [
                    (c["variant"], c["phase"], c["versus"], fmt(c["time_ratio"], 3),
                     fmt(c["flop_ratio"], 3), fmt(c["time_over_flop_ratio"], 3))
                    for c in report["comparisons"]
                ],
            )
        )
    if report["targets"]:
        parts += ["", "## Targets", ""]
        parts.append(
            markdown_table(
                ["target", "variant", "measured", "needed", "met"],
                [
                    (t["target"], t["variant"], fmt(t["measured"], 3),
                     f"{t['comparison']} {t['threshold']:g}",
                     {True: "yes", False: "**no**", None: "n/a"}[t["met"]])
                    for t in report["targets"]
                ],
            )
        )
    parts += ["", "## Environment", "", environment_markdown(env)]
    return "\n".join(parts)


# -------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; device-dependent defaults are filled in afterwards."""
    p = argparse.ArgumentParser(
        description=(
            "DAG-Net training and inference throughput against its backbones alone and the "
            "two-stream EMOTIC baseline, with FLOPs per sample and (CUDA) memory."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(p, "the models are")
    p.add_argument("--variants", nargs="+", type=Variant.parse, default=None,
                   help="variants to run, each fp32|bf16 followed by +cl (channels_last), "
                        "+compile (torch.compile) and/or +ckpt (activation checkpointing). "
                        "Default: fp32 bf16 bf16+cl bf16+cl+compile fp32+ckpt on CUDA, fp32 on "
                        "CPU")
    p.add_argument("--module-variants", nargs="*", type=Variant.parse, default=None,
                   help="variants in which each DAG-Net module is also timed alone (time "
                        "and FLOP shares; eager, no +compile or +ckpt; none: skip). "
                        "Default: fp32 bf16+cl on CUDA, fp32 on CPU")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                   help="models to run: dagnet, dagnet_light (light GSAM block), "
                        "backbones_only (its two backbones + a linear head), two_stream "
                        "(the EMOTIC baseline)")
    p.add_argument("--model", default="dagnet_r50_r18",
                   help="registry name of the DAG-Net variant (dagnet_layers.list_models())")
    p.add_argument("--baseline", default="two_stream_r18_r18",
                   help="registry name of the two-stream baseline")
    p.add_argument("--num-classes", type=int, default=26, help="category logits (EMOTIC: 26)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size. Default: 32 on CUDA (the paper), 8 on CPU")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the body and context images (must be divisible by the "
                        "partition N). Default: 224 on CUDA (the paper), 112 on CPU")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps before timing. Default: 5 on CUDA, 1 on CPU")
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds of timed steps per model and phase, summed over the rounds. "
                        "Default: 3.0 on CUDA, 6.0 on CPU")
    p.add_argument("--max-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="search the largest training batch that fits (CUDA only, eager variants)")
    p.add_argument("--max-batch-cap", type=int, default=2048,
                   help="upper bound of the largest-batch search")
    p.add_argument("--quick", action="store_true",
                   help="tiny test models at 32 px, batch 4, short timings (smoke test)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output path (a .md is written next to it). "
                        "Default: runs/benchmarks/model_<device-slug>[_quick].json; the committed "
                        "benchmarks/results/ are replaced only when named here")
    args = p.parse_args(argv)
    args.baseline_overrides = {}
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.quick:
        quick: dict[str, Any] = dict(batch=4, image_size=32, warmup=1, min_run_time=0.01)
        args.rounds = args.min_runs = 1
        fill_defaults(args, quick)
        if args.model == "dagnet_r50_r18":
            args.model = "test_dagnet"
        # the two-stream baseline on timm's tiny test backbones
        args.baseline_overrides = dict(
            body_backbone="test_resnet", context_backbone="test_resnet", fusion_hidden=32
        )
        args.max_batch_cap = min(args.max_batch_cap, 64)
    defaults: dict[str, Any] = dict(
        variants=[Variant.parse(v) for v in (
            ["fp32", "bf16", "bf16+cl", "bf16+cl+compile", "fp32+ckpt"] if cuda else ["fp32"]
        )],
        module_variants=[Variant.parse(v) for v in (["fp32", "bf16+cl"] if cuda else ["fp32"])],
        batch=32 if cuda else 8,
        image_size=224 if cuda else 112,
        warmup=5 if cuda else 1,
        min_run_time=3.0 if cuda else 6.0,
    )
    fill_defaults(args, defaults)
    args.device = device
    refused = [v.name for v in args.module_variants if v.compile or v.checkpoint]
    if refused:
        p.error(f"--module-variants times eager modules without checkpointing; "
                f"drop {', '.join(refused)}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the model benchmark; returns the report that is also written to ``--out``."""
    args = parse_args(argv)
    device: torch.device = args.device
    configure_torch(args)
    flops = {kind: count_flops(kind, args) for kind in args.models}
    load_start = loadavg()
    records = [r for variant in args.variants for r in run_variant(variant, device, args)]
    comparisons = compare(records, flops, args.variants)
    attention_blocks = (time_attention_blocks(device, args)
                        if {"dagnet", "dagnet_light"} <= set(args.models) else {})
    module_timings = ([time_modules(v, device, args) for v in args.module_variants]
                      if "dagnet" in args.models else [])
    settings = {
        "batch": args.batch,
        "image_size": args.image_size,
        "model": args.model,
        "baseline": args.baseline,
        "baseline_overrides": args.baseline_overrides,
        "variants": [v.name for v in args.variants],
        "module_variants": [v.name for v in args.module_variants],
        "models": list(args.models),
        "optimizer": "SGD(lr=1e-4, momentum=0.9)",
        "checkpointing": "torch.utils.checkpoint(use_reentrant=False) around the body "
                         "backbone, both context-backbone parts and DAG-Net's patch encoder",
    }
    env = environment(
        device,
        dtype=sorted({v.dtype for v in args.variants}),
        compile=any(v.compile for v in args.variants),
        channels_last=any(v.channels_last for v in args.variants),
        quick=args.quick,
        warmup=args.warmup,
        min_run_time_s=args.min_run_time,
        rounds=args.rounds,
        min_runs=args.min_runs,
        loadavg_1min_start=load_start,
        loadavg_1min_end=loadavg(),
    )
    report = {
        "benchmark": "model",
        "env": env,
        "settings": settings,
        "flops": flops,
        "results": records,
        "comparisons": comparisons,
        "targets": evaluate_targets(records, comparisons) + module_targets(module_timings),
        "attention_blocks": attention_blocks,
        "module_timings": module_timings,
    }
    report["gsam"] = gsam_summary(report)
    markdown = to_markdown(report)
    print(markdown)
    out = args.out or default_output("model", device, args.quick)
    json_path, md_path = write_outputs(report, markdown, out)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
