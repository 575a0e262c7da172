"""Per-category AP of a run beside the published columns of the paper's Table 1."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.emotic.paper import PAPER_TABLE1, PAPER_TABLE1_MAP
from dagnet_layers.figures._style import (
    _OURS_COLOUR,
    _REFERENCE_COLOURS,
    PathLike,
    _check_categories,
    _new_figure,
    _save,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    pass

__all__ = ["plot_ap_comparison"]


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
            as :class:`~dagnet_layers.emotic.metrics.EmoticReport` gives it, or the
            report itself (its protocol then goes into the title). Categories
            not in the mapping count as missing.
        reference: ``{method: {category: AP %}}`` in *percent*, like
            :data:`~dagnet_layers.emotic.paper.PAPER_TABLE1` (the default: the four
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
        >>> from dagnet_layers.emotic.data import EMOTIC_CATEGORIES
        >>> ap = {c: 0.3 for c in EMOTIC_CATEGORIES}
        >>> fig = plot_ap_comparison(ap, path="ap.png")  # doctest: +SKIP
    """
    ours_pct, series, reference, protocol = _plan(per_category_ap, reference, ours_label)
    categories = list(EMOTIC_CATEGORIES)
    if figsize is None:
        figsize = (9.0, 1.6 + len(categories) * (0.12 + 0.085 * len(series)))
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    any_missing, finite_max = _draw(ax, series, reference, len(categories))
    _annotate(ax, categories, finite_max)
    if title is None:
        ours_map = float(np.nanmean(ours_pct)) if (~np.isnan(ours_pct)).any() else float("nan")
        proto = f", {protocol} AP protocol" if protocol else ""
        title = f"Per-category AP on EMOTIC: {ours_label} mAP {ours_map:.2f}%{proto}"
        if reference and all(m in PAPER_TABLE1 for m in reference):
            title += "\nother columns: published results, DAG-Net paper Table 1"
    fig.suptitle(title, fontsize=12)
    _legend(fig, ax, len(series) + int(any_missing))
    _save(fig, path)
    return fig


_Series = list[tuple[str, np.ndarray, str]]


def _plan(per_category_ap: Any, reference: Mapping[str, Mapping[str, float]] | None,
          ours_label: str) -> tuple[np.ndarray, _Series, dict[str, Any], str | None]:  # fmt: skip
    """Check the inputs; the run's AP in percent and every (label, values, colour) series."""
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
    ours_pct = np.array([ours.get(c, float("nan")) for c in categories], dtype=float) * 100.0
    series: _Series = [(ours_label, ours_pct, _OURS_COLOUR)]
    for i, (method, column) in enumerate(reference.items()):
        vals = np.array(
            [float("nan") if column.get(c) is None else float(column[c]) for c in categories]
        )
        series.append((method, vals, _REFERENCE_COLOURS[i % len(_REFERENCE_COLOURS)]))
    return ours_pct, series, reference, protocol


def _draw(ax: Any, series: _Series, reference: dict[str, Any],
          n_categories: int) -> tuple[bool, float]:  # fmt: skip
    """One bar per category per series (an ``x`` and "n/a" where there is no AP); returns
    whether any was missing and the largest AP drawn."""
    group = 0.8
    bar_h = group / len(series)
    y = np.arange(n_categories, dtype=float)
    any_missing = False
    finite_max = 0.0
    for s, (label, vals, colour) in enumerate(series):
        offsets = y - group / 2 + bar_h * (s + 0.5)
        finite = ~np.isnan(vals)
        ax.barh(offsets[finite], vals[finite], height=bar_h * 0.92, color=colour,
                edgecolor="white", linewidth=0.3,
                label=_legend_label(label, vals, reference))  # fmt: skip
        if finite.any():
            finite_max = max(finite_max, float(np.nanmax(vals)))
        if s == 0:
            for yy, v in zip(offsets[finite], vals[finite], strict=True):
                ax.text(v + 0.6, yy, f"{v:.1f}", va="center", ha="left", fontsize=6.5, color=colour)
        if (~finite).any():
            any_missing = True
            ax.scatter(np.zeros((~finite).sum()), offsets[~finite], marker="x", s=22,
                       color=colour, linewidths=1.2, zorder=3)  # fmt: skip
            for yy in offsets[~finite]:
                ax.text(1.2, yy, "n/a", va="center", ha="left", fontsize=6.5, color=colour)
    if any_missing:
        ax.scatter([], [], marker="x", color="0.3", label="n/a: no AP (no positives / missing)")
    return any_missing, finite_max


def _legend_label(label: str, vals: np.ndarray, reference: dict[str, Any]) -> str:
    """``label (mAP x.xx%)``: the mean over the categories with a number, or the paper's
    printed mAP for an unchanged published column (identical up to rounding)."""
    finite = ~np.isnan(vals)
    mean = float(np.nanmean(vals)) if finite.any() else float("nan")
    published = PAPER_TABLE1_MAP.get(label) if reference and label in PAPER_TABLE1 else None
    if published is not None and dict(reference.get(label, {})) == PAPER_TABLE1[label]:
        mean = published
    return f"{label} (mAP {mean:.2f}%)" if finite.any() else f"{label} (no AP)"


def _annotate(ax: Any, categories: list[str], finite_max: float) -> None:
    """Axes, ticks and grid: the official order top to bottom."""
    y = np.arange(len(categories), dtype=float)
    ax.set_yticks(y, categories, fontsize=9)
    ax.set_ylim(len(categories) - 0.5, -0.5)  # official order, top to bottom
    ax.set_xlim(0, min(100.0, max(finite_max, 1.0) * 1.08 + 3))
    ax.set_xlabel("average precision (%)")
    ax.grid(axis="x", color="0.85", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)


def _legend(fig: Figure, ax: Any, n_entries: int) -> None:
    """The legend below the axes: bars first, the n/a marker last (matplotlib lists
    scatters before bars)."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("n/a"))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="outside lower center",
        ncols=min(n_entries, 3),
        fontsize=8.5,
        frameon=False,
    )
