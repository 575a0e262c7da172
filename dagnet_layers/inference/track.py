"""Persons linked across video frames by box overlap.

A person keeps its track number from one kept frame to the next when its box
overlaps the track's last box (intersection over union at least
``iou_threshold``); pairs are matched greedily, the largest overlap first. A
track not seen for ``max_gap`` kept frames ends. Enough for a per-person
timeline of a video; crowded scenes with crossing people want a real tracker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["IoUTracker", "box_iou"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of ``(N, 4)`` and ``(M, 4)`` x1 y1 x2 y2 boxes.

    :func:`torchvision.ops.box_iou` in float64 on NumPy arrays; a pair of empty
    boxes (zero union) has IoU 0 rather than torchvision's NaN.

    Example:
        >>> box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 3, 2], [5, 5, 6, 6]])).round(3)
        array([[0.333, 0.   ]])
    """
    import torch
    from torchvision.ops import box_iou as torchvision_box_iou

    a = torch.from_numpy(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    b = torch.from_numpy(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return np.nan_to_num(torchvision_box_iou(a, b).numpy(), nan=0.0)


class IoUTracker:
    """Track numbers for the persons of successive frames (see the module docstring).

    Example:
        >>> t = IoUTracker()
        >>> t.update([(0, 0, 10, 20), (50, 0, 60, 20)]), t.update([(51, 1, 61, 21)])
        ([0, 1], [1])
    """

    def __init__(self, iou_threshold: float = 0.3, max_gap: int = 5) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold, self.max_gap = float(iou_threshold), int(max_gap)
        self._last: dict[int, np.ndarray] = {}
        self._missed: dict[int, int] = {}
        self._next = 0

    def update(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """The track number of each box of the next kept frame."""
        boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        ids = list(self._last)
        assigned: list[int | None] = [None] * len(boxes_arr)
        if ids and len(boxes_arr):
            iou = box_iou(np.stack([self._last[i] for i in ids]), boxes_arr)
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                t, b = divmod(int(flat), len(boxes_arr))
                if iou[t, b] < self.iou_threshold:
                    break
                if assigned[b] is None and ids[t] not in assigned:
                    assigned[b] = ids[t]
        for b, track in enumerate(assigned):
            if track is None:
                track = assigned[b] = self._next
                self._next += 1
            self._last[track] = boxes_arr[b]
            self._missed[track] = 0
        for track in ids:
            if track not in assigned:
                self._missed[track] += 1
                if self._missed[track] > self.max_gap:
                    del self._last[track], self._missed[track]
        return [int(t) for t in assigned]  # type: ignore[arg-type]
