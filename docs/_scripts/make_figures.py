"""Figures of the documentation, drawn with matplotlib from the package itself.

Run by ``docs/conf.py`` at build time (or by hand: ``python docs/_scripts/make_figures.py
OUT_DIR``). Each figure takes its numbers from the code it depicts: stream widths
from a freshly built (untrained) DAG-Net, the patch graph from
:func:`dagnet_layers.layers.grid_adjacency`, the attention outputs from a forward
pass of the tiny ``test_dagnet`` variant. Nothing is downloaded or trained.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

from dagnet_layers.figures import attention_overlay
from dagnet_layers.layers import LearnedAdjacencyGCN, grid_adjacency
from dagnet_layers.models import build_dagnet, create_model

STREAM_COLOURS = {"body": "#e8f1fb", "context": "#eaf6ec", "local": "#fdf1e4", "fusion": "#f3eefa"}
EDGE = "#38424d"


# ------------------------------------------------------------- architecture
def _box(ax, x, y, w, h, text, face="white", size=8.5, weight="normal"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.25,rounding_size=0.8",
                                facecolor=face, edgecolor=EDGE, linewidth=1.0))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size,
            weight=weight, color="#1d242b", linespacing=1.35)


def _arrow(ax, start, end, text=None, offset=(0.0, 1.2), style="-|>", colour=EDGE, ls="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=11,
                                 linewidth=1.1, color=colour, linestyle=ls,
                                 shrinkA=1, shrinkB=1))
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha="center", va="bottom", fontsize=7.5, color="#3b4652")


def _stream(ax, y, h, colour, label):
    ax.add_patch(FancyBboxPatch((15.5, y), 50.5, h, boxstyle="round,pad=0.3,rounding_size=1.5",
                                facecolor=colour, edgecolor="none", zorder=-1))
    ax.text(16.3, y + h - 0.6, label, ha="left", va="top", fontsize=8.5, style="italic",
            color="#4a5561")


def architecture_figure(path: Path) -> None:
    """DAG-Net's block diagram (the paper's Fig. 1) with widths read from the model."""
    model = build_dagnet()  # the paper's configuration, random weights (no download)
    cfg = model.config
    body_dim, context_dim, local_dim = model.feature_dims
    n = cfg.partition
    node_dim = model.patch_encoder.out_features
    gcn = " → ".join(str(w) for w in cfg.gcn_hidden)
    att_ch = model.context_backbone.attention_channels

    fig, ax = plt.subplots(figsize=(13, 6.6))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 56)
    ax.axis("off")

    # inputs
    _box(ax, 0.5, 40, 11.5, 7, "body crop $I_B$\n224 × 224", face="#ffffff", weight="bold")
    _box(ax, 0.5, 15, 11.5, 9, "context image $I_C$\n224 × 224\n(body box masked)",
         face="#ffffff", weight="bold")

    # body stream
    _stream(ax, 36.2, 17.3, STREAM_COLOURS["body"], "body stream + BAM (Sec. 3.2)")
    _box(ax, 19, 45, 17, 5.5, f"body backbone\n{cfg.body_backbone} (timm), GAP")
    _box(ax, 19, 37.3, 17, 5.8,
         "BAM: 1×1 conv → ReLU → 1×1 conv\n→ global mean → sigmoid")
    ax.add_patch(Circle((44, 47.75), 1.5, facecolor="white", edgecolor=EDGE, linewidth=1.0))
    ax.text(44, 47.75, "×", ha="center", va="center", fontsize=11)
    _arrow(ax, (12.3, 45), (18.7, 47.75))
    _arrow(ax, (12.3, 42.5), (18.7, 40.2))
    _arrow(ax, (36.3, 47.75), (42.4, 47.75), f"{body_dim}")
    _arrow(ax, (36.3, 40.2), (44, 46.2), r"$\lambda \in (0,1)$", offset=(2.6, -1.6))
    ax.text(46.5, 49.6, r"$\vartheta_B = \lambda\,\mathcal{F}(I_B)$", fontsize=8.5,
            color="#1d242b")

    # context stream
    _stream(ax, 18.3, 16.4, STREAM_COLOURS["context"], "context stream + GSAM (Sec. 3.3)")
    _box(ax, 19, 22.5, 11.5, 7, f"{cfg.context_backbone}\nstages 1 … L−1\n$g$ ({att_ch} ch)")
    _box(ax, 34, 22.5, 13.5, 7,
         "attention branch (ABN)\nmap $M$ = σ(conv(·))\n" + r"$(1 + M)\odot g$")
    _box(ax, 51, 22.5, 10, 7, f"stage L\n+ GAP\n→ {context_dim}")
    _arrow(ax, (12.3, 21), (18.7, 26))
    _arrow(ax, (30.8, 26), (33.7, 26))
    _arrow(ax, (47.8, 26), (50.7, 26))
    _arrow(ax, (40.75, 22.2), (40.75, 19.4), ls="--", colour="#7a8591")
    ax.text(42, 19.2, "aux. logits (26)\n→ ABN loss", fontsize=7.2, color="#5a6570", va="bottom")

    # local stream
    _stream(ax, 0.6, 16.4, STREAM_COLOURS["local"], "local stream + LSAM (Sec. 3.4)")
    _box(ax, 19, 3.5, 10.5, 8, f"{n} × {n} partition\n{n * n} patches\n$R_{{i,j}}$")
    _box(ax, 32.5, 3.5, 13.5, 8,
         f"patch encoder\n2 × conv 3×3 ({cfg.patch_channels[0]}, {cfg.patch_channels[1]})"
         f"\nmean-pool → {n * n} × {node_dim}")
    _box(ax, 49, 3.5, 13.5, 8,
         f"GCN, learned $A$\n({n * n} × {n * n}, grid init)\n{gcn}, ReLU\n"
         f"{cfg.gcn_readout} readout")
    _arrow(ax, (6.25, 14.7), (6.25, 7.5), style="-")
    _arrow(ax, (6.25, 7.5), (18.7, 7.5))
    _arrow(ax, (29.8, 7.5), (32.2, 7.5))
    _arrow(ax, (46.3, 7.5), (48.7, 7.5))
    ax.text(60.8, 12.3, r"$H^{l} = \sigma(A H^{l-1} W^{l-1})$", fontsize=8.5, ha="right",
            color="#1d242b")

    # fusion
    ax.add_patch(FancyBboxPatch((68.5, 3), 31, 48, boxstyle="round,pad=0.3,rounding_size=1.5",
                                facecolor=STREAM_COLOURS["fusion"], edgecolor="none", zorder=-1))
    ax.text(69.3, 50.4, "fusion", ha="left", va="top", fontsize=8.5, style="italic",
            color="#4a5561")
    total = body_dim + context_dim + local_dim
    _box(ax, 71, 24, 8, 7, f"concat\n{total}")
    _box(ax, 82, 24, 8.5, 7, f"fusion MLP\nLinear {cfg.fusion_hidden}\nBN, ReLU\ndropout")
    _box(ax, 92.5, 33, 6.5, 7, f"{cfg.num_classes}\ncategory\nlogits", weight="bold")
    _box(ax, 92.5, 15, 6.5, 7, "VAD (3)\noptional", face="#fafafa")
    _arrow(ax, (45.6, 47.2), (75, 31.3), f"{body_dim}", offset=(3, 0))
    _arrow(ax, (61.3, 26), (70.7, 27.5), f"{context_dim}", offset=(0, 0.2))
    _arrow(ax, (62.8, 7.5), (75, 23.7), f"{local_dim}", offset=(3, -1.2))
    _arrow(ax, (79.3, 27.5), (81.7, 27.5))
    _arrow(ax, (90.8, 28.5), (92.2, 36))
    _arrow(ax, (90.8, 26.5), (92.2, 18.5), ls="--", colour="#7a8591")

    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------- patch graph
def _grid_positions(n: int) -> np.ndarray:
    """(n*n, 2) plot coordinates of patch ``i * n + j``: column j right, row i down."""
    idx = np.arange(n * n)
    return np.stack([idx % n, -(idx // n)], axis=1).astype(float)


def _draw_graph(ax, adj: np.ndarray, n: int, linewidth: float = 3.0, colour: str = "#2f6fb0",
                node_colour: str = "white", labels: bool = True) -> None:
    pos = _grid_positions(n)
    top = np.abs(adj).max() or 1.0
    for i in range(n * n):
        for j in range(i + 1, n * n):
            w = max(abs(adj[i, j]), abs(adj[j, i])) / top
            if w > 1e-6:
                ax.plot(*pos[[i, j]].T, color=colour, alpha=0.25 + 0.75 * w,
                        linewidth=0.4 + linewidth * w, zorder=1)
    ax.scatter(pos[:, 0], pos[:, 1], s=260, color=node_colour, edgecolors=EDGE, zorder=2)
    if labels:
        for k, (x, y) in enumerate(pos):
            ax.text(x, y, str(k), ha="center", va="center", fontsize=7.5, zorder=3)
    ax.set_aspect("equal")
    ax.axis("off")


def adjacency_figure(path: Path, n: int = 4) -> None:
    """``grid_adjacency(n)`` as a matrix and as a graph, and the GCN's initial A."""
    adj = grid_adjacency(n).numpy()
    init = LearnedAdjacencyGCN(8, (8,), num_nodes=n * n).initial_adjacency().numpy()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.1),
                             gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[0].imshow(adj, cmap="Blues", vmin=0, vmax=1)
    axes[0].set_title(f"grid_adjacency({n})\n8-neighbourhood + self-loops", fontsize=10)
    _draw_graph(axes[1], adj - np.eye(n * n), n)
    axes[1].set_title(f"the same graph on the {n} × {n} patch grid\nnode i·N + j = row i, col j",
                      fontsize=10)
    im = axes[2].imshow(init, cmap="Blues")
    axes[2].set_title("LearnedAdjacencyGCN: initial A\n(row-normalised grid, then learned)",
                      fontsize=10)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in (axes[0], axes[2]):
        ax.set_xticks(range(0, n * n, max(1, n // 2)))
        ax.set_yticks(range(0, n * n, max(1, n // 2)))
        ax.set_xlabel("source patch j")
        ax.set_ylabel("target patch i")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------- quickstart figure
def toy_scene(size: int = 128, seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A drawn scene (uint8 HWC) with one stick-figure person, and the person's box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.empty((size, size, 3))
    img[..., 0] = 0.55 + 0.25 * yy
    img[..., 1] = 0.70 + 0.15 * yy
    img[..., 2] = 0.95 - 0.35 * yy
    ground = yy > 0.68
    img[ground] = [0.45, 0.62, 0.35]
    img += rng.normal(0, 0.025, img.shape)
    # a yellow disk (a context cue) and a person at the left
    disk = (xx - 0.75) ** 2 + (yy - 0.3) ** 2 < 0.012
    img[disk] = [0.98, 0.85, 0.1]
    x1, y1, x2, y2 = int(0.18 * size), int(0.28 * size), int(0.42 * size), int(0.9 * size)
    head = (xx - 0.30) ** 2 + (yy - 0.36) ** 2 < 0.004
    img[head] = [0.93, 0.76, 0.62]
    img[int(0.43 * size):int(0.70 * size), int(0.24 * size):int(0.36 * size)] = [0.8, 0.15, 0.15]
    img[int(0.70 * size):y2, int(0.25 * size):int(0.29 * size)] = [0.15, 0.15, 0.35]
    img[int(0.70 * size):y2, int(0.31 * size):int(0.35 * size)] = [0.15, 0.15, 0.35]
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), (x1, y1, x2, y2)


def quickstart_inputs(size: int = 128) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Normalised ``(body, context)`` tensors of the toy scene and the masked context image."""
    image, (x1, y1, x2, y2) = toy_scene(size)
    context = image.copy()
    context[y1:y2, x1:x2] = 0  # DAG-Net's context stream sees the scene with the body masked
    body = image[y1:y2, x1:x2]
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])

    def to_tensor(a: np.ndarray, side: int) -> torch.Tensor:
        t = torch.from_numpy((a / 255.0 - mean) / std).permute(2, 0, 1).float()[None]
        return torch.nn.functional.interpolate(t, size=(side, side), mode="bilinear",
                                               align_corners=False)

    return to_tensor(body, 64), to_tensor(context, size), context


def attention_figure(path: Path) -> None:
    """Attention map, BAM weight and patch graph of ``create_model("test_dagnet")``."""
    torch.manual_seed(0)
    model = create_model("test_dagnet").eval()
    body, context, shown = quickstart_inputs()
    with torch.no_grad():
        out = model(body, context)
    n = model.partition
    size = shown.shape[0]

    fig, axes = plt.subplots(1, 4, figsize=(14, 4.1),
                             gridspec_kw={"width_ratios": [0.45, 1, 1, 1]})
    body_shown = (body[0].permute(1, 2, 0).numpy() * [0.229, 0.224, 0.225]
                  + [0.485, 0.456, 0.406]).clip(0, 1)
    axes[0].imshow(body_shown)
    axes[0].set_title(f"body crop\nBAM weight λ = {out.body_weights[0].item():.3f}",
                      fontsize=10)
    axes = axes[1:]
    axes[0].imshow(shown)
    for k in range(1, n):
        axes[0].axhline(k * size / n - 0.5, color="white", linewidth=1)
        axes[0].axvline(k * size / n - 0.5, color="white", linewidth=1)
    axes[0].set_title(f"context input, body masked\n{n} × {n} partition of the local stream",
                      fontsize=10)
    image, box = toy_scene(size)
    axes[1].imshow(attention_overlay(image, out.attention_map[0], box=box))
    h, w = out.attention_map.shape[-2:]
    axes[1].set_title(f"GSAM attention map M ({h} × {w}), figures.attention_overlay\n"
                      "(upsampled, min-max scaled; body box left out)", fontsize=10)
    axes[2].imshow(shown, extent=(-0.5, n - 0.5, -n + 0.5, 0.5), alpha=0.35)
    adj = out.adjacency.detach().numpy()
    _draw_graph(axes[2], adj - np.diag(np.diag(adj)), n, colour="#c2410c", labels=False)
    axes[2].set_title("LSAM learned adjacency over the patches\n(line width ∝ |A_ij|)",
                      fontsize=10)
    for ax in (*axes[:2], fig.axes[0]):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("create_model('test_dagnet'), randomly initialised: the plumbing, "
                 "not a learned saliency", fontsize=10, y=0.995)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


FIGURES = {
    "architecture.png": architecture_figure,
    "grid_adjacency.png": adjacency_figure,
    "quickstart_attention.png": attention_figure,
}


def make_all(out_dir: Path) -> list[Path]:
    """Draw every figure into ``out_dir``; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        draw(out_dir / name)
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "_generated"
    for p in make_all(target / "figures" if len(sys.argv) == 1 else target):
        print(p)
