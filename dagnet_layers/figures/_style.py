"""What every figure shares: the colour-blind safe palette, figure creation, input checks.

Figures are built as :class:`matplotlib.figure.Figure` directly, without
:mod:`matplotlib.pyplot`: no display or global figure registry is involved (the
Agg canvas renders PNGs), so they run headless, in threads and in loops without
leaking figures. Matplotlib is imported on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dagnet_layers._arrays import to_numpy
from dagnet_layers._deps import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The Okabe-Ito colour-blind friendly palette (name -> hex), used by every figure here.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}

# The paper's Fig. 2 draws ground truth in green and predictions in blue.
_TRUE_COLOUR = OKABE_ITO["bluish_green"]
_PRED_COLOUR = OKABE_ITO["blue"]
_OURS_COLOUR = OKABE_ITO["vermillion"]
_REFERENCE_COLOURS = (
    OKABE_ITO["sky_blue"],
    OKABE_ITO["bluish_green"],
    OKABE_ITO["reddish_purple"],
    OKABE_ITO["blue"],
    OKABE_ITO["orange"],
    OKABE_ITO["yellow"],
    OKABE_ITO["black"],
)
_ATTENTION_CMAP = "inferno"  # perceptually uniform, readable in grey and for colour-blind readers

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- helpers
def _new_figure(figsize: tuple[float, float], dpi: float) -> Figure:
    Figure = require("matplotlib.figure", "drawing figures").Figure

    if len(figsize) != 2 or not all(float(v) > 0 for v in figsize):
        raise ValueError(f"figsize must be two positive inches (width, height), got {figsize!r}")
    if not float(dpi) > 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    return Figure(
        figsize=(float(figsize[0]), float(figsize[1])), dpi=float(dpi), layout="constrained"
    )


def _save(fig: Figure, path: PathLike | None) -> None:
    """Render ``fig`` in memory, then write it atomically: a full disk is an error naming
    the file and leaves no empty or half image behind."""
    # No bbox_inches="tight": the PNG keeps exactly figsize * dpi pixels.
    if path is not None:
        import io

        from dagnet_layers.storage import write_bytes_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=fig.dpi, format=path.suffix.lstrip(".").lower() or "png")
        write_bytes_atomic(path, buffer.getbuffer())


def _to_numpy(x: Any, name: str) -> np.ndarray:
    return to_numpy(x, name, np.float32)


def _image_to_float(image: Any) -> np.ndarray:
    """Any RGB image (PIL, HWC/CHW array or tensor, uint8 or float in [0, 1]) as float HWC."""
    is_uint8 = False
    if isinstance(image, torch.Tensor):
        is_uint8 = image.dtype == torch.uint8
        arr = image.detach().cpu().numpy()
    elif hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        arr = np.asarray(image.convert("RGB"))
        is_uint8 = True
    else:
        arr = np.asarray(image)
        is_uint8 = arr.dtype == np.uint8
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"image must be RGB (H, W, 3) or (3, H, W) or a PIL image, got shape {arr.shape}"
        )
    out = arr.astype(np.float32)
    if is_uint8:
        return out / 255.0
    if out.size and (np.nanmin(out) < 0.0 or np.nanmax(out) > 1.0):
        raise ValueError(
            "float image must hold values in [0, 1]; undo the normalisation first "
            "(dagnet_layers.emotic.data.denormalize gives uint8)"
        )
    return out


def _check_box(box: Any, name: str) -> np.ndarray:
    b = _to_numpy(box, name).reshape(-1)
    if b.size != 4 or not np.isfinite(b).all():
        raise ValueError(f"{name} must hold four finite numbers x1, y1, x2, y2, got {b.tolist()}")
    if b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"{name} must have x2 > x1 and y2 > y1, got {b.tolist()}")
    return b


def _upsample(attention_map: Any, height: int, width: int) -> np.ndarray:
    """(h, w) or (1, h, w) map -> (height, width), bilinear like the model's feature grid."""
    a = attention_map
    a = (
        a.detach().float().cpu()
        if isinstance(a, torch.Tensor)
        else torch.as_tensor(_to_numpy(a, "attention_map"))
    )
    while a.dim() > 2 and a.shape[0] == 1:
        a = a[0]
    if a.dim() != 2:
        raise ValueError(
            f"attention_map must be (h, w) or (1, h, w) per person, got {tuple(a.shape)}"
        )
    up = torch.nn.functional.interpolate(
        a[None, None], size=(height, width), mode="bilinear", align_corners=False
    )
    return up[0, 0].numpy()


def _check_categories(names: Sequence[str], where: str, categories: Sequence[str] | None) -> None:
    if categories is None:
        return
    known = set(categories)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"{where}: unknown category name(s) {unknown}; expected names from "
            f"EMOTIC_CATEGORIES such as {list(categories)[:3]}"
        )
