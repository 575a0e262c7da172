"""LSAM's learned patch graph drawn over the image: the N x N grid, nodes, signed edges."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dagnet_layers.figures._style import OKABE_ITO

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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
