"""Figures for DAG-Net results: AP against the paper, training curves, per-image predictions.

Three figures a researcher wants next to a DAG-Net run:

- :func:`plot_ap_comparison`: per-category AP of a run next to the published
  columns of the paper's Table 1 (:data:`dagnet_layers.paper.PAPER_TABLE1`);
- :func:`plot_training_curves`: loss, validation mAP and learning rate per
  epoch from the training engine's CSV log;
- :func:`plot_prediction`: the paper's Fig. 2 (image, person boxes, predicted
  labels in blue and ground truth in green) plus what the model attends to:
  the GSAM (ABN) attention map over the masked context and LSAM's learned
  patch graph, with BAM's body weight per person.

Every function builds a :class:`matplotlib.figure.Figure` directly, without
:mod:`matplotlib.pyplot`: no display or global figure registry is involved
(the Agg canvas renders PNGs), so the functions run headless, in threads and
in loops without leaking figures. Matplotlib is imported inside the
functions, so ``import dagnet_layers`` stays fast. Colours come from the
Okabe-Ito palette, which stays distinguishable under the common colour-vision
deficiencies, and every colour-coded item also carries a text label.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dagnet_layers._arrays import to_numpy as _metrics_to_numpy
from dagnet_layers._deps import require
from dagnet_layers.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.paper import PAPER_TABLE1, PAPER_TABLE1_MAP

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "OKABE_ITO",
    "attention_overlay",
    "plot_ap_comparison",
    "plot_partition_sweep",
    "plot_prediction",
    "plot_training_curves",
]

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
    # No bbox_inches="tight": the PNG keeps exactly figsize * dpi pixels.
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=fig.dpi)


def _to_numpy(x: Any, name: str) -> np.ndarray:
    return _metrics_to_numpy(x, name, np.float32)


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
            "(dagnet_layers.data.denormalize gives uint8)"
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


# --------------------------------------------------------------------------- AP comparison
def _ap_fractions(per_category_ap: Any) -> tuple[dict[str, float], str | None]:
    protocol = getattr(per_category_ap, "protocol", None)
    if hasattr(per_category_ap, "per_category_ap"):  # an EmoticReport
        per_category_ap = per_category_ap.per_category_ap
    if not isinstance(per_category_ap, Mapping):
        raise TypeError(
            "per_category_ap must be a {category: AP fraction} mapping or an EmoticReport, "
            f"got {type(per_category_ap).__name__}"
        )
    values = {}
    for name, v in per_category_ap.items():
        v = float("nan") if v is None else float(v)
        values[str(name)] = v
    return values, protocol


def plot_ap_comparison(
    per_category_ap: Mapping[str, float] | Any,
    *,
    reference: Mapping[str, Mapping[str, float]] | None = PAPER_TABLE1,
    ours_label: str = "ours",
    title: str | None = None,
    path: PathLike | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Horizontal grouped bars of per-category AP: a run next to published columns.

    One group per EMOTIC category (official order, top to bottom, as in the
    paper's Table 1); in each group the run's AP first, then one bar per
    reference method. The legend gives each method's mAP (the mean over the
    categories it has a number for). A category whose AP is ``NaN`` (no
    positive example in the evaluated split) or missing is drawn as an ``x``
    marker at zero with "n/a" instead of a bar.

    Args:
        per_category_ap: ``{category: AP}`` with AP as a *fraction* in [0, 1],
            as :class:`~dagnet_layers.metrics.EmoticReport` gives it, or the
            report itself (its protocol then goes into the title). Categories
            not in the mapping count as missing.
        reference: ``{method: {category: AP %}}`` in *percent*, like
            :data:`~dagnet_layers.paper.PAPER_TABLE1` (the default: the four
            methods of the paper's Table 1); ``None`` or ``{}`` plots the run alone.
        ours_label: Legend name of the run.
        title: Figure title; default names the run's mAP (and protocol if known).
        path: Also save the figure as PNG here (parent folders are created).
        figsize: Inches (width, height); default grows with the number of bars.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure (``figsize * dpi`` pixels when saved).

    Raises:
        ValueError: A category name is not an EMOTIC category, or an AP of the
            run is outside [0, 1] (percentages passed by mistake).

    Example:
        >>> from dagnet_layers.data import EMOTIC_CATEGORIES
        >>> ap = {c: 0.3 for c in EMOTIC_CATEGORIES}
        >>> fig = plot_ap_comparison(ap, path="ap.png")  # doctest: +SKIP
    """
    ours, protocol = _ap_fractions(per_category_ap)
    _check_categories(list(ours), "plot_ap_comparison(per_category_ap)", EMOTIC_CATEGORIES)
    bad = {k: v for k, v in ours.items() if not math.isnan(v) and not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(
            "plot_ap_comparison(per_category_ap) takes AP fractions in [0, 1] (as the metrics "
            f"produce); got {bad}. Divide percentages by 100."
        )
    reference = dict(reference or {})
    for method, column in reference.items():
        _check_categories(
            list(column), f"plot_ap_comparison(reference[{method!r}])", EMOTIC_CATEGORIES
        )

    categories = list(EMOTIC_CATEGORIES)
    series: list[tuple[str, np.ndarray, str]] = []
    ours_pct = np.array([ours.get(c, float("nan")) for c in categories], dtype=float) * 100.0
    series.append((ours_label, ours_pct, _OURS_COLOUR))
    for i, (method, column) in enumerate(reference.items()):
        vals = np.array(
            [float("nan") if column.get(c) is None else float(column[c]) for c in categories]
        )
        series.append((method, vals, _REFERENCE_COLOURS[i % len(_REFERENCE_COLOURS)]))

    n_series = len(series)
    if figsize is None:
        figsize = (9.0, 1.6 + len(categories) * (0.12 + 0.085 * n_series))
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()

    group = 0.8
    bar_h = group / n_series
    y = np.arange(len(categories), dtype=float)
    any_missing = False
    finite_max = 0.0
    for s, (label, vals, colour) in enumerate(series):
        offsets = y - group / 2 + bar_h * (s + 0.5)
        finite = ~np.isnan(vals)
        mean = float(np.nanmean(vals)) if finite.any() else float("nan")
        published = PAPER_TABLE1_MAP.get(label) if reference and label in PAPER_TABLE1 else None
        if published is not None and dict(reference.get(label, {})) == PAPER_TABLE1[label]:
            mean = published  # the printed mAP, identical up to rounding
        legend = f"{label} (mAP {mean:.2f}%)" if finite.any() else f"{label} (no AP)"
        ax.barh(
            offsets[finite],
            vals[finite],
            height=bar_h * 0.92,
            color=colour,
            edgecolor="white",
            linewidth=0.3,
            label=legend,
        )
        if finite.any():
            finite_max = max(finite_max, float(np.nanmax(vals)))
        if s == 0:
            for yy, v in zip(offsets[finite], vals[finite], strict=True):
                ax.text(v + 0.6, yy, f"{v:.1f}", va="center", ha="left", fontsize=6.5, color=colour)
        if (~finite).any():
            any_missing = True
            ax.scatter(
                np.zeros((~finite).sum()),
                offsets[~finite],
                marker="x",
                s=22,
                color=colour,
                linewidths=1.2,
                zorder=3,
            )
            for yy in offsets[~finite]:
                ax.text(1.2, yy, "n/a", va="center", ha="left", fontsize=6.5, color=colour)
    if any_missing:
        ax.scatter([], [], marker="x", color="0.3", label="n/a: no AP (no positives / missing)")

    ax.set_yticks(y, categories, fontsize=9)
    ax.set_ylim(len(categories) - 0.5, -0.5)  # official order, top to bottom
    ax.set_xlim(0, min(100.0, max(finite_max, 1.0) * 1.08 + 3))
    ax.set_xlabel("average precision (%)")
    ax.grid(axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)

    if title is None:
        ours_map = float(np.nanmean(ours_pct)) if (~np.isnan(ours_pct)).any() else float("nan")
        proto = f", {protocol} AP protocol" if protocol else ""
        title = f"Per-category AP on EMOTIC: {ours_label} mAP {ours_map:.2f}%{proto}"
        if reference and all(m in PAPER_TABLE1 for m in reference):
            title += "\nother columns: published results, DAG-Net paper Table 1"
    fig.suptitle(title, fontsize=12)
    # Bars first, the n/a marker last (matplotlib lists scatters before bars).
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("n/a"))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="outside lower center",
        ncols=min(n_series + int(any_missing), 3),
        fontsize=8.5,
        frameon=False,
    )
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------- training curves
def _read_log(log_csv: PathLike) -> dict[str, list[float]]:
    log_csv = Path(log_csv)
    if not log_csv.is_file():
        raise FileNotFoundError(f"plot_training_curves(log_csv=...): {log_csv} not found")
    with open(log_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"plot_training_curves(log_csv=...): {log_csv} has no header row")
        columns: dict[str, list[float]] = {name.strip(): [] for name in reader.fieldnames}
        for row in reader:
            for name, raw in row.items():
                if name is None:  # surplus cells of a ragged row
                    continue
                try:
                    value = float(raw) if raw not in (None, "") else float("nan")
                except ValueError:
                    value = float("nan")  # a text column (e.g. a phase name): not plotted
                columns[name.strip()].append(value)
    return columns


def plot_training_curves(
    log_csv: PathLike,
    path: PathLike | None = None,
    *,
    reference_map: float | None = PAPER_TABLE1_MAP["DAG-Net"],
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Loss and validation mAP per epoch from the training engine's CSV log.

    Reads the columns it knows and ignores the rest: ``epoch`` (row number
    when absent), ``train_loss`` and ``val_loss`` (left panel), ``val_map``
    (middle panel, best epoch marked; taken as a fraction and shown in percent
    when every value is <= 1), ``lr`` (right panel, log scale) and
    ``samples_per_s`` (median throughput in the title). Empty or non-numeric
    cells are gaps. Panels whose columns are absent are left out.

    Args:
        log_csv: CSV file with a header row.
        path: Also save the figure as PNG here.
        reference_map: Dashed reference line on the mAP panel, in percent
            (default: DAG-Net's published 29.96); ``None`` for none.
        title: Figure title (default: the log's file name).
        figsize: Inches (width, height); default 4.2 in per panel by 3.6 in.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Raises:
        FileNotFoundError: ``log_csv`` does not exist.
        ValueError: The file has no header, no rows, or none of ``train_loss``,
            ``val_loss``, ``val_map``, ``lr``.

    Example:
        >>> fig = plot_training_curves("run/train_log.csv", "curves.png")  # doctest: +SKIP
    """
    cols = _read_log(log_csv)
    n_rows = max((len(v) for v in cols.values()), default=0)
    if n_rows == 0:
        raise ValueError(f"plot_training_curves(log_csv=...): {log_csv} has no data rows")
    epoch = np.asarray(cols.get("epoch") or np.arange(1, n_rows + 1), dtype=float)
    if np.isnan(epoch).all():
        epoch = np.arange(1, n_rows + 1, dtype=float)

    def col(name: str) -> np.ndarray | None:
        v = cols.get(name)
        if v is None:
            return None
        arr = np.asarray(v, dtype=float)
        return None if np.isnan(arr).all() else arr

    losses = {k: col(k) for k in ("train_loss", "val_loss")}
    losses = {k: v for k, v in losses.items() if v is not None}
    val_map, lr, speed = col("val_map"), col("lr"), col("samples_per_s")
    panels = [
        p
        for p, have in (("loss", losses), ("map", val_map is not None), ("lr", lr is not None))
        if have
    ]
    if not panels:
        raise ValueError(
            f"plot_training_curves(log_csv=...): {log_csv} has none of the columns train_loss, "
            f"val_loss, val_map, lr; found {sorted(cols)}"
        )
    if figsize is None:
        figsize = (4.2 * len(panels), 3.6)
    fig = _new_figure(figsize, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    style = dict(marker="o", markersize=3, linewidth=1.6)

    def prepare(ax: Axes, ylabel: str, subtitle: str) -> None:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(subtitle, fontsize=10)
        ax.grid(color="0.88", linewidth=0.6)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)

    for ax, panel in zip(axes, panels, strict=True):
        if panel == "loss":
            colours = {"train_loss": OKABE_ITO["blue"], "val_loss": OKABE_ITO["vermillion"]}
            for name, values in losses.items():
                ok = ~np.isnan(values)
                ax.plot(
                    epoch[ok],
                    values[ok],
                    color=colours[name],
                    label=name.replace("_", " "),
                    **style,
                )
            prepare(ax, "loss", "Loss")
            ax.legend(frameon=False, fontsize=8)
        elif panel == "map":
            assert val_map is not None
            ok = ~np.isnan(val_map)
            as_pct = val_map * 100.0 if np.nanmax(val_map) <= 1.0 else val_map
            ax.plot(
                epoch[ok], as_pct[ok], color=OKABE_ITO["bluish_green"], label="val mAP", **style
            )
            best = int(np.nanargmax(as_pct))
            ax.scatter(
                [epoch[best]],
                [as_pct[best]],
                s=90,
                facecolors="none",
                zorder=3,
                edgecolors=OKABE_ITO["black"],
                linewidths=1.2,
                label=f"best {as_pct[best]:.2f}% (epoch {epoch[best]:g})",
            )
            if reference_map is not None:
                ax.axhline(
                    reference_map,
                    color=OKABE_ITO["reddish_purple"],
                    linestyle="--",
                    linewidth=1.2,
                    label=f"DAG-Net paper {reference_map:.2f}%",
                )
            prepare(ax, "mAP (%)", "Validation mAP")
            ax.legend(frameon=False, fontsize=8, loc="lower right")
        else:
            assert lr is not None
            ok = ~np.isnan(lr)
            ax.plot(epoch[ok], lr[ok], color=OKABE_ITO["orange"], **style)
            positive = lr[ok][lr[ok] > 0]
            if positive.size == ok.sum() and positive.max() / positive.min() > 100:
                ax.set_yscale("log")  # step decays span decades
            else:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            prepare(ax, "learning rate", "Learning rate")

    if title is None:
        title = f"Training log: {Path(log_csv).name}"
    if speed is not None:
        title += f"  (median {np.nanmedian(speed):,.0f} samples/s)"
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return fig


# --------------------------------------------------------------------------- predictions
def attention_overlay(
    image: Any,
    attention_map: Any,
    *,
    box: Any = None,
    alpha: float = 0.55,
    cmap: str = _ATTENTION_CMAP,
) -> np.ndarray:
    """Blend an attention map, upsampled to the image, over a desaturated copy of it.

    The GSAM map lives on the context stream's feature grid, which covers the
    whole image (the context is the whole image resized), so bilinear
    upsampling to the image's size aligns it. Inside ``box`` (the body, which
    the context stream sees masked) the heatmap is left out and the image is
    darkened, so the overlay shows only what the model could attend to.

    Args:
        image: RGB image: PIL, ``(H, W, 3)`` / ``(3, H, W)`` array or tensor,
            ``uint8`` or float in [0, 1].
        attention_map: ``(h, w)`` or ``(1, h, w)`` map; min-max scaled for display.
        box: Optional body box ``x1, y1, x2, y2`` in image pixels.
        alpha: Weight of the heatmap in the blend, in [0, 1].
        cmap: A matplotlib colormap name.

    Returns:
        float32 ``(H, W, 3)`` RGB image in [0, 1].

    Example:
        >>> img = np.zeros((8, 12, 3), dtype=np.uint8)
        >>> out = attention_overlay(img, torch.rand(1, 2, 3), box=(0, 0, 4, 4))
        >>> out.shape, out.dtype, bool(out[:4, :4].max() == 0)
        ((8, 12, 3), dtype('float32'), True)
    """
    colormaps = require("matplotlib", "colouring attention maps").colormaps

    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"attention_overlay(alpha=...) must be in [0, 1], got {alpha!r}")
    rgb = _image_to_float(image)
    h, w = rgb.shape[:2]
    att = _upsample(attention_map, h, w)
    lo, hi = float(att.min()), float(att.max())
    att = (att - lo) / (hi - lo) if hi > lo else np.zeros_like(att)
    heat = colormaps[cmap](att)[..., :3].astype(np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    base = np.repeat(grey[..., None], 3, axis=-1) * 0.85 + rgb * 0.15
    out = (1.0 - alpha) * base + alpha * heat
    if box is not None:
        x1, y1, x2, y2 = _check_box(box, "attention_overlay(box)")
        c1, r1 = max(math.floor(x1), 0), max(math.floor(y1), 0)
        c2, r2 = min(math.ceil(x2), w), min(math.ceil(y2), h)
        out[r1:r2, c1:c2] = base[r1:r2, c1:c2] * 0.35
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _per_person(values: Any, n: int, name: str) -> list[Any]:
    items = list(values)
    if len(items) != n:
        raise ValueError(
            f"plot_prediction({name}=...) needs one entry per box ({n}), got {len(items)}"
        )
    return items


def _graph_edges(
    adj: np.ndarray, top_k: int | None, threshold: float | None
) -> list[tuple[int, int, float]]:
    """Undirected edges (i < j, signed weight of the larger direction) to draw."""
    m = adj.shape[0]
    mag = np.abs(adj).copy()
    np.fill_diagonal(mag, 0.0)
    keep = np.zeros_like(mag, dtype=bool)
    if threshold is not None:
        keep = mag > threshold
    elif top_k:
        k = min(int(top_k), m - 1)
        if k > 0:
            idx = np.argsort(-mag, axis=1, kind="stable")[:, :k]
            keep[np.repeat(np.arange(m), k), idx.ravel()] = True
            keep &= mag > 0
    keep = keep | keep.T
    edges = []
    for i, j in zip(*np.nonzero(np.triu(keep, k=1)), strict=True):
        a, b = adj[i, j], adj[j, i]
        edges.append((int(i), int(j), float(a if abs(a) >= abs(b) else b)))
    return edges


def _draw_graph(
    ax: Axes,
    rgb: np.ndarray,
    adj: np.ndarray,
    n: int,
    edge_top_k: int | None,
    edge_threshold: float | None,
) -> str:
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    h, w = rgb.shape[:2]
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    ax.imshow(np.repeat(grey[..., None], 3, axis=-1) * 0.55 + 0.4, vmin=0, vmax=1)
    for t in range(1, n):
        ax.axvline(t * w / n, color="white", linewidth=1.0, alpha=0.9)
        ax.axhline(t * h / n, color="white", linewidth=1.0, alpha=0.9)
    # Node i * n + j is grid row i, column j (PatchPartition's row-major order).
    rows, cols = np.divmod(np.arange(n * n), n)
    cx, cy = (cols + 0.5) * w / n, (rows + 0.5) * h / n
    edges = _graph_edges(adj, edge_top_k, edge_threshold)
    pos_c, neg_c = OKABE_ITO["orange"], OKABE_ITO["sky_blue"]
    if edges:
        top = max(abs(e[2]) for e in edges) or 1.0
        rel = np.array([abs(e[2]) / top for e in edges])
        segs = [[(cx[i], cy[i]), (cx[j], cy[j])] for i, j, _ in edges]
        colours = [
            (*_hex_rgb(pos_c if e[2] >= 0 else neg_c), 0.25 + 0.7 * r)
            for e, r in zip(edges, rel, strict=True)
        ]
        ax.add_collection(
            LineCollection(
                segs, colors=colours, linewidths=0.6 + 4.4 * rel, capstyle="round", zorder=2
            )
        )
    diag = np.diag(adj)
    dmax = float(np.abs(diag).max()) or 1.0
    sizes = 25 + 220 * np.abs(diag) / dmax
    node_colours = [pos_c if d >= 0 else neg_c for d in diag]
    ax.scatter(cx, cy, s=sizes, c=node_colours, edgecolors="black", linewidths=0.8, zorder=3)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    handles = [
        Line2D([], [], color=pos_c, linewidth=3, label="A > 0"),
        Line2D([], [], color=neg_c, linewidth=3, label="A < 0"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="black",
            label="node size = |self-loop|",
        ),
    ]
    if not any(e[2] < 0 for e in edges) and not (diag < 0).any():
        handles.pop(1)  # no negative weight is drawn
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=3,
        fontsize=7,
        frameon=True,
        framealpha=0.85,
        borderaxespad=0.2,
        handlelength=1.4,
        columnspacing=1.0,
    )
    which = (
        f"|A| > {edge_threshold:g}" if edge_threshold is not None else f"top-{edge_top_k} per node"
    )
    return f"LSAM learned graph, {n}x{n} patches\nedges: {which}"


def _hex_rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.lstrip("#")
    r, g, b = (int(colour[i : i + 2], 16) / 255.0 for i in (0, 2, 4))
    return r, g, b


def _fmt_labels(scores: Mapping[str, float], per_line: int) -> list[str]:
    items = sorted(scores.items(), key=lambda kv: -kv[1])
    words = [f"{k} {v:.2f}" for k, v in items]
    if not words:
        return ["none"]
    return [", ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]


def plot_prediction(
    image: Any,
    boxes: Any,
    predictions: Sequence[Mapping[str, float]],
    *,
    attention_maps: Any = None,
    body_weights: Any = None,
    adjacency: Any = None,
    partition: int | None = None,
    true_labels: Sequence[Sequence[str] | None] | None = None,
    path: PathLike | None = None,
    categories: Sequence[str] | None = EMOTIC_CATEGORIES,
    edge_top_k: int | None = 3,
    edge_threshold: float | None = None,
    labels_per_line: int = 3,
    tag_labels: int = 3,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """The paper's Fig. 2 for one image, plus DAG-Net's attention outputs.

    Panels, left to right (wrapping after three when there are many persons):

    1. the image with each person's box and number, box and predictions in
       blue, ground truth in green (the paper's colours);
    2. per person, the GSAM attention map upsampled to the image and overlaid
       as a heatmap, the body box (masked in the context stream) darkened,
       BAM's body weight in the title (see :func:`attention_overlay`);
    3. LSAM's learned patch graph: the N x N grid on the image, one node per
       patch centre, edges whose width and opacity follow :math:`|A_{ij}|`
       (the ``edge_top_k`` strongest per node, or all above
       ``edge_threshold``), node size following the self-loop
       :math:`|A_{ii}|`, colour the sign.

    Below the panels a caption per person lists the box, the body weight, the
    predicted labels with scores (blue) and the true labels (green), with
    "predicted" / "true" written out so colour is never the only cue.

    Args:
        image: RGB image: PIL, ``(H, W, 3)`` / ``(3, H, W)`` array or tensor,
            ``uint8`` or float in [0, 1].
        boxes: ``(P, 4)`` person boxes ``x1, y1, x2, y2`` in image pixels.
        predictions: Per person, ``{category: score}`` of the labels to show
            (e.g. those above threshold); shown by decreasing score.
        attention_maps: ``(P, 1, h, w)`` or ``(P, h, w)`` GSAM maps
            (:attr:`DAGNetOutput.attention_map`), or ``None`` to skip panel 2.
        body_weights: ``(P,)`` BAM weights (:attr:`DAGNetOutput.body_weights`) or ``None``.
        adjacency: ``(N*N, N*N)`` propagation matrix
            (:attr:`DAGNetOutput.adjacency`), or ``None`` to skip panel 3.
        partition: Patches per side N (``model.partition``); inferred from the
            adjacency's size when ``None``.
        true_labels: Per person, the ground-truth category names (or ``None``).
        path: Also save the figure as PNG here.
        categories: Valid category names for ``predictions`` / ``true_labels``;
            ``None`` accepts any name (for models with other label sets).
        edge_top_k: Edges drawn per node (strongest :math:`|A_{ij}|`, i != j).
        edge_threshold: Draw every edge with :math:`|A_{ij}|` above this instead.
        labels_per_line: Predicted labels per caption line.
        tag_labels: Labels named in the tags on the image (the rest as "+k").
        figsize: Inches (width, height); default fits the panels and captions.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Raises:
        ValueError: Shapes disagree (one prediction, map, weight and label set
            per box; adjacency ``(N*N, N*N)`` for ``partition``), a box is
            empty, or a category name is unknown.

    Example:
        >>> out = model(body, context)  # doctest: +SKIP
        >>> fig = plot_prediction(img, [(10, 20, 80, 200)], [{"Happiness": 0.8}],
        ...                       attention_maps=out.attention_map,
        ...                       body_weights=out.body_weights, adjacency=out.adjacency,
        ...                       partition=model.partition, true_labels=[["Happiness"]],
        ...                       path="pred.png")  # doctest: +SKIP
    """
    from matplotlib import patheffects
    from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker
    from matplotlib.patches import Rectangle

    rgb = _image_to_float(image)
    h, w = rgb.shape[:2]
    box_arr = _to_numpy(boxes, "plot_prediction(boxes)")
    if box_arr.ndim == 1 and box_arr.size == 4:
        box_arr = box_arr[None]
    if box_arr.ndim != 2 or box_arr.shape[1] != 4 or box_arr.shape[0] == 0:
        raise ValueError(
            f"plot_prediction(boxes=...) must be (P, 4) with P >= 1, got {box_arr.shape}"
        )
    n_people = box_arr.shape[0]
    box_list = [_check_box(b, f"plot_prediction(boxes[{i}])") for i, b in enumerate(box_arr)]

    preds = [dict(p) for p in _per_person(predictions, n_people, "predictions")]
    for i, p in enumerate(preds):
        _check_categories(list(p), f"plot_prediction(predictions[{i}])", categories)
    truths: list[list[str] | None] = [None] * n_people
    if true_labels is not None:
        truths = [
            None if t is None else [str(x) for x in t]
            for t in _per_person(true_labels, n_people, "true_labels")
        ]
        for i, t in enumerate(truths):
            if t is not None:
                _check_categories(t, f"plot_prediction(true_labels[{i}])", categories)
    weights: list[float | None] = [None] * n_people
    if body_weights is not None:
        bw = _to_numpy(body_weights, "plot_prediction(body_weights)").reshape(-1)
        weights = [float(v) for v in _per_person(bw, n_people, "body_weights")]
    maps: list[Any] = []
    if attention_maps is not None:
        maps = _per_person(attention_maps, n_people, "attention_maps")
    adj = None
    if adjacency is not None:
        adj = _to_numpy(adjacency, "plot_prediction(adjacency)")
        if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
            raise ValueError(
                f"plot_prediction(adjacency=...) must be a square (N*N, N*N) matrix, "
                f"got shape {adj.shape}"
            )
        if partition is None:
            partition = math.isqrt(adj.shape[0])
            if partition * partition != adj.shape[0]:
                raise ValueError(
                    f"plot_prediction(adjacency=...) has {adj.shape[0]} nodes, not a square "
                    "number N*N; pass partition=N"
                )
        if int(partition) < 1 or adj.shape != (partition**2, partition**2):
            raise ValueError(
                f"plot_prediction(adjacency=...) has shape {adj.shape} but partition={partition} "
                f"needs ({partition**2}, {partition**2})"
            )

    panels = (
        ["image"] + [f"att{i}" for i in range(len(maps))] + (["graph"] if adj is not None else [])
    )
    ncols = len(panels) if len(panels) <= 4 else 3
    nrows = math.ceil(len(panels) / ncols)
    panel_w = 4.2
    panel_h = panel_w * h / w + 0.35
    lines_per_person = (
        1
        + max(len(_fmt_labels(p, labels_per_line)) for p in preds)
        + int(any(t is not None for t in truths))
    )
    people_per_row = min(n_people, ncols)
    caption_rows = math.ceil(n_people / people_per_row)
    caption_h = 0.1 + caption_rows * (0.17 * lines_per_person + 0.12)
    if figsize is None:
        figsize = (panel_w * ncols, panel_h * nrows + caption_h + 0.4)
    fig = _new_figure(figsize, dpi)
    gs = fig.add_gridspec(nrows + 1, ncols, height_ratios=[panel_h] * nrows + [caption_h])

    def panel_ax(k: int) -> Axes:
        ax = fig.add_subplot(gs[k // ncols, k % ncols])
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    # Panel 1, as the paper's Fig. 2: a blue tag of predicted labels above each
    # person, a green tag of true labels below; the full caption is under the panels.
    ax = panel_ax(0)
    ax.imshow(rgb, vmin=0, vmax=1)
    halo = [patheffects.withStroke(linewidth=3.2, foreground="black")]
    for i, (x1, y1, x2, y2) in enumerate(box_list):
        rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.6)
        rect.set_path_effects(halo)
        ax.add_patch(rect)
        names = [k for k, _ in sorted(preds[i].items(), key=lambda kv: -kv[1])]
        short = ", ".join(names[:tag_labels]) + (
            f" +{len(names) - tag_labels}" if len(names) > tag_labels else ""
        )
        tags = [(f"{i + 1}: {short or 'none'}", _PRED_COLOUR, y1, "bottom")]
        if truths[i] is not None:
            tshort = ", ".join(truths[i][:tag_labels]) + (
                f" +{len(truths[i]) - tag_labels}" if len(truths[i]) > tag_labels else ""
            )
            tags.append((f"{i + 1}: {tshort or 'none'}", _TRUE_COLOUR, y2, "top"))
        for text, colour, y, va in tags:
            # Inside the box when there is no room outside it.
            if va == "bottom" and y < 0.08 * h:
                va = "top"
            elif va == "top" and y > 0.92 * h:
                va = "bottom"
            ax.text(
                x1,
                y,
                text,
                color="white",
                fontsize=7.5,
                fontweight="bold",
                va=va,
                ha="left",
                clip_on=True,
                bbox=dict(boxstyle="square,pad=0.25", facecolor=colour, edgecolor="none"),
            )
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title("Predicted (blue) and true (green) labels", fontsize=10)

    # Panel 2: attention per person.
    for i, amap in enumerate(maps):
        ax = panel_ax(1 + i)
        ax.imshow(attention_overlay(rgb, amap, box=box_list[i]), vmin=0, vmax=1)
        x1, y1, x2, y2 = box_list[i]
        ax.add_patch(
            Rectangle(
                (x1, y1),
                x2 - x1,
                y2 - y1,
                fill=False,
                edgecolor="white",
                linewidth=1.2,
                linestyle="--",
            )
        )
        ax.text(
            (x1 + x2) / 2,
            (y1 + y2) / 2,
            "body\n(masked)",
            color="white",
            fontsize=7,
            ha="center",
            va="center",
        )
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        wtxt = "" if weights[i] is None else f", body weight λ={weights[i]:.2f}"
        ax.set_title(f"Person {i + 1}: GSAM attention{wtxt}", fontsize=10)
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        sm = ScalarMappable(norm=Normalize(0, 1), cmap=_ATTENTION_CMAP)
        cbar = fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, shrink=0.85)
        cbar.set_ticks([0, 1], labels=["low", "high"])
        cbar.ax.tick_params(labelsize=7)

    # Panel 3: learned patch graph.
    if adj is not None:
        assert partition is not None
        ax = panel_ax(len(panels) - 1)
        ax.set_title(
            _draw_graph(ax, rgb, adj, int(partition), edge_top_k, edge_threshold), fontsize=10
        )
    for k in range(len(panels), nrows * ncols):  # unused grid cells stay blank
        fig.add_subplot(gs[k // ncols, k % ncols]).set_axis_off()

    # Captions.
    cap = fig.add_subplot(gs[nrows, :])
    cap.set_axis_off()
    blocks = []
    for i in range(n_people):
        x1, y1, x2, y2 = box_list[i]
        head = f"Person {i + 1}  box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})"
        if weights[i] is not None:
            head += f"  body weight λ = {weights[i]:.3f}"
        rows = [TextArea(head, textprops=dict(fontsize=9, fontweight="bold"))]
        labelled = [("predicted:", _fmt_labels(preds[i], labels_per_line), _PRED_COLOUR)]
        if truths[i] is not None:
            labelled.append(("true:", [", ".join(truths[i]) or "none"], _TRUE_COLOUR))
        for key, lines, colour in labelled:
            props = dict(fontsize=9, color=colour)
            body = VPacker(
                children=[TextArea(line, textprops=props) for line in lines],
                align="left",
                pad=0,
                sep=2,
            )
            rows.append(
                HPacker(children=[TextArea(key, textprops=props), body], align="top", pad=0, sep=4)
            )
        blocks.append(VPacker(children=rows, align="left", pad=0, sep=2))
    cap.add_artist(
        AnchoredOffsetbox(
            loc="upper left",
            child=VPacker(
                children=[
                    HPacker(children=blocks[r : r + people_per_row], align="top", pad=0, sep=28)
                    for r in range(0, n_people, people_per_row)
                ],
                align="left",
                pad=0,
                sep=8,
            ),
            frameon=False,
            bbox_to_anchor=(0, 1),
            bbox_transform=cap.transAxes,
            borderpad=0,
        )
    )
    _save(fig, path)
    return fig


def plot_partition_sweep(
    results: Mapping[str, Mapping[int, float]],
    path: PathLike | None = None,
    *,
    title: str = "Effect of the partition N (cf. the paper's Fig. 3)",
    figsize: tuple[float, float] = (5.6, 3.8),
    dpi: float = 100,
) -> Figure:
    """Test mAP against the partition size N, one line per variant (the paper's Fig. 3).

    Args:
        results: ``{variant label: {N: mAP as a fraction}}``, e.g.
            ``{"w/ GCN": {2: 0.29, 3: 0.295}, "w/o GCN": {...}}``; NaN values are gaps.
        path: Also save the figure as PNG here.
        title: Figure title.
        figsize: Inches (width, height).
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Raises:
        ValueError: ``results`` is empty, a variant has no point, or an N is below 1.

    Example:
        >>> fig = plot_partition_sweep({"w/ GCN": {2: 0.28, 4: 0.30}})
        >>> fig.axes[0].get_xlabel()
        'partition N (N x N patches)'
    """
    if not results or not all(results.values()):
        raise ValueError("plot_partition_sweep(results=...) needs at least one point per variant")
    fig = _new_figure(figsize, dpi)
    ax = fig.subplots()
    colours = (OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["bluish_green"],
               OKABE_ITO["orange"], OKABE_ITO["reddish_purple"])
    for i, (label, points) in enumerate(results.items()):
        ns = sorted(points)
        if ns[0] < 1:
            raise ValueError(f"plot_partition_sweep: variant {label!r} has N={ns[0]} < 1")
        ax.plot(ns, [100 * float(points[n]) for n in ns], marker="o", linewidth=1.8,
                color=colours[i % len(colours)], label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("partition N (N x N patches)")
    ax.set_ylabel("test mAP (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(color="0.88", linewidth=0.6)
    ax.legend(frameon=False)
    _save(fig, path)
    return fig

