"""Reading each module's behaviour against known ground truth: the diagnostic metrics.

On scenes where the location of every cue and the reliability of every body are
known, these numbers say whether a module does its job:

- GSAM: :func:`attention_mass_in_mask` (the share of the attention map's mass on
  the cue region; a uniform map scores the region's area) and
  :func:`pointing_game` (whether the map's peak falls on the region);
- BAM: :func:`point_biserial` between the body weight and the body being
  corrupted (negative when BAM trusts corrupted bodies less);
- LSAM: :func:`patches_touched` (which of the N x N patches a cue lies in, in
  :class:`~dagnet_layers.layers.PatchPartition`'s row-major order) and
  :func:`adjacency_contrast` (the learned adjacency's weight between cue patches
  against the rest).

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
    "adjacency_contrast",
    "attention_mass_in_mask",
    "patches_touched",
    "point_biserial",
    "pointing_game",
]


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
