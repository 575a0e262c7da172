"""Tests of dagnet_layers.emotic.metrics: both AP protocols, mAP, VAD MAE, thresholds, evaluator."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.emotic.metrics import (
    VAD_DIMENSIONS,
    EmoticEvaluator,
    EmoticReport,
    average_precision,
    categories_without_positives,
    eval_m_noise,
    mean_average_precision,
    precision_recall_thresholds,
    vad_mae,
)


def _column(values):
    return np.asarray(values, dtype=np.float64)[:, None]


def _eval_m_transcription(scores, labels, noise):
    """Line-by-line transcription of EMOTIC's eval.m AP for one category (the test's oracle).

    ``noise`` is what ``rand(size(scores))`` returned after ``rand('state', 0)``;
    all zeros reproduces a noise-free stable sort.
    """
    n = len(scores)
    scores = [float(scores[i]) + float(noise[i]) * 1e-10 for i in range(n)]
    idx = sorted(range(n), key=lambda i: -scores[i])  # sort(..., 'descend'), stable
    tp = [1 if labels[i] > 0 else 0 for i in idx]
    fp = [1 - t for t in tp]
    for i in range(1, n):  # cumsum
        tp[i] += tp[i - 1]
        fp[i] += fp[i - 1]
    npos = sum(1 for v in labels if v > 0)
    rec = [100 * t / npos for t in tp]
    prec = [100 * tp[i] / (tp[i] + fp[i]) for i in range(n)]
    mrec = [0.0, *rec, 100.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = [i for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]]
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in steps) / 100**2


@st.composite
def scores_and_labels(draw, tied: bool):
    """(N, K) scores (integers -> many ties, or floats) and labels with a positive per column."""
    n = draw(st.integers(2, 40))
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(n, k)).astype(float) if tied else rng.normal(size=(n, k))
    labels = (rng.random((n, k)) < draw(st.floats(0.05, 0.9))).astype(float)
    labels[rng.integers(0, n), :] = 1.0  # every column has a positive
    return scores, labels


# --------------------------------------------------------------------------- #
# Official protocol
# --------------------------------------------------------------------------- #
def test_official_ap_hand_computed_envelope():
    scores = _column([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = _column([1, 0, 0, 1, 1])
    # Precision at each rank: 1, 1/2, 1/3, 2/4, 3/5.
    # Envelope from the right:  1, 3/5, 3/5, 3/5, 3/5.
    # Recall steps (1/3 each) at ranks 1, 4, 5 -> AP = (1 + 3/5 + 3/5) / 3.
    assert average_precision(scores, labels)[0] == pytest.approx((1 + 0.6 + 0.6) / 3)
    # scikit-learn uses the raw precision at ranks 1, 4, 5: (1 + 1/2 + 3/5) / 3.
    assert average_precision(scores, labels, protocol="sklearn")[0] == pytest.approx(2.1 / 3)


def test_official_ap_perfect_and_worst_ranking():
    labels = _column([1, 1, 0, 0])
    assert average_precision(_column([4, 3, 2, 1]), labels)[0] == pytest.approx(1.0)
    # Positives last: precisions 1/3 and 2/4, envelope 1/2 at both -> 1/2.
    assert average_precision(_column([1, 2, 3, 4]), labels)[0] == pytest.approx(0.5)


def test_official_ties_are_ordered_by_eval_m_noise_or_by_sample_order():
    tied = _column([0.5] * 6)
    labels = _column([0, 0, 0, 0, 1, 1])
    # Octave's rand('state', 0) draws 0.844 0.758 0.421 0.259 0.511 0.405: the two
    # positives rank 3rd and 5th -> envelope 2/5 at both.
    assert average_precision(tied, labels)[0] == pytest.approx(0.4)
    # A stable sort keeps them 5th and 6th -> 1/3.
    assert average_precision(tied, labels, ties="stable")[0] == pytest.approx(1 / 3)
    # scikit-learn treats the tie as one threshold: precision 2/6.
    assert average_precision(tied, labels, protocol="sklearn")[0] == pytest.approx(1 / 3)
    # Seeded: the same order on every call.
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(50, 5)).astype(float)
    labels = (rng.random((50, 5)) < 0.3).astype(float)
    labels[0] = 1
    first = average_precision(scores, labels)
    for _ in range(3):
        np.testing.assert_array_equal(average_precision(scores, labels), first)


def test_eval_m_noise_is_octaves_rand_state_0():
    # The first draws of Octave 7.3's rand('state', 0); rand(6, 1) (format long).
    np.testing.assert_allclose(
        eval_m_noise(6),
        [0.844421851525048, 0.757954402940302, 0.420571580830845,
         0.258916750292963, 0.511274721368609, 0.404934137450414],
        rtol=0, atol=6e-16,  # Octave printed 15 decimals
    )
    assert eval_m_noise(0).shape == (0,)
    with pytest.raises(ValueError, match="int >= 0"):
        eval_m_noise(-1)


def test_official_matches_eval_m_run_in_octave():
    # APs that eval.m's procedure (tests/data/eval_m_ap.m) printed in GNU Octave,
    # on scores with many ties (binary, rounded, saturated float32 sigmoids) and
    # without. The stable sort misses them by up to ~0.09 on the binary scores.
    data = json.loads((Path(__file__).parent / "data" / "eval_m_octave.json").read_text())
    worst_stable = 0.0
    for name, case in data["cases"].items():
        scores, labels = np.array(case["scores"]), np.array(case["labels"])
        np.testing.assert_allclose(average_precision(scores, labels), case["ap"],
                                   rtol=0, atol=1e-15, err_msg=name)
        stable = average_precision(scores, labels, ties="stable")
        worst_stable = max(worst_stable, float(np.abs(stable - case["ap"]).max()))
    assert worst_stable > 0.05  # the fixture does exercise the tie order


@settings(max_examples=60, deadline=None)
@given(data=scores_and_labels(tied=True))
def test_stable_ties_equal_sample_order_perturbation(data):
    scores, labels = data
    # Subtracting a tiny amount that grows with the index orders ties by sample order.
    nudged = scores - 1e-6 * np.arange(scores.shape[0])[:, None]
    np.testing.assert_allclose(
        average_precision(scores, labels, ties="stable"),
        average_precision(nudged, labels, ties="stable"),
        atol=1e-12,
    )


@settings(max_examples=80, deadline=None)
@given(data=st.one_of(scores_and_labels(tied=True), scores_and_labels(tied=False)),
       seed=st.integers(0, 2**32 - 1))
def test_official_matches_eval_m_transcription_with_injected_noise(data, seed):
    scores, labels = data
    n, k = scores.shape
    injected = np.random.default_rng(seed).random((n, k))
    cases = {
        "octave": np.repeat(eval_m_noise(n)[:, None], k, axis=1),
        "stable": np.zeros((n, k)),
    }
    for ties, noise in (*cases.items(), (injected, injected), (injected[:, 0], injected[:, :1])):
        got = average_precision(scores, labels, ties=ties)
        for c in range(k):
            column = noise[:, min(c, noise.shape[1] - 1)]
            expected = _eval_m_transcription(scores[:, c], labels[:, c], column)
            assert got[c] == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(data=scores_and_labels(tied=False))
def test_noise_changes_nothing_without_ties(data):
    scores, labels = data  # normal draws: far more than 1e-10 apart
    np.testing.assert_allclose(
        average_precision(scores, labels), average_precision(scores, labels, ties="stable"),
        rtol=0, atol=1e-15,
    )


def test_noise_may_swap_scores_closer_than_1e_10():
    # Distinct but 1e-12 apart: eval.m's noise (0.844e-10 vs 0.758e-10) decides.
    scores = _column([0.5, 0.5 + 1e-12])
    labels = _column([1, 0])
    assert average_precision(scores, labels, ties="stable")[0] == pytest.approx(0.5)
    assert average_precision(scores, labels)[0] == pytest.approx(1.0)


def test_ties_argument_is_validated():
    scores, labels = np.zeros((3, 2)), np.ones((3, 2))
    with pytest.raises(ValueError, match="ties must be one of"):
        average_precision(scores, labels, ties="random")
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(N, K\)"):
        average_precision(scores, labels, ties=np.zeros(4))
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        average_precision(scores, labels, ties=np.full(3, 1.0))
    with pytest.raises(ValueError, match="ties must be one of"):
        EmoticEvaluator(ties="random")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(data=st.one_of(scores_and_labels(tied=True), scores_and_labels(tied=False)))
def test_official_is_at_least_sklearn(data):
    # Same recall increments; the envelope at each positive is >= the precision
    # scikit-learn uses there (for a tie group, the precision at the group's end).
    scores, labels = data
    official = average_precision(scores, labels)
    sk = average_precision(scores, labels, protocol="sklearn")
    assert np.all(official >= sk - 1e-12)


# --------------------------------------------------------------------------- #
# scikit-learn protocol
# --------------------------------------------------------------------------- #
@settings(max_examples=60, deadline=None)
@given(data=st.one_of(scores_and_labels(tied=True), scores_and_labels(tied=False)))
def test_sklearn_protocol_equals_average_precision_score(data):
    scores, labels = data
    got = average_precision(torch.from_numpy(scores), torch.from_numpy(labels), "sklearn")
    for k in range(scores.shape[1]):
        assert got[k] == pytest.approx(
            average_precision_score(labels[:, k], scores[:, k]), abs=1e-6
        )


# --------------------------------------------------------------------------- #
# Categories without positives, mAP
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("protocol", ["emotic", "sklearn"])
def test_category_without_positives_is_nan_excluded_and_named(protocol):
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.7, 0.2, 0.9]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    ap = average_precision(scores, labels, protocol=protocol)
    assert np.isnan(ap[2]) and not np.isnan(ap[:2]).any()
    with pytest.warns(RuntimeWarning, match=r"excluded from the mean: Sadness$"):
        m = mean_average_precision(scores, labels, protocol, ["Anger", "Fear", "Sadness"])
    assert m == pytest.approx((ap[0] + ap[1]) / 2)
    assert categories_without_positives(labels, ["Anger", "Fear", "Sadness"]) == ("Sadness",)


def test_map_of_full_emotic_width_and_all_empty():
    rng = np.random.default_rng(1)
    scores = rng.random((30, 26))
    labels = np.zeros((30, 26))
    labels[:, 5] = 1
    with pytest.warns(RuntimeWarning, match="25 categories") as record:
        mean_average_precision(scores, labels)
    message = str(record[0].message)
    assert "Affection" in message and "Yearning" in message and "Confidence" not in message
    with pytest.warns(RuntimeWarning):
        assert math.isnan(mean_average_precision(scores, np.zeros((30, 26))))
    labels[0] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = mean_average_precision(scores, labels)
    assert m == pytest.approx(float(np.mean(average_precision(scores, labels))))


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        (np.zeros(3), np.zeros(3), r"scores must have shape \(N, K\), got 1-D shape \(3\)"),
        (
            np.zeros((3, 2)),
            np.zeros((3, 1)),
            r"labels must have the shape of scores.*\(3, 2\).*\(3, 1\)",
        ),
        (np.zeros((2, 1)), np.array([[0.5], [1.0]]), "labels must be binary"),
        (np.array([[np.nan], [1.0]]), np.ones((2, 1)), "scores must not contain NaN"),
    ],
)
def test_bad_inputs_raise(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        average_precision(scores, labels)


def test_protocol_is_validated():
    with pytest.raises(ValueError, match="protocol must be one of"):
        average_precision(np.zeros((2, 1)), np.ones((2, 1)), protocol="voc07")  # type: ignore[arg-type]


def test_accepts_low_precision_torch_tensors():
    scores = torch.tensor([[0.9], [0.8], [0.7]], dtype=torch.bfloat16)
    labels = torch.tensor([[1], [0], [1]], dtype=torch.uint8)
    assert average_precision(scores, labels)[0] == pytest.approx((1 + 2 / 3) / 2)


# --------------------------------------------------------------------------- #
# VAD
# --------------------------------------------------------------------------- #
def test_vad_mae_ignores_nan_targets():
    pred = torch.tensor([[5.0, 5.0, 5.0], [6.0, 2.0, 5.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([[7.0, np.nan, 4.0], [6.0, 5.0, np.nan], [2.0, np.nan, np.nan]])
    # valence |5-7|, |6-6|, |1-2| -> 1; arousal |2-5| -> 3; dominance |5-4| -> 1.
    np.testing.assert_allclose(vad_mae(pred, target), [1.0, 3.0, 1.0])


def test_vad_mae_all_missing_column_is_nan_and_nan_prediction_propagates():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" warning either
        out = vad_mae(np.ones((2, 3)), np.array([[1.0, np.nan, 3.0], [1.0, np.nan, 3.0]]))
    assert out[0] == 0.0 and np.isnan(out[1]) and out[2] == 2.0
    out = vad_mae(np.array([[np.nan, 1.0, 1.0]]), np.array([[1.0, 1.0, 1.0]]))
    assert np.isnan(out[0])
    with pytest.raises(ValueError, match=r"target must have the shape of pred"):
        vad_mae(np.ones((2, 3)), np.ones((3, 3)))


# --------------------------------------------------------------------------- #
# Thresholds
# --------------------------------------------------------------------------- #
def test_thresholds_exact_crossing():
    scores = _column([0.9, 0.8, 0.7, 0.6])
    labels = _column([1, 0, 1, 0])
    # >= 0.9: P 1, R 1/2 ; >= 0.8: P 1/2, R 1/2 (crossing) ; >= 0.7: P 2/3, R 1.
    np.testing.assert_allclose(precision_recall_thresholds(scores, labels), [0.8])


def test_thresholds_closest_crossing_with_ties_and_zero_recall_skipped():
    # Column 0 -- >= 0.9: P 1, R 1/2 (gap 1/2) ; >= 0.5: P 2/3, R 1 (gap 1/3) -> 0.5.
    # Column 1 -- >= 0.9 and >= 0.8 recover no positive (P = R = 0, skipped);
    #             >= 0.7: P 1/3, R 1 -> 0.7.
    # Column 2 -- no positive -> NaN.
    scores = np.array([[0.9, 0.9, 0.3], [0.5, 0.8, 0.2], [0.5, 0.7, 0.1], [0.1, 0.6, 0.0]])
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]])
    out = precision_recall_thresholds(scores, labels)
    np.testing.assert_allclose(out[:2], [0.5, 0.7])
    assert np.isnan(out[2])


def test_thresholds_equal_gaps_pick_lowest_threshold():
    # >= 0.9: P 1, R 1/2 (gap 1/2) ; >= 0.5: P 1/2, R 1 (gap 1/2) -> lower threshold 0.5.
    scores = _column([0.9, 0.5, 0.5, 0.5])
    labels = _column([1, 1, 0, 0])
    np.testing.assert_allclose(precision_recall_thresholds(scores, labels), [0.5])


# --------------------------------------------------------------------------- #
# Evaluator and report
# --------------------------------------------------------------------------- #
def _random_eval_data(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    scores = rng.random((n, 26)).astype(np.float32)
    labels = (rng.random((n, 26)) < 0.2).astype(np.float32)
    labels[:, 3] = 0  # Anticipation without positives
    labels[0, :3] = 1
    vad_pred = rng.uniform(1, 10, (n, 3))
    vad_target = rng.uniform(1, 10, (n, 3))
    vad_target[rng.random((n, 3)) < 0.2] = np.nan
    return scores, labels, vad_pred, vad_target


@pytest.mark.parametrize("protocol", ["emotic", "sklearn"])
def test_evaluator_batches_equal_one_shot(protocol):
    scores, labels, vad_pred, vad_target = _random_eval_data(7)
    ev = EmoticEvaluator(protocol=protocol)
    for start in range(0, 60, 16):
        sl = slice(start, start + 16)
        ev.update(
            torch.from_numpy(scores[sl]),
            torch.from_numpy(labels[sl]),
            torch.from_numpy(vad_pred[sl]),
            torch.from_numpy(vad_target[sl]),
        )
    report = ev.compute()
    ap = average_precision(scores, labels, protocol=protocol)
    assert report.protocol == protocol and report.num_samples == 60
    assert list(report.per_category_ap) == list(EMOTIC_CATEGORIES)
    np.testing.assert_allclose(list(report.per_category_ap.values()), ap, equal_nan=True)
    assert report.categories_without_positives == ("Anticipation",)
    assert report.mean_ap == pytest.approx(float(np.nanmean(ap)))
    assert report.vad_mae is not None and tuple(report.vad_mae) == VAD_DIMENSIONS
    np.testing.assert_allclose(list(report.vad_mae.values()), vad_mae(vad_pred, vad_target))
    thresholds = ev.thresholds()
    np.testing.assert_allclose(
        thresholds, precision_recall_thresholds(scores, labels), equal_nan=True
    )
    payload = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert payload["per_category_ap"]["Anticipation"] is None
    assert payload["categories_without_positives"] == ["Anticipation"]

    ev.reset()
    assert ev.num_samples == 0
    with pytest.raises(ValueError, match=r"no samples; call update\(\)"):
        ev.compute()


def test_evaluator_without_vad_and_input_errors():
    ev = EmoticEvaluator(category_names=["Anger", "Fear"])
    ev.update(np.array([[0.2, 0.9]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="every batch or with none"):
        ev.update(np.array([[0.2, 0.9]]), np.array([[0, 1]]), np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"K = 2 columns \(len\(category_names\)\)"):
        ev.update(np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="given together"):
        ev.update(np.zeros((1, 2)), np.zeros((1, 2)), vad_pred=np.ones((1, 3)))
    report = ev.compute()
    assert report.vad_mae is None and report.num_samples == 1
    assert report.categories_without_positives == ("Anger",)
    assert math.isnan(report.per_category_ap["Anger"]) and report.mean_ap == 1.0

    ev_vad = EmoticEvaluator(category_names=["Anger"])
    with pytest.raises(ValueError, match=r"vad_pred must have shape \(B, 3\)"):
        ev_vad.update(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 2)), np.zeros((2, 3)))


def test_report_is_frozen():
    report = EmoticReport("emotic", {"Anger": 0.5}, 0.5)
    with pytest.raises(AttributeError):
        report.mean_ap = 1.0  # type: ignore[misc]
