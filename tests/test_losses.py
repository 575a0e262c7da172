"""Tests of dagnet_layers.emotic.losses against hand-computed values.

Expected numbers are written out with plain ``math`` here, never obtained by
calling the implementation under test.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dagnet_layers.emotic.losses import (
    BCEWithLogitsLoss,
    DAGNetCriterion,
    KLDivergenceLoss,
    MaskedVADLoss,
    MultiLabelFocalLoss,
    WeightedL2Loss,
    build_loss,
    kosti_class_weights,
    list_losses,
)

NAN = float("nan")
LN3 = math.log(3.0)


# --------------------------------------------------------------------------- #
# KL divergence
# --------------------------------------------------------------------------- #
def test_kl_hand_computed():
    # logits (0, ln 3) -> q = (1/4, 3/4).
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # Row 0: p = (1/2, 1/2): 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3).
    # Row 1: p = (0, 1): ln(1 / (3/4)) = ln(4/3).
    row0 = 0.5 * math.log(4 / 3)
    row1 = math.log(4 / 3)
    per_sample = KLDivergenceLoss(reduction="none")(logits, target)
    assert per_sample.tolist() == pytest.approx([row0, row1], abs=1e-6)
    assert KLDivergenceLoss()(logits, target).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert KLDivergenceLoss(reduction="sum")(logits, target).item() == pytest.approx(
        row0 + row1, abs=1e-6
    )


def test_kl_zero_when_prediction_matches_label_distribution():
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    logits = torch.tensor([[2.0, 2.0, -40.0, -40.0]])  # softmax ~ (1/2, 1/2, 0, 0)
    assert KLDivergenceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_gradient_is_softmax_minus_label_distribution():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    KLDivergenceLoss()(logits, target).backward()
    q = [0.25, 0.75]
    expected = [
        [(q[0] - 0.5) / 2, (q[1] - 0.5) / 2],
        [(q[0] - 0.0) / 2, (q[1] - 1.0) / 2],
    ]
    assert logits.grad is not None
    for got_row, exp_row in zip(logits.grad.tolist(), expected, strict=True):
        assert got_row == pytest.approx(exp_row, abs=1e-6)


def test_kl_sample_without_positive_is_excluded_from_mean():
    logits = torch.tensor([[0.0, LN3], [5.0, -3.0]], requires_grad=True)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    loss = KLDivergenceLoss(empty_rows="exclude")(logits, target)
    # Only row 0 counts, and the mean divides by 1, not 2.
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[1].tolist() == [0.0, 0.0]
    none = KLDivergenceLoss(reduction="none", empty_rows="exclude")(logits, target)
    assert none[1].item() == 0.0


def test_kl_batch_without_any_positive_is_zero_with_finite_grad():
    logits = torch.randn(3, 5, requires_grad=True)
    loss = KLDivergenceLoss(empty_rows="exclude")(logits, torch.zeros(3, 5))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros(3, 5))


def test_kl_refuses_a_row_without_a_label_by_default():
    """It returned 0 for an all-zero target: a batch of wrong targets trained nothing,
    without a word. The row is named; the engine makes the same check on the host."""
    from dagnet_layers.emotic.losses import check_loss_targets, needs_a_label

    target = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"target row 2 has no positive label.*"
                       r"empty_rows='exclude'"):
        KLDivergenceLoss()(torch.zeros(3, 2), target)
    with pytest.raises(ValueError, match="DAGNetCriterion"):
        DAGNetCriterion("kl")({"logits": torch.zeros(3, 2)}, {"categories": target})
    with pytest.raises(ValueError, match="step 4: target row 2"):
        check_loss_targets(target, where="step 4", require_label=True)
    check_loss_targets(target)  # the other losses take such rows
    assert needs_a_label(DAGNetCriterion("kl")) and needs_a_label(KLDivergenceLoss())
    assert not needs_a_label(KLDivergenceLoss(empty_rows="exclude"))
    assert not needs_a_label(DAGNetCriterion("bce"))
    with pytest.raises(ValueError, match="empty_rows must be"):
        KLDivergenceLoss(empty_rows="skip")


def test_kl_gradcheck_float64():
    logits = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    target = (torch.rand(4, 6, dtype=torch.float64) > 0.5).double()
    target[0] = 0.0  # include an excluded sample
    target[1, 0] = 1.0
    loss = KLDivergenceLoss(empty_rows="exclude")
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,))


# --------------------------------------------------------------------------- #
# Kosti et al. weighted L2
# --------------------------------------------------------------------------- #
def test_kosti_class_weights_formula_and_zero_count():
    w = kosti_class_weights([0, 1, 3, 1000])
    expected = [1e-4, 1 / math.log(2.2), 1 / math.log(4.2), 1 / math.log(1001.2)]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w.dtype == torch.float32
    # A count of zero is 1e-4, not 1 / ln(1.2) ~ 5.48.
    assert kosti_class_weights(torch.zeros(2, dtype=torch.float64)).tolist() == [1e-4, 1e-4]


@pytest.mark.parametrize(
    ("counts", "match"),
    [([1.0, -1.0], "non-negative"), ([[1.0, 2.0]], r"counts must have shape \(K,\)")],
)
def test_kosti_class_weights_rejects_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        kosti_class_weights(counts)


def test_weighted_l2_static_hand_computed():
    loss = WeightedL2Loss(class_counts=[0, 1, 3])
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    y = torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    w = [1e-4, 1 / math.log(2.2), 1 / math.log(4.2)]
    row0 = w[0] * 1 + w[1] * 1 + w[2] * 1
    row1 = 0.0
    assert loss(x, y).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    none = WeightedL2Loss(class_counts=[0, 1, 3], reduction="none")(x, y)
    assert none.tolist() == pytest.approx([row0, row1], rel=1e-6)


def test_weighted_l2_compares_raw_score_by_default_and_sigmoid_on_request():
    x = torch.tensor([[0.0, 2.0]])
    y = torch.tensor([[1.0, 0.0]])
    w = [1 / math.log(2.2), 1 / math.log(11.2)]
    raw = WeightedL2Loss(class_counts=[1, 10])(x, y).item()
    assert raw == pytest.approx(w[0] * 1.0 + w[1] * 4.0, rel=1e-6)
    sig = WeightedL2Loss(class_counts=[1, 10], apply_sigmoid=True)(x, y).item()
    s2 = 1 / (1 + math.exp(-2.0))
    assert sig == pytest.approx(w[0] * 0.25 + w[1] * s2**2, rel=1e-6)


def test_weighted_l2_batch_mode_uses_batch_counts():
    loss = WeightedL2Loss(mode="batch")
    x = torch.zeros(2, 3, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    # Batch counts (2, 0, 1) -> weights (1/ln 3.2, 1e-4, 1/ln 2.2).
    row0 = 1 / math.log(3.2) + 1 / math.log(2.2)
    row1 = 1 / math.log(3.2)
    out = loss(x, y)
    assert out.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    out.backward()
    assert x.grad is not None
    # d/dx of w (x - y)^2 averaged over B=2: w (x - y).
    assert x.grad[0, 0].item() == pytest.approx(-1 / math.log(3.2), rel=1e-6)


def test_weighted_l2_from_targets_counts_positives():
    loss = WeightedL2Loss.from_targets(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    assert loss.weights is not None
    assert loss.weights.tolist() == pytest.approx([1 / math.log(4.2), 1 / math.log(2.2)])


def test_weighted_l2_constructor_and_shape_errors():
    with pytest.raises(ValueError, match="class_counts is required"):
        WeightedL2Loss()
    with pytest.raises(ValueError, match="class_counts must be None"):
        WeightedL2Loss([1, 2], mode="batch")
    with pytest.raises(ValueError, match=r"K = 3 columns \(len\(class_counts\)\).*\(2, 4\)"):
        WeightedL2Loss(class_counts=[1, 2, 3])(torch.zeros(2, 4), torch.zeros(2, 4))


# --------------------------------------------------------------------------- #
# Focal loss
# --------------------------------------------------------------------------- #
def test_focal_hand_computed():
    # x = 0 -> p = 1/2 ; x = ln 3 -> p = 3/4.
    x = torch.tensor([[0.0, LN3]])
    y = torch.tensor([[1.0, 0.0]])
    pos = (1 - 0.5) ** 2 * math.log(2)  # -(1-p)^2 log p, p = 1/2
    neg = 0.75**2 * math.log(4)  # -p^2 log(1-p), p = 3/4
    got = MultiLabelFocalLoss(gamma=2.0, reduction="none")(x, y)
    assert got.tolist()[0] == pytest.approx([pos, neg], rel=1e-6)
    balanced = MultiLabelFocalLoss(gamma=2.0, alpha=0.25, reduction="sum")(x, y).item()
    assert balanced == pytest.approx(0.25 * pos + 0.75 * neg, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.1, 30.0))
def test_focal_with_gamma_zero_is_bce(seed, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64) * scale
    y = (torch.rand(5, 7, generator=g) > 0.6).double()
    focal = MultiLabelFocalLoss(gamma=0.0, alpha=None)(x, y)
    bce = F.binary_cross_entropy_with_logits(x, y)
    assert focal.item() == pytest.approx(bce.item(), rel=1e-9, abs=1e-12)


def test_focal_down_weights_easy_examples_and_stays_finite():
    easy = MultiLabelFocalLoss(gamma=2.0)(torch.tensor([[4.0]]), torch.tensor([[1.0]]))
    bce = F.binary_cross_entropy_with_logits(torch.tensor([[4.0]]), torch.tensor([[1.0]]))
    assert easy.item() < bce.item() / 100
    x = torch.tensor([[100.0, -100.0]], requires_grad=True)
    out = MultiLabelFocalLoss(gamma=2.0)(x, torch.tensor([[0.0, 1.0]]))
    out.backward()
    assert math.isfinite(out.item()) and out.item() == pytest.approx(100.0, rel=1e-3)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_focal_gradcheck_float64():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = (torch.rand(3, 4, dtype=torch.float64) > 0.5).double()
    loss = MultiLabelFocalLoss(gamma=2.0, alpha=0.25)
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (x,))


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"gamma": -1.0}, "gamma"), ({"alpha": 1.5}, "alpha")]
)
def test_focal_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiLabelFocalLoss(**kwargs)


# --------------------------------------------------------------------------- #
# BCE
# --------------------------------------------------------------------------- #
def test_bce_matches_torch_and_hand_value():
    x = torch.tensor([[0.0, LN3]])
    y = torch.tensor([[1.0, 0.0]])
    expected = (math.log(2) + math.log(4)) / 2  # -log(1/2), -log(1 - 3/4)
    assert BCEWithLogitsLoss()(x, y).item() == pytest.approx(expected, rel=1e-6)
    pw = torch.tensor([3.0, 1.0])
    assert BCEWithLogitsLoss(pos_weight=pw)(x, y).item() == pytest.approx(
        (3 * math.log(2) + math.log(4)) / 2, rel=1e-6
    )


# --------------------------------------------------------------------------- #
# Shape validation shared by category losses
# --------------------------------------------------------------------------- #
CATEGORY_LOSSES = [
    KLDivergenceLoss(),
    WeightedL2Loss(mode="batch"),
    MultiLabelFocalLoss(),
    BCEWithLogitsLoss(),
    MaskedVADLoss(),
]


@pytest.mark.parametrize("loss", CATEGORY_LOSSES, ids=lambda m: type(m).__name__)
def test_bad_target_shape_names_argument_and_shapes(loss):
    with pytest.raises(
        ValueError, match=r"target must have the shape of input.*\(4, 3\).*\(4, 2\)"
    ):
        loss(torch.zeros(4, 3), torch.zeros(4, 2))


@pytest.mark.parametrize("loss", CATEGORY_LOSSES, ids=lambda m: type(m).__name__)
def test_bad_input_rank_names_argument(loss):
    with pytest.raises(ValueError, match=r"input must have shape \(B, K\), got 1-D shape \(3\)"):
        loss(torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("loss", CATEGORY_LOSSES, ids=lambda m: type(m).__name__)
def test_integer_input_and_non_tensor_rejected(loss):
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"target must be a torch\.Tensor"):
        loss(torch.zeros(2, 3), [[0.0] * 3] * 2)


# --------------------------------------------------------------------------- #
# VAD loss with missing values
# --------------------------------------------------------------------------- #
def test_vad_smooth_l1_masks_nan():
    pred = torch.tensor([[5.0, 5.0, 5.0]], requires_grad=True)
    target = torch.tensor([[5.5, 8.0, NAN]])
    # Smooth-L1 (beta 1): |e| = 0.5 -> 0.5 * 0.25 ; |e| = 3 -> 3 - 0.5. Mean over 2 valid.
    loss = MaskedVADLoss()(pred, target)
    assert loss.item() == pytest.approx((0.125 + 2.5) / 2)
    loss.backward()
    assert pred.grad is not None
    assert pred.grad.tolist()[0] == pytest.approx([-0.25, -0.5, 0.0])


def test_vad_margin_l2_ignores_errors_under_margin():
    pred = torch.tensor([[5.0, 5.0, 5.0], [1.0, 2.0, 3.0]], requires_grad=True)
    target = torch.tensor([[5.9, 8.0, NAN], [NAN, 2.0, 1.0]])
    # Valid errors: 0.9 (under margin -> 0), 3 -> 9, 0 -> 0, 2 -> 4. Mean over 4.
    loss = MaskedVADLoss(kind="margin_l2", margin=1.0)(pred, target)
    assert loss.item() == pytest.approx(13 / 4)
    loss.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.flatten().tolist() == pytest.approx([0.0, -6 / 4, 0.0, 0.0, 0.0, 4 / 4])
    none = MaskedVADLoss(kind="margin_l2", reduction="none")(pred, target)
    assert none.flatten().tolist() == pytest.approx([0.0, 9.0, 0.0, 0.0, 0.0, 4.0])


@pytest.mark.parametrize("kind", ["smooth_l1", "margin_l2"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_vad_all_nan_is_zero_with_zero_grad(kind, reduction):
    pred = torch.randn(4, 3, requires_grad=True)
    loss = MaskedVADLoss(kind=kind, reduction=reduction)(pred, torch.full((4, 3), NAN))
    assert loss.item() == 0.0
    loss.backward()
    assert pred.grad is not None
    assert torch.equal(pred.grad, torch.zeros(4, 3))


def test_vad_rejects_bad_kind():
    with pytest.raises(ValueError, match="kind must be"):
        MaskedVADLoss(kind="l1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Registry and criterion
# --------------------------------------------------------------------------- #
def test_registry():
    assert list_losses() == ["bce", "focal", "kl", "weighted_l2"]
    assert isinstance(build_loss(), KLDivergenceLoss)
    assert isinstance(build_loss("weighted_l2", mode="batch"), WeightedL2Loss)
    assert build_loss("focal", gamma=1.5).gamma == 1.5
    with pytest.raises(ValueError, match=r"name must be one of .*got 'l1'"):
        build_loss("l1")


def test_criterion_combines_terms_by_hand():
    logits = torch.tensor([[0.0, LN3]], requires_grad=True)
    aux_logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    vad = torch.tensor([[5.0, 5.0, 5.0]], requires_grad=True)
    out = SimpleNamespace(logits=logits, aux_logits=aux_logits, vad=vad)
    batch = {"categories": torch.tensor([[0.0, 1.0]]), "vad": torch.tensor([[7.0, NAN, 5.0]])}
    criterion = DAGNetCriterion("kl", aux_weight=0.5, vad_weight=2.0)
    total, parts = criterion(out, batch)
    cat = math.log(4 / 3)  # KL((0,1) || (1/4, 3/4))
    aux = math.log(2)  # KL((0,1) || (1/2, 1/2))
    vad_term = ((2 - 0.5) + 0) / 2  # Smooth-L1 on errors 2 and 0
    assert float(parts["category"]) == pytest.approx(cat, rel=1e-6)
    assert float(parts["aux"]) == pytest.approx(aux, rel=1e-6)
    assert float(parts["vad"]) == pytest.approx(vad_term, rel=1e-6)
    expected_total = cat + 0.5 * aux + 2.0 * vad_term
    assert float(parts["total"]) == pytest.approx(expected_total, rel=1e-6)
    assert total.item() == pytest.approx(expected_total, rel=1e-6)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad
               for v in parts.values())  # detached, left on the device: no sync to log them
    total.backward()
    for t in (logits, aux_logits, vad):
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_criterion_skips_missing_aux_and_off_vad_and_accepts_mappings():
    criterion = DAGNetCriterion(WeightedL2Loss(class_counts=[1, 1]), aux_weight=1.0)
    out = {"logits": torch.tensor([[1.0, 0.0]]), "aux_logits": None, "vad": torch.zeros(1, 3)}
    total, parts = criterion(out, {"categories": torch.tensor([[1.0, 1.0]])})
    assert set(parts) == {"category", "total"}
    assert total.item() == pytest.approx(1 / math.log(2.2), rel=1e-6)


def test_criterion_errors():
    out = SimpleNamespace(logits=torch.zeros(2, 3), aux_logits=torch.zeros(2, 4), vad=None)
    batch = {"categories": torch.eye(2, 3), "vad": torch.zeros(2, 3)}
    with pytest.raises(ValueError, match=r"aux_logits must have the shape of output.logits"):
        DAGNetCriterion()(out, batch)
    out.aux_logits = None
    with pytest.raises(ValueError, match=r"needs output.vad"):
        DAGNetCriterion(vad_weight=1.0)(out, batch)
    with pytest.raises(ValueError, match=r"batch\['categories'\] is required"):
        DAGNetCriterion()(out, {"vad": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="aux_weight must be finite and >= 0"):
        DAGNetCriterion(aux_weight=-1.0)
    with pytest.raises(ValueError, match="need category_loss given by name"):
        DAGNetCriterion(KLDivergenceLoss(), gamma=2.0)
    with pytest.raises(TypeError, match="category_loss must be a loss name"):
        DAGNetCriterion(category_loss=3)  # type: ignore[arg-type]


def test_true_class_probability_by_hand():
    from dagnet_layers.emotic.losses import true_class_probability

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    p = torch.tensor([2.0, 0.0, -1.0]).exp()
    p = p / p.sum()
    got = true_class_probability(logits, target, "softmax")
    assert torch.allclose(got, torch.tensor([float(p[0] + p[2]), 0.0]))
    s = torch.sigmoid(torch.tensor([2.0, -1.0]))
    got = true_class_probability(logits, target, "sigmoid")
    assert torch.allclose(got, torch.tensor([float(s.mean()), 0.0]))
    got = true_class_probability(logits, target, "identity")
    assert torch.allclose(got, torch.tensor([0.5, 0.0]))  # (clamp(2) + clamp(-1)) / 2
    with pytest.raises(ValueError, match="score must be one of"):
        true_class_probability(logits, target, "tanh")


def test_criterion_reliability_term_by_hand():
    """With body_logits, the loss adds the body classifier's own loss and the squared
    distance of BAM's weight to that classifier's (detached) true-class probability."""
    from types import SimpleNamespace

    from dagnet_layers.emotic.losses import KLDivergenceLoss

    torch.manual_seed(0)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    out = SimpleNamespace(logits=torch.randn(2, 3), aux_logits=None, vad=None,
                          body_logits=torch.randn(2, 3, requires_grad=True),
                          body_weights=torch.tensor([0.9, 0.2], requires_grad=True))
    criterion = DAGNetCriterion("kl", bam_weight=0.5)
    total, parts = criterion(out, {"categories": y})
    kl = KLDivergenceLoss()
    target = (out.body_logits.detach().softmax(1) * y).sum(1)  # mass on the true categories
    gate = ((out.body_weights.detach() - target) ** 2).mean()
    body = kl(out.body_logits.detach(), y)
    assert parts["bam"] == pytest.approx(float(gate), rel=1e-6)
    assert parts["body"] == pytest.approx(float(body), rel=1e-6)
    assert float(total.detach()) == pytest.approx(float(kl(out.logits, y) + 0.5 * (body + gate)),
                                                  rel=1e-6)
    total.backward()  # the target is detached: the weights' gradient is 0.5 * 2 (w - t) / B
    want = 0.5 * 2 * (out.body_weights.detach() - target) / 2
    assert torch.allclose(out.body_weights.grad, want, atol=1e-6)
    off = DAGNetCriterion("kl", bam_weight=0.0)(out, {"categories": y})[1]
    assert "bam" not in off and "body" not in off
    out.body_weights = None
    with pytest.raises(ValueError, match=r"body_logits needs output\.body_weights"):
        criterion(out, {"categories": y})


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), gamma=st.floats(0.0, 4.0),
       alpha=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_focal_soft_extension_agrees_with_torchvision_on_multi_hot(seed, gamma, alpha):
    """Two independent implementations (ours for soft targets, torchvision's) meet on 0/1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 26, generator=g, dtype=torch.float64) * 4
    y = (torch.rand(6, 26, generator=g) > 0.7).double()
    hard = MultiLabelFocalLoss(gamma=gamma, alpha=alpha, reduction="none")(x, y)
    soft = MultiLabelFocalLoss(gamma=gamma, alpha=alpha, reduction="none", soft_targets=True)
    torch.testing.assert_close(soft(x, y), hard, rtol=1e-9, atol=1e-12)


def test_focal_soft_targets_interpolate_the_two_terms():
    x, y = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[0.25]], dtype=torch.float64)
    loss = MultiLabelFocalLoss(gamma=2.0, reduction="none", soft_targets=True)
    pos = loss(x, torch.ones_like(y))
    neg = loss(x, torch.zeros_like(y))
    torch.testing.assert_close(loss(x, y), 0.25 * pos + 0.75 * neg)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_focal_gradients_stay_finite_at_saturated_logits(gamma, dtype):
    """torchvision's (1 - p_t)**gamma has an infinite slope at 0 for gamma < 1: those
    gammas take the logsigmoid form."""
    x = torch.tensor([[30.0, -30.0, 12.0, -12.0]], dtype=dtype, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=dtype)
    MultiLabelFocalLoss(gamma=gamma)(x, y).backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all(), (gamma, x.grad)
