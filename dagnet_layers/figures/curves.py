"""Training curves: loss, validation mAP and learning rate per epoch from a run's ``log.csv``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dagnet_layers.emotic.paper import PAPER_TABLE1_MAP
from dagnet_layers.figures._style import (
    OKABE_ITO,
    PathLike,
    _new_figure,
    _save,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_training_curves"]


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
    epoch, losses, val_map, lr, speed = _plan(log_csv)
    panels = [
        p
        for p, have in (("loss", losses), ("map", val_map is not None), ("lr", lr is not None))
        if have
    ]
    if not panels:
        raise ValueError(
            f"plot_training_curves(log_csv=...): {log_csv} has none of the columns train_loss, "
            f"val_loss, val_map, lr; found {sorted(_read_log(log_csv))}"
        )
    if figsize is None:
        figsize = (4.2 * len(panels), 3.6)
    fig = _new_figure(figsize, dpi)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "loss":
            _draw_losses(ax, epoch, losses)
        elif panel == "map":
            assert val_map is not None
            _draw_map(ax, epoch, val_map, reference_map)
        else:
            assert lr is not None
            _draw_lr(ax, epoch, lr)
    if title is None:
        title = f"Training log: {Path(log_csv).name}"
    if speed is not None:
        title += f"  (median {np.nanmedian(speed):,.0f} samples/s)"
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
    return fig


_STYLE: dict[str, Any] = dict(marker="o", markersize=3, linewidth=1.6)


def _plan(log_csv: PathLike) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None,
                                      np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """The log's columns as float arrays: epoch, the losses present, val mAP, lr, speed
    (``None`` for a column that is absent or has no number)."""
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
    present = {k: v for k, v in losses.items() if v is not None}
    return epoch, present, col("val_map"), col("lr"), col("samples_per_s")


def _prepare(ax: Axes, ylabel: str, subtitle: str) -> None:
    """Integer epochs, labels, a light grid, no top or right spine."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(subtitle, fontsize=10)
    ax.grid(color="0.88", linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_losses(ax: Axes, epoch: np.ndarray, losses: dict[str, np.ndarray]) -> None:
    colours = {"train_loss": OKABE_ITO["blue"], "val_loss": OKABE_ITO["vermillion"]}
    for name, values in losses.items():
        ok = ~np.isnan(values)
        ax.plot(epoch[ok], values[ok], color=colours[name], label=name.replace("_", " "),
                **_STYLE)  # fmt: skip
    _prepare(ax, "loss", "Loss")
    ax.legend(frameon=False, fontsize=8)


def _draw_map(ax: Axes, epoch: np.ndarray, val_map: np.ndarray,
              reference_map: float | None) -> None:  # fmt: skip
    """Validation mAP in percent (a fraction when every value is <= 1), the best epoch
    circled, the paper's number dashed."""
    ok = ~np.isnan(val_map)
    as_pct = val_map * 100.0 if np.nanmax(val_map) <= 1.0 else val_map
    ax.plot(epoch[ok], as_pct[ok], color=OKABE_ITO["bluish_green"], label="val mAP", **_STYLE)
    best = int(np.nanargmax(as_pct))
    ax.scatter([epoch[best]], [as_pct[best]], s=90, facecolors="none", zorder=3,
               edgecolors=OKABE_ITO["black"], linewidths=1.2,
               label=f"best {as_pct[best]:.2f}% (epoch {epoch[best]:g})")  # fmt: skip
    if reference_map is not None:
        ax.axhline(reference_map, color=OKABE_ITO["reddish_purple"], linestyle="--",
                   linewidth=1.2, label=f"DAG-Net paper {reference_map:.2f}%")  # fmt: skip
    _prepare(ax, "mAP (%)", "Validation mAP")
    ax.legend(frameon=False, fontsize=8, loc="lower right")


def _draw_lr(ax: Axes, epoch: np.ndarray, lr: np.ndarray) -> None:
    """The learning rate, on a log scale when it spans more than two decades."""
    ok = ~np.isnan(lr)
    ax.plot(epoch[ok], lr[ok], color=OKABE_ITO["orange"], **_STYLE)
    positive = lr[ok][lr[ok] > 0]
    if positive.size == ok.sum() and positive.max() / positive.min() > 100:
        ax.set_yscale("log")  # step decays span decades
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _prepare(ax, "learning rate", "Learning rate")
