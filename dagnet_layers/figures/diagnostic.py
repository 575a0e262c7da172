"""Figures of the diagnostic benchmark: each module read against known cues.

- :func:`plot_module_arms`: one panel per module, the primary metric of every arm
  (mean and 95% CI over seeds, a dot per seed), coloured by role (floor, paper,
  oracle...), with the chance level;
- :func:`plot_image_grid`: example scenes in rows with captions;
- :func:`plot_family_ap`: AP per cue family (body, global, local) for each preset,
  the mean over seeds with every seed's value as a dot;
- :func:`plot_body_weights`: BAM's body weights, one histogram per kind of body
  (clean, occluded, blurred, no body cue);
- :func:`plot_attention_on_cues`: GSAM maps over context images with the cue
  regions outlined;
- :func:`plot_adjacency_matrices`: learned LSAM adjacencies as heat maps, beside
  the one they started from.

The data is synthetic: every default title says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dagnet_layers.figures._style import (
    OKABE_ITO,
    PathLike,
    _image_to_float,
    _new_figure,
    _save,
    _to_numpy,
)
from dagnet_layers.figures.prediction import attention_overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ROLE_COLOURS",
    "plot_adjacency_matrices",
    "plot_attention_on_cues",
    "plot_body_weights",
    "plot_family_ap",
    "plot_image_grid",
    "plot_module_arms",
]

_FAMILY_COLOURS = (OKABE_ITO["vermillion"], OKABE_ITO["sky_blue"], OKABE_ITO["bluish_green"],
                   OKABE_ITO["orange"], OKABE_ITO["reddish_purple"])  # fmt: skip
_REGION_COLOURS = {"echo": OKABE_ITO["orange"], "local": OKABE_ITO["sky_blue"],
                   "sky": OKABE_ITO["bluish_green"], "target": OKABE_ITO["bluish_green"],
                   "candidates": OKABE_ITO["sky_blue"]}  # fmt: skip
#: The colour of each arm role in :func:`plot_module_arms`.
ROLE_COLOURS: dict[str, str] = {
    "floor": OKABE_ITO["black"], "paper": OKABE_ITO["vermillion"],
    "oracle": OKABE_ITO["bluish_green"], "control": OKABE_ITO["sky_blue"],
    "ablation": OKABE_ITO["orange"], "variant": OKABE_ITO["blue"],
}  # fmt: skip


def plot_module_arms(
    panels: Mapping[str, Mapping[str, Any]],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC): each module's arms",
    panel_inches: tuple[float, float] = (4.2, 3.6),
    dpi: float = 100,
) -> Figure:
    """One panel per module: every arm's primary metric, mean and 95% CI, a dot per seed.

    Args:
        panels: ``{panel title: {"arms": [{"name", "role", "values" (per seed,
            fractions; ``None`` left out), "ci" ([low, high] or ``None``)}],
            "chance": float or None, "ylabel": str}}``.
        path: Also save the figure as PNG here.
        title: Figure title.
        panel_inches: Inches (width, height) of one panel.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> fig = plot_module_arms({"BAM": {"arms": [
        ...     {"name": "none", "role": "floor", "values": [0.8, 0.9], "ci": [0.2, 1.5]},
        ...     {"name": "oracle", "role": "oracle", "values": [1.0, 1.0], "ci": None}],
        ...     "chance": 1 / 6, "ylabel": "accuracy (%)"}})
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['none', 'oracle']
    """
    if not panels:
        raise ValueError("plot_module_arms(panels=...) needs at least one panel")
    from matplotlib.lines import Line2D

    fig = _new_figure((panel_inches[0] * len(panels), panel_inches[1] + 0.9), dpi)
    axes = np.atleast_1d(fig.subplots(1, len(panels))).reshape(-1)
    roles: dict[str, str] = {}
    for ax, (label, panel) in zip(axes, panels.items(), strict=True):
        arms = list(panel.get("arms", ()))
        for i, a in enumerate(arms):
            colour = ROLE_COLOURS.get(a["role"], OKABE_ITO["black"])
            roles[a["role"]] = colour
            values = np.array([np.nan if v is None else 100 * float(v) for v in a["values"]])
            values = values[np.isfinite(values)]
            if values.size == 0:
                ax.text(i, 2, "n/a", ha="center", fontsize=6, rotation=90)
                continue
            ax.bar(i, values.mean(), 0.7, color=colour, alpha=0.35)
            if a.get("ci"):
                lo, hi = (100 * float(v) for v in a["ci"])
                ax.errorbar(i, values.mean(), yerr=[[values.mean() - lo], [hi - values.mean()]],
                            color=colour, linewidth=1.2, capsize=3)  # fmt: skip
            ax.scatter(np.full(values.size, i), values, s=9, color=colour, zorder=3)
        if panel.get("chance") is not None:
            ax.axhline(100 * float(panel["chance"]), color="0.4", linestyle=":", linewidth=1)
            ax.text(len(arms) - 0.5, 100 * float(panel["chance"]), "chance", fontsize=6,
                    ha="right", va="bottom", color="0.3")  # fmt: skip
        ax.set_xticks(range(len(arms)), [a["name"] for a in arms], rotation=40, ha="right",
                      fontsize=7)  # fmt: skip
        ax.set_ylim(0, 105)
        ax.set_ylabel(panel.get("ylabel", "primary metric (%)"), fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
    handles = [Line2D([], [], color=c, marker="s", linestyle="", label=r) for r, c in
               roles.items()]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7,
               frameon=False, title="bars: mean over seeds, whiskers: 95% CI, dots: seeds",
               title_fontsize=7)  # fmt: skip
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    return fig


def plot_image_grid(
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC)",
    panel_inches: float = 1.3,
    dpi: float = 100,
) -> Figure:
    """Images in labelled rows, each with a caption (e.g. a few scenes of each set).

    Args:
        rows: ``{row label: [{"image": (H, W, 3) uint8 or float, "caption": str}]}``.
        path: Also save the figure as PNG here.
        title: Figure title.
        panel_inches: Side of one image.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> fig = plot_image_grid({"a": [{"image": np.zeros((8, 8, 3)), "caption": "x"}]})
        >>> fig.axes[0].get_title()
        'x'
    """
    if not rows or not any(rows.values()):
        raise ValueError("plot_image_grid(rows=...) needs at least one image")
    columns = max(len(v) for v in rows.values())
    fig = _new_figure((panel_inches * columns + 0.8, panel_inches * len(rows) + 0.7), dpi)
    axes = np.atleast_2d(fig.subplots(len(rows), columns, squeeze=False))
    for r, (label, items) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(items):
                ax.set_axis_off()
                continue
            ax.imshow(_image_to_float(items[c]["image"]), interpolation="nearest")
            ax.set_title(items[c].get("caption", ""), fontsize=6)
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
    return fig


def plot_family_ap(
    results: Mapping[str, Mapping[str, Sequence[float | None]]],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC):\ntest AP per cue family",
    ylabel: str = "test mAP of the family's categories (%)",
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Grouped bars: one group per preset, one bar per cue family (mean over seeds).

    Args:
        results: ``{preset: {family: [value per seed]}}`` with values as fractions
            in [0, 1]; ``None`` or NaN values are left out of the mean and the dots.
        path: Also save the figure as PNG here.
        title: Figure title.
        ylabel: Y axis label.
        figsize: Inches (width, height); default grows with the presets.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> fig = plot_family_ap({"baseline": {"body": [0.5, 0.6], "local": [0.3, 0.2]},
        ...                       "full": {"body": [0.7, 0.7], "local": [0.4, 0.5]}})
        >>> [t.get_text() for t in fig.axes[0].get_xticklabels()]
        ['baseline', 'full']
    """
    if not results:
        raise ValueError("plot_family_ap(results=...) needs at least one preset")
    presets = list(results)
    families = list(dict.fromkeys(f for r in results.values() for f in r))
    if not families:
        raise ValueError("plot_family_ap(results=...) has no family values")
    fig = _new_figure(figsize or (max(5.0, 2.2 + 0.9 * len(presets)), 3.8), dpi)
    ax = fig.subplots()
    width = 0.8 / len(families)
    for j, family in enumerate(families):
        colour = _FAMILY_COLOURS[j % len(_FAMILY_COLOURS)]
        for i, preset in enumerate(presets):
            values = np.array([np.nan if v is None else 100 * float(v)
                               for v in results[preset].get(family, [])])  # fmt: skip
            values = values[np.isfinite(values)]
            x = i - 0.4 + width * (j + 0.5)
            if values.size == 0:
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
                continue
            ax.bar(x, values.mean(), width * 0.9, color=colour, alpha=0.8,
                   label=family if i == 0 else None)  # fmt: skip
            if values.size > 1:
                ax.errorbar(x, values.mean(), yerr=values.std(ddof=1), color="black",
                            linewidth=0.8, capsize=2)  # fmt: skip
            ax.scatter(np.full(values.size, x), values, s=7, color="black", zorder=3)
    ax.set_xticks(range(len(presets)), presets, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", color="0.88", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.legend(title="dots: seeds; bars: mean ± sd", fontsize=7, title_fontsize=7,
              frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # fmt: skip
    _save(fig, path)
    return fig


def plot_body_weights(
    weights: Mapping[str, Any],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC):\nBAM body weight by kind of body",
    bins: int = 20,
    figsize: tuple[float, float] = (5.6, 3.6),
    dpi: float = 100,
) -> Figure:
    """One step histogram of BAM weights per kind of body (e.g. clean vs corrupted).

    Args:
        weights: ``{kind: weights}``; each a sequence of values in [0, 1]. Empty
            kinds are listed in the legend with n = 0.
        path: Also save the figure as PNG here.
        title: Figure title.
        bins: Histogram bins over the range of all weights.
        figsize: Inches (width, height).
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> fig = plot_body_weights({"clean": [0.8, 0.9], "occluded": [0.2, 0.3]})
        >>> fig.axes[0].get_xlabel()
        'BAM body weight λ'
    """
    if not weights:
        raise ValueError("plot_body_weights(weights=...) needs at least one kind")
    arrays = {k: _to_numpy(v, f"weights[{k!r}]").reshape(-1) for k, v in weights.items()}
    every = np.concatenate([a for a in arrays.values() if a.size] or [np.zeros(1)])
    lo, hi = float(every.min()), float(every.max())
    if hi - lo < 1e-3:  # all weights (almost) equal: a narrow window around them
        lo, hi = lo - 5e-4, hi + 5e-4
    edges = np.linspace(lo, hi, bins + 1)
    fig = _new_figure(figsize, dpi)
    ax = fig.subplots()
    for i, (kind, values) in enumerate(arrays.items()):
        colour = _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)]
        label = f"{kind} (n={values.size}" + (f", mean {values.mean():.3f})" if values.size
                                                else ")")  # fmt: skip
        if values.size:
            ax.hist(values, bins=edges, histtype="step", linewidth=1.8, color=colour,
                    label=label, density=True)  # fmt: skip
        else:
            ax.plot([], [], color=colour, label=label)
    ax.set_xlabel("BAM body weight λ")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.grid(color="0.9", linewidth=0.6)
    ax.legend(fontsize=7, frameon=False)
    _save(fig, path)
    return fig


def plot_attention_on_cues(
    items: Sequence[Mapping[str, Any]],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC): GSAM attention and the cue regions",
    columns: int = 4,
    panel_inches: float = 2.0,
    dpi: float = 100,
) -> Figure:
    """GSAM maps over context images, each cue region outlined in its colour.

    Each map is min-max scaled for display, so the caption gives its actual range:
    a map whose range is narrow attends almost uniformly, however bright it looks.

    Args:
        items: Per panel a mapping with ``image`` (the context, RGB), ``attention``
            (``(h, w)`` map; ``None`` or absent shows the image alone, the body box
            outlined), ``regions`` (``{region: [boxes in image pixels]}``,
            regions of ``"echo"``, ``"local"``, ``"sky"``), optional ``body_box``
            (drawn dark: the context stream sees it masked) and ``caption``.
        path: Also save the figure as PNG here.
        title: Figure title.
        columns: Panels per row.
        panel_inches: Side of one panel.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> item = {"image": np.zeros((32, 32, 3), np.uint8), "attention": np.eye(4),
        ...         "regions": {"local": [(2, 2, 10, 10)]}, "caption": "a test"}
        >>> len(plot_attention_on_cues([item]).axes)
        1
    """
    if not items:
        raise ValueError("plot_attention_on_cues(items=...) needs at least one panel")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    columns = max(1, min(int(columns), len(items)))
    rows = -(-len(items) // columns)
    fig = _new_figure((panel_inches * columns, panel_inches * rows + 0.6), dpi)
    axes = np.atleast_1d(fig.subplots(rows, columns)).reshape(-1)
    seen: set[str] = set()
    for ax, item in zip(axes, items, strict=False):
        caption = item.get("caption", "")
        if item.get("attention") is None:  # the scene itself, the body outlined
            ax.imshow(_image_to_float(item["image"]))
            if item.get("body_box") is not None:
                x1, y1, x2, y2 = item["body_box"]
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                       edgecolor="white", linewidth=1.2, linestyle="--"))
        else:
            att = _to_numpy(item["attention"], "attention")
            ax.imshow(attention_overlay(item["image"], att, box=item.get("body_box")))
            caption = f"{caption}\nmap {att.min():.3f}-{att.max():.3f}".strip()
        for region, boxes in (item.get("regions") or {}).items():
            colour = _REGION_COLOURS.get(region, OKABE_ITO["yellow"])
            for x1, y1, x2, y2 in boxes:
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                       edgecolor=colour, linewidth=1.4))  # fmt: skip
            seen.add(region)
        ax.set_title(caption, fontsize=6)
        ax.set_axis_off()
    for ax in axes[len(items):]:
        ax.set_axis_off()
    handles = [Line2D([], [], color=_REGION_COLOURS.get(r, OKABE_ITO["yellow"]), linewidth=2,
                      label=r) for r in sorted(seen)]  # fmt: skip
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7,
                   frameon=False)  # fmt: skip
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
    return fig


def plot_adjacency_matrices(
    matrices: Mapping[str, Any],
    path: PathLike | None = None,
    *,
    title: str = "SYNTHETIC diagnostic scenes (not EMOTIC): LSAM adjacency (rows: receiving patch)",
    panel_inches: float = 2.6,
    dpi: float = 100,
) -> Figure:
    """Adjacency matrices side by side on one symmetric colour scale (e.g. initial vs learned).

    Args:
        matrices: ``{label: (M, M) matrix}``.
        path: Also save the figure as PNG here.
        title: Figure title.
        panel_inches: Side of one panel.
        dpi: Pixels per inch of the saved PNG.

    Returns:
        The figure.

    Example:
        >>> fig = plot_adjacency_matrices({"initial": np.eye(4), "learned": np.ones((4, 4))})
        >>> [ax.get_title() for ax in fig.axes[:2]]
        ['initial', 'learned']
    """
    if not matrices:
        raise ValueError("plot_adjacency_matrices(matrices=...) needs at least one matrix")
    arrays = {k: _to_numpy(v, f"matrices[{k!r}]") for k, v in matrices.items()}
    for label, a in arrays.items():
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(f"plot_adjacency_matrices: {label!r} is not square: {a.shape}")
    top = max(float(np.abs(a).max()) for a in arrays.values()) or 1.0
    fig = _new_figure((panel_inches * len(arrays) + 0.8, panel_inches + 0.6), dpi)
    axes = np.atleast_1d(fig.subplots(1, len(arrays))).reshape(-1)
    image = None
    for ax, (label, a) in zip(axes, arrays.items(), strict=True):
        image = ax.imshow(a, cmap="RdBu_r", vmin=-top, vmax=top)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("sending patch", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("receiving patch", fontsize=7)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="A_ij")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
    return fig
