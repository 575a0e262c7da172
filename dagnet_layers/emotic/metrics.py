r"""EMOTIC evaluation: per-category average precision, mAP, VAD error, thresholds.

Two AP protocols are in use on EMOTIC and papers mix them, so every function
here that returns an AP takes ``protocol`` and every report carries it:

``"emotic"`` (official)
    The dataset authors' ``eval.m`` / ``demoComputeAP`` (MATLAB), per category:
    cast the scores to double, add ``1e-10 * rand(N, 1)`` drawn right after
    ``rand('state', 0)`` (so **tied scores are ordered at random**, the same
    pseudo-random order on every call, and scores closer than ``1e-10`` may
    swap), sort in descending order, accumulate precision and recall, make
    precision monotone non-increasing from the right (the PASCAL VOC 2010+
    envelope), and sum ``delta recall x precision`` over the recall steps:

    .. math::
        \mathrm{AP} = \sum_{j} (r_j - r_{j-1}) \max_{j' \ge j} p_{j'} .

    The noise is part of the protocol, so it is reproduced here, not dropped
    (``ties=...`` of :func:`average_precision`):

    - ``"octave"`` (default): the noise exactly as GNU Octave draws it
      (``rand('state', 0)`` seeds Octave's Mersenne Twister with the key
      ``[0]``; :func:`eval_m_noise`), so a number here is bit for bit the
      number ``eval.m`` prints when run in Octave. MATLAB's legacy
      ``'state'`` generator draws other values; the two agree wherever no two
      scores of a category are within ``1e-10`` of each other, i.e. whenever
      the scores have no ties, and differ by the luck of the tie order where
      they do. A MATLAB user who wants MATLAB's number exactly passes MATLAB's
      own noise vector (``rand('state', 0); r = rand(N, 1)``) as an array.
    - ``"stable"``: no noise; tied scores stay in sample order (a stable
      sort). Not the official protocol: deterministic without any random
      stream, and what the earlier releases of this package computed.
    - an array of shape ``(N,)`` or ``(N, K)`` with values in ``[0, 1)``: the
      noise to inject (a column per category, or one vector for all, as
      ``eval.m`` re-seeds before every category).

    Why a seeded random order rather than the expectation over tie orders:
    it is what the official code computes, so a reported number can be
    checked by running ``eval.m``; the expectation is what no published
    number is.

``"sklearn"``
    :func:`sklearn.metrics.average_precision_score` per category, as in the
    community PyTorch baseline: no envelope, tied scores form one threshold,
    :math:`\mathrm{AP} = \sum_n (R_n - R_{n-1}) P_n`.

For any scores and labels of a category with a positive example, official
AP >= scikit-learn AP (whatever the order of tied scores, as long as the noise
swaps no two distinct scores): both sum over the same recall increments, and
the envelope at each positive is at least the precision scikit-learn uses there
(for a tied group, the precision at the group's end, which the envelope covers).

All AP values are fractions in ``[0, 1]``; paper tables (DAG-Net's Table 1:
mAP 29.96) print percentages. A category without a positive example has no AP:
it is ``NaN``, left out of the mean, and named in the report.

Everything accepts numpy arrays or torch tensors (any device, any float dtype)
and computes in float64 numpy. Nothing here imports :mod:`dagnet_layers.models`.

References:
    - R. Kosti et al., "Context Based Emotion Recognition Using EMOTIC Dataset",
      TPAMI 42(11), 2020 (``demoComputeAP`` in the EMOTIC release).
    - M. Everingham et al., "The PASCAL Visual Object Classes Challenge", IJCV 2010.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dagnet_layers._arrays import to_numpy as _to_numpy
from dagnet_layers._deps import require
from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES

__all__ = [
    "EVAL_M_NOISE_SCALE",
    "VAD_DIMENSIONS",
    "EmoticEvaluator",
    "EmoticReport",
    "average_precision",
    "categories_without_positives",
    "eval_m_noise",
    "mean_average_precision",
    "precision_recall_thresholds",
    "vad_mae",
]

Protocol = Literal["emotic", "sklearn"]
_PROTOCOLS = ("emotic", "sklearn")
Ties = Literal["octave", "stable"]
_TIES = ("octave", "stable")

#: Scale of the uniform noise ``eval.m`` adds to every score before sorting.
EVAL_M_NOISE_SCALE = 1e-10

#: Names of the three continuous dimensions, in column order.
VAD_DIMENSIONS: tuple[str, str, str] = ("valence", "arousal", "dominance")


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _sklearn_metrics() -> Any:
    return require("sklearn.metrics", "EMOTIC precision-recall thresholds and the sklearn protocol")


def _shape(a: np.ndarray) -> str:
    return "(" + ", ".join(str(s) for s in a.shape) + ")"


def _check_protocol(owner: str, protocol: str) -> None:
    if protocol not in _PROTOCOLS:
        raise ValueError(f"{owner}: protocol must be one of {_PROTOCOLS}, got {protocol!r}")


def eval_m_noise(n: int) -> np.ndarray:
    """The uniform draws ``eval.m`` adds (times ``1e-10``) to ``n`` scores, as Octave makes them.

    ``eval.m`` runs ``rand('state', 0)`` and then ``rand(size(scores))``. In
    Octave, ``rand('state', 0)`` initialises its Mersenne Twister with
    ``init_by_array([0])`` and each double takes two 32-bit draws (27 + 26
    bits), which is exactly NumPy's legacy ``RandomState([0]).random_sample``:
    checked bit for bit against Octave 7.3 on 5,000 draws. The same ``n``
    draws are used for every category, since ``eval.m`` re-seeds before each.

    Args:
        n: Number of scores (samples) of a category.

    Returns:
        float64 array of shape ``(n,)`` in ``[0, 1)``.

    Example:
        >>> eval_m_noise(3).round(6)  # Octave: rand('state', 0); rand(3, 1)
        array([0.844422, 0.757954, 0.420572])
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"eval_m_noise(n=...) must be an int >= 0, got {n!r}")
    # The legacy generator is the point: it is Octave's stream, key for key.
    return np.random.RandomState([0]).random_sample(int(n))


def _tie_noise(owner: str, ties: Any, n: int, k: int) -> np.ndarray | None:
    """The (N, K) noise of ``ties`` (None for ``"stable"``), validated."""
    if isinstance(ties, str):
        if ties not in _TIES:
            raise ValueError(
                f"{owner}: ties must be one of {_TIES} or an array of noise in [0, 1), "
                f"got {ties!r}"
            )
        if ties == "stable":
            return None
        return np.broadcast_to(eval_m_noise(n)[:, None], (n, k))
    given = _to_numpy(ties, f"{owner}: ties")
    noise = given[:, None] if given.ndim == 1 else given
    if noise.ndim != 2 or noise.shape[0] != n or noise.shape[1] not in (1, k):
        raise ValueError(
            f"{owner}: a ties array must have shape (N,) or (N, K) = ({n},) or ({n}, {k}), "
            f"got {_shape(given)}"
        )
    if not (np.isfinite(noise).all() and (noise >= 0).all() and (noise < 1).all()):
        raise ValueError(f"{owner}: a ties array must hold values in [0, 1), as rand() gives")
    return np.broadcast_to(noise, (n, k))


def _scores_and_labels(owner: str, scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate (N, K) scores and binary labels; return float64 scores and bool labels."""
    s = _to_numpy(scores, f"{owner}: scores")
    y = _to_numpy(labels, f"{owner}: labels")
    if s.ndim != 2:
        raise ValueError(
            f"{owner}: scores must have shape (N, K), got {s.ndim}-D shape {_shape(s)}"
        )
    if y.shape != s.shape:
        raise ValueError(
            f"{owner}: labels must have the shape of scores (N, K) = {_shape(s)}, got {_shape(y)}"
        )
    if np.isnan(s).any():
        raise ValueError(f"{owner}: scores must not contain NaN")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"{owner}: labels must be binary (0/1 multi-hot), got other values")
    return s, y.astype(bool)


def _resolve_names(owner: str, category_names: Sequence[str] | None, k: int) -> tuple[str, ...]:
    if category_names is None:
        if k == len(EMOTIC_CATEGORIES):
            return tuple(EMOTIC_CATEGORIES)
        return tuple(f"category_{i}" for i in range(k))
    names = tuple(category_names)
    if len(names) != k:
        raise ValueError(
            f"{owner}: category_names must have one name per column (K = {k}), got {len(names)}"
        )
    return names


# --------------------------------------------------------------------------- #
# Average precision
# --------------------------------------------------------------------------- #
def _emotic_ap_column(scores: np.ndarray, positive: np.ndarray, noise: np.ndarray | None) -> float:
    """Official EMOTIC AP of one category that has at least one positive."""
    if noise is not None:
        scores = scores + noise * EVAL_M_NOISE_SCALE  # eval.m: scores + rand(...) * 1e-10
    order = np.argsort(-scores, kind="stable")
    hits = positive[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, hits.size + 1)
    # VOC envelope: each precision becomes the maximum precision at or after it.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    # Recall only steps up at a positive, by 1 / P each time.
    return float(envelope[hits].sum() / tp[-1])


def average_precision(
    scores: Any,
    labels: Any,
    protocol: Protocol = "emotic",
    ties: Ties | Any = "octave",
) -> np.ndarray:
    r"""Average precision of each category (column), under the chosen protocol.

    Args:
        scores: model scores, higher meaning more confident, in float64 (a
            float32 cast of distinct scores can create ties); any strictly
            monotone transform of a category's scores gives the same AP.
            NaN is rejected.
        labels: binary multi-hot ground truth (EMOTIC's ``combined_categories``
            on val/test).
        protocol: ``"emotic"`` (official ``eval.m``, the default) or
            ``"sklearn"`` (:func:`sklearn.metrics.average_precision_score`);
            see the module docstring.
        ties: How ``"emotic"`` orders tied scores: ``"octave"`` (``eval.m``'s
            seeded random order, as Octave draws it; the default),
            ``"stable"`` (sample order) or a noise array of shape ``(N,)`` or
            ``(N, K)`` in ``[0, 1)`` (see the module docstring). Ignored by
            ``"sklearn"``, which gives tied scores one threshold.

    Returns:
        float64 array of AP fractions in ``[0, 1]``, ``NaN`` for a category
        without any positive label.

    Shape:
        - scores: :math:`(N, K)`.
        - labels: :math:`(N, K)`.
        - output: :math:`(K,)`.

    Example:
        >>> scores = np.array([[0.9], [0.8], [0.7]])
        >>> labels = np.array([[1], [0], [1]])
        >>> average_precision(scores, labels).round(4)  # (1 + 2/3) / 2
        array([0.8333])
        >>> average_precision(scores, np.zeros((3, 1)), protocol="sklearn")
        array([nan])

        Tied scores: ``eval.m`` orders them at random (seeded), a stable sort
        keeps them in sample order:

        >>> tied, labels = np.zeros((6, 1)), np.array([[0], [0], [0], [0], [1], [1]])
        >>> average_precision(tied, labels, ties="stable").round(4)  # positives ranked 5, 6
        array([0.3333])
        >>> average_precision(tied, labels).round(4)  # Octave's draws rank them 3 and 5
        array([0.4])
    """
    owner = "average_precision"
    _check_protocol(owner, protocol)
    s, y = _scores_and_labels(owner, scores, labels)
    noise = _tie_noise(owner, ties, *s.shape) if protocol == "emotic" else None
    out = np.full(s.shape[1], np.nan)
    for k in range(s.shape[1]):
        if not y[:, k].any():
            continue
        if protocol == "emotic":
            out[k] = _emotic_ap_column(s[:, k], y[:, k], None if noise is None else noise[:, k])
        else:
            out[k] = _sklearn_metrics().average_precision_score(y[:, k], s[:, k])
    return out


def categories_without_positives(
    labels: Any, category_names: Sequence[str] | None = None
) -> tuple[str, ...]:
    """Names of the categories that have no positive label (and so no AP).

    Args:
        labels: binary multi-hot labels.
        category_names: one name per column; default the 26 EMOTIC names when
            K = 26, else ``category_<k>``.

    Returns:
        The names, in column order; empty when every category has a positive.

    Shape:
        - labels: :math:`(N, K)`.

    Example:
        >>> categories_without_positives(np.array([[1, 0], [1, 0]]), ["Anger", "Fear"])
        ('Fear',)
    """
    y = _to_numpy(labels, "categories_without_positives: labels")
    if y.ndim != 2:
        raise ValueError(
            f"categories_without_positives: labels must have shape (N, K), got {_shape(y)}"
        )
    names = _resolve_names("categories_without_positives", category_names, y.shape[1])
    has_positive = (y > 0).any(axis=0)
    return tuple(name for name, ok in zip(names, has_positive, strict=True) if not ok)


def mean_average_precision(
    scores: Any,
    labels: Any,
    protocol: Protocol = "emotic",
    category_names: Sequence[str] | None = None,
    ties: Ties | Any = "octave",
) -> float:
    """Mean of the per-category APs over the categories that have a positive.

    A category without any positive label is left out of the mean and named in
    a :class:`RuntimeWarning` (the EMOTIC test split has positives for all 26,
    so a warning means a small or filtered evaluation set).

    Args:
        scores: model scores.
        labels: binary multi-hot labels.
        protocol: ``"emotic"`` (official, default) or ``"sklearn"``.
        category_names: names used in the warning; default the EMOTIC names
            when K = 26.
        ties: order of tied scores under ``"emotic"`` (see :func:`average_precision`).

    Returns:
        mAP as a fraction in ``[0, 1]`` (multiply by 100 for paper tables), or
        ``NaN`` when no category has a positive.

    Shape:
        - scores: :math:`(N, K)`.
        - labels: :math:`(N, K)`.

    Example:
        >>> scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.7, 0.2]])
        >>> labels = np.array([[1, 0], [0, 1], [1, 0]])
        >>> round(mean_average_precision(scores, labels), 4)  # (0.8333 + 1) / 2
        0.9167
    """
    ap = average_precision(scores, labels, protocol=protocol, ties=ties)
    missing = np.isnan(ap)
    if missing.any():
        names = _resolve_names("mean_average_precision", category_names, ap.size)
        excluded = [n for n, m in zip(names, missing, strict=True) if m]
        warnings.warn(
            f"mean_average_precision: {len(excluded)} categories without positive labels "
            f"are excluded from the mean: {', '.join(excluded)}",
            RuntimeWarning,
            stacklevel=2,
        )
    if missing.all():
        return math.nan
    return float(np.mean(ap[~missing]))


# --------------------------------------------------------------------------- #
# Continuous dimensions
# --------------------------------------------------------------------------- #
def vad_mae(pred: Any, target: Any) -> np.ndarray:
    """Mean absolute error per continuous dimension, ignoring missing targets.

    Errors are on the scale of the inputs: EMOTIC's valence, arousal and
    dominance are on 1-10, so pass predictions on that scale (undo any
    normalisation first). Entries whose *target* is NaN are ignored; a NaN
    *prediction* where the target is present is a model fault and makes that
    dimension's error NaN rather than being hidden.

    Args:
        pred: predicted values.
        target: annotated values, NaN where missing.

    Returns:
        float64 array, one MAE per column (valence, arousal, dominance for
        D = 3); ``NaN`` for a column without any annotated value.

    Shape:
        - pred: :math:`(N, D)`, usually :math:`D = 3`.
        - target: :math:`(N, D)`.
        - output: :math:`(D,)`.

    Example:
        >>> pred = np.array([[5.0, 5.0, 5.0], [6.0, 2.0, 5.0]])
        >>> target = np.array([[7.0, np.nan, 4.0], [6.0, 5.0, np.nan]])
        >>> vad_mae(pred, target)
        array([1., 3., 1.])
    """
    p = _to_numpy(pred, "vad_mae: pred")
    t = _to_numpy(target, "vad_mae: target")
    if p.ndim != 2:
        raise ValueError(f"vad_mae: pred must have shape (N, D), got {p.ndim}-D shape {_shape(p)}")
    if t.shape != p.shape:
        raise ValueError(
            f"vad_mae: target must have the shape of pred (N, D) = {_shape(p)}, got {_shape(t)}"
        )
    valid = ~np.isnan(t)
    abs_err = np.where(valid, np.abs(p - np.where(valid, t, 0.0)), 0.0)
    count = valid.sum(axis=0)
    out = np.full(p.shape[1], np.nan)
    np.divide(abs_err.sum(axis=0), count, out=out, where=count > 0)
    return out


# --------------------------------------------------------------------------- #
# Decision thresholds
# --------------------------------------------------------------------------- #
def precision_recall_thresholds(scores: Any, labels: Any) -> np.ndarray:
    r"""Per-category score threshold where precision equals recall (closest crossing).

    For each category, over the thresholds of
    :func:`sklearn.metrics.precision_recall_curve` (a sample is predicted
    positive when ``score >= threshold``) that recover at least one positive,
    pick the one minimising :math:`|P - R|`; among equally close ones, the
    lowest threshold (highest recall). The community baseline takes the first
    exact ``P == R``; this agrees with it whenever one exists and still gives a
    threshold when none does. Without tied scores an exact crossing exists
    whenever the top-:math:`n_+` scores hold a positive: cutting at the
    :math:`n_+`-th highest score (:math:`n_+` positives) gives
    :math:`P = R = \mathrm{TP} / n_+`. Thresholds with no true positive
    (:math:`P = R = 0`) are never picked.

    Use validation scores of the same kind (softmax, sigmoid, raw) that the
    predictor will threshold.

    Args:
        scores: validation scores.
        labels: binary multi-hot validation labels.

    Returns:
        float64 array of thresholds, ``NaN`` for a category without positives
        (the predictor cannot calibrate it).

    Shape:
        - scores: :math:`(N, K)`.
        - labels: :math:`(N, K)`.
        - output: :math:`(K,)`.

    Example:
        >>> scores = np.array([[0.9], [0.8], [0.7], [0.6]])
        >>> labels = np.array([[1], [0], [1], [0]])
        >>> precision_recall_thresholds(scores, labels)  # P = R = 1/2 at 0.8
        array([0.8])
    """
    s, y = _scores_and_labels("precision_recall_thresholds", scores, labels)
    out = np.full(s.shape[1], np.nan)
    for k in range(s.shape[1]):
        if not y[:, k].any():
            continue
        precision, recall, thresholds = _sklearn_metrics().precision_recall_curve(
            y[:, k], s[:, k]
        )
        # The last (precision, recall) = (1, 0) pair has no threshold.
        precision, recall = precision[:-1], recall[:-1]
        gap = np.where(recall > 0, np.abs(precision - recall), np.inf)
        out[k] = thresholds[int(np.argmin(gap))]  # thresholds ascend: ties -> lowest
    return out


# --------------------------------------------------------------------------- #
# Accumulating evaluator
# --------------------------------------------------------------------------- #
def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class EmoticReport:
    """Result of an EMOTIC evaluation, ready to log or to save as JSON.

    Attributes:
        protocol: the AP protocol of every number here (``"emotic"`` official or
            ``"sklearn"``).
        per_category_ap: AP fraction per category name, in column order;
            ``NaN`` for a category without positives.
        mean_ap: mean over the categories with positives (``NaN`` if none).
        categories_without_positives: names left out of ``mean_ap``.
        vad_mae: mean absolute error per dimension (``"valence"``,
            ``"arousal"``, ``"dominance"``) on the targets' scale, or ``None``
            when no VAD was given.
        num_samples: number of evaluated samples.
        ties: how ``"emotic"`` ordered tied scores, ``"octave"`` or
            ``"stable"``; ``None`` under ``"sklearn"``.
        score: how the scores were made from the model's logits
            (``"softmax"``, ``"sigmoid"``, ``"identity"``), when known.

    Example:
        >>> report = EmoticReport("emotic", {"Anger": 0.5, "Fear": math.nan}, 0.5, ("Fear",))
        >>> report.to_dict()["per_category_ap"]
        {'Anger': 0.5, 'Fear': None}
    """

    protocol: str
    per_category_ap: dict[str, float]
    mean_ap: float
    categories_without_positives: tuple[str, ...] = ()
    vad_mae: dict[str, float] | None = None
    num_samples: int = 0
    ties: str | None = "octave"
    score: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; NaN becomes ``None`` (JSON has no NaN).

        Returns:
            Keys ``protocol``, ``ties``, ``score``, ``num_samples``, ``mean_ap``,
            ``per_category_ap``, ``categories_without_positives`` (a list) and
            ``vad_mae``.

        Example:
            >>> import json
            >>> report = EmoticReport("sklearn", {"Pain": 0.25}, 0.25, num_samples=4, ties=None)
            >>> json.dumps(report.to_dict())
            '{"protocol": "sklearn", "ties": null, "score": null, "num_samples": 4, "mean_ap": 0.25, "per_category_ap": {"Pain": 0.25}, "categories_without_positives": [], "vad_mae": null}'
        """  # noqa: E501
        return {
            "protocol": self.protocol,
            "ties": self.ties,
            "score": self.score,
            "num_samples": int(self.num_samples),
            "mean_ap": _nan_to_none(self.mean_ap),
            "per_category_ap": {k: _nan_to_none(v) for k, v in self.per_category_ap.items()},
            "categories_without_positives": list(self.categories_without_positives),
            "vad_mae": None
            if self.vad_mae is None
            else {k: _nan_to_none(v) for k, v in self.vad_mae.items()},
        }


class EmoticEvaluator:
    """Accumulate scores and labels batch by batch, then compute an :class:`EmoticReport`.

    Batches are copied to CPU float64 as they arrive, so the result equals one
    call on the concatenated data. VAD predictions and targets are optional,
    but must be given with every batch or with none.

    Args:
        category_names: one name per score column; default the 26 EMOTIC
            categories in the official order.
        protocol: AP protocol, ``"emotic"`` (official, default) or ``"sklearn"``.
        ties: order of tied scores under ``"emotic"``: ``"octave"`` (``eval.m``,
            default) or ``"stable"`` (see :func:`average_precision`).
        score: how the scores were made from logits, recorded in the report
            (e.g. ``"softmax"``); ``None`` when unknown.

    Example:
        >>> ev = EmoticEvaluator(category_names=["Anger", "Fear"])
        >>> scores = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
        >>> ev.update(scores, labels=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        >>> report = ev.compute()
        >>> report.mean_ap, report.categories_without_positives, report.num_samples
        (1.0, ('Fear',), 2)
    """

    def __init__(
        self,
        category_names: Sequence[str] = EMOTIC_CATEGORIES,
        protocol: Protocol = "emotic",
        ties: Ties = "octave",
        score: str | None = None,
    ) -> None:
        _check_protocol(type(self).__name__, protocol)
        if ties not in _TIES:
            raise ValueError(f"{type(self).__name__}: ties must be one of {_TIES}, got {ties!r}")
        self.ties: Ties = ties
        self.score = score
        self.category_names: tuple[str, ...] = tuple(category_names)
        if not self.category_names:
            raise ValueError("EmoticEvaluator: category_names must not be empty")
        self.protocol: Protocol = protocol
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._vad_pred: list[np.ndarray] = []
        self._vad_target: list[np.ndarray] = []
        self._has_vad: bool | None = None
        self._num_samples = 0

    @property
    def num_samples(self) -> int:
        """Number of samples accumulated since the last :meth:`reset`."""
        return self._num_samples

    def update(
        self,
        scores: Any,
        labels: Any,
        vad_pred: Any | None = None,
        vad_target: Any | None = None,
    ) -> None:
        """Add one batch.

        Args:
            scores: batch scores, shape :math:`(B, K)`.
            labels: batch binary multi-hot labels, shape :math:`(B, K)`.
            vad_pred: optional VAD predictions, shape :math:`(B, 3)`.
            vad_target: optional VAD targets, shape :math:`(B, 3)`, NaN where missing.
        """
        owner = "EmoticEvaluator.update"
        s, y = _scores_and_labels(owner, scores, labels)
        k = len(self.category_names)
        if s.shape[1] != k:
            raise ValueError(
                f"{owner}: scores must have K = {k} columns (len(category_names)), "
                f"got shape {_shape(s)}"
            )
        if (vad_pred is None) != (vad_target is None):
            raise ValueError(f"{owner}: vad_pred and vad_target must be given together")
        has_vad = vad_pred is not None
        if self._has_vad is not None and has_vad != self._has_vad:
            raise ValueError(
                f"{owner}: VAD must be given with every batch or with none; "
                f"earlier batches {'had' if self._has_vad else 'had no'} VAD"
            )
        if has_vad:
            vp = _to_numpy(vad_pred, f"{owner}: vad_pred")
            vt = _to_numpy(vad_target, f"{owner}: vad_target")
            expected = (s.shape[0], len(VAD_DIMENSIONS))
            for arg, arr in (("vad_pred", vp), ("vad_target", vt)):
                if arr.shape != expected:
                    raise ValueError(
                        f"{owner}: {arg} must have shape (B, 3) = {expected}, got {_shape(arr)}"
                    )
            self._vad_pred.append(vp)
            self._vad_target.append(vt)
        self._has_vad = has_vad
        self._scores.append(s)
        self._labels.append(y)
        self._num_samples += s.shape[0]

    def _stacked(self) -> tuple[np.ndarray, np.ndarray]:
        if self._num_samples == 0:
            raise ValueError("EmoticEvaluator: no samples; call update() before compute()")
        return np.concatenate(self._scores), np.concatenate(self._labels)

    def compute(self) -> EmoticReport:
        """Evaluate everything accumulated since the last :meth:`reset`.

        Returns:
            The :class:`EmoticReport` (AP under ``self.protocol``).
        """
        scores, labels = self._stacked()
        ap = average_precision(scores, labels, protocol=self.protocol, ties=self.ties)
        valid = ~np.isnan(ap)
        vad = None
        if self._has_vad:
            mae = vad_mae(np.concatenate(self._vad_pred), np.concatenate(self._vad_target))
            vad = {name: float(v) for name, v in zip(VAD_DIMENSIONS, mae, strict=True)}
        return EmoticReport(
            protocol=self.protocol,
            per_category_ap={n: float(v) for n, v in zip(self.category_names, ap, strict=True)},
            mean_ap=float(ap[valid].mean()) if valid.any() else math.nan,
            categories_without_positives=tuple(
                n for n, ok in zip(self.category_names, valid, strict=True) if not ok
            ),
            vad_mae=vad,
            num_samples=self._num_samples,
            ties=self.ties if self.protocol == "emotic" else None,
            score=self.score,
        )

    def thresholds(self) -> np.ndarray:
        """Per-category precision == recall thresholds of the accumulated data.

        Returns:
            See :func:`precision_recall_thresholds`; shape :math:`(K,)`.
        """
        scores, labels = self._stacked()
        return precision_recall_thresholds(scores, labels)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_categories={len(self.category_names)}, "
            f"protocol={self.protocol!r}, ties={self.ties!r}, num_samples={self._num_samples})"
        )
