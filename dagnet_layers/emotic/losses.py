r"""Training losses for EMOTIC: the 26 categories and valence/arousal/dominance.

DAG-Net (the paper this package implements) trains its category head with a
Kullback-Leibler divergence and adds the attention branch loss of ABN (Fukui et
al., CVPR 2019). The paper says the KL loss follows Kosti et al.; their published
loss is a weighted L2 (:class:`WeightedL2Loss`), so the KL loss is the paper's own.
The other category losses are the ones of the published EMOTIC baselines, so that a
comparison changes one name:

================= =======================================  ==============================
name              loss                                     reduction of ``"mean"``
================= =======================================  ==============================
``"kl"``          :class:`KLDivergenceLoss` (DAG-Net)      sum over categories, mean over
                                                           samples with a positive label
``"weighted_l2"`` :class:`WeightedL2Loss` (Kosti et al.)   sum over categories, mean over
                                                           samples
``"focal"``       :class:`MultiLabelFocalLoss`             mean over all B x K entries
                  (Bendjoudi et al.)
``"bce"``         :class:`BCEWithLogitsLoss`               mean over all B x K entries
================= =======================================  ==============================

Each loss keeps the reduction of its source, so their magnitudes differ; a
weighted sum of them needs weights tuned per loss.

**Scores follow the loss.** Each loss says how its logits become the scores
that rank samples for AP, set the thresholds and are shown to a user
(:attr:`KLDivergenceLoss.score` and friends, :func:`loss_score`,
:func:`scores_from_logits`):

================= ============ ===============================================
loss              ``score``    why
================= ============ ===============================================
``"kl"``          softmax      the loss sees only ``softmax(x)``: logits are
                               defined up to a per-sample constant, which a
                               per-category sigmoid would rank by
``"weighted_l2"`` identity     the raw output is regressed onto the 0/1 target
                               (sigmoid with ``apply_sigmoid=True``)
``"focal"``       sigmoid      independent per-category probabilities
``"bce"``         sigmoid      independent per-category probabilities
================= ============ ===============================================

Every category loss takes ``input`` of shape ``(B, K)`` (raw model outputs,
"logits") and ``target`` of the same shape (multi-hot, ``1.0`` where the
category is annotated; soft labels in ``[0, 1]`` are accepted). :class:`MaskedVADLoss`
regresses the three continuous dimensions and ignores missing (NaN) targets.
:class:`DAGNetCriterion` combines a category loss, the same loss on the ABN
attention-branch logits, and the VAD loss, and returns the components for
logging.

This module imports nothing of :mod:`dagnet_layers.models` or
:mod:`dagnet_layers.layers`: the criterion reads the model output by duck
typing.

References:
    - R. Kosti, J. M. Alvarez, A. Recasens, A. Lapedriza, "Context Based Emotion
      Recognition Using EMOTIC Dataset", TPAMI 42(11), 2020.
    - N. Bendjoudi et al., "Multi-label, multi-task CNN approach for
      context-based emotion recognition", Information Fusion, 2020.
    - T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    - H. Fukui et al., "Attention Branch Network: Learning of Attention Mechanism
      for Visual Explanation", CVPR 2019.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SCORE_KINDS",
    "BCEWithLogitsLoss",
    "DAGNetCriterion",
    "KLDivergenceLoss",
    "MaskedVADLoss",
    "MultiLabelFocalLoss",
    "WeightedL2Loss",
    "build_loss",
    "check_loss_targets",
    "kosti_class_weights",
    "list_losses",
    "loss_score",
    "needs_a_label",
    "scores_from_logits",
    "true_class_probability",
]

Reduction = Literal["mean", "sum", "none"]
_REDUCTIONS = ("mean", "sum", "none")
ScoreKind = Literal["softmax", "sigmoid", "identity"]
#: How logits can become scores: over the K categories of a sample
#: (``"softmax"``), per category (``"sigmoid"``), or the logits themselves.
SCORE_KINDS: tuple[str, ...] = ("softmax", "sigmoid", "identity")

#: Weight Kosti et al. give to a category without any positive example.
_ZERO_COUNT_WEIGHT = 1e-4


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _check_reduction(owner: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_pair(owner: str, input: Tensor, target: Tensor) -> None:
    """Check ``input`` is a float (B, K) tensor and ``target`` has its shape."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{owner}: input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(target, Tensor):
        raise TypeError(f"{owner}: target must be a torch.Tensor, got {type(target).__name__}")
    if input.ndim != 2:
        raise ValueError(
            f"{owner}: input must have shape (B, K), got {input.ndim}-D shape {_shape(input)}"
        )
    if target.shape != input.shape:
        raise ValueError(
            f"{owner}: target must have the shape of input (B, K) = {_shape(input)}, "
            f"got {_shape(target)}"
        )
    if not input.is_floating_point():
        raise TypeError(f"{owner}: input must be a floating-point tensor, got {input.dtype}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def scores_from_logits(logits: Tensor, score: ScoreKind) -> Tensor:
    """Scores of a loss's kind, computed in float64 from the logits (detached).

    float64, because ranking float32 (or bf16) scores creates ties that the
    logits do not have, and ties change the official AP.

    Args:
        logits: model outputs, any float dtype and device.
        score: ``"softmax"`` (over the last dimension), ``"sigmoid"`` or ``"identity"``.

    Returns:
        float64 tensor of the shape and device of ``logits``.

    Shape:
        - logits: :math:`(B, K)`.
        - output: :math:`(B, K)`.

    Example:
        >>> scores_from_logits(torch.tensor([[0.0, 0.0]]), "softmax")
        tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    if score not in SCORE_KINDS:
        raise ValueError(f"scores_from_logits: score must be one of {SCORE_KINDS}, got {score!r}")
    x = logits.detach().to(torch.float64)
    if score == "softmax":
        return x.softmax(dim=-1)
    if score == "sigmoid":
        return x.sigmoid()
    return x


def true_class_probability(logits: Tensor, target: Tensor, score: ScoreKind) -> Tensor:
    r"""How much a classifier believes the true categories: ConfidNet's target, per sample.

    Corbière et al. (NeurIPS 2019) train a confidence estimate to regress the
    probability the classifier gives the true class. For a multi-label target, and
    for each score kind of this module:

    - ``"softmax"``: the probability mass on the true categories, :math:`\sum_k y_k p_k`;
    - ``"sigmoid"``: the mean of :math:`\sigma(x_k)` over the true categories;
    - ``"identity"``: the mean of the scores clamped to [0, 1] over the true categories.

    A sample without a true category gets 0.

    Args:
        logits: (B, K) logits.
        target: (B, K) multi-hot (or soft) targets in [0, 1].
        score: the category loss's score kind (:func:`loss_score`).

    Returns:
        (B,) values in [0, 1], in the logits' float dtype, detached.

    Example:
        >>> logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
        >>> true_class_probability(logits, torch.tensor([[0.0, 1.0, 1.0]]), "softmax")
        tensor([0.3000])
    """
    if score not in SCORE_KINDS:
        raise ValueError(f"true_class_probability: score must be one of {SCORE_KINDS}, "
                         f"got {score!r}")  # fmt: skip
    x = logits.detach().float()
    y = target.detach().to(x.dtype)
    if score == "softmax":
        return (x.softmax(dim=-1) * y).sum(dim=-1).clamp(0.0, 1.0)
    p = x.sigmoid() if score == "sigmoid" else x.clamp(0.0, 1.0)
    return (p * y).sum(dim=-1) / y.sum(dim=-1).clamp_min(1e-12)


def loss_score(loss: Any) -> ScoreKind:
    """The score function of a category loss (or of a :class:`DAGNetCriterion`).

    Args:
        loss: a loss of this module, a :class:`DAGNetCriterion`, or any object
            with a ``score`` attribute in :data:`SCORE_KINDS`.

    Returns:
        ``"softmax"``, ``"sigmoid"`` or ``"identity"``.

    Raises:
        ValueError: ``loss`` does not say (a custom loss: give it a ``score``
            attribute, or pass ``score=`` to the evaluation).

    Example:
        >>> loss_score(build_loss("kl")), loss_score(build_loss("focal"))
        ('softmax', 'sigmoid')
    """
    score = getattr(loss, "score", None)
    if score not in SCORE_KINDS:
        raise ValueError(
            f"{type(loss).__name__} does not say how its logits become scores: give it a "
            f"'score' attribute in {SCORE_KINDS} (softmax for a loss on softmax(logits), "
            "sigmoid for per-category probabilities), or pass score=... explicitly"
        )
    return score


# --------------------------------------------------------------------------- #
# Category losses
# --------------------------------------------------------------------------- #
class KLDivergenceLoss(nn.Module):
    r"""KL divergence between the label distribution and the softmax of the logits.

    DAG-Net's category loss ("we used Kullback-Leibler divergence for back
    propagation"; the paper says "following Kosti et al.", whose published loss is
    the weighted L2 of :class:`WeightedL2Loss`). Each sample's multi-hot target is
    normalised into a distribution over the K categories,
    :math:`p_i = y_i / \sum_j y_j`, the logits into :math:`q = \mathrm{softmax}(x)`,
    and the loss per sample is

    .. math::
        \mathrm{KL}(p \,\|\, q) = \sum_i p_i \,(\log p_i - \log q_i),
        \qquad 0 \log 0 = 0 .

    The model's scores (:attr:`score`) are then ``softmax(logits)``, its
    predicted distribution over the categories: the loss is blind to a
    constant added to all of a sample's logits, so a per-category
    ``sigmoid(logit)`` would rank samples by that arbitrary constant.

    Edge case: a sample whose target has no positive label (sum zero) has no
    label distribution. By default (``empty_rows="error"``) it is refused with an
    error naming the row: EMOTIC's readers drop such persons (``no_category``), so
    one in a batch means the targets are not what they should be, and a loss of
    ``0`` would hide it. The check reads the values, so it runs where that is free:
    on CPU targets here, and on every batch on the host in the training engine
    (:func:`check_loss_targets` with ``require_label``); on a GPU this forward does
    not wait for the device to check. With ``empty_rows="exclude"`` such a sample is
    left out: its ``"none"`` value is ``0`` and the ``"mean"`` divides by the number
    of samples that have a positive label; a batch where none has one gives ``0``
    with a gradient of zeros, never NaN.

    Args:
        reduction: ``"mean"`` (over samples with a positive label), ``"sum"``, or
            ``"none"`` (one value per sample).
        empty_rows: ``"error"`` (default) or ``"exclude"``, for samples without a
            positive label (see above).

    Shape:
        - input: :math:`(B, K)` logits.
        - target: :math:`(B, K)`, non-negative (multi-hot or soft labels).
        - output: scalar, or :math:`(B,)` with ``reduction="none"``.

    Example:
        >>> loss = KLDivergenceLoss()
        >>> logits = torch.zeros(1, 2)
        >>> target = torch.tensor([[1.0, 0.0]])
        >>> round(loss(logits, target).item(), 4)  # log 2
        0.6931
    """

    #: Scores for evaluation and prediction: softmax over the categories.
    score: ClassVar[ScoreKind] = "softmax"

    def __init__(self, reduction: Reduction = "mean", *,
                 empty_rows: Literal["error", "exclude"] = "error") -> None:  # fmt: skip
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        if empty_rows not in ("error", "exclude"):
            raise ValueError(f"{type(self).__name__}: empty_rows must be 'error' or "
                             f"'exclude', got {empty_rows!r}")
        self.reduction = reduction
        self.empty_rows = empty_rows

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """KL divergence of ``softmax(input)`` from the normalised ``target``."""
        _check_pair(type(self).__name__, input, target)
        target = target.to(dtype=input.dtype)
        mass = target.sum(dim=1, keepdim=True)
        has_label = mass.squeeze(1) > 0
        if self.empty_rows == "error" and target.device.type == "cpu":
            _refuse_empty_rows(type(self).__name__, has_label)
        # Samples without a label get a dummy denominator; their rows are zero anyway.
        p = target / torch.where(mass > 0, mass, torch.ones_like(mass))
        log_q = F.log_softmax(input, dim=1)
        # xlogy gives 0 * log 0 = 0 for absent categories.
        per_sample = (torch.xlogy(p, p) - p * log_q).sum(dim=1)
        per_sample = per_sample * has_label.to(per_sample.dtype)
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample.sum() / has_label.sum().clamp_min(1).to(per_sample.dtype)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, empty_rows={self.empty_rows!r}"


def _refuse_empty_rows(where: str, has_label: Tensor) -> None:
    if not bool(has_label.all()):
        row = int((~has_label).nonzero()[0])
        raise ValueError(
            f"{where}: target row {row} has no positive label, so no label distribution for "
            "the KL loss (EMOTIC's readers drop such persons as no_category); give every "
            "sample a label, or KLDivergenceLoss(empty_rows='exclude') to leave them out"
        )


def kosti_class_weights(counts: Tensor | Sequence[float]) -> Tensor:
    r"""Per-category weights of Kosti et al.'s weighted L2 loss.

    .. math::
        w_i = \frac{1}{\ln(1.2 + n_i)}, \qquad w_i = 10^{-4} \text{ where } n_i = 0,

    with :math:`n_i` the number of positive examples of category *i* (over the
    train set, or over the batch). Without the special case a category with no
    positive would get the largest weight, :math:`1/\ln 1.2 \approx 5.48`.

    Args:
        counts: non-negative positive counts, one per category.

    Returns:
        A float tensor of weights with the shape of ``counts`` (float32 unless
        ``counts`` is a floating tensor, whose dtype is kept).

    Shape:
        - counts: :math:`(K,)`.
        - output: :math:`(K,)`.

    Example:
        >>> w = kosti_class_weights([0, 1, 100])
        >>> [round(v, 4) for v in w.tolist()]
        [0.0001, 1.2683, 0.2166]
    """
    counts_t = torch.as_tensor(counts)
    if not counts_t.is_floating_point():
        counts_t = counts_t.to(torch.float32)
    if counts_t.ndim != 1:
        raise ValueError(
            f"kosti_class_weights: counts must have shape (K,), got {_shape(counts_t)}"
        )
    if bool((counts_t < 0).any()) or bool(torch.isnan(counts_t).any()):
        raise ValueError("kosti_class_weights: counts must be non-negative, got a negative/NaN")
    weights = 1.0 / torch.log(counts_t + 1.2)
    return torch.where(counts_t == 0, torch.full_like(weights, _ZERO_COUNT_WEIGHT), weights)


class WeightedL2Loss(nn.Module):
    r"""Kosti et al.'s weighted squared error over the categories.

    .. math::
        L = \sum_{i=1}^{K} w_i\, (\hat y_i - y_i)^2,
        \qquad w_i = \frac{1}{\ln(1.2 + n_i)} \;(10^{-4} \text{ if } n_i = 0).

    **What** :math:`\hat y` **is.** By default the raw model output (``input``)
    itself, as in Kosti et al. and the community PyTorch baseline: the network
    regresses its raw score onto the 0/1 target and that same score ranks the
    samples for AP (:attr:`score` ``"identity"``; ``"sigmoid"`` with
    ``apply_sigmoid=True``). With ``apply_sigmoid=True``, :math:`\hat y = \sigma(x)`, a
    probability compared with the 0/1 target (bounded errors, the choice when
    the same logits also feed a sigmoid-based loss or predictor).

    The weights come from ``class_counts`` (static: count positives over the
    train set once) or, with ``mode="batch"``, from the positives of each
    batch's target (the baseline's "dynamic" weights).

    Args:
        class_counts: positive count per category over the train set; required
            with ``mode="static"``, not allowed with ``mode="batch"``.
        mode: ``"static"`` or ``"batch"``.
        apply_sigmoid: compare ``sigmoid(input)`` instead of ``input`` itself.
        reduction: ``"mean"`` over samples of the per-sample weighted sum,
            ``"sum"``, or ``"none"`` (one value per sample).

    Shape:
        - input: :math:`(B, K)`.
        - target: :math:`(B, K)`.
        - output: scalar, or :math:`(B,)` with ``reduction="none"``.

    Example:
        >>> loss = WeightedL2Loss(class_counts=[0, 1])
        >>> x = torch.tensor([[0.5, 0.5]])
        >>> y = torch.tensor([[0.0, 1.0]])
        >>> round(loss(x, y).item(), 4)  # 1e-4 * 0.25 + 0.25 / ln 2.2
        0.3171
    """

    weights: Tensor | None

    def __init__(
        self,
        class_counts: Tensor | Sequence[float] | None = None,
        *,
        mode: Literal["static", "batch"] = "static",
        apply_sigmoid: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_reduction(name, reduction)
        if mode not in ("static", "batch"):
            raise ValueError(f"{name}: mode must be 'static' or 'batch', got {mode!r}")
        if mode == "static" and class_counts is None:
            raise ValueError(
                f"{name}: class_counts is required with mode='static' "
                "(count positives per category over the train set), or pass mode='batch'"
            )
        if mode == "batch" and class_counts is not None:
            raise ValueError(f"{name}: class_counts must be None with mode='batch'")
        self.mode = mode
        self.apply_sigmoid = apply_sigmoid
        self.reduction = reduction
        if class_counts is not None:
            self.register_buffer("weights", kosti_class_weights(class_counts).float())
        else:
            self.register_buffer("weights", None)

    @classmethod
    def from_targets(cls, targets: Tensor, **kwargs: Any) -> WeightedL2Loss:
        """Build a static loss from the train set's (N, K) multi-hot targets.

        Args:
            targets: the train set's labels, shape :math:`(N, K)`.
            **kwargs: forwarded to the constructor (``apply_sigmoid``, ``reduction``).

        Returns:
            A :class:`WeightedL2Loss` with ``n_i = targets[:, i].sum()``.

        Example:
            >>> loss = WeightedL2Loss.from_targets(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
            >>> [round(v, 4) for v in loss.weights.tolist()]
            [0.8597, 0.0001]
        """
        if targets.ndim != 2:
            raise ValueError(
                f"WeightedL2Loss.from_targets: targets must have shape (N, K), "
                f"got {_shape(targets)}"
            )
        return cls(class_counts=targets.float().sum(dim=0), **kwargs)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Class-weighted squared error of ``input`` against ``target``."""
        name = type(self).__name__
        _check_pair(name, input, target)
        target = target.to(dtype=input.dtype)
        if self.weights is None:
            weights = kosti_class_weights(target.detach().sum(dim=0)).to(input.dtype)
        else:
            if self.weights.shape[0] != input.shape[1]:
                raise ValueError(
                    f"{name}: input must have K = {self.weights.shape[0]} columns "
                    f"(len(class_counts)), got shape {_shape(input)}"
                )
            weights = self.weights.to(dtype=input.dtype)
        pred = torch.sigmoid(input) if self.apply_sigmoid else input
        per_sample = ((pred - target).square() * weights).sum(dim=1)
        return _reduce(per_sample, self.reduction)

    @property
    def score(self) -> ScoreKind:
        """Scores for evaluation: the regressed output itself, or its sigmoid."""
        return "sigmoid" if self.apply_sigmoid else "identity"

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, apply_sigmoid={self.apply_sigmoid}, reduction={self.reduction!r}"
        )


class MultiLabelFocalLoss(nn.Module):
    r"""Multi-label (sigmoid) focal loss, as used on EMOTIC by Bendjoudi et al.

    With :math:`p = \sigma(x)` and :math:`p_t = p` where :math:`y = 1`, else
    :math:`1 - p` (soft targets interpolate both terms), per entry

    .. math::
        \ell = -\,\alpha_t\, (1 - p_t)^{\gamma} \log p_t ,

    where :math:`\alpha_t = \alpha` for positives and :math:`1 - \alpha` for
    negatives, or :math:`\alpha_t = 1` with ``alpha=None`` (the default: no
    class balancing; Lin et al. use ``alpha=0.25`` with ``gamma=2``). With
    ``gamma=0`` and ``alpha=None`` the loss is exactly binary cross-entropy with
    logits.

    Multi-hot targets (EMOTIC's) go to :func:`torchvision.ops.sigmoid_focal_loss`,
    the maintained implementation, for ``gamma = 0`` or ``gamma >= 1``. Our own form
    computes the rest: each entry is the target-weighted sum of the positive and the
    negative term above, from ``logsigmoid``, so that large logits stay finite. It is
    used for ``0 < gamma < 1``, where torchvision's :math:`(1 - p_t)^\gamma` has an
    infinite derivative at a saturated logit (NaN gradients), and with
    ``soft_targets=True``, our extension for targets strictly between 0 and 1
    (torchvision mixes :math:`p_t` inside one term, which is another loss for soft
    targets). On 0/1 targets the two forms agree (tested).

    Args:
        gamma: focusing exponent :math:`\gamma \ge 0`.
        alpha: weight of positives in ``[0, 1]``, or ``None`` for none.
        soft_targets: the interpolated form above, for targets in ``(0, 1)``.
        reduction: ``"mean"`` over all :math:`B \times K` entries, ``"sum"``, or
            ``"none"`` (elementwise).

    Shape:
        - input: :math:`(B, K)` logits.
        - target: :math:`(B, K)` in ``[0, 1]``.
        - output: scalar, or :math:`(B, K)` with ``reduction="none"``.

    Example:
        >>> loss = MultiLabelFocalLoss(gamma=2.0)
        >>> x = torch.zeros(1, 1)  # p = 0.5
        >>> round(loss(x, torch.ones(1, 1)).item(), 4)  # 0.25 * log 2
        0.1733
    """

    #: Scores for evaluation and prediction: a sigmoid per category.
    score: ClassVar[ScoreKind] = "sigmoid"

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = None,
        reduction: Reduction = "mean",
        soft_targets: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_reduction(name, reduction)
        if not gamma >= 0:
            raise ValueError(f"{name}: gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"{name}: alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)
        self.reduction = reduction
        self.soft_targets = bool(soft_targets)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Focal loss of the logits ``input`` against multi-hot ``target``."""
        _check_pair(type(self).__name__, input, target)
        target = target.to(dtype=input.dtype)
        if not self.soft_targets and (self.gamma == 0.0 or self.gamma >= 1.0):
            from torchvision.ops import sigmoid_focal_loss

            alpha = -1.0 if self.alpha is None else self.alpha  # torchvision's "no weighting"
            return sigmoid_focal_loss(input, target, alpha=alpha, gamma=self.gamma,
                                      reduction=self.reduction)  # fmt: skip
        log_p = F.logsigmoid(input)  # log p
        log_not_p = F.logsigmoid(-input)  # log (1 - p)
        pos = -target * log_p
        neg = -(1.0 - target) * log_not_p
        if self.gamma != 0.0:
            pos = pos * torch.exp(self.gamma * log_not_p)  # (1 - p)^gamma
            neg = neg * torch.exp(self.gamma * log_p)  # p^gamma
        if self.alpha is not None:
            pos = self.alpha * pos
            neg = (1.0 - self.alpha) * neg
        return _reduce(pos + neg, self.reduction)

    def extra_repr(self) -> str:
        soft = ", soft_targets=True" if self.soft_targets else ""
        return f"gamma={self.gamma}, alpha={self.alpha}, reduction={self.reduction!r}{soft}"


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    r"""Binary cross-entropy on logits: :class:`torch.nn.BCEWithLogitsLoss` with input checks.

    The same maths, arguments (``weight``, ``reduction``, ``pos_weight``) and
    numerics as torch's class, which this subclasses; the only addition is that
    ``input`` must be :math:`(B, K)` and ``target`` of the same shape, with an
    error naming the argument otherwise (torch would broadcast some mistakes).

    Args:
        weight: optional rescaling per element, broadcast to :math:`(B, K)`.
        reduction: ``"mean"`` over all :math:`B \times K` entries, ``"sum"`` or
            ``"none"``.
        pos_weight: optional weight of positives per category, shape :math:`(K,)`.

    Shape:
        - input: :math:`(B, K)` logits.
        - target: :math:`(B, K)` in ``[0, 1]``.
        - output: scalar, or :math:`(B, K)` with ``reduction="none"``.

    Example:
        >>> loss = BCEWithLogitsLoss()
        >>> round(loss(torch.zeros(2, 3), torch.ones(2, 3)).item(), 4)  # log 2
        0.6931
    """

    #: Scores for evaluation and prediction: a sigmoid per category.
    score: ClassVar[ScoreKind] = "sigmoid"

    def __init__(
        self,
        weight: Tensor | None = None,
        reduction: Reduction = "mean",
        pos_weight: Tensor | None = None,
    ) -> None:
        _check_reduction(type(self).__name__, reduction)
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Binary cross-entropy of the logits ``input``, after shape checks."""
        _check_pair(type(self).__name__, input, target)
        return super().forward(input, target.to(dtype=input.dtype))


# --------------------------------------------------------------------------- #
# Continuous dimensions
# --------------------------------------------------------------------------- #
class MaskedVADLoss(nn.Module):
    r"""Regression loss on valence/arousal/dominance that ignores missing targets.

    EMOTIC's continuous annotations can be NaN. Entries whose target is NaN are
    masked out **before** the error is computed (so no NaN reaches the
    gradient), and ``"mean"`` averages over the valid entries only.

    Kinds, per valid entry with error :math:`e = \hat v - v`:

    - ``"smooth_l1"`` (default): Huber / Smooth-L1 with ``beta``
      (:func:`torch.nn.functional.smooth_l1_loss`).
    - ``"margin_l2"``: Kosti et al.'s L2 with a margin,
      :math:`\ell = e^2` if :math:`|e| \ge \text{margin}`, else 0 (errors under 1
      on the 1-10 scale are ignored). Rescale ``margin`` if targets are rescaled.

    Edge case: a batch whose targets are all NaN gives ``0`` with a gradient of
    zeros (not NaN) under ``"mean"`` and ``"sum"``.

    Args:
        kind: ``"smooth_l1"`` or ``"margin_l2"``.
        margin: margin of ``"margin_l2"``, on the scale of the targets.
        beta: transition point of ``"smooth_l1"``.
        reduction: ``"mean"`` over valid entries, ``"sum"``, or ``"none"``
            (elementwise, ``0`` at masked entries).

    Shape:
        - input: :math:`(B, D)`, usually :math:`D = 3` (V, A, D).
        - target: :math:`(B, D)`, NaN where missing.
        - output: scalar, or :math:`(B, D)` with ``reduction="none"``.

    Example:
        >>> loss = MaskedVADLoss(kind="margin_l2", margin=1.0)
        >>> pred = torch.tensor([[5.0, 5.0, 5.0]])
        >>> target = torch.tensor([[5.5, 8.0, float("nan")]])
        >>> loss(pred, target).item()  # (0 + 9) / 2 valid entries
        4.5
    """

    def __init__(
        self,
        kind: Literal["smooth_l1", "margin_l2"] = "smooth_l1",
        margin: float = 1.0,
        beta: float = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        _check_reduction(name, reduction)
        if kind not in ("smooth_l1", "margin_l2"):
            raise ValueError(f"{name}: kind must be 'smooth_l1' or 'margin_l2', got {kind!r}")
        if not margin >= 0:
            raise ValueError(f"{name}: margin must be >= 0, got {margin}")
        if not beta >= 0:
            raise ValueError(f"{name}: beta must be >= 0, got {beta}")
        self.kind = kind
        self.margin = float(margin)
        self.beta = float(beta)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """VAD regression loss over the non-NaN entries of ``target``."""
        _check_pair(type(self).__name__, input, target)
        target = target.to(dtype=input.dtype)
        valid = ~torch.isnan(target)
        # Fill missing targets with the (detached) prediction: zero error, and no
        # NaN enters the autograd graph (NaN * 0 would still be NaN).
        filled = torch.where(valid, target, input.detach())
        if self.kind == "smooth_l1":
            per_entry = F.smooth_l1_loss(input, filled, reduction="none", beta=self.beta)
        else:
            err = input - filled
            per_entry = torch.where(err.abs() >= self.margin, err.square(), torch.zeros_like(err))
        per_entry = per_entry * valid.to(per_entry.dtype)
        if self.reduction == "none":
            return per_entry
        if self.reduction == "sum":
            return per_entry.sum()
        return per_entry.sum() / valid.sum().clamp_min(1).to(per_entry.dtype)

    def extra_repr(self) -> str:
        extra = f"margin={self.margin}" if self.kind == "margin_l2" else f"beta={self.beta}"
        return f"kind={self.kind!r}, {extra}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
_CATEGORY_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "kl": KLDivergenceLoss,
    "weighted_l2": WeightedL2Loss,
    "focal": MultiLabelFocalLoss,
    "bce": BCEWithLogitsLoss,
}


def list_losses() -> list[str]:
    """Names accepted by :func:`build_loss`, sorted.

    Returns:
        The registered category-loss names.

    Example:
        >>> list_losses()
        ['bce', 'focal', 'kl', 'weighted_l2']
    """
    return sorted(_CATEGORY_LOSSES)


def build_loss(name: str = "kl", **kwargs: Any) -> nn.Module:
    """Build a category loss by name.

    Args:
        name: ``"kl"`` (DAG-Net's default), ``"weighted_l2"``, ``"focal"`` or ``"bce"``.
        **kwargs: forwarded to the loss class (e.g. ``class_counts=...`` or
            ``mode="batch"`` for ``"weighted_l2"``, ``gamma``/``alpha`` for ``"focal"``).

    Returns:
        The loss module.

    Example:
        >>> build_loss("focal", gamma=1.0)
        MultiLabelFocalLoss(gamma=1.0, alpha=None, reduction='mean')
    """
    try:
        factory = _CATEGORY_LOSSES[name]
    except KeyError:
        raise ValueError(f"build_loss: name must be one of {list_losses()}, got {name!r}") from None
    return factory(**kwargs)


# --------------------------------------------------------------------------- #
# Combined criterion
# --------------------------------------------------------------------------- #
def _field(obj: Any, name: str) -> Any:
    """Read ``name`` from a mapping or an attribute-style object; None if absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def check_loss_targets(categories: Tensor, vad: Tensor | None = None, where: str = "batch",
                       *, require_label: bool = False) -> None:  # fmt: skip
    """Refuse category targets outside [0, 1] or non-finite, and infinite VAD targets.

    A negative, NaN or out-of-range label makes every loss NaN or meaningless
    without an error; this names the problem instead. It reads the values, so on
    a GPU tensor it waits for the device: :class:`DAGNetCriterion` calls it only for
    targets on the CPU, and the engine checks each batch on the CPU before moving it.

    Args:
        categories: Multi-hot (or soft) targets, any shape.
        vad: Continuous targets, NaN where missing (allowed), or ``None``.
        where: What is checked, for the message.
        require_label: Also refuse a ``(B, K)`` row without a positive label (what
            :class:`KLDivergenceLoss` refuses by default; see :func:`needs_a_label`).

    Raises:
        ValueError: Naming the first bad value and its position.

    Example:
        >>> check_loss_targets(torch.tensor([[0.0, 1.0]]))
        >>> try:
        ...     check_loss_targets(torch.tensor([[0.0, -1.0]]))
        ... except ValueError as err:
        ...     print(err)
        batch: category targets must be finite and in [0, 1], got -1.0 at (0, 1)
    """
    bad = ~((categories >= 0) & (categories <= 1))  # NaN compares False: caught too
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{where}: category targets must be finite and in [0, 1], got "
                         f"{float(categories[pos])} at {pos}")
    if vad is not None:
        inf = torch.isinf(vad)
        if bool(inf.any()):
            pos = tuple(int(i) for i in inf.nonzero()[0])
            raise ValueError(f"{where}: VAD targets must be finite or NaN (missing), got "
                             f"{float(vad[pos])} at {pos}")
    if require_label and categories.ndim == 2:
        _refuse_empty_rows(where, categories.sum(dim=1) > 0)


def needs_a_label(criterion: nn.Module) -> bool:
    """Whether ``criterion`` (a loss, or a :class:`DAGNetCriterion` around one) refuses
    target rows without a positive label: the check the engine makes on the host.

    Example:
        >>> needs_a_label(DAGNetCriterion("kl")), needs_a_label(build_loss("bce"))
        (True, False)
    """
    loss = getattr(criterion, "category_loss", criterion)
    return getattr(loss, "empty_rows", None) == "error"


class DAGNetCriterion(nn.Module):
    r"""DAG-Net's training objective: category loss + ABN attention loss + VAD loss.

    .. math::
        L = \lambda_{cat}\, L_{cat}(x, y) + \lambda_{aux}\, L_{cat}(x^{att}, y)
            + \lambda_{vad}\, L_{vad}(\hat v, v)
            + \lambda_{bam}\big[L_{cat}(x^{body}, y) + \operatorname{mean}(\lambda - t)^2\big]

    The attention branch of ABN (Fukui et al.) has its own classifier; as in
    ABN (:math:`L = L_{att} + L_{per}`) it is trained with the same loss as the
    main head, applied to its logits :math:`x^{att}`. Kosti et al.'s
    :math:`0.5 L_{disc} + 0.5 L_{cont}` is ``category_weight=0.5,
    vad_weight=0.5, aux_weight=0``.

    ``forward(output, batch)`` duck-types its arguments: ``output`` is any
    object (or mapping) with ``logits`` :math:`(B, K)`, optionally
    ``aux_logits`` :math:`(B, K)` and ``vad`` :math:`(B, 3)`, each ``None`` when
    absent; ``batch`` is a mapping with ``"categories"`` :math:`(B, K)` multi-hot
    and, when the VAD term is on, ``"vad"`` :math:`(B, 3)` with NaN where missing.
    The auxiliary term is skipped when ``aux_logits`` is ``None`` or
    ``aux_weight == 0``; the VAD term when ``vad_weight == 0``. A VAD term that
    is on but lacks ``output.vad`` or ``batch["vad"]`` is an error.

    The last term (beyond the paper) trains BAM's weight on a reliability target
    when the model has one (``DAGNetConfig(bam_target="confidnet")``: ``output``
    then has ``body_logits`` and ``body_weights``): the body-only classifier learns
    the categories, and the weight :math:`\lambda` regresses that classifier's
    :func:`true_class_probability` :math:`t` (detached). It is skipped when
    ``body_logits`` is ``None`` or ``bam_weight == 0``.

    Args:
        category_loss: a name for :func:`build_loss` or a loss module taking
            ``(logits, target)``.
        aux_weight: weight :math:`\lambda_{aux}` of the attention-branch loss.
        vad_weight: weight :math:`\lambda_{vad}` of the VAD loss (0: off).
        category_weight: weight :math:`\lambda_{cat}` of the main category loss.
        vad_loss: the VAD loss; default :class:`MaskedVADLoss` (Smooth-L1).
        bam_weight: weight :math:`\lambda_{bam}` of the reliability term.
        **loss_kwargs: forwarded to :func:`build_loss` when ``category_loss`` is a name.

    Returns:
        ``forward`` returns ``(total, components)``: the scalar loss to
        backpropagate and a dict of detached 0-d tensors (on the loss's device,
        so that logging them forces no host-device synchronisation) with
        ``"total"`` and each active term among ``"category"``, ``"aux"``,
        ``"vad"``, ``"body"`` and ``"bam"`` (unweighted).

    Example:
        >>> from types import SimpleNamespace
        >>> criterion = DAGNetCriterion("kl", aux_weight=1.0)
        >>> out = SimpleNamespace(logits=torch.zeros(1, 2), aux_logits=torch.zeros(1, 2), vad=None)
        >>> total, parts = criterion(out, {"categories": torch.tensor([[1.0, 0.0]])})
        >>> {k: round(float(v), 4) for k, v in parts.items()}
        {'category': 0.6931, 'aux': 0.6931, 'total': 1.3863}
    """

    def __init__(
        self,
        category_loss: str | nn.Module = "kl",
        aux_weight: float = 1.0,
        vad_weight: float = 0.0,
        *,
        category_weight: float = 1.0,
        vad_loss: nn.Module | None = None,
        bam_weight: float = 1.0,
        **loss_kwargs: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, value in (
            ("aux_weight", aux_weight),
            ("vad_weight", vad_weight),
            ("category_weight", category_weight),
            ("bam_weight", bam_weight),
        ):
            if not isinstance(value, numbers.Real) or isinstance(value, bool):
                raise TypeError(f"{name}: {arg} must be a number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: {arg} must be finite and >= 0, got {value}")
        if isinstance(category_loss, str):
            self.category_loss = build_loss(category_loss, **loss_kwargs)
        elif isinstance(category_loss, nn.Module):
            if loss_kwargs:
                raise ValueError(
                    f"{name}: loss keyword arguments {sorted(loss_kwargs)} need category_loss "
                    "given by name, not as a module"
                )
            self.category_loss = category_loss
        else:
            raise TypeError(
                f"{name}: category_loss must be a loss name or an nn.Module, "
                f"got {type(category_loss).__name__}"
            )
        self.vad_loss = vad_loss if vad_loss is not None else MaskedVADLoss()
        self.aux_weight = float(aux_weight)
        self.vad_weight = float(vad_weight)
        self.category_weight = float(category_weight)
        self.bam_weight = float(bam_weight)

    def forward(
        self, output: Any, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its detached components for one model output and batch."""
        name = type(self).__name__
        logits = _field(output, "logits")
        if logits is None:
            raise ValueError(f"{name}: output.logits is required, got None/absent")
        target = _field(batch, "categories")
        if target is None:
            raise ValueError(f"{name}: batch['categories'] is required, got None/absent")
        if target.device.type == "cpu":  # free here; on a GPU it would wait for the device
            check_loss_targets(target, _field(batch, "vad") if self.vad_weight > 0 else None,
                               where=name, require_label=needs_a_label(self))

        category = self.category_loss(logits, target)
        total = self.category_weight * category
        components: dict[str, Tensor] = {"category": category.detach()}

        aux_logits = _field(output, "aux_logits")
        if aux_logits is not None and self.aux_weight > 0:
            if aux_logits.shape != logits.shape:
                raise ValueError(
                    f"{name}: output.aux_logits must have the shape of output.logits "
                    f"{_shape(logits)}, got {_shape(aux_logits)}"
                )
            aux = self.category_loss(aux_logits, target)
            total = total + self.aux_weight * aux
            components["aux"] = aux.detach()

        if self.vad_weight > 0:
            vad_pred = _field(output, "vad")
            vad_target = _field(batch, "vad")
            if vad_pred is None:
                raise ValueError(f"{name}: vad_weight > 0 needs output.vad (B, 3), got None")
            if vad_target is None:
                raise ValueError(f"{name}: vad_weight > 0 needs batch['vad'] (B, 3), got None")
            vad = self.vad_loss(vad_pred, vad_target)
            total = total + self.vad_weight * vad
            components["vad"] = vad.detach()

        body_logits = _field(output, "body_logits")
        if body_logits is not None and self.bam_weight > 0:
            weights = _field(output, "body_weights")
            if body_logits.shape != logits.shape:
                raise ValueError(f"{name}: output.body_logits must have the shape of "
                                 f"output.logits {_shape(logits)}, got {_shape(body_logits)}")
            if weights is None or weights.shape != logits.shape[:1]:
                raise ValueError(f"{name}: output.body_logits needs output.body_weights of "
                                 f"shape ({logits.shape[0]},), got "
                                 f"{None if weights is None else _shape(weights)}")
            body = self.category_loss(body_logits, target)
            reliability = true_class_probability(body_logits, target, self.score)
            gate = F.mse_loss(weights.float(), reliability)
            total = total + self.bam_weight * (body + gate)
            components["body"] = body.detach()
            components["bam"] = gate.detach()

        components["total"] = total.detach()
        return total, components

    @property
    def score(self) -> ScoreKind:
        """The category loss's score function (see :func:`loss_score`)."""
        return loss_score(self.category_loss)

    def extra_repr(self) -> str:
        return (
            f"category_weight={self.category_weight}, aux_weight={self.aux_weight}, "
            f"vad_weight={self.vad_weight}, bam_weight={self.bam_weight}"
        )
