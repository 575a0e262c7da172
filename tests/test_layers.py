"""Behaviour of the four DAG-Net layer families, each against an independent reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dagnet_layers.layers import (
    AttentionBranch,
    BodyAttention,
    LearnedAdjacencyGCN,
    PatchEncoder,
    PatchPartition,
    PatchSumReadout,
    ResidualConvBlock,
    abn_init_,
    adjacency_to_edge_index,
    grid_adjacency,
    normalize_adjacency,
    stride_one_copy,
)


def assert_all_params_get_grad(module: nn.Module) -> None:
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"parameters without gradient: {missing}"


# --------------------------------------------------------------------------- PatchPartition
@pytest.mark.parametrize("n", range(1, 10))
@pytest.mark.parametrize("batch,channels", [(1, 3), (3, 5)])
def test_partition_patches_are_the_grid_cells(n: int, batch: int, channels: int) -> None:
    h, w = 4 * n, 3 * n
    x = torch.randn(batch, channels, h, w)
    patches = PatchPartition(n)(x)
    assert patches.shape == (batch, n * n, channels, 4, 3)
    for i in range(n):
        for j in range(n):
            cell = x[:, :, i * 4 : (i + 1) * 4, j * 3 : (j + 1) * 3]
            assert torch.equal(patches[:, i * n + j], cell)


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_partition_merge_round_trip(n: int) -> None:
    part = PatchPartition(n)
    x = torch.randn(2, 3, 8 * n, 5 * n)
    assert torch.equal(part.merge(part(x)), x)
    patches = torch.randn(2, n * n, 3, 6, 2)
    assert torch.equal(part(part.merge(patches)), patches)


def test_partition_gradcheck() -> None:
    part = PatchPartition(3)
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(part, (x,))
    p = torch.randn(1, 9, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(part.merge, (p,))


def test_partition_indivisible_size_names_the_problem() -> None:
    expected = r"PatchPartition\(n=4\) needs H and W divisible by 4, got 225x224"
    with pytest.raises(ValueError, match=expected):
        PatchPartition(4)(torch.zeros(1, 3, 225, 224))


def test_partition_size_policies() -> None:
    x = torch.randn(2, 3, 225, 230)
    assert PatchPartition(4, size_policy="resize")(x).shape == (2, 16, 3, 56, 57)
    padded = PatchPartition(4, size_policy="pad")(x)
    assert padded.shape == (2, 16, 3, 57, 58)
    merged = PatchPartition(4).merge(padded)
    assert torch.equal(merged[:, :, :225, :230], x)
    assert not merged[:, :, 225:].any() and not merged[:, :, :, 230:].any()


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, None])
def test_partition_rejects_bad_n(bad: object) -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        PatchPartition(bad)  # type: ignore[arg-type]


def test_partition_rejects_bad_rank_and_policy() -> None:
    with pytest.raises(ValueError, match=r"4-D tensor \(B, C, H, W\), got shape \(3, 8, 8\)"):
        PatchPartition(2)(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="size_policy"):
        PatchPartition(2, size_policy="crop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"merge expects \(B, 4, C, h, w\)"):
        PatchPartition(2).merge(torch.zeros(1, 9, 3, 2, 2))


# ----------------------------------------------------------------------------- PatchEncoder
@pytest.mark.parametrize(
    "n,size,pool,stride", [(2, 32, 4, 1), (4, 64, 4, 1), (3, 48, 2, 2), (9, 72, 1, 1)]
)
def test_patch_encoder_equals_per_patch_loop(n: int, size: int, pool: int, stride: int) -> None:
    enc = PatchEncoder(3, n=n, hidden_channels=6, out_channels=5, pool_size=pool, stride=stride)
    x = torch.randn(2, 3, size, size)
    out = enc(x)
    assert out.shape == (2, n * n, 5 * pool * pool)
    step = size // n
    for i in range(n):
        for j in range(n):
            patch = x[:, :, i * step : (i + 1) * step, j * step : (j + 1) * step]
            ref = enc.pool(enc.act2(enc.conv2(enc.act1(enc.conv1(patch))))).flatten(1)
            torch.testing.assert_close(out[:, i * n + j], ref)


def test_patch_encoder_paper_defaults_and_gradients() -> None:
    enc = PatchEncoder()
    widths = (enc.n, enc.out_features, enc.conv1.out_channels, enc.conv2.out_channels)
    assert widths == (4, 1024, 64, 64)
    enc(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert_all_params_get_grad(enc)


@pytest.mark.parametrize("channels_last", [True, False])
def test_patch_encoder_layout_and_inplace_relu_keep_the_function_and_its_gradients(
    channels_last: bool,
) -> None:
    """Channels-last activations and the in-place ReLU against a plain NCHW functional
    transcription (F.conv2d, out-of-place relu, adaptive average pool), in float64."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    enc = PatchEncoder(3, n=2, hidden_channels=6, out_channels=5, pool_size=2,
                       channels_last=channels_last).double()  # fmt: skip
    assert enc.act1.inplace and enc.act2.inplace
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    out = enc(x)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in enc.parameters()] + [x.grad.clone()]

    ref_params = [p.detach().clone().requires_grad_(True) for p in enc.parameters()]
    w1, b1, w2, b2 = ref_params
    xr = x.detach().clone().requires_grad_(True)
    patches = xr.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(8, 3, 8, 8)
    y = F.relu(F.conv2d(F.relu(F.conv2d(patches, w1, b1, padding=1)), w2, b2, padding=1))
    ref = F.adaptive_avg_pool2d(y, 2).reshape(2, 4, 20)
    torch.testing.assert_close(out, ref)
    ref.square().sum().backward()
    for got, want in zip(grads, [*(p.grad for p in ref_params), xr.grad], strict=True):
        torch.testing.assert_close(got, want)
    assert PatchEncoder(act_layer=torch.nn.GELU).act1.__class__ is torch.nn.GELU


def _backward_nodes(t: torch.Tensor) -> set[str]:
    seen, names, todo = set(), set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo += [nxt for nxt, _ in node.next_functions]
    return names


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("size,pool,stride", [(16, 2, 1), (24, 4, 1), (24, 3, 2)])
def test_fused_relu_pool_equals_the_module_chain_and_its_gradients(
    channels_last: bool, size: int, pool: int, stride: int
) -> None:
    """The fused training path against the same encoder calling act2 and pool as
    torch's modules (fused_relu_pool=False), outputs and every gradient, float64."""
    torch.manual_seed(0)
    kwargs = dict(n=2, hidden_channels=6, out_channels=5, pool_size=pool, stride=stride,
                  channels_last=channels_last)
    fused = PatchEncoder(3, **kwargs).double()
    plain = PatchEncoder(3, fused_relu_pool=False, **kwargs).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(3, 3, size, size, dtype=torch.float64)
    results = []
    for enc in (fused, plain):
        xi = x.clone().requires_grad_(True)
        out = enc(xi)
        (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append((out, _backward_nodes(out), [q.grad for q in enc.parameters()], xi.grad))
    (out_f, nodes_f, grads_f, gx_f), (out_p, nodes_p, grads_p, gx_p) = results
    assert "_ReluBlockMeanBackward" in nodes_f and "_ReluBlockMeanBackward" not in nodes_p
    assert "AdaptiveAvgPool2DBackward0" in nodes_p and "AdaptiveAvgPool2DBackward0" not in nodes_f
    torch.testing.assert_close(out_f, out_p, rtol=1e-12, atol=1e-12)
    for got, want in zip([*grads_f, gx_f], [*grads_p, gx_p], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_fused_relu_pool_gradcheck_on_both_outputs() -> None:
    """torch's numerical gradient check of the fused function itself, through the
    pooled output and through the in-place ReLU output it also returns."""
    from dagnet_layers.layers.patch_partition import _ReluBlockMean

    torch.manual_seed(0)
    base = torch.randn(2, 3, 6, 4, dtype=torch.float64)
    base = base + base.sign() * 0.1  # no input within the check's step of ReLU's kink
    for layout in (torch.contiguous_format, torch.channels_last):
        leaf = base.contiguous(memory_format=layout).requires_grad_(True)

        def f(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pooled, y = _ReluBlockMean.apply(t.clone(memory_format=torch.preserve_format), 2)
            return pooled, y.sin()

        assert torch.autograd.gradcheck(f, (leaf,))


def test_fused_relu_pool_is_skipped_where_it_does_not_apply() -> None:
    """The module chain runs without gradients, for pooled grids that do not divide the
    patch, for another activation, and when switched off; the fused path refuses to be
    differentiated twice, which the module chain allows."""
    torch.manual_seed(0)
    calls: list[str] = []
    enc = PatchEncoder(3, n=2, hidden_channels=4, out_channels=4, pool_size=4)
    enc.pool.register_forward_hook(lambda *_: calls.append("pool"))
    x = torch.randn(1, 3, 16, 16)
    enc(x).sum().backward()  # 8-pixel patches, 4 x 4 grid: fused
    assert calls == []
    with torch.no_grad():
        enc(x)
    assert calls == ["pool"]
    out = enc(torch.randn(1, 3, 12, 12))  # 6-pixel patches: 4 does not divide 6
    assert calls == ["pool", "pool"] and "_ReluBlockMeanBackward" not in _backward_nodes(out)
    gelu = PatchEncoder(3, n=2, hidden_channels=4, out_channels=4, act_layer=torch.nn.GELU)
    assert "_ReluBlockMeanBackward" not in _backward_nodes(gelu(x))

    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(enc(xg).square().sum(), xg, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()
    enc.fused_relu_pool = False
    (g,) = torch.autograd.grad(enc(xg).square().sum(), xg, create_graph=True)
    g.sum().backward()
    assert calls[-1] == "pool" and xg.grad is not None


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("fused", [True, False])
def test_cpu_chunks_change_nothing_but_rounding(channels_last: bool, fused: bool) -> None:
    """Chunks of 3 patches out of 2 x 4 = 8 (a ragged last chunk) against one pass,
    float64: the outputs and every gradient; conv1 runs once per chunk."""
    torch.manual_seed(0)
    kwargs = dict(n=2, hidden_channels=6, out_channels=5, pool_size=2,
                  channels_last=channels_last, fused_relu_pool=fused)
    whole = PatchEncoder(3, cpu_chunk_mib=None, **kwargs).double()
    # one 8 x 8 patch: 6 channels x 64 pixels x 8 bytes = 3,072 B; 3 patches fit 9,216 B
    chunked = PatchEncoder(3, cpu_chunk_mib=9_300 / 2**20, **kwargs).double()
    chunked.load_state_dict(whole.state_dict())
    calls: list[int] = []
    chunked.conv1.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    results = []
    for enc in (whole, chunked):
        xi = x.clone().requires_grad_(True)
        out = enc(xi)
        (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        results.append([out, *(q.grad for q in enc.parameters()), xi.grad])
    assert calls == [3, 3, 2]
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_cpu_chunk_size_follows_the_activation_budget() -> None:
    enc = PatchEncoder(3, n=4)  # 64 and 64 channels, 8 MiB
    # B = 8 at 224 px: 128 patches of 56 x 56; one is 64 x 56 x 56 x 4 B = 802,816 B,
    # and 8 MiB / 802,816 B = 10.4
    assert enc._patches_per_chunk(torch.empty(128, 3, 56, 56)) == 10
    # stride 2: 28 x 28 activations, 200,704 B a patch, 41.8 in 8 MiB
    assert PatchEncoder(3, stride=2)._patches_per_chunk(torch.empty(128, 3, 56, 56)) == 41
    assert enc._patches_per_chunk(torch.empty(128, 3, 512, 512)) == 1  # never zero
    whole = PatchEncoder(3, cpu_chunk_mib=None)
    assert whole._patches_per_chunk(torch.empty(128, 3, 56, 56)) == 128
    with pytest.raises(ValueError, match="cpu_chunk_mib must be positive or None, got 0"):
        PatchEncoder(3, cpu_chunk_mib=0)


def test_patch_encoder_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"expects 3 input channels, got 1"):
        PatchEncoder(3)(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"pool_size"):
        PatchEncoder(3, pool_size=0)


# ---------------------------------------------------------------------------- BodyAttention
def test_body_attention_matches_its_formula() -> None:
    bam = BodyAttention(3, hidden_channels=5)
    image = torch.randn(4, 3, 10, 12)
    # eq. 1 written out with einsum: 1x1 convs are per-pixel matrix products.
    hidden = torch.relu(torch.einsum("oc,bchw->bohw", bam.conv1.weight[:, :, 0, 0], image)
                        + bam.conv1.bias[None, :, None, None])
    score = torch.einsum("oc,bchw->bohw", bam.conv2.weight[:, :, 0, 0], hidden) + bam.conv2.bias[0]
    expected = torch.sigmoid(score.mean(dim=(1, 2, 3)))
    torch.testing.assert_close(bam.credibility(image), expected)


@pytest.mark.parametrize("feature_shape", [(4, 7), (4, 2, 3, 3)])
def test_body_attention_scales_given_features(feature_shape: tuple[int, ...]) -> None:
    bam = BodyAttention(3)
    image, features = torch.randn(4, 3, 16, 16), torch.randn(feature_shape)
    out = bam(image, features)
    assert out.weights.shape == (4,)
    assert ((out.weights > 0) & (out.weights < 1)).all()
    for i in range(4):
        torch.testing.assert_close(out.features[i], out.weights[i] * features[i])


def test_body_attention_wraps_extractor_and_trains() -> None:
    extractor = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    bam = BodyAttention(3, feature_extractor=extractor)
    out = bam(torch.randn(3, 3, 20, 20))
    assert out.features.shape == (3, 6)
    out.features.sum().backward()
    assert_all_params_get_grad(bam)
    assert BodyAttention(3)(torch.randn(2, 3, 8, 8)).features is None


def test_body_attention_bad_inputs() -> None:
    bam = BodyAttention(3)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(2, 4, 8, 8\)"):
        bam(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(3, 8, 8\)"):
        bam(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="got 2 images but features for 3 samples"):
        bam(torch.zeros(2, 3, 8, 8), torch.zeros(3, 5))


# -------------------------------------------------------------------------- AttentionBranch
@pytest.mark.parametrize("channels,size,classes", [(8, 7, 26), (16, 14, 3), (4, 1, 1)])
def test_attention_branch_shapes_and_ranges(channels: int, size: int, classes: int) -> None:
    abn = AttentionBranch(channels, classes)
    g = torch.randn(2, channels, size, size)
    features, attention_map, logits = abn(g)
    assert features.shape == g.shape
    assert attention_map.shape == (2, 1, size, size)
    assert logits.shape == (2, classes)
    assert ((attention_map > 0) & (attention_map < 1)).all()


def test_attention_branch_modes_follow_abn_and_eq3() -> None:
    g = torch.randn(2, 8, 5, 5)
    residual = AttentionBranch(8, 4, mode="residual").eval()
    literal = AttentionBranch(8, 4, mode="multiply").eval()
    literal.load_state_dict(residual.state_dict())
    r, m = residual(g), literal(g)
    torch.testing.assert_close(r.attention_map, m.attention_map)
    torch.testing.assert_close(r.features, (1 + r.attention_map) * g)
    torch.testing.assert_close(m.features, m.attention_map * g)


def test_attention_branch_structure_and_logits() -> None:
    abn = AttentionBranch(8, 5).eval()
    g = torch.randn(3, 8, 6, 6)
    a = abn.class_act(abn.class_norm(abn.class_conv(abn.norm(abn.attention_block(g)))))
    logit_weight = abn.logit_conv.weight[:, :, 0, 0]
    expected_logits = torch.einsum("kc,bc->bk", logit_weight, a.mean(dim=(2, 3)))
    torch.testing.assert_close(abn(g).logits, expected_logits)
    assert isinstance(abn.attention_block, ResidualConvBlock)
    assert abn.map_conv.kernel_size == (3, 3) and abn.map_conv.out_channels == 1


def test_attention_branch_gradients_and_reset() -> None:
    abn = AttentionBranch(8, 4)
    out = abn(torch.randn(2, 8, 6, 6))
    (out.features.square().mean() + out.logits.square().mean()).backward()
    assert_all_params_get_grad(abn)
    abn.reset_classifier(7)
    assert abn(torch.randn(2, 8, 6, 6)).logits.shape == (2, 7)


def test_attention_branch_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\(B, 8, H, W\), got \(2, 4, 6, 6\)"):
        AttentionBranch(8)(torch.zeros(2, 4, 6, 6))
    with pytest.raises(ValueError, match="mode"):
        AttentionBranch(8, mode="add")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        AttentionBranch(8, num_classes=0)
    with pytest.raises(ValueError, match="block_channels=16"):
        AttentionBranch(8, block_channels=16)  # the light block cannot widen


def test_attention_branch_hosts_a_widening_block() -> None:
    stage = nn.Sequential(nn.Conv2d(8, 24, 3, stride=2, padding=1), nn.BatchNorm2d(24), nn.ReLU())
    abn = AttentionBranch(8, 5, attention_block=stride_one_copy(stage), block_channels=24).eval()
    g = torch.randn(2, 8, 6, 6)
    out = abn(g)
    assert out.features.shape == g.shape and out.attention_map.shape == (2, 1, 6, 6)
    assert abn.norm.num_features == 24 and abn.class_conv.in_channels == 24
    a = abn.class_act(abn.class_norm(abn.class_conv(abn.norm(abn.attention_block(g)))))
    torch.testing.assert_close(out.logits, abn.logit_conv(a).mean(dim=(2, 3)))


def test_stride_one_copy_keeps_size_for_odd_even_kernels_and_strided_pools() -> None:
    stage = nn.Sequential(
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 2, stride=2),  # ConvNeXt-style 2x2 downsampling
        nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(8, 8, 1)),  # ResNet-D shortcut
        nn.Conv2d(8, 8, 5, stride=1, padding=4, dilation=2),  # already stride 1: untouched
    )
    copy_ = stride_one_copy(stage)
    assert copy_(torch.randn(1, 4, 9, 9)).shape == (1, 8, 9, 9)
    assert stage(torch.randn(1, 4, 16, 16)).shape == (1, 8, 2, 2)  # the original is unchanged
    assert isinstance(copy_[2][0], nn.Identity)
    torch.testing.assert_close(copy_[0].weight, stage[0].weight)  # weights copied as they are
    assert copy_[0].weight is not stage[0].weight


def test_abn_init_matches_the_published_rule() -> None:
    block = nn.Sequential(nn.Conv2d(16, 256, 3, bias=True), nn.BatchNorm2d(256), nn.Linear(4, 4))
    block[1].running_mean.fill_(3.0)
    torch.manual_seed(0)
    abn_init_(block)
    assert block[0].weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.02)
    assert block[0].weight.mean().abs().item() < 1e-3 and bool((block[0].bias == 0).all())
    assert bool((block[1].weight == 1).all() and (block[1].bias == 0).all())
    assert bool((block[1].running_mean == 0).all())


# ---------------------------------------------------------------------------------- graph
@pytest.mark.parametrize("n", [2, 3, 4, 9])
def test_grid_adjacency_is_the_8_neighbourhood(n: int) -> None:
    adj = grid_adjacency(n, self_loops=False)
    assert torch.equal(adj, adj.T)
    for a in range(n * n):
        for b in range(n * n):
            (ia, ja), (ib, jb) = divmod(a, n), divmod(b, n)
            neighbours = a != b and abs(ia - ib) <= 1 and abs(ja - jb) <= 1
            assert adj[a, b] == float(neighbours)
    assert torch.equal(grid_adjacency(n).diagonal(), torch.ones(n * n))


@pytest.mark.parametrize("n", [1, 2, 4, 7])
def test_grid_adjacency_is_pygs_grid_graph(n: int) -> None:
    """The same graph as torch_geometric.utils.grid (pre-release builds used it)."""
    pyg = pytest.importorskip("torch_geometric.utils")
    edge_index, _ = pyg.grid(n, n)
    want = (pyg.to_dense_adj(edge_index, max_num_nodes=n * n)[0] > 0).float()
    assert torch.equal(grid_adjacency(n, dtype=torch.float32), want)


def test_building_a_model_imports_no_pyg() -> None:
    code = ("import sys, torch; from dagnet_layers import build_dagnet; "
            "build_dagnet('test_resnet', 'test_resnet'); "
            "print(sorted(m for m in sys.modules if m.startswith('torch_geometric')))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_symmetric_normalisation_matches_kipf_welling() -> None:
    a = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, -3.0], [0.0, 0.5, 0.0]])
    tilde = torch.tensor([[1.0, 2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.5, 1.0]])
    d = tilde.sum(1) ** -0.5
    torch.testing.assert_close(normalize_adjacency(a, "symmetric"), d[:, None] * tilde * d[None, :])
    torch.testing.assert_close(normalize_adjacency(a, "softmax").sum(-1), torch.ones(3))
    assert normalize_adjacency(a, "none") is a
    with pytest.raises(ValueError, match="normalization"):
        normalize_adjacency(a, "row")  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 4])
def test_gcn_layer_equals_pyg_dense_gcn_conv(n: int) -> None:
    DenseGCNConv = pytest.importorskip("torch_geometric.nn").DenseGCNConv
    m = n * n
    adj = grid_adjacency(n, self_loops=False)
    adj[0, m - 1] = adj[m - 1, 0] = 0.5  # a weighted long edge too
    ours = LearnedAdjacencyGCN(
        12, (7,), num_nodes=m, normalization="symmetric", learn_adjacency=False,
        readout="none", act_layer=nn.Identity,
    )
    ours.adjacency.copy_(adj)
    ref = DenseGCNConv(12, 7)
    with torch.no_grad():
        ref.lin.weight.copy_(ours.weights[0].T)
        ref.bias.copy_(ours.biases[0])
    x = torch.randn(3, m, 12)
    torch.testing.assert_close(ours(x), ref(x, adj), rtol=1e-5, atol=1e-6)


def test_gcn_stack_matches_equation_4() -> None:
    gcn = LearnedAdjacencyGCN(6, (5, 4), num_nodes=9, readout="none")
    with torch.no_grad():
        gcn.adjacency.add_(0.1 * torch.randn(9, 9))
    x = torch.randn(2, 9, 6)
    h = x
    for w, b in zip(gcn.weights, gcn.biases, strict=True):
        h = torch.relu(torch.einsum("ij,bjf->bif", gcn.adjacency, h @ w) + b)
    torch.testing.assert_close(gcn(x), h)


def test_gcn_paper_defaults_and_readouts() -> None:
    gcn = LearnedAdjacencyGCN()
    assert [tuple(w.shape) for w in gcn.weights] == [(1024, 1024), (1024, 1024), (1024, 512)]
    assert gcn.learn_adjacency and isinstance(gcn.adjacency, nn.Parameter)
    torch.testing.assert_close(gcn.adjacency.sum(-1), torch.ones(16))  # row-normalised grid
    x = torch.randn(2, 16, 1024)
    nodes = LearnedAdjacencyGCN(1024, (8,), readout="none")
    h = nodes(x)
    for readout, expected in (("mean", h.mean(1)), ("sum", h.sum(1)), ("max", h.amax(1)),
                              ("flatten", h.flatten(1))):
        other = LearnedAdjacencyGCN(1024, (8,), readout=readout)
        other.load_state_dict(nodes.state_dict())
        torch.testing.assert_close(other(x), expected)
        assert other.out_features == expected.shape[1]


@pytest.mark.parametrize("init", ["grid", "identity", "uniform"])
def test_gcn_adjacency_inits(init: str) -> None:
    gcn = LearnedAdjacencyGCN(4, (4,), num_nodes=9, adjacency_init=init)
    if init == "identity":
        assert torch.equal(gcn.adjacency.detach(), torch.eye(9))
    elif init == "uniform":
        assert torch.allclose(gcn.adjacency.detach(), torch.full((9, 9), 1 / 9))
    else:
        expected = grid_adjacency(3)
        assert torch.allclose(gcn.adjacency.detach(), expected / expected.sum(-1, keepdim=True))


@pytest.mark.parametrize("normalization", ["none", "symmetric", "softmax"])
def test_gcn_gradcheck_including_adjacency(normalization: str) -> None:
    gcn = LearnedAdjacencyGCN(
        3, (4, 2), num_nodes=4, normalization=normalization, act_layer=nn.Tanh, readout="sum"
    ).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(gcn, {"adjacency": adjacency}, (x,))

    adjacency = gcn.adjacency.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (x, adjacency))


def test_gcn_every_parameter_learns_and_diagonal_keeps_gradient() -> None:
    gcn = LearnedAdjacencyGCN(8, (8, 4), num_nodes=4, normalization="symmetric",
                              adjacency_init="uniform")
    gcn(torch.randn(3, 4, 8)).square().sum().backward()
    assert_all_params_get_grad(gcn)
    assert (gcn.adjacency.grad.diagonal() != 0).all()


def test_gcn_fixed_adjacency_is_a_buffer() -> None:
    gcn = LearnedAdjacencyGCN(4, (4,), num_nodes=4, learn_adjacency=False)
    assert "adjacency" not in dict(gcn.named_parameters())
    assert "adjacency" in dict(gcn.named_buffers())


def test_edge_index_export_propagates_like_the_dense_matrix() -> None:
    gcn = LearnedAdjacencyGCN(5, (5,), num_nodes=9, normalization="softmax")
    with torch.no_grad():
        gcn.adjacency.copy_(torch.randn(9, 9))
    edge_index, edge_weight = gcn.to_edge_index()
    assert edge_index.shape == (2, 81)
    x = torch.randn(9, 5)
    SimpleConv = pytest.importorskip("torch_geometric.nn").SimpleConv
    sparse = SimpleConv(aggr="sum")(x, edge_index, edge_weight)  # PyG message passing
    torch.testing.assert_close(sparse, gcn.propagation_matrix().detach() @ x)
    ei, ew = adjacency_to_edge_index(torch.tensor([[0.0, 0.2], [0.05, 0.0]]), threshold=0.1)
    assert ei.tolist() == [[1], [0]] and ew.tolist() == pytest.approx([0.2])


def test_gcn_bad_inputs_name_expected_and_actual() -> None:
    gcn = LearnedAdjacencyGCN(8, (4,), num_nodes=16)
    with pytest.raises(ValueError, match=r"\(B, 16, 8\), got \(2, 9, 8\)"):
        gcn(torch.zeros(2, 9, 8))
    with pytest.raises(ValueError, match=r"\(B, 16, 8\), got \(2, 16, 5\)"):
        gcn(torch.zeros(2, 16, 5))
    with pytest.raises(ValueError, match="square number of nodes"):
        LearnedAdjacencyGCN(8, (4,), num_nodes=10)
    with pytest.raises(ValueError, match="hidden_features"):
        LearnedAdjacencyGCN(8, ())
    with pytest.raises(ValueError, match="readout"):
        LearnedAdjacencyGCN(8, (4,), readout="attention")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="adjacency_init"):
        LearnedAdjacencyGCN(8, (4,), adjacency_init="random")  # type: ignore[arg-type]


@pytest.mark.parametrize("shared", [True, False])
def test_patch_sum_readout_is_fc_per_patch_summed(shared: bool) -> None:
    readout = PatchSumReadout(6, 3, num_nodes=4, shared=shared)
    x = torch.randn(2, 4, 6)
    expected = sum(
        x[:, m] @ readout.weight[0 if shared else m] + readout.bias[0 if shared else m]
        for m in range(4)
    )
    torch.testing.assert_close(readout(x), expected)
    readout(x).sum().backward()
    assert_all_params_get_grad(readout)


# ------------------------------------------------------- interventions and beyond the paper
def test_body_attention_override_replaces_the_weights_it_uses_and_returns() -> None:
    from dagnet_layers.layers import BodyAttention

    bam = BodyAttention(3, 4)
    image, feats = torch.randn(4, 3, 8, 8), torch.randn(4, 5)
    computed = bam.credibility(image)
    oracle = torch.tensor([1.0, 0.0, 1.0, 0.0])
    seen = {}

    def override(img, weights):
        seen["args"] = (img, weights)
        return oracle

    bam.weight_override = override
    out = bam(image, feats)
    assert torch.equal(out.weights, oracle)
    assert torch.equal(out.features, feats * oracle[:, None])
    assert seen["args"][0] is image and torch.allclose(seen["args"][1], computed)
    bam.weight_override = lambda img, w: w[:2]
    with pytest.raises(ValueError, match=r"weight_override must return weights of shape \(4,\)"):
        bam(image, feats)
    bam.weight_override = None
    assert torch.allclose(bam(image, feats).weights, computed)
    assert "weight_override" not in dict(bam.state_dict())


@pytest.mark.parametrize("mode", ["residual", "multiply"])
def test_attention_branch_override_and_softmax_map(mode: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 4, 4)
    branch = AttentionBranch(8, 5, mode=mode).eval()
    fixed = torch.zeros(3, 1, 4, 4)
    fixed[:, :, 1, 2] = 1.0
    branch.map_override = lambda feats, m: fixed
    out = branch(x)
    assert torch.equal(out.attention_map, fixed)
    want = x * (1 + fixed) if mode == "residual" else x * fixed
    assert torch.allclose(out.features, want)
    branch.map_override = lambda feats, m: m[:, :, :2]
    with pytest.raises(ValueError, match="map_override must return a map of shape"):
        branch(x)

    soft = AttentionBranch(8, 5, mode=mode, map_activation="softmax").eval()
    out = soft(x)
    assert torch.allclose(out.attention_map.sum(dim=(1, 2, 3)), torch.ones(3))
    weight = out.attention_map * 16  # H W M: mean 1 over the 4 x 4 positions
    want = x * (1 + weight) if mode == "residual" else x * weight
    assert torch.allclose(out.features, want, atol=1e-6)
    # a flat softmax map leaves multiply mode's features as they are
    soft.map_override = lambda feats, m: torch.full_like(m, 1 / 16)
    flat = soft(x).features
    assert torch.allclose(flat, x * 2 if mode == "residual" else x)


def test_attention_branch_without_aux_head_has_no_logits_and_no_logit_layer() -> None:
    branch = AttentionBranch(8, 5, aux_head=False)
    out = branch(torch.randn(2, 8, 4, 4))
    assert out.logits is None and branch.logit_conv is None
    assert not any("logit_conv" in name for name, _ in branch.named_parameters())
    assert "aux_head=False" in repr(branch)
    with pytest.raises(ValueError, match="map_activation"):
        AttentionBranch(8, 5, map_activation="tanh")


def test_residual_patch_gcn_starts_as_the_identity_and_knows_positions() -> None:
    from dagnet_layers.layers import ResidualPatchGCN

    torch.manual_seed(0)
    gcn = ResidualPatchGCN(6, 8, 4, n=3, depth=2)
    x = torch.randn(2, 9, 6)
    before = gcn(x)
    with torch.no_grad():  # the update is zero at initialisation: the graph plays no part yet
        gcn.adjacency.copy_(torch.randn(9, 9))
    assert torch.allclose(gcn(x), before)
    # the positions are added before the per-node layer: moving a patch changes the output
    perm = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 8])
    assert not torch.allclose(gcn(x[:, perm]), before)
    with torch.no_grad():  # without positions, a sum readout of per-node states is a bag
        gcn.positions.row.zero_()
        gcn.positions.col.zero_()
    assert torch.allclose(gcn(x[:, perm]), gcn(x), atol=1e-6)
    # one step moves the zero-initialised update
    gcn.reset_parameters()
    opt = torch.optim.SGD(gcn.parameters(), lr=0.1)
    gcn(x).square().sum().backward()
    opt.step()
    assert any(u.weight.abs().sum() > 0 for u in gcn.update)
    fixed = ResidualPatchGCN(6, 8, 4, n=3, learn_adjacency=False)
    assert "adjacency" in dict(fixed.named_buffers()) and not fixed.learn_adjacency


def test_patch_self_attention_bias_follows_the_relative_offsets() -> None:
    from dagnet_layers.layers import PatchSelfAttention

    torch.manual_seed(0)
    att = PatchSelfAttention(6, 8, 4, n=3, heads=2)
    with torch.no_grad():
        att.relative_bias.copy_(torch.randn_like(att.relative_bias))
    bias = att.position_bias()
    for p in range(9):
        for q in range(9):
            (rp, cp), (rq, cq) = divmod(p, 3), divmod(q, 3)
            assert torch.equal(bias[0, :, p, q], att.relative_bias[0, :, rp - rq + 2, cp - cq + 2])
    x = torch.randn(2, 9, 6)
    perm = torch.tensor([3, 1, 2, 0, 4, 5, 6, 7, 8])
    assert not torch.allclose(att(x[:, perm]), att(x))  # the bias tells positions apart
    with torch.no_grad():  # zero bias: a set function of the patches, blind to positions
        att.relative_bias.zero_()
    assert torch.allclose(att(x[:, perm]), att(x), atol=1e-5)
    att.reset_parameters()  # a fresh random start
    assert att.relative_bias.std() > 1.0
    with pytest.raises(ValueError, match="divisible by heads"):
        PatchSelfAttention(6, 9, 4, heads=2)
    with pytest.raises(ValueError, match=r"\(B, 9, 6\)"):
        att(torch.randn(2, 8, 6))


def test_attention_branch_options_share_the_initial_weights_of_their_common_layers() -> None:
    """With the auxiliary head or without, sigmoid or softmax map: under one seed every
    layer the branches share starts from the same weights (the optional head is drawn last)."""
    def build(**kw):
        torch.manual_seed(0)
        return AttentionBranch(16, 5, **kw).state_dict()

    ref = build()
    for kw in (dict(aux_head=False), dict(map_activation="softmax"), dict(mode="multiply")):
        other = build(**kw)
        shared = [k for k in other if k in ref]
        assert len(shared) >= len(other) - 1
        for key in shared:
            assert torch.equal(other[key], ref[key]), (kw, key)
