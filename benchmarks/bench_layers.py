"""Layer benchmarks of dagnet-layers against reference implementations of the same maths.

Times the forward pass and the forward + backward pass of DAG-Net's layers
at the paper's sizes (batch 32, 224 x 224, N = 4) and scaled ones (N up to 9,
batch up to 256 on CUDA; smaller defaults on CPU):

- ``BodyAttention`` (BAM) on the body image, weighting ResNet-50 features;
- ``AttentionBranch`` (GSAM) on the ResNet-18 ``layer3`` map (256 x H/16 x W/16);
- ``PatchEncoder`` (``PatchPartition`` + two 3x3 convolutions + pooling),
  against a Python loop feeding the encoder one patch at a time (the issue's
  reference) and a loop over the N x N patch positions batched over samples;
- ``LearnedAdjacencyGCN`` (1024 -> 1024 -> 1024 -> 512, mean readout, symmetric
  normalisation) against PyG's ``DenseGCNConv`` with the same adjacency and
  PyG's sparse ``GCNConv`` on a batched graph (B offset copies of the dense
  N^2-node graph, built once outside the timed region).

Every reference is checked numerically against ours (outputs and gradients,
fp32, outside the timed region); the ``check`` column says whether they agree.
Prints markdown tables and writes JSON + markdown to ``--out``.

Example::

    python benchmarks/bench_layers.py                       # CPU defaults
    python benchmarks/bench_layers.py --device cuda --dtype fp32 bf16 --compile
    python benchmarks/bench_layers.py --quick --out /tmp/layers.json
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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

try:  # the GCN rows compare with PyG's layers: the pyg extra (in [all] and [test])
    from torch_geometric.nn import DenseGCNConv, GCNConv
except ImportError as err:
    raise SystemExit("bench_layers.py compares our GCN with PyTorch Geometric's layers: "
                     f"pip install 'dagnet-layers[pyg]' ({err})") from err

from dagnet_layers import (
    AttentionBranch,
    BodyAttention,
    LearnedAdjacencyGCN,
    PatchEncoder,
)

LAYERS = ("body_attention", "attention_branch", "patch_encoder", "gcn")
PASSES = ("fwd", "fwd+bwd")
PAPER = {"batch": 32, "image_size": 224, "n": 4}
GCN_WIDTHS = (1024, (1024, 1024, 512))  # paper: 1024-d nodes, layers 1024, 1024, 512
BODY_FEATURES = 2048  # ResNet-50 pooled features, weighted by BAM
ABN_CHANNELS = 256  # ResNet-18 layer3, where the attention branch sits


# ------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One problem size.

    Attributes:
        name: Label in the tables (``base``, ``N=9``, ``B=256``...).
        batch: Batch size B.
        image_size: Requested image side; the patch encoder uses the largest
            multiple of ``n`` not above it.
        n: Patches per side N (N^2 graph nodes).
    """

    name: str
    batch: int
    image_size: int
    n: int

    @property
    def patch_image_size(self) -> int:
        """Image side divisible by ``n`` (what PatchEncoder gets)."""
        return max(self.n, self.image_size // self.n * self.n)


def build_cases(
    batch: int, image_size: int, partitions: Sequence[int], scaled_batches: Sequence[int]
) -> list[Case]:
    """The base case (N = 4), each N of ``partitions``, each batch of ``scaled_batches``
    (N = 4), and the largest batch with the largest N."""
    cases = [Case("base", batch, image_size, 4)]
    cases += [Case(f"N={n}", batch, image_size, n) for n in partitions if n != 4]
    cases += [Case(f"B={b}", b, image_size, 4) for b in scaled_batches if b != batch]
    big_n = max([n for n in partitions if n != 4], default=None)
    big_b = max([b for b in scaled_batches if b != batch], default=None)
    if big_n is not None and big_b is not None:
        cases.append(Case(f"B={big_b},N={big_n}", big_b, image_size, big_n))
    return cases


# ------------------------------------------------------------- references
class PerPatchLoop(nn.Module):
    """The issue's reference: a Python loop feeding the encoder one patch at a time.

    Runs ``encoder.encode_patches`` on each of the B * N^2 patches separately
    (a (1, 1, C, h, w) tensor per call) and stacks the results, so it computes
    exactly what the batched encoder computes, with B * N^2 kernel launches
    per convolution instead of one.
    """

    def __init__(self, encoder: PatchEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> Tensor:
        """Encode (B, C, H, W) into (B, N^2, D), one patch per call."""
        patches = self.encoder.partition(x)
        b, p = patches.shape[:2]
        feats = [
            self.encoder.encode_patches(patches[i : i + 1, j : j + 1])
            for i in range(b)
            for j in range(p)
        ]
        return torch.cat(feats, dim=1).reshape(b, p, -1)


class PerPositionLoop(nn.Module):
    """A milder loop: one call per patch position (i, j), batched over the B samples."""

    def __init__(self, encoder: PatchEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> Tensor:
        """Encode (B, C, H, W) into (B, N^2, D), one patch position per call."""
        patches = self.encoder.partition(x)
        feats = [
            self.encoder.encode_patches(patches[:, j : j + 1]) for j in range(patches.shape[1])
        ]
        return torch.cat(feats, dim=1)


def _raw_symmetric_adjacency(adjacency: Tensor) -> Tensor:
    """:math:`\\tilde A = \\max(A, 0) + I`: what our ``normalization="symmetric"`` normalises.

    Passed un-normalised to the PyG layers, which apply the same
    :math:`\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2}` themselves.
    """
    eye = torch.eye(adjacency.shape[-1], dtype=adjacency.dtype, device=adjacency.device)
    return adjacency.clamp(min=0) + eye


class DenseGCNReference(nn.Module):
    """The same GCN with PyG's ``DenseGCNConv`` layers and the same learned adjacency.

    Each ``DenseGCNConv(add_loop=False)`` gets :math:`\\tilde A = \\max(A, 0) + I` and
    normalises it as :math:`\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2}` (its degrees
    are at least 1, so its ``clamp(min=1)`` never acts): exactly our
    ``normalization="symmetric"``. Weights, biases and adjacency are copied from
    ``ours``; the adjacency stays a parameter so the backward pass matches too.
    """

    def __init__(self, ours: LearnedAdjacencyGCN) -> None:
        super().__init__()
        if ours.normalization != "symmetric" or ours.readout != "mean":
            raise ValueError("the PyG references reproduce normalization='symmetric', mean readout")
        self.adjacency = nn.Parameter(ours.adjacency.detach().clone())
        widths = (ours.in_features, *ours.hidden_features)
        self.convs = nn.ModuleList(
            DenseGCNConv(w_in, w_out) for w_in, w_out in itertools.pairwise(widths)
        )
        with torch.no_grad():
            for i, conv in enumerate(self.convs):
                conv.lin.weight.copy_(ours.weights[i].T)
                conv.bias.copy_(ours.biases[i])

    def forward(self, x: Tensor) -> Tensor:
        """(B, M, F) -> (B, F_L)."""
        adj = _raw_symmetric_adjacency(self.adjacency)
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h, adj, add_loop=False))
        return h.mean(dim=1)


class SparseGCNReference(nn.Module):
    """The same GCN with PyG's sparse ``GCNConv`` on a batched graph.

    The batch is one disconnected graph of B copies of the M-node graph (node
    ``b * M + i``). The adjacency is learned and dense, so every ordered pair is
    an edge (B * M^2 edges); the batched ``edge_index`` is built once here, and
    the forward pass only gathers the current edge weights
    :math:`\\tilde A_{ij}` (edge ``j -> i``) from the adjacency parameter.
    ``GCNConv(add_self_loops=False, normalize=True)`` then computes the same
    symmetric normalisation (degrees are the row sums of :math:`\\tilde A`).
    """

    def __init__(self, ours: LearnedAdjacencyGCN, batch: int) -> None:
        super().__init__()
        if ours.normalization != "symmetric" or ours.readout != "mean":
            raise ValueError("the PyG references reproduce normalization='symmetric', mean readout")
        m = ours.num_nodes
        self.num_nodes = m
        self.batch = batch
        self.adjacency = nn.Parameter(ours.adjacency.detach().clone())
        widths = (ours.in_features, *ours.hidden_features)
        self.convs = nn.ModuleList(
            GCNConv(w_in, w_out, add_self_loops=False, normalize=True)
            for w_in, w_out in itertools.pairwise(widths)
        )
        with torch.no_grad():
            for i, conv in enumerate(self.convs):
                conv.lin.weight.copy_(ours.weights[i].T)
                conv.bias.copy_(ours.biases[i])
        device = ours.adjacency.device
        nodes = torch.arange(m, device=device)
        target = nodes.repeat_interleave(m)  # edge j -> i carries A[i, j]
        source = nodes.repeat(m)
        offsets = (torch.arange(batch, device=device) * m).repeat_interleave(m * m)
        self.register_buffer("pair_target", target, persistent=False)
        self.register_buffer("pair_source", source, persistent=False)
        self.register_buffer(
            "edge_index",
            torch.stack([source.repeat(batch) + offsets, target.repeat(batch) + offsets]),
            persistent=False,
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, M, F) -> (B, F_L), B at most the batch the graph was built for."""
        b = x.shape[0]
        if b > self.batch:
            raise ValueError(f"SparseGCNReference was built for batch <= {self.batch}, got {b}")
        # the graphs are stored one after the other: the first b fill the first b*M^2 edges
        edge_index = self.edge_index[:, : b * self.num_nodes**2]
        adj = _raw_symmetric_adjacency(self.adjacency)
        edge_weight = adj[self.pair_target, self.pair_source].repeat(b)
        h = x.reshape(b * self.num_nodes, -1)
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index, edge_weight))
        return h.view(b, self.num_nodes, -1).mean(dim=1)


# ------------------------------------------------------------- layer setup
@dataclass
class Impl:
    """One implementation to time: a module, its inputs and whether to compile it.

    Attributes:
        module: The module; called as ``module(*inputs)``.
        compilable: Compile it when ``--compile`` is on (Python loops over
            patches and PyG's scatter-based sparse path always run eagerly).
    """

    module: nn.Module
    compilable: bool = True


@dataclass
class LayerSetup:
    """Everything to benchmark one layer at one case."""

    ours: Impl
    inputs: tuple[Tensor, ...]
    references: dict[str, Impl] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    channels_last: bool = False


def _loss(out: Any) -> Tensor:
    """Sum of every tensor in a layer output (tensor or NamedTuple), in fp32."""
    if isinstance(out, Tensor):
        return out.float().sum()
    tensors = [t.float().sum() for t in out if isinstance(t, Tensor)]
    return torch.stack(tensors).sum()


def _image(case: Case, device: torch.device, side: int | None = None) -> Tensor:
    side = side or case.image_size
    return torch.randn(case.batch, 3, side, side, device=device)


def setup_body_attention(case: Case, device: torch.device, args: argparse.Namespace) -> LayerSetup:
    """BAM weighting ResNet-50 pooled features by the credibility of the body image."""
    ours = BodyAttention(3, 16).to(device)
    image = _image(case, device)
    features = torch.randn(case.batch, BODY_FEATURES, device=device, requires_grad=True)
    return LayerSetup(Impl(ours), (image, features), channels_last=True)


def setup_attention_branch(
    case: Case, device: torch.device, args: argparse.Namespace
) -> LayerSetup:
    """ABN on the ResNet-18 layer3 map of the context image (stride 16)."""
    ours = AttentionBranch(ABN_CHANNELS, num_classes=26).to(device)
    side = max(1, case.image_size // 16)
    g = torch.randn(case.batch, ABN_CHANNELS, side, side, device=device, requires_grad=True)
    return LayerSetup(Impl(ours), (g,), channels_last=True)


def setup_patch_encoder(case: Case, device: torch.device, args: argparse.Namespace) -> LayerSetup:
    """Batched PatchEncoder against the per-patch and per-position loops."""
    ours = PatchEncoder(3, n=case.n).to(device)
    image = _image(case, device, case.patch_image_size)
    setup = LayerSetup(Impl(ours), (image,), channels_last=True)
    patches = case.batch * case.n * case.n
    if patches <= args.loop_max_patches:
        setup.references["per_patch_loop"] = Impl(PerPatchLoop(ours), compilable=False)
    else:
        setup.skipped["per_patch_loop"] = (
            f"{patches} patches > --loop-max-patches {args.loop_max_patches}"
        )
    setup.references["per_position_loop"] = Impl(PerPositionLoop(ours), compilable=False)
    return setup


def setup_gcn(case: Case, device: torch.device, args: argparse.Namespace) -> LayerSetup:
    """LearnedAdjacencyGCN against PyG DenseGCNConv and sparse GCNConv."""
    in_features, hidden = GCN_WIDTHS
    m = case.n * case.n
    ours = LearnedAdjacencyGCN(
        in_features, hidden, num_nodes=m, normalization="symmetric", readout="mean"
    )
    with torch.no_grad():  # a trained adjacency is dense: no structural zeros to exploit
        ours.adjacency.add_(0.05 * torch.rand(m, m))
    ours = ours.to(device)
    x = torch.randn(case.batch, m, in_features, device=device, requires_grad=True)
    refs = {
        "dense_gcn_conv": Impl(DenseGCNReference(ours).to(device)),
        "sparse_gcn_conv": Impl(SparseGCNReference(ours, case.batch).to(device), compilable=False),
    }
    return LayerSetup(Impl(ours), (x,), refs)


SETUPS: dict[str, Callable[[Case, torch.device, argparse.Namespace], LayerSetup]] = {
    "body_attention": setup_body_attention,
    "attention_branch": setup_attention_branch,
    "patch_encoder": setup_patch_encoder,
    "gcn": setup_gcn,
}

#: Layers whose cost does not depend on N only run the N = 4 cases.
N_INDEPENDENT = {"body_attention", "attention_branch"}


# ----------------------------------------------------------------- checks
def _gcn_tensors(module: nn.Module) -> list[Tensor]:
    """Adjacency, then each layer's (in, out) weight, then each bias, for ours or a reference.

    PyG layers store ``lin.weight`` as (out, in); it is returned as is and
    transposed when the gradients are compared.
    """
    if isinstance(module, LearnedAdjacencyGCN):
        assert module.biases is not None
        return [module.adjacency, *module.weights, *module.biases]
    convs = module.convs  # DenseGCNReference / SparseGCNReference
    return [module.adjacency, *(c.lin.weight for c in convs), *(c.bias for c in convs)]


def _grads(module: nn.Module, inputs: Sequence[Tensor], wrt: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of the summed output of ``module(*inputs)`` w.r.t. ``wrt``."""
    out = module(*inputs)
    grads = torch.autograd.grad(_loss(out), list(wrt), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]


def check_reference(
    layer: str, ours: nn.Module, ref: nn.Module, inputs: Sequence[Tensor], max_batch: int
) -> dict[str, Any]:
    """Compare ``ref`` with ``ours`` in float64: outputs and gradients (``allclose``).

    Both are deep-copied to float64 and run on the first ``max_batch`` samples
    (every layer compared here treats samples independently), so the check
    tests the maths, not float32 summation order, and stays affordable at
    large batches. GCN references own copies of the parameters: the gradients
    w.r.t. the input, the adjacency, every weight and every bias are compared
    one to one. Patch-encoder loops wrap a copy of our encoder: the gradients
    w.r.t. its parameters are compared.
    """
    ours, ref = copy.deepcopy(ours).double(), copy.deepcopy(ref).double()
    inputs = [
        t[:max_batch].detach().double().requires_grad_(t.requires_grad) for t in inputs
    ]
    with torch.no_grad():
        out_ours, out_ref = ours(*inputs), ref(*inputs)
    scale = max(1.0, float(out_ours.abs().max()))
    fwd_err = float((out_ours - out_ref).abs().max())
    forward_ok = bool(torch.allclose(out_ours, out_ref, rtol=1e-6, atol=1e-9 * scale))
    grad_inputs = [t for t in inputs if t.requires_grad]
    if layer == "gcn":
        g_ours = _grads(ours, inputs, [*grad_inputs, *_gcn_tensors(ours)])
        g_ref = _grads(ref, inputs, [*grad_inputs, *_gcn_tensors(ref)])
        n_layers = len(ours.weights)  # type: ignore[arg-type]
        first, last = 1 + len(grad_inputs), 1 + len(grad_inputs) + n_layers
        g_ref[first:last] = [g.T for g in g_ref[first:last]]  # PyG weights are (out, in)
    else:
        g_ours = _grads(ours, inputs, [*grad_inputs, *ours.parameters()])
        g_ref = _grads(ref, inputs, [*grad_inputs, *ref.parameters()])
    bwd_err = 0.0
    backward_ok = True
    for a, b in zip(g_ours, g_ref, strict=True):
        gscale = max(1e-12, float(a.abs().max()))
        bwd_err = max(bwd_err, float((a - b).abs().max()) / gscale)
        backward_ok = backward_ok and bool(torch.allclose(a, b, rtol=1e-6, atol=1e-9 * gscale))
    return {
        "dtype": "float64",
        "samples": int(inputs[0].shape[0]),
        "forward": forward_ok,
        "backward": backward_ok,
        "passed": forward_ok and backward_ok,
        "max_abs_err_forward": fwd_err,
        "max_rel_err_backward": bwd_err,
    }


# ----------------------------------------------------------------- timing
def make_callable(
    module: nn.Module,
    inputs: Sequence[Tensor],
    device: torch.device,
    dtype: str,
    backward: bool,
) -> Callable[[], None]:
    """A no-argument closure running one forward (no grad) or forward + backward."""
    params = [p for p in module.parameters() if p.requires_grad]
    grad_inputs = [t for t in inputs if t.requires_grad]

    if not backward:

        def forward() -> None:
            with torch.no_grad(), autocast(device, dtype):
                module(*inputs)

        return forward

    def forward_backward() -> None:
        for t in (*params, *grad_inputs):
            t.grad = None
        with autocast(device, dtype):
            out = module(*inputs)
        _loss(out).backward()

    return forward_backward


def _error(err: BaseException) -> str:
    if is_oom(err):
        return "out of memory"
    return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"


def time_impls(
    impls: dict[str, Impl],
    inputs: Sequence[Tensor],
    device: torch.device,
    dtype: str,
    compiled: bool,
    backward: bool,
    args: argparse.Namespace,
    cache: dict[int, nn.Module],
) -> dict[str, dict[str, Any]]:
    """Time implementations interleaved; errors (OOM, unsupported dtype) are recorded."""
    fns = {}
    flags = {}
    for name, impl in impls.items():
        module = impl.module
        flags[name] = compiled and impl.compilable
        if flags[name]:
            if id(module) not in cache:
                cache[id(module)] = torch.compile(module)
            module = cache[id(module)]
        fns[name] = make_callable(module, inputs, device, dtype, backward)
    timings = time_group(
        fns, device, warmup=args.warmup, min_run_time=args.min_run_time, rounds=args.rounds,
        min_runs=args.min_runs,
    )
    results: dict[str, dict[str, Any]] = {}
    for name, timing in timings.items():
        if isinstance(timing, Exception):
            results[name] = {"error": _error(timing)}
        else:
            results[name] = timing.to_dict()
        results[name]["compiled"] = flags[name]
    return results


def run_layer(
    layer: str, case: Case, device: torch.device, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """All dtype / compile / pass records of one layer at one case."""
    torch.manual_seed(0)
    setup = SETUPS[layer](case, device, args)
    ours = setup.ours.module
    inputs = setup.inputs
    checks: dict[str, Any] = {}
    for name, ref in setup.references.items():
        try:
            checks[name] = check_reference(layer, ours, ref.module, inputs, args.check_batch)
        except Exception as err:
            checks[name] = {"passed": False, "error": f"{type(err).__name__}: {err}"}
    if args.channels_last and setup.channels_last:
        ours.to(memory_format=torch.channels_last)
        inputs = tuple(
            t.detach().to(memory_format=torch.channels_last).requires_grad_(t.requires_grad)
            if t.dim() == 4
            else t
            for t in inputs
        )
    records = []
    cache: dict[int, nn.Module] = {}
    for dtype in args.dtype:
        for compiled in [False, True] if args.compile else [False]:
            for pass_name in PASSES:
                backward = pass_name == "fwd+bwd"
                timed = time_impls(
                    {"ours": setup.ours, **setup.references},
                    inputs, device, dtype, compiled, backward, args, cache,
                )
                ours_t = timed.pop("ours")
                refs: dict[str, Any] = {}
                for name, ref_t in timed.items():
                    if "median_ms" in ref_t and "median_ms" in ours_t:
                        ref_t["ratio"] = ref_t["median_ms"] / ours_t["median_ms"]
                    ref_t["check"] = checks[name]
                    refs[name] = ref_t
                for name, why in setup.skipped.items():
                    refs[name] = {"skipped": why}
                records.append(
                    {
                        "layer": layer,
                        "case": case.name,
                        "batch": case.batch,
                        "image_size": (
                            case.patch_image_size if layer == "patch_encoder" else case.image_size
                        ),
                        "n": case.n,
                        "nodes": case.n * case.n,
                        "dtype": dtype,
                        "compile": compiled,
                        "channels_last": bool(args.channels_last and setup.channels_last),
                        "pass": pass_name,
                        "ours": ours_t,
                        "references": refs,
                    }
                )
                _progress(records[-1])
    del setup, ours, inputs, cache
    free_memory(device)
    return records


def _progress(rec: dict[str, Any]) -> None:
    ours = rec["ours"].get("median_ms")
    refs = ", ".join(
        f"{k}={fmt(v.get('ratio'))}x" for k, v in rec["references"].items() if "ratio" in v
    )
    print(
        f"  {rec['layer']:<17} {rec['case']:<10} {rec['dtype']} compile={rec['compile']!s:<5} "
        f"{rec['pass']:<7} ours={fmt(ours, 3)} ms {refs}",
        file=sys.stderr,
        flush=True,
    )


# ---------------------------------------------------------------- targets
def evaluate_targets(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's layer targets, one entry per (dtype, compile) variant.

    GCN targets are read at the paper's size (B = 32, N = 4) when it was run,
    else at the base case; the patch-encoder target at the base case.
    """
    def pick(layer: str, prefer_paper: bool) -> list[dict[str, Any]]:
        rows = [r for r in records if r["layer"] == layer and r["pass"] == "fwd+bwd"]
        if prefer_paper:
            paper = [r for r in rows if r["batch"] == PAPER["batch"] and r["n"] == PAPER["n"]]
            if paper:
                return paper
        return [r for r in rows if r["case"] == "base"]

    specs = [
        ("gcn", True, "dense_gcn_conv", 1.0,
         "LearnedAdjacencyGCN at least as fast as DenseGCNConv (fwd+bwd)"),
        ("gcn", True, "sparse_gcn_conv", 5.0,
         "LearnedAdjacencyGCN at least 5x faster than sparse GCNConv (fwd+bwd)"),
        ("patch_encoder", False, "per_patch_loop", 5.0,
         "Batched PatchEncoder at least 5x faster than the per-patch loop (fwd+bwd)"),
    ]
    targets = []
    for layer, prefer_paper, ref, threshold, text in specs:
        for r in pick(layer, prefer_paper):
            ratio = r["references"].get(ref, {}).get("ratio")
            targets.append(
                {
                    "target": text,
                    "case": f"{r['case']} (B={r['batch']}, N={r['n']}, {r['image_size']}px)",
                    "dtype": r["dtype"],
                    "compile": r["compile"],
                    "ratio": ratio,
                    "threshold": threshold,
                    "met": None if ratio is None else ratio >= threshold,
                }
            )
    return targets


# ----------------------------------------------------------------- output
def _cell(t: dict[str, Any], with_ratio: bool) -> str:
    if "skipped" in t:
        return "skipped"
    if "error" in t:
        return f"error: {t['error'][:40]}"
    cell = fmt(t["median_ms"], 3)
    if with_ratio and "ratio" in t:
        cell += f" ({fmt(t['ratio'])}x)"
    return cell


def to_markdown(report: dict[str, Any]) -> str:
    """Render the report as markdown: one table per layer, the targets, the environment."""
    env = report["env"]
    parts = [
        f"# Layer benchmarks: {env['device_name']} ({env['device']})",
        "",
        "Median milliseconds per call; reference cells show `ref ms (ref/ours x)`, "
        "so a ratio above 1 means ours is faster. `check`: reference output and "
        "gradients allclose to ours (float64). Peak memory: CUDA only.",
    ]
    records = report["results"]
    for layer in LAYERS:
        rows = [r for r in records if r["layer"] == layer]
        if not rows:
            continue
        ref_names = list(rows[0]["references"])
        headers = ["case", "B", "img", "N", "dtype", "compile", "pass", "ours ms"]
        headers += [f"{n} ms (x)" for n in ref_names]
        if ref_names:
            headers.append("check")
        headers.append("ours peak MiB")
        table = []
        for r in rows:
            row = [r["case"], r["batch"], r["image_size"], r["n"], r["dtype"],
                   "yes" if r["compile"] else "no", r["pass"], _cell(r["ours"], False)]
            row += [_cell(r["references"][n], True) for n in ref_names]
            if ref_names:
                ok = [
                    r["references"][n]["check"]["passed"]
                    for n in ref_names
                    if "check" in r["references"][n]
                ]
                row.append("pass" if ok and all(ok) else "FAIL")
            row.append(fmt(r["ours"].get("peak_mem_mib"), 0))
            table.append(row)
        parts += ["", f"## {layer}", "", markdown_table(headers, table)]
    targets = report["targets"]
    if targets:
        parts += ["", "## Targets", ""]
        parts.append(
            markdown_table(
                ["target", "case", "dtype", "compile", "measured", "needed", "met"],
                [
                    (t["target"], t["case"], t["dtype"], "yes" if t["compile"] else "no",
                     f"{fmt(t['ratio'])}x", f">= {t['threshold']:g}x",
                     {True: "yes", False: "**no**", None: "n/a"}[t["met"]])
                    for t in targets
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
            "Time DAG-Net's layers (forward and forward+backward) against reference "
            "implementations of the same maths; print markdown tables, write JSON + markdown."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_run_arguments(p, "ours and every reference are")
    p.add_argument("--dtype", nargs="+", choices=["fp32", "bf16"], default=None,
                   help="precisions to time; bf16 means torch.autocast(bfloat16) around fp32 "
                        "modules. Default: fp32 bf16 on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile'd versions (ours and DenseGCNConv; the "
                        "Python loops and the sparse GCNConv path stay eager)")
    p.add_argument("--channels-last", action="store_true",
                   help="convert the convolutional layers and their image inputs to "
                        "torch.channels_last")
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS),
                   help="layers to benchmark")
    p.add_argument("--batch", type=int, default=None,
                   help="batch of the base case (N = 4). Default: 32 on CUDA (the paper), "
                        "8 on CPU")
    p.add_argument("--image-size", type=int, default=None,
                   help="image side of the base case. Default: 224 on CUDA (the paper), "
                        "112 on CPU")
    p.add_argument("--partitions", nargs="*", type=int, default=None,
                   help="extra patches-per-side values N, run at the base batch. "
                        "Default: 6 9 (CUDA and CPU)")
    p.add_argument("--scaled-batches", nargs="*", type=int, default=None,
                   help="extra batch sizes, run at N = 4 (the largest also with the largest N). "
                        "Default: 128 256 on CUDA, 32 on CPU (B=32, N=4 is the GCN's paper size)")
    p.add_argument("--loop-max-patches", type=int, default=None,
                   help="skip the per-patch loop reference above this many patches (B*N^2). "
                        "Default: 8192 on CUDA, 1024 on CPU")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls before timing. Default: 5 on CUDA, 1 on CPU")
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds of timed calls per measurement (torch.utils.benchmark "
                        "blocked_autorange), summed over the rounds. Default: 1.0 on CUDA, "
                        "0.6 on CPU")
    p.add_argument("--check-batch", type=int, default=8,
                   help="samples used by the float64 numerical check of each reference")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and short timings (batch 2, 32 px, N = 4 and 6), for the "
                        "smoke test; numbers are meaningless")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output path (a .md with the tables is written next to it). "
                        "Default: runs/benchmarks/layers_<device-slug>[_quick].json; the committed "
                        "benchmarks/results/ are replaced only when named here")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.quick:
        quick = dict(batch=2, image_size=32, partitions=[6], scaled_batches=[], warmup=1,
                     min_run_time=0.01)
        args.rounds = args.min_runs = 1
        fill_defaults(args, quick)
    defaults = dict(
        dtype=["fp32", "bf16"] if cuda else ["fp32"],
        batch=32 if cuda else 8,
        image_size=224 if cuda else 112,
        partitions=[6, 9],
        scaled_batches=[128, 256] if cuda else [32],
        warmup=5 if cuda else 1,
        loop_max_patches=8192 if cuda else 1024,
        min_run_time=1.0 if cuda else 0.6,
    )
    fill_defaults(args, defaults)
    args.device = device
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the layer benchmarks; returns the report that is also written to ``--out``."""
    args = parse_args(argv)
    device: torch.device = args.device
    configure_torch(args)
    load_start = loadavg()
    cases = build_cases(args.batch, args.image_size, args.partitions, args.scaled_batches)
    records: list[dict[str, Any]] = []
    for case in cases:
        for layer in args.layers:
            if layer in N_INDEPENDENT and case.n != 4:
                continue
            records += run_layer(layer, case, device, args)
    synchronize(device)
    env = environment(
        device,
        dtype=args.dtype,
        compile=args.compile,
        channels_last=args.channels_last,
        quick=args.quick,
        warmup=args.warmup,
        min_run_time_s=args.min_run_time,
        rounds=args.rounds,
        min_runs=args.min_runs,
        loadavg_1min_start=load_start,
        loadavg_1min_end=loadavg(),
    )
    report = {
        "benchmark": "layers",
        "env": env,
        "cases": [c.__dict__ for c in cases],
        "results": records,
        "targets": evaluate_targets(records),
    }
    markdown = to_markdown(report)
    print(markdown)
    out = args.out or default_output("layers", device, args.quick)
    json_path, md_path = write_outputs(report, markdown, out)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
