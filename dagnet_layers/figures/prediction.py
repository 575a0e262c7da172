"""One image's predictions, the paper's Fig. 2, with what the model attended to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dagnet_layers._deps import require
from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.figures._style import (
    _ATTENTION_CMAP,
    _PRED_COLOUR,
    _TRUE_COLOUR,
    PathLike,
    _check_box,
    _check_categories,
    _image_to_float,
    _new_figure,
    _save,
    _to_numpy,
    _upsample,
)
from dagnet_layers.figures.graph import _draw_graph

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["attention_overlay", "plot_prediction"]


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
    rgb = _image_to_float(image)
    h, w = rgb.shape[:2]
    people = _check_people(boxes, predictions, true_labels, body_weights, attention_maps,
                           categories)
    adj, partition = _check_adjacency(adjacency, partition)
    layout = _Layout.plan(h, w, people, adj is not None, labels_per_line)
    fig = _new_figure(figsize or layout.figsize, dpi)
    gs = fig.add_gridspec(layout.nrows + 1, layout.ncols, height_ratios=layout.height_ratios)

    def panel_ax(k: int) -> Axes:
        ax = fig.add_subplot(gs[k // layout.ncols, k % layout.ncols])
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    _draw_labelled_image(panel_ax(0), rgb, people, tag_labels)
    for i, amap in enumerate(people.maps):
        _draw_attention(fig, panel_ax(1 + i), rgb, amap, people.boxes[i], people.weights[i], i)
    if adj is not None:
        assert partition is not None
        ax = panel_ax(layout.n_panels - 1)
        ax.set_title(_draw_graph(ax, rgb, adj, partition, edge_top_k, edge_threshold),
                     fontsize=10)
    for k in range(layout.n_panels, layout.nrows * layout.ncols):  # unused cells stay blank
        fig.add_subplot(gs[k // layout.ncols, k % layout.ncols]).set_axis_off()
    caption = fig.add_subplot(gs[layout.nrows, :])
    caption.set_axis_off()
    _draw_captions(caption, people, labels_per_line, layout.people_per_row)
    _save(fig, path)
    return fig


# ------------------------------------------------------------------ the inputs, checked
@dataclass
class _People:
    """The per-person inputs of :func:`plot_prediction`, checked: one entry per box."""

    boxes: list[np.ndarray]
    preds: list[dict[str, float]]
    truths: list[list[str] | None]
    weights: list[float | None]
    maps: list[Any]  # empty: no attention panels

    def __len__(self) -> int:
        return len(self.boxes)


def _check_people(
    boxes: Any, predictions: Sequence[Mapping[str, float]],
    true_labels: Sequence[Sequence[str] | None] | None, body_weights: Any,
    attention_maps: Any, categories: Sequence[str] | None,
) -> _People:  # fmt: skip
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
    return _People(box_list, preds, truths, weights, maps)


def _check_adjacency(adjacency: Any, partition: int | None) -> tuple[np.ndarray | None, int | None]:
    """The ``(N*N, N*N)`` adjacency and N (inferred when ``partition`` is None)."""
    if adjacency is None:
        return None, partition
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
    return adj, int(partition)


# ------------------------------------------------------------------------------ layout
@dataclass
class _Layout:
    """Where the panels go: a grid of up to four per row (three when wrapping), captions below."""

    n_panels: int
    ncols: int
    nrows: int
    people_per_row: int
    height_ratios: list[float]
    figsize: tuple[float, float]

    @classmethod
    def plan(cls, h: int, w: int, people: _People, graph: bool, labels_per_line: int) -> _Layout:
        n_panels = 1 + len(people.maps) + int(graph)
        ncols = n_panels if n_panels <= 4 else 3
        nrows = math.ceil(n_panels / ncols)
        panel_w = 4.2
        panel_h = panel_w * h / w + 0.35
        lines_per_person = (
            1
            + max(len(_fmt_labels(p, labels_per_line)) for p in people.preds)
            + int(any(t is not None for t in people.truths))
        )
        people_per_row = min(len(people), ncols)
        caption_rows = math.ceil(len(people) / people_per_row)
        caption_h = 0.1 + caption_rows * (0.17 * lines_per_person + 0.12)
        return cls(
            n_panels, ncols, nrows, people_per_row,
            height_ratios=[panel_h] * nrows + [caption_h],
            figsize=(panel_w * ncols, panel_h * nrows + caption_h + 0.4),
        )  # fmt: skip


# ------------------------------------------------------------------------------ panels
def _tag(names: Sequence[str], tag_labels: int) -> str:
    """The first ``tag_labels`` names, and "+k" for the rest."""
    more = f" +{len(names) - tag_labels}" if len(names) > tag_labels else ""
    return ", ".join(names[:tag_labels]) + more


def _draw_labelled_image(ax: Axes, rgb: np.ndarray, people: _People, tag_labels: int) -> None:
    """Panel 1, as the paper's Fig. 2: each box, predicted labels above it, true ones below."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    h, w = rgb.shape[:2]
    ax.imshow(rgb, vmin=0, vmax=1)
    halo = [patheffects.withStroke(linewidth=3.2, foreground="black")]
    for i, (x1, y1, x2, y2) in enumerate(people.boxes):
        rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.6)
        rect.set_path_effects(halo)
        ax.add_patch(rect)
        names = [k for k, _ in sorted(people.preds[i].items(), key=lambda kv: -kv[1])]
        tags = [(f"{i + 1}: {_tag(names, tag_labels) or 'none'}", _PRED_COLOUR, y1, "bottom")]
        truth = people.truths[i]
        if truth is not None:
            tags.append((f"{i + 1}: {_tag(truth, tag_labels) or 'none'}", _TRUE_COLOUR, y2, "top"))
        for text, colour, y, va in tags:
            # Inside the box when there is no room outside it.
            if va == "bottom" and y < 0.08 * h:
                va = "top"
            elif va == "top" and y > 0.92 * h:
                va = "bottom"
            ax.text(x1, y, text, color="white", fontsize=7.5, fontweight="bold", va=va,
                    ha="left", clip_on=True,
                    bbox=dict(boxstyle="square,pad=0.25", facecolor=colour, edgecolor="none"))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    has_truth = any(truth is not None for truth in people.truths)
    ax.set_title("Predicted (blue) and true (green) labels" if has_truth
                 else "Predicted labels (blue)", fontsize=10)  # fmt: skip


def _draw_attention(
    fig: Figure, ax: Axes, rgb: np.ndarray, amap: Any, box: np.ndarray,
    weight: float | None, i: int,
) -> None:  # fmt: skip
    """Panel 2, one per person: the GSAM map over the image, the masked body outlined."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    h, w = rgb.shape[:2]
    ax.imshow(attention_overlay(rgb, amap, box=box), vmin=0, vmax=1)
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white",
                           linewidth=1.2, linestyle="--"))
    ax.text((x1 + x2) / 2, (y1 + y2) / 2, "body\n(masked)", color="white", fontsize=7,
            ha="center", va="center")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    wtxt = "" if weight is None else f", body weight λ={weight:.2f}"
    ax.set_title(f"Person {i + 1}: GSAM attention{wtxt}", fontsize=10)
    sm = ScalarMappable(norm=Normalize(0, 1), cmap=_ATTENTION_CMAP)
    cbar = fig.colorbar(sm, ax=ax, fraction=0.04, pad=0.02, shrink=0.85)
    cbar.set_ticks([0, 1], labels=["low", "high"])
    cbar.ax.tick_params(labelsize=7)


def _draw_captions(ax: Axes, people: _People, labels_per_line: int, people_per_row: int) -> None:
    """Under the panels, per person: box, body weight, predicted and true labels in words."""
    from matplotlib.offsetbox import AnchoredOffsetbox, HPacker, TextArea, VPacker

    blocks = []
    for i, (x1, y1, x2, y2) in enumerate(people.boxes):
        head = f"Person {i + 1}  box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})"
        if people.weights[i] is not None:
            head += f"  body weight λ = {people.weights[i]:.3f}"
        rows = [TextArea(head, textprops=dict(fontsize=9, fontweight="bold"))]
        labelled = [("predicted:", _fmt_labels(people.preds[i], labels_per_line), _PRED_COLOUR)]
        truth = people.truths[i]
        if truth is not None:
            labelled.append(("true:", [", ".join(truth) or "none"], _TRUE_COLOUR))
        for key, lines, colour in labelled:
            props = dict(fontsize=9, color=colour)
            body = VPacker(children=[TextArea(line, textprops=props) for line in lines],
                           align="left", pad=0, sep=2)
            rows.append(
                HPacker(children=[TextArea(key, textprops=props), body], align="top", pad=0, sep=4)
            )
        blocks.append(VPacker(children=rows, align="left", pad=0, sep=2))
    grid = VPacker(
        children=[
            HPacker(children=blocks[r : r + people_per_row], align="top", pad=0, sep=28)
            for r in range(0, len(people), people_per_row)
        ],
        align="left", pad=0, sep=8,
    )  # fmt: skip
    ax.add_artist(AnchoredOffsetbox(loc="upper left", child=grid, frameon=False,
                                    bbox_to_anchor=(0, 1), bbox_transform=ax.transAxes,
                                    borderpad=0))
