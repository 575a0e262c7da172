"""Results across runs: test mAP against the partition size N (the paper's Fig. 3)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dagnet_layers.figures._style import (
    OKABE_ITO,
    PathLike,
    _new_figure,
    _save,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    pass

__all__ = ["plot_partition_sweep"]


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
