"""Array conversion shared by the metrics and the figures (not public API)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_numpy(x: Any, name: str, dtype: type[np.floating] = np.float64) -> np.ndarray:
    """A numpy array (float64 by default) of a tensor / array / nested sequence.

    Raises:
        TypeError: Naming ``name`` when ``x`` is not numbers.
    """
    if isinstance(x, torch.Tensor):
        torch_dtype = torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return x.detach().to(device="cpu", dtype=torch_dtype).numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numpy array or torch tensor of numbers, got {type(x).__name__}"
        ) from err
