"""Statistics of the diagnostic benchmark: paired differences over seeds, Holm, verdicts.

Two arms trained on the same seed share the scenes, the order of the batches and
(:func:`~dagnet_layers.models.component_seed`) the initial weights of every part
they have in common, so they are compared seed by seed:

- :func:`paired_difference`: the mean of the per-seed differences, its standard
  deviation, the two-sided paired t-test p-value and the 95% confidence interval
  (Student's t with ``n - 1`` degrees of freedom), and beside them the exact
  sign-flip p-value (:func:`sign_flip_p`), which assumes no normality: with ``n``
  seeds it cannot fall below ``2 / 2**n`` (1/32 for 6 seeds);
- :func:`holm`: Holm's step-down adjustment of a family of p-values (Holm, 1979),
  which keeps the chance of any false "supported" in the family at 5%;
- :func:`verdict`: "supported" (adjusted p < 0.05 and a positive effect), "not
  supported" (the 95% CI lies below the smallest effect worth having, or the effect
  is significantly negative) or "inconclusive".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dagnet_layers._deps import require

__all__ = ["holm", "paired_difference", "sign_flip_p", "verdict"]


def paired_difference(a: Sequence[float], b: Sequence[float], *, level: float = 0.95
                      ) -> dict[str, Any]:  # fmt: skip
    """Mean, spread, paired t-test and confidence interval of ``a - b`` over paired seeds.

    Args:
        a: One value per seed.
        b: The other arm's value on the same seeds, in the same order.
        level: Confidence level of the interval.

    Returns:
        ``{"n", "mean", "sd", "t", "p", "ci": [low, high], "p_exact", "values"}``
        (``p_exact``: :func:`sign_flip_p`). With fewer than two seeds, or differences
        without spread, ``t``, ``p`` and ``ci`` are ``None`` (all equal differences:
        ``p`` is 0 when they are not 0, 1 when they are).

    Example:
        >>> r = paired_difference([0.9, 0.8, 0.85], [0.7, 0.7, 0.7])
        >>> round(r["mean"], 3), round(r["p"], 4), [round(c, 3) for c in r["ci"]]
        (0.15, 0.0351, [0.026, 0.274])
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values must be two sequences of one length, got {x.shape} "
                         f"and {y.shape}")  # fmt: skip
    if not np.all(np.isfinite(x) & np.isfinite(y)):
        raise ValueError("paired values must be finite")
    d = x - y
    n = int(d.size)
    out: dict[str, Any] = {"n": n, "mean": float(d.mean()) if n else None, "sd": None,
                           "t": None, "p": None, "ci": None, "p_exact": sign_flip_p(d),
                           "values": d.tolist()}  # fmt: skip
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    if sd == 0.0:
        out["p"] = 1.0 if d[0] == 0 else 0.0
        out["ci"] = [float(d[0]), float(d[0])]
        return out
    stats = require("scipy.stats", "the diagnostic benchmark's t-test")
    se = sd / math.sqrt(n)
    t = float(d.mean() / se)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    out.update(t=t, p=float(2 * stats.t.sf(abs(t), n - 1)),
               ci=[float(d.mean() - half), float(d.mean() + half)])
    return out


def sign_flip_p(differences: Sequence[float]) -> float | None:
    """Exact two-sided p-value of paired differences under random sign flips.

    Under the null hypothesis that the two arms are exchangeable within each seed, each
    difference is as likely negative as positive: the p-value is the share of the
    ``2**n`` sign patterns whose mean is at least as far from 0 as the observed one.
    ``None`` for no differences or more than 20 (2**20 patterns).

    Example:
        >>> sign_flip_p([0.1, 0.2, 0.3])  # all positive: 2 of the 8 patterns as extreme
        0.25
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0 or d.size > 20:
        return None
    signs = 1 - 2 * ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1)
    means = np.abs(signs @ d) / d.size
    observed = abs(d.mean())
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order (``None`` stays ``None``).

    Sorted ascending, the i-th of m p-values (from 1) becomes
    ``max over j <= i of min(1, (m - j + 1) * p_(j))``; an adjusted p-value under 0.05
    rejects at a 5% family-wise error rate.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005])
        [0.03, 0.06, 0.06, 0.02]
    """
    present = [(i, float(p)) for i, p in enumerate(pvalues) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(present, key=lambda ip: ip[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 15)
    return out


def verdict(diff: dict[str, Any], p_adjusted: float | None, smallest: float,
            alpha: float = 0.05) -> str:  # fmt: skip
    """"supported", "not supported" or "inconclusive" for one contrast.

    - supported: adjusted p below ``alpha`` and a positive mean difference;
    - not supported: the 95% CI's upper end below ``smallest`` (the effect, if any,
      is too small to matter), or adjusted p below ``alpha`` with a negative mean;
    - inconclusive: otherwise (the data allow both).

    Example:
        >>> verdict({"mean": 0.1, "ci": [0.05, 0.15]}, 0.01, 0.02)
        'supported'
        >>> verdict({"mean": 0.0, "ci": [-0.01, 0.015]}, 0.9, 0.02)
        'not supported'
        >>> verdict({"mean": 0.05, "ci": [-0.02, 0.12]}, 0.2, 0.02)
        'inconclusive'
    """
    mean, ci = diff.get("mean"), diff.get("ci")
    if mean is None or ci is None:
        return "inconclusive"
    if p_adjusted is not None and p_adjusted < alpha:
        return "supported" if mean > 0 else "not supported"
    if ci[1] < smallest:
        return "not supported"
    return "inconclusive"
