"""Metrics that read a module against known ground truth, each shown to give an oracle its
ceiling and a null its chance value (``tests/test_diagnostic.py``).

For the task:

- :func:`accuracy`: top-1 accuracy over the columns of a K-way task (chance ``1 / K``
  with balanced classes; labels as scores give 1).

For BAM, the body weight against known reliability:

- :func:`roc_auc`: the probability that a reliable body weighs more than an
  unreliable one (Mann-Whitney; ties count one half): 0.5 for a weight that knows
  nothing, 1 for a perfect gate;
- :func:`point_biserial`: the Pearson correlation of the weight with a binary flag.

For GSAM, the attention map against where the cue is:

- :func:`candidate_pointing` and :func:`candidate_share`: among the cells that hold a
  candidate object, whether the map's highest cell is the target's (ties share the
  credit) and the target's share of the map's mass on the candidates. A flat map
  scores ``1 / C`` on both with ``C`` candidates; a map on the target alone, 1;
- :func:`attention_mass_in_mask` and :func:`pointing_game`: the map's share of mass
  on a mask of any shape (chance: the mask's area) and whether its peak falls on it.

For LSAM, the learned graph:

- :func:`relation_contrast`: how differently the adjacency links patches in the same
  row and patches in the same column (0 for any graph that treats the two alike,
  such as the grid or the identity);
- :func:`patches_touched` (which of the N x N patches a mask lies in, in
  :class:`~dagnet_layers.layers.PatchPartition`'s row-major order) and
  :func:`adjacency_contrast` (the adjacency's weight between given patches against
  the rest).

Maps are compared with masks at the mask's resolution: a map is upsampled
bilinearly (``align_corners=False``), as the figures overlay it on the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "accuracy",
    "adjacency_contrast",
    "attention_mass_in_mask",
    "candidate_pointing",
    "candidate_share",
    "cell_means",
    "patches_touched",
    "point_biserial",
    "pointing_game",
    "relation_contrast",
    "roc_auc",
]


def _array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def accuracy(scores: Any, labels: Any, columns: Sequence[int] | None = None) -> float:
    """Top-1 accuracy of a K-way task: the highest score among ``columns`` on the true one.

    Args:
        scores: (N, K') scores, higher meaning more confident.
        labels: (N, K') one-hot (or multi-hot) labels; each row's true class among
            ``columns`` is its highest label (every row needs one).
        columns: The task's columns (default: all).

    Example:
        >>> y = np.eye(3)[[0, 1, 2, 2]]
        >>> accuracy(y, y), accuracy(np.eye(3)[[0, 1, 2, 0]], y)
        (1.0, 0.75)
    """
    s, y = _array(scores), _array(labels)
    if s.shape != y.shape or s.ndim != 2:
        raise ValueError(f"scores and labels must be (N, K) alike, got {s.shape} and {y.shape}")
    cols = np.arange(s.shape[1]) if columns is None else np.asarray(columns, dtype=np.int64)
    s, y = s[:, cols], y[:, cols]
    if not np.all(y.max(1) > 0):
        raise ValueError("accuracy: every row needs a true class among the columns")
    return float(np.mean(s.argmax(1) == y.argmax(1)))


def roc_auc(values: Any, positive: Any) -> float:
    """Area under the ROC curve of ``values`` for telling ``positive`` rows from the rest.

    The Mann-Whitney statistic: the share of (positive, negative) pairs where the
    positive has the larger value, ties counting one half. NaN when either group is
    empty.

    Example:
        >>> roc_auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
        1.0
        >>> roc_auc([0.5, 0.5, 0.5], [True, False, False])
        0.5
    """
    v = _array(values).reshape(-1)
    pos = np.asarray(positive, dtype=bool).reshape(-1)
    if v.shape != pos.shape:
        raise ValueError(f"values and positive differ in length: {v.size} and {pos.size}")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(v.size, dtype=np.float64)
    sorted_v = v[order]
    # average ranks over ties (1-based)
    start = 0
    while start < v.size:
        stop = start
        while stop + 1 < v.size and sorted_v[stop + 1] == sorted_v[start]:
            stop += 1
        ranks[order[start:stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def cell_means(maps: Any, grid: int) -> np.ndarray:
    """Mean of each map over the cells of a ``grid x grid`` partition of the image, row-major.

    A map whose side is a multiple of ``grid`` is averaged over blocks; any other is
    first upsampled bilinearly (``align_corners=False``) to ``8 * grid``.

    Args:
        maps: (N, h, w) or (N, 1, h, w) maps.
        grid: Cells per side.

    Returns:
        (N, grid * grid) float64.

    Example:
        >>> cell_means(np.arange(16.0).reshape(1, 4, 4), 2).tolist()
        [[2.5, 4.5, 10.5, 12.5]]
    """
    m = torch.as_tensor(_array(maps))
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(f"maps must be (N, h, w) or (N, 1, h, w), got {tuple(m.shape)}")
    if m.shape[1] % grid or m.shape[2] % grid:
        m = F.interpolate(m[:, None], size=(8 * grid, 8 * grid), mode="bilinear",
                          align_corners=False)[:, 0]  # fmt: skip
    n, h, w = m.shape
    blocks = m.reshape(n, grid, h // grid, grid, w // grid).mean(dim=(2, 4))
    return blocks.reshape(n, grid * grid).numpy()


def _candidate_values(maps: Any, candidates: Any, target: Any, grid: int
                      ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    cells = cell_means(maps, grid)
    cand = np.asarray(candidates, dtype=np.int64)
    tgt = np.asarray(target, dtype=np.int64).reshape(-1)
    if cand.ndim != 2 or cand.shape[0] != cells.shape[0] or tgt.shape[0] != cells.shape[0]:
        raise ValueError(f"candidates must be (N, C) and target (N,) for {cells.shape[0]} maps, "
                         f"got {cand.shape} and {tgt.shape}")  # fmt: skip
    hit = cand == tgt[:, None]
    if not np.all(hit.sum(1) == 1):
        raise ValueError("each row's target cell must be one of its candidate cells, once")
    return np.take_along_axis(cells, cand, axis=1), hit


def candidate_pointing(maps: Any, candidates: Any, target: Any, grid: int) -> np.ndarray:
    """Per map: whether its highest candidate cell is the target's (ties share the credit).

    Args:
        maps: (N, h, w) non-negative maps.
        candidates: (N, C) the grid cells (row-major) that hold a candidate object.
        target: (N,) the target's cell, one of the candidates.
        grid: Cells per side of the scene.

    Returns:
        (N,) float64 in [0, 1]: 1 when the target's cell alone is the highest, 1/k
        when it ties with k - 1 others, 0 otherwise. A flat map scores 1/C.

    Example:
        >>> maps = np.zeros((2, 2, 2)); maps[0, 0, 1] = 1.0
        >>> candidate_pointing(maps, [[1, 2], [1, 2]], [1, 1], grid=2).tolist()
        [1.0, 0.5]
    """
    values, hit = _candidate_values(maps, candidates, target, grid)
    top = values >= values.max(1, keepdims=True)
    return (top & hit).sum(1) / top.sum(1)


def candidate_share(maps: Any, candidates: Any, target: Any, grid: int) -> np.ndarray:
    """Per map: the target cell's share of the map's mass on the candidate cells.

    A flat map scores ``1 / C``; a map on the target alone, 1. NaN where the map is
    zero on every candidate.

    Example:
        >>> maps = np.ones((1, 2, 2)); maps[0, 0, 1] = 3.0
        >>> candidate_share(maps, [[1, 2]], [1], grid=2).tolist()
        [0.75]
    """
    values, hit = _candidate_values(maps, candidates, target, grid)
    total = values.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (values * hit).sum(1) / total, np.nan)


def relation_contrast(adjacency: Any, n: int) -> float:
    """How differently a patch graph links the same row and the same column, in [0, n + 1].

    ``|mean |A_ij| over same-row pairs - mean over same-column pairs|``, divided by the
    mean ``|A_ij|`` over all off-diagonal pairs (i != j, row-major ``n x n`` patches).
    0 for a graph that treats rows and columns alike (the grid, the identity, a
    uniform matrix); ``n + 1`` when all its off-diagonal weight links patches of one
    row (or of one column). A label that depends on "same row or same column" needs
    a graph that tells them apart. NaN for a graph without off-diagonal weight.

    Example:
        >>> a = np.eye(4); a[0, 1] = a[1, 0] = a[2, 3] = a[3, 2] = 1.0  # rows of a 2 x 2
        >>> relation_contrast(a, 2)
        3.0
        >>> relation_contrast(np.ones((4, 4)), 2)
        0.0
    """
    a = np.abs(_array(adjacency))
    if a.shape != (n * n, n * n):
        raise ValueError(f"adjacency must be ({n * n}, {n * n}) for n={n}, got {a.shape}")
    rows, cols = np.divmod(np.arange(n * n), n)
    off = ~np.eye(n * n, dtype=bool)
    same_row = off & (rows[:, None] == rows[None, :])
    same_col = off & (cols[:, None] == cols[None, :])
    scale = a[off].mean()
    if not scale > 0:
        return float("nan")
    return float(abs(a[same_row].mean() - a[same_col].mean()) / scale)


def _maps_and_masks(attention: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` float64 maps upsampled to the masks' size, and ``(B, H, W)`` bool masks."""
    a = torch.as_tensor(np.asarray(attention, dtype=np.float64) if not isinstance(
        attention, torch.Tensor) else attention.detach().double().cpu())  # fmt: skip
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask.cpu())
    if m.dim() == 2:
        m = m[None]
    if a.dim() == 2:
        a = a[None]
    if a.dim() == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.dim() != 3 or m.dim() != 3 or a.shape[0] != m.shape[0]:
        raise ValueError(f"expected maps (B, h, w) or (B, 1, h, w) and masks (B, H, W) with the "
                         f"same B, got {tuple(a.shape)} and {tuple(m.shape)}")
    if torch.any(a < 0):
        raise ValueError("attention maps must be non-negative (GSAM's are sigmoid outputs)")
    if a.shape[-2:] != m.shape[-2:]:
        a = F.interpolate(a[:, None], size=tuple(m.shape[-2:]), mode="bilinear",
                          align_corners=False)[:, 0]  # fmt: skip
    return a, m.bool()


def attention_mass_in_mask(attention: Any, mask: Any) -> np.ndarray:
    """Share of each attention map's mass that lies on its mask, in [0, 1].

    A map exactly on the mask scores 1; a uniform map scores the mask's area (its
    share of the pixels), which is the chance level to compare against.

    Args:
        attention: ``(h, w)``, ``(B, h, w)`` or ``(B, 1, h, w)`` non-negative maps.
        mask: ``(H, W)`` or ``(B, H, W)`` cue masks (bool or 0/1).

    Returns:
        ``(B,)`` float64; NaN for an all-zero map.

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[:2] = True
        >>> attention_mass_in_mask(np.ones((4, 4)), mask)  # uniform: the mask's area
        array([0.5])
        >>> attention_mass_in_mask(mask.astype(float), mask)
        array([1.])
    """
    a, m = _maps_and_masks(attention, mask)
    total = a.flatten(1).sum(1)
    inside = (a * m).flatten(1).sum(1)
    out = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.nan)
    return out.numpy()


def pointing_game(attention: Any, mask: Any) -> np.ndarray:
    """Whether each map's maximum lies on its mask (ties: any maximal pixel on it counts).

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[0, 0] = True
        >>> att = np.zeros((4, 4)); att[0, 0] = 1.0
        >>> pointing_game(att, mask), pointing_game(1.0 - att, mask)
        (array([ True]), array([False]))
    """
    a, m = _maps_and_masks(attention, mask)
    peak = a.flatten(1).max(1).values
    at_peak = a >= peak[:, None, None]
    return (at_peak & m).flatten(1).any(1).numpy()


def point_biserial(values: Sequence[float] | np.ndarray, flags: Sequence[bool] | np.ndarray
                   ) -> float:  # fmt: skip
    """Pearson correlation between a continuous value and a binary flag (point-biserial).

    For BAM: the body weight against "this body is corrupted"; negative when
    corrupted bodies get lower weights. NaN when either side is constant.

    Example:
        >>> round(point_biserial([0.9, 0.8, 0.2, 0.1], [False, False, True, True]), 3)
        -0.99
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    y = np.asarray(flags, dtype=bool).reshape(-1).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"values and flags differ in length: {x.size} and {y.size}")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def patches_touched(mask: Any, n: int, min_fraction: float = 0.0) -> np.ndarray:
    """Indices of the N x N patches (row-major, as PatchPartition numbers them) a mask lies in.

    Args:
        mask: ``(H, W)`` mask with H and W divisible by ``n``.
        n: Patches per side.
        min_fraction: A patch counts when more than this share of its pixels is on
            the mask.

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[0, 3] = mask[3, 0] = True
        >>> patches_touched(mask, 2).tolist()
        [1, 2]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.shape[0] % n or m.shape[1] % n:
        raise ValueError(f"mask must be (H, W) with H and W divisible by n={n}, got {m.shape}")
    h, w = m.shape[0] // n, m.shape[1] // n
    share = m.reshape(n, h, n, w).mean(axis=(1, 3)).reshape(-1)
    return np.nonzero(share > min_fraction)[0]


def adjacency_contrast(adjacency: Any, cue_nodes: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Mean ``|A_ij|`` between cue patches (i != j) against the mean over all other pairs.

    Returns:
        ``{"cue": ..., "rest": ..., "ratio": cue / rest}``; the ratio is above 1 when
        the learned graph links the patches that carry the cue more strongly than
        the others. NaN where a group is empty.

    Example:
        >>> a = np.eye(4) * 5; a[0, 1] = a[1, 0] = 2.0; a[2, 3] = 1.0
        >>> {k: round(v, 6) for k, v in adjacency_contrast(a, [0, 1]).items()}
        {'cue': 2.0, 'rest': 0.1, 'ratio': 20.0}
    """
    a = np.abs(np.asarray(adjacency.detach().cpu() if isinstance(adjacency, torch.Tensor)
                          else adjacency, dtype=np.float64))  # fmt: skip
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got {a.shape}")
    nodes = np.zeros(a.shape[0], dtype=bool)
    nodes[np.asarray(cue_nodes, dtype=np.int64)] = True
    off = ~np.eye(a.shape[0], dtype=bool)
    cue_pairs = off & nodes[:, None] & nodes[None, :]
    rest_pairs = off & ~cue_pairs
    cue = float(a[cue_pairs].mean()) if cue_pairs.any() else float("nan")
    rest = float(a[rest_pairs].mean()) if rest_pairs.any() else float("nan")
    ratio = cue / rest if rest and np.isfinite(rest) and np.isfinite(cue) else float("nan")
    return {"cue": cue, "rest": rest, "ratio": ratio}


