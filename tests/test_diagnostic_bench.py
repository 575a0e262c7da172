"""The per-module diagnostic benchmark: metrics that give an oracle its ceiling and a null its
chance, statistics against independent references, sets that hold what they claim, arms
paired at initialisation, runs that repeat, and verdicts that follow the numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dagnet_layers.emotic.diagnostic import (
    ARMS,
    PRIMARY_CONTRASTS,
    accuracy,
    arm,
    build_arm_model,
    candidate_pointing,
    candidate_share,
    cell_means,
    holm,
    make_bam_set,
    make_gsam_set,
    make_lsam_set,
    oracle_adjacency,
    paired_difference,
    relation_contrast,
    roc_auc,
    run_arm,
    sign_flip_p,
    verdict,
)
from dagnet_layers.layers import grid_adjacency


# ------------------------------------------------------------- metrics: oracle and null
def test_accuracy_gives_labels_one_and_noise_its_chance() -> None:
    rng = np.random.default_rng(0)
    y = np.eye(6)[rng.integers(0, 6, 20000)]
    assert accuracy(y, y) == 1.0
    assert accuracy(rng.random(y.shape), y) == pytest.approx(1 / 6, abs=0.01)
    # only the task's columns count: a marker column never wins the argmax
    z = np.concatenate([y[:, :3], np.ones((len(y), 1))], 1)
    z = z[z[:, :3].sum(1) > 0]
    assert accuracy(z, z, columns=[0, 1, 2]) == 1.0
    with pytest.raises(ValueError, match="every row needs a true class"):
        accuracy(np.zeros((2, 3)), np.zeros((2, 3)))


def test_relation_map_gives_labels_one_and_noise_the_relations_share() -> None:
    """LSAM's primary metric: the official AP over the three relation columns."""
    from dagnet_layers.emotic.metrics import average_precision

    data = make_lsam_set(5, n_train=4, n_test=3000)
    y = data.labels[data.indices("test")][:, :3].astype(float)
    assert np.nanmean(average_precision(y, y)) == 1.0
    noise = np.random.default_rng(5).random(y.shape)
    assert np.nanmean(average_precision(noise, y)) == pytest.approx(y.mean(0).mean(), abs=0.03)


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        values = rng.integers(0, 5, 60).astype(float)  # many ties
        positive = rng.random(60) < 0.4
        assert roc_auc(values, positive) == pytest.approx(metrics.roc_auc_score(positive, values))
    reliable = rng.random(5000) < 0.5
    assert roc_auc(reliable.astype(float), reliable) == 1.0  # an oracle gate
    assert roc_auc(rng.random(5000), reliable) == pytest.approx(0.5, abs=0.03)  # a null one
    assert math.isnan(roc_auc([0.1, 0.2], [True, True]))


def test_cell_means_are_block_means_in_patch_partition_order() -> None:
    from dagnet_layers.layers import PatchPartition

    rng = np.random.default_rng(2)
    maps = rng.random((3, 8, 8))
    patches = PatchPartition(4)(torch.from_numpy(maps)[:, None])  # (B, 16, 1, 2, 2)
    np.testing.assert_allclose(cell_means(maps, 4), patches.mean(dim=(2, 3, 4)).numpy())
    # a map coarser than the grid is upsampled first: a constant stays constant
    np.testing.assert_allclose(cell_means(np.full((1, 3, 3), 0.4), 4), 0.4)


def test_candidate_metrics_give_the_oracle_map_one_and_a_flat_map_chance() -> None:
    data = make_gsam_set(0, n_train=4, n_test=200)
    rows = data.indices("test")
    cand, target = data.truth["candidate_cells"][rows], data.truth["target_cell"][rows]
    oracle = np.zeros((rows.size, 16))
    oracle[np.arange(rows.size), target] = 1.0
    oracle = oracle.reshape(-1, 4, 4)
    flat = np.ones_like(oracle)
    assert np.all(candidate_pointing(oracle, cand, target, 4) == 1.0)
    assert np.all(candidate_share(oracle, cand, target, 4) == 1.0)
    np.testing.assert_allclose(candidate_pointing(flat, cand, target, 4), 1 / 6)
    np.testing.assert_allclose(candidate_share(flat, cand, target, 4), 1 / 6)
    random_maps = np.random.default_rng(3).random(oracle.shape)
    assert np.mean(candidate_pointing(random_maps, cand, target, 4)) == pytest.approx(1 / 6,
                                                                                    abs=0.06)
    # an oracle with a floor, as a sigmoid map has: pointing stays 1, the share drops
    floored = 0.3 + 0.7 * oracle
    assert np.all(candidate_pointing(floored, cand, target, 4) == 1.0)
    np.testing.assert_allclose(candidate_share(floored, cand, target, 4), 1 / (1 + 5 * 0.3))
    with pytest.raises(ValueError, match="target cell must be one of its candidate cells"):
        candidate_pointing(oracle, cand, (target + 1) % 16 * 0 - 1, 4)


def test_relation_contrast_is_zero_for_graphs_blind_to_rows_and_columns() -> None:
    assert relation_contrast(grid_adjacency(4).numpy(), 4) == pytest.approx(0.0)
    assert relation_contrast(np.ones((16, 16)), 4) == pytest.approx(0.0)
    assert math.isnan(relation_contrast(np.eye(16), 4))
    # the oracle: same row 0.5, same column 0.25 over 3 same-row and 3 same-column
    # partners among 15: (0.5 - 0.25) / ((3 * 0.5 + 3 * 0.25) / 15) = 5/3
    assert relation_contrast(oracle_adjacency(4).numpy(), 4) == pytest.approx(5 / 3)
    rows_only = np.kron(np.eye(4), np.ones((4, 4)))  # every weight inside one row
    assert relation_contrast(rows_only, 4) == pytest.approx(4 + 1)
    assert relation_contrast(rows_only.T, 4) == relation_contrast(rows_only, 4)


# --------------------------------------------------------------------------- statistics
def test_paired_difference_matches_scipy_and_the_t_table() -> None:
    stats = pytest.importorskip("scipy.stats")
    a = [0.81, 0.77, 0.92, 0.85, 0.79]
    b = [0.70, 0.74, 0.80, 0.83, 0.71]
    got = paired_difference(a, b)
    ref = stats.ttest_rel(a, b)
    assert got["p"] == pytest.approx(ref.pvalue) and got["t"] == pytest.approx(ref.statistic)
    d = np.subtract(a, b)
    half = 2.776445105 * d.std(ddof=1) / math.sqrt(5)  # t(0.975, 4) from the tables
    assert got["ci"] == pytest.approx([d.mean() - half, d.mean() + half], rel=1e-6)
    assert paired_difference([0.5, 0.6], [0.5, 0.6])["p"] == 1.0  # identical arms
    assert paired_difference([0.6, 0.7], [0.5, 0.6])["p"] == 0.0  # a constant gain
    with pytest.raises(ValueError, match="one length"):
        paired_difference([1.0], [1.0, 2.0])


def test_sign_flip_p_matches_scipys_exact_permutation_test() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(6)
    for n in (3, 5, 6, 8):
        x, y = rng.random(n), rng.random(n) + 0.2 * rng.random()
        ref = stats.permutation_test((x, y), lambda a, b: np.mean(a - b), n_resamples=np.inf,
                                     permutation_type="samples", alternative="two-sided")
        assert sign_flip_p(x - y) == pytest.approx(ref.pvalue)
    assert sign_flip_p([0.5] * 6) == pytest.approx(2 / 64)  # its floor with 6 seeds
    assert paired_difference([0.6, 0.7, 0.9], [0.5, 0.5, 0.5])["p_exact"] == 0.25


def _holm_by_procedure(pvalues: list[float]) -> list[float]:
    """Each hypothesis's adjusted p: the smallest level at which Holm's step-down test,
    run as Holm (1979) states it, rejects it (searched over the candidate levels), or 1
    where no level below 1 does."""
    m = len(pvalues)
    levels = sorted({min(1.0, (m - k) * p) for p in pvalues for k in range(m)} | {1.0})

    def rejected(alpha: float) -> set[int]:
        out: set[int] = set()
        for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
            if pvalues[i] > alpha / (m - rank) + 1e-15:
                break
            out.add(i)
        return out

    return [next((a for a in levels if i in rejected(a)), 1.0) for i in range(m)]


def test_holm_matches_the_step_down_procedure() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        p = list(rng.random(int(rng.integers(1, 9))) ** 2)
        assert holm(p) == pytest.approx(_holm_by_procedure(p))
    assert holm([0.01, None, 0.04]) == [0.02, None, 0.04]


@pytest.mark.parametrize(("diff", "p", "want"), [
    ({"mean": 0.10, "ci": [0.04, 0.16]}, 0.01, "supported"),
    ({"mean": -0.10, "ci": [-0.16, -0.04]}, 0.01, "not supported"),
    ({"mean": 0.00, "ci": [-0.015, 0.015]}, 0.9, "not supported"),  # below the smallest effect
    ({"mean": 0.05, "ci": [-0.02, 0.12]}, 0.2, "inconclusive"),
    ({"mean": 0.10, "ci": [0.04, 0.16]}, 0.06, "inconclusive"),  # uncorrected only
    ({"mean": None, "ci": None}, None, "inconclusive"),
])
def test_verdicts_follow_the_numbers(diff, p, want) -> None:
    assert verdict(diff, p, 0.02) == want


# ------------------------------------------------------------------------------ the sets
def test_bam_set_misleading_bodies_hold_what_the_docs_say() -> None:
    data = make_bam_set(0, n_train=300, n_test=300)
    t = data.truth
    assert data.splits == ("train", "test", "test_iid")
    assert np.all(data.labels.argmax(1) == t["y"]) and np.all(data.labels.sum(1) == 1)
    kind, decoy = t["kind"], t["decoy"]
    assert not np.any(decoy & (kind != 0))  # only reliable bodies get a decoy flag
    assert np.all(t["flag"][~decoy] == t["y"][~decoy]) and np.all(t["flag"][decoy] != t["y"][decoy])
    assert np.all(t["shown"][kind == 0] == t["y"][kind == 0])
    mis = kind == 1
    assert np.all(t["shown"][mis] != t["y"][mis])
    for split, pool in (("train", {0, 1, 2}), ("test", {3, 4, 5}), ("test_iid", {0, 1, 2})):
        rows = data.indices(split)
        assert set(t["shown"][rows][mis[rows]].tolist()) <= pool, split
    # the unreliable look: black and white pixels outside the torso, and only there
    def extreme(img):  # black, or white after a lighting factor of 0.85 to 1.15
        return (img.max(-1) < 20) | (img.min(-1) > 200)

    share = extreme(data.body).reshape(len(data), -1).mean(1)
    assert np.all(share[kind != 1] == 0) and np.all(share[mis] > 0.2)
    torso = data.body[:, 10:24, 10:22]  # inside the torso rectangle of a 32 px crop
    assert not np.any(extreme(torso))
    again = make_bam_set(0, n_train=300, n_test=300)
    assert np.array_equal(again.body, data.body) and np.array_equal(again.context, data.context)


def test_gsam_set_shows_every_colour_once_and_frames_only_the_target() -> None:
    from dagnet_layers.emotic.diagnostic import PALETTE

    data = make_gsam_set(1, n_train=4, n_test=100)
    colours = np.array(list(PALETTE.values()), dtype=float)
    light = None
    for i in range(len(data)):
        img = data.context[i].astype(float)
        found = []
        for cell in data.truth["candidate_cells"][i]:
            r, c = divmod(int(cell), 4)
            patch = img[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16].reshape(-1, 3)
            # the colour of the square: its most saturated pixels, matched by chroma
            sat = patch.max(1) - patch.min(1)
            mean = patch[sat > 0.8 * sat.max()].mean(0)
            found.append(int(np.argmin(np.abs(colours / colours.sum(1, keepdims=True)
                                              - mean / mean.sum()).sum(1))))
            white = (patch.min(1) > 200).sum()
            is_target = cell == data.truth["target_cell"][i]
            assert (white > 20) == is_target, (i, cell)  # a frame around the target alone
            if is_target:
                light = found[-1]
        assert sorted(found) == list(range(6)), i  # the same colours in every scene
        assert light == data.truth["y"][i], i


def test_lsam_set_relations_and_a_bag_of_patches_at_chance_by_construction() -> None:
    from dagnet_layers.emotic.diagnostic import LocalStreamProbe
    from dagnet_layers.models import DAGNetConfig

    data = make_lsam_set(2, n_train=4, n_test=600)
    rows = data.indices("test")
    rel, cells = data.truth["relation"][rows], data.truth["cells"][rows]
    (ra, ca), (rb, cb) = np.divmod(cells[:, 0], 4), np.divmod(cells[:, 1], 4)
    want = np.where(ra == rb, 0, np.where(ca == cb, 1, 2))
    assert np.array_equal(rel, want)
    assert np.all(np.bincount(rel, minlength=3) > 150)  # about a third each
    # transposing the grid of patches keeps every patch (the bag) and swaps "same row"
    # with "same column": a per-patch sum gives both the same output, whatever it learnt
    x = torch.from_numpy(data.context[rows[:16]]).permute(0, 3, 1, 2).float() / 255
    moved = x.reshape(16, 3, 4, 16, 4, 16).permute(0, 1, 4, 3, 2, 5).reshape(16, 3, 64, 64)
    small = dict(num_classes=4, patch_channels=(8, 8), patch_pool=2, gcn_hidden=(32, 16))
    torch.manual_seed(0)
    bag = LocalStreamProbe(DAGNetConfig(lsam_gcn=False, **small)).eval()
    torch.manual_seed(0)
    graph = LocalStreamProbe(DAGNetConfig(gcn_learn_adjacency=False, **small)).eval()
    def stream(probe, images):  # the local stream's output, before the fusion layer
        return probe.local_graph(probe.patch_encoder(images))

    with torch.no_grad():
        graph.local_graph.adjacency.copy_(oracle_adjacency(4))
        a, b = stream(bag, x), stream(bag, moved)
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()  # rounding only
        a, b = stream(graph, x), stream(graph, moved)  # a graph that tells rows from columns
        assert (a - b).abs().max() > 1e-3 * a.abs().max()


# ------------------------------------------------------------------------------- the arms
def test_every_module_declares_a_floor_the_paper_an_oracle_and_its_contrasts() -> None:
    for module, arms in ARMS.items():
        roles = [a.role for a in arms]
        assert roles.count("floor") == 1 and roles.count("oracle") == 1 and "paper" in roles
        assert "variant" in roles, module
        assert all(a.source for a in arms)
    for module, a, b in PRIMARY_CONTRASTS:
        arm(module, a), arm(module, b)
    with pytest.raises(ValueError, match="its arms: none, bam"):
        arm("bam", "gate")


@pytest.mark.parametrize("module", ["bam", "gsam", "lsam"])
def test_arms_share_their_common_parts_at_initialisation(module: str) -> None:
    """Under one seed, any two arms of a module start from the same weights in every
    layer they both have at one width (an adjacency set to the oracle's, or started as
    the identity, is the arm's point and left out)."""
    import itertools

    k = 4 if module == "lsam" else 6
    states, graphs = {}, {}
    for a in ARMS[module]:
        torch.manual_seed(7)
        model = build_arm_model(a, k)
        states[a.name] = model.state_dict()
        graphs[a.name] = type(getattr(model, "local_graph", None))
    compared = 0
    for (na, sa), (nb, sb) in itertools.combinations(states.items(), 2):
        layers = {key.rsplit(".", 1)[0] for key in sa if key in sb}
        if graphs[na] is not graphs[nb]:  # two kinds of graph: alike names, other layers
            layers = {layer for layer in layers if not layer.startswith("local_graph")}
        # a layer counts when all of its tensors have the same shape in both arms
        same = {layer for layer in layers if all(
            sa[key].shape == sb[key].shape for key in sa
            if key.rsplit(".", 1)[0] == layer and key in sb)}
        for key in sa:
            if key in sb and key.rsplit(".", 1)[0] in same and key != "local_graph.adjacency":
                assert torch.equal(sa[key], sb[key]), (na, nb, key)
                compared += 1
    assert compared > 50
    if module == "lsam":
        torch.manual_seed(7)
        oracle = build_arm_model(arm("lsam", "oracle"), 4).local_graph
        assert not oracle.learn_adjacency
        assert torch.equal(oracle.adjacency, oracle_adjacency(4))


# ----------------------------------------------------------------------- running an arm
@pytest.fixture(scope="module")
def tiny_sets():
    return {"bam": make_bam_set(0, n_train=64, n_test=48),
            "gsam": make_gsam_set(0, n_train=64, n_test=48),
            "lsam": make_lsam_set(0, n_train=64, n_test=48)}


def test_a_run_repeats_exactly_and_reports_every_number(tiny_sets) -> None:
    a, data = arm("bam", "bam"), tiny_sets["bam"]
    first = run_arm(a, data, 3, epochs=2)
    second = run_arm(a, data, 3, epochs=2)
    for key in ("splits", "mechanism", "interventions", "final_loss"):
        assert first[key] == second[key], key
    assert set(first["splits"]) == {"test", "test_iid"}
    assert 0 <= first["splits"]["test"]["accuracy_contested"] <= 1
    assert set(first["interventions"]) == {"gate_mean"}
    assert len(first["samples"]["weights"]) == 48
    other = run_arm(a, data, 4, epochs=2)
    assert other["splits"] != first["splits"]


def test_oracle_and_constant_arms_put_the_ground_truth_in_the_module(tiny_sets) -> None:
    data = tiny_sets["bam"]
    oracle = run_arm(arm("bam", "oracle"), data, 0, epochs=1)
    kinds = np.asarray(oracle["samples"]["kinds"])
    weights = np.asarray(oracle["samples"]["weights"])
    assert np.array_equal(weights, (kinds == 0).astype(float))
    assert oracle["mechanism"]["weight_auc"] == 1.0 and oracle["interventions"] == {}
    constant = run_arm(arm("bam", "constant"), data, 0, epochs=1)
    assert set(constant["samples"]["weights"]) == {0.5}
    gsam = run_arm(arm("gsam", "oracle"), tiny_sets["gsam"], 0, epochs=1)
    assert gsam["mechanism"]["pointing"] == 1.0 and gsam["mechanism"]["target_share"] == 1.0


@pytest.mark.parametrize(("module", "name", "swaps"), [
    ("bam", "bam", {"gate_mean"}),
    ("gsam", "no_aux", {"map_flat", "map_shuffled"}),
    ("lsam", "gcn", {"adjacency_initial", "adjacency_shuffled"}),
    ("lsam", "attention", {"bias_zero"}),
])
def test_interventions_leave_the_model_as_it_was(tiny_sets, module, name, swaps) -> None:
    """Each test-time swap is undone: the intact model gives the same logits after them."""
    import dagnet_layers.emotic.diagnostic.bench as bench

    a, data = arm(module, name), tiny_sets[module]
    torch.manual_seed(0)
    model = build_arm_model(a, len(data.classes)).eval()
    hooks = bench._Overrides(a, model, data)
    body, context = bench._inputs(model, data)
    rows = data.indices("test")
    before = bench._forward_rows(model, body, context, rows, hooks)
    got = bench._interventions(a, model, data, body, context, rows, hooks, before, 0)
    assert set(got) == swaps
    after = bench._forward_rows(model, body, context, rows, hooks)
    np.testing.assert_array_equal(before["logits"], after["logits"])
    for part in ("body_attention", "context_attention"):
        layer = getattr(model, part, None)
        assert getattr(layer, "weight_override", None) is None
        assert getattr(layer, "map_override", None) is None
