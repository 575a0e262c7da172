"""One SYNTHETIC scene set per DAG-Net module, where doing the module's job should pay.

Each set is a small K-way task whose label can only be read well by a model that
does what the paper gives the module to do, with the ground truth that the
module's own output can be checked against. The images are made in memory
(uint8, deterministic per seed): they are diagnostic scenes, not EMOTIC, and every
number made from them says SYNTHETIC.

- :func:`make_bam_set` (BAM, "a credibility weight per body"): the label is a colour
  shown by the torso *and* by a flag in the context. Half of the bodies are
  reliable; 35% are misleading: a clean torso of a wrong colour in a crop whose
  other pixels are under impulse noise (a third of them black or white), a look
  that no reliable body has; 15% show a neutral grey torso. The context's flag
  tells the truth for every misleading and every grey body and for half of the
  reliable ones; for the other half it shows another colour (a decoy). So neither
  stream can be trusted alone, and which one to believe is written in the body
  crop's own pixels. The test split's misleading bodies show colours that no
  misleading body showed in training (the ``test_iid`` split keeps the training
  colours), so a model that learnt *which colour combinations* mislead, instead of
  *how an unreliable body looks*, fails there.
- :func:`make_gsam_set` (GSAM, "highlight the informative region of the context"):
  six look-alike squares, one of each colour, in six cells of a 4 x 4 grid; the
  label is the colour of the one with a white frame. The colours present are the
  same in every scene, so colour features pooled over the image carry nothing: the
  model has to tie the frame to the colour inside it. A CNN can learn that tie
  without a map given enough scenes; a map can make it quicker to learn.
- :func:`make_lsam_set` (LSAM, "relations between patches"): two identical white
  disks in two of the 4 x 4 patches; the label is whether they share a row, a
  column, or neither (a third each). Any function of the *bag* of patches is at
  chance by construction, since the two disks look the same wherever they are. A
  magenta square in half of the scenes is a presence-only control label that a bag
  of patches reads perfectly.

Each cue fills most of one cell of a 4 x 4 grid (11 to 12 pixels of 16) and never
straddles two: one patch of the partition, one cell of GSAM's map at 64 px (a ResNet's
stride 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BAM_KINDS",
    "LSAM_CLASSES",
    "PALETTE",
    "SET_MODULES",
    "ModuleSet",
    "make_bam_set",
    "make_gsam_set",
    "make_lsam_set",
    "make_set",
]

#: The modules with a set, in report order.
SET_MODULES: tuple[str, ...] = ("bam", "gsam", "lsam")
#: The six colours of the BAM and GSAM labels (mid-range channels: heavy noise shows).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 50, 50), "green": (50, 170, 60), "blue": (60, 80, 210),
    "yellow": (215, 190, 40), "cyan": (50, 185, 200), "orange": (235, 125, 35),
}  # fmt: skip
#: Kinds of bodies in the BAM set, by code.
BAM_KINDS: tuple[str, ...] = ("reliable", "misleading", "neutral")
#: The LSAM set's labels: the relation of the two disks, then the control marker.
LSAM_CLASSES: tuple[str, ...] = ("same row", "same column", "neither", "marker present")

_COLOURS = np.array(list(PALETTE.values()), dtype=np.float64)
_GROUND, _SKY, _SKIN, _LEGS = (95, 90, 80), (150, 170, 190), (220, 180, 150), (60, 60, 90)
_NEUTRAL = (150, 150, 150)


@dataclass
class ModuleSet:
    """The images, labels and ground truth of one module's set (SYNTHETIC).

    Attributes:
        module: ``"bam"``, ``"gsam"`` or ``"lsam"``.
        classes: Name of each label column.
        task: Columns of the K-way task every person has exactly one of (the
            primary metric's accuracy is over these).
        context: (N, S, S, 3) uint8 context images.
        body: (N, s, s, 3) uint8 body images, or ``None`` (the LSAM set: its probe
            reads the context alone).
        labels: (N, K) float32 multi-hot labels.
        split: (N,) split name of each person (``"train"``, ``"test"``, and for BAM
            ``"test_iid"``).
        truth: Per-person ground truth arrays, by name (see each maker).
        settings: The maker's arguments.
        grid: Cells per side of the grid the cues are placed on (4).
    """

    module: str
    classes: tuple[str, ...]
    task: tuple[int, ...]
    context: np.ndarray
    body: np.ndarray | None
    labels: np.ndarray
    split: np.ndarray
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    grid: int = 4

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split, in order."""
        rows = np.nonzero(self.split == split)[0]
        if rows.size == 0:
            raise ValueError(f"the {self.module} set has no {split!r} split; it has "
                             f"{sorted(set(self.split.tolist()))}")  # fmt: skip
        return rows

    @property
    def splits(self) -> tuple[str, ...]:
        """The split names, in order of first appearance."""
        return tuple(dict.fromkeys(self.split.tolist()))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}")


def _background(rng: np.random.Generator, n: int, size: int, colour: tuple[int, int, int],
                clutter: float) -> np.ndarray:  # fmt: skip
    img = np.empty((n, size, size, 3), dtype=np.float64)
    img[:] = colour
    img += rng.normal(0.0, clutter, img.shape)
    return img


def _finish(rng: np.random.Generator, *images: np.ndarray) -> list[np.ndarray]:
    """Lighting (one brightness factor per person, on all its images), clipped to uint8."""
    light = rng.uniform(0.85, 1.15, (images[0].shape[0], 1, 1, 1))
    return [np.clip(img * light, 0, 255).astype(np.uint8) for img in images]


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------------- BAM
def _bam_split(rng: np.random.Generator, n: int, name: str, pool: tuple[int, ...],
               body_size: int, context_size: int, noise: float, shares: tuple[float, float],
               clutter: float) -> dict[str, Any]:  # fmt: skip
    k = len(PALETTE)
    y = rng.integers(0, k, n)
    kind = rng.choice(3, n, p=[1.0 - sum(shares), *shares])
    decoy = (kind == 0) & (rng.random(n) < 0.5)
    body = _background(rng, n, body_size, _GROUND, clutter)
    context = _background(rng, n, context_size, _GROUND, clutter)
    shown = np.full(n, -1)
    flag = np.empty(n, dtype=np.int64)
    s, c = body_size, context_size
    t0, t1, l0, l1 = int(0.3 * s), int(0.75 * s), int(0.3 * s), int(0.7 * s)
    side = max(4, round(c / 3.2))
    for i in range(n):
        body[i, int(0.1 * s):int(0.28 * s), int(0.4 * s):int(0.6 * s)] = _SKIN
        body[i, t1:int(0.95 * s), int(0.35 * s):int(0.65 * s)] = _LEGS
        if kind[i] == 0:
            shown[i] = y[i]
            body[i, t0:t1, l0:l1] = _COLOURS[y[i]]
        elif kind[i] == 1:
            shown[i] = rng.choice([j for j in pool if j != y[i]])
            hit = rng.random((s, s)) < noise  # impulse noise around a clean torso
            hit[t0:t1, l0:l1] = False
            body[i][hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0.0, 255.0)[:, None]
            body[i, t0:t1, l0:l1] = _COLOURS[shown[i]]
        else:
            body[i, t0:t1, l0:l1] = _NEUTRAL
        horizon = int(c * rng.uniform(0.35, 0.5))
        context[i, :horizon] = np.asarray(_SKY) + rng.normal(0.0, clutter, (horizon, c, 3))
        bx, bw = int(rng.integers(0, c - int(0.3 * c))), int(0.3 * c)
        context[i, int(0.2 * c):int(0.9 * c), bx:bx + bw] = 0.0  # the body, masked
        flag[i] = (y[i] + rng.integers(1, k)) % k if decoy[i] else y[i]
        while True:  # the flag beside the masked body, never on it
            fx, fy = (int(v) for v in rng.integers(0, c - side + 1, 2))
            if fx + side <= bx or fx >= bx + bw:
                break
        context[i, fy:fy + side, fx:fx + side] = _COLOURS[flag[i]]
    body_u8, context_u8 = _finish(rng, body, context)
    return {"body": body_u8, "context": context_u8, "y": y, "kind": kind, "decoy": decoy,
            "shown": shown, "flag": flag, "split": np.full(n, name)}  # fmt: skip


def make_bam_set(
    seed: int = 0, *, n_train: int = 960, n_test: int = 600, body_size: int = 32,
    context_size: int = 32, noise: float = 0.35, misleading: float = 0.35,
    neutral: float = 0.15, clutter: float = 6.0,
) -> ModuleSet:  # fmt: skip
    """BAM's set: misleading bodies that only their own look gives away (see the module doc).

    Args:
        seed: Seed of every random choice.
        n_train: Training persons (their misleading bodies show red, green or blue).
        n_test: Persons in each test split: ``"test"`` (misleading bodies show yellow,
            cyan or orange, colours no misleading body showed in training) and
            ``"test_iid"`` (red, green or blue, as in training).
        body_size: Side of the body images.
        context_size: Side of the context images (the body masked, one flag).
        noise: Share of a misleading body crop's pixels, outside its torso, turned
            black or white (impulse noise: a look no reliable body has, which BAM's
            1x1 convolutions see pixel by pixel and its mean pooling sums).
        misleading: Share of misleading bodies.
        neutral: Share of grey, cue-less torsos.
        clutter: Standard deviation of the pixel noise on everything.

    Returns:
        A :class:`ModuleSet` whose ``truth`` holds ``y`` (the true colour), ``kind``
        (0 reliable, 1 misleading, 2 neutral: :data:`BAM_KINDS`), ``decoy`` (a reliable
        body whose flag shows another colour), ``shown`` (the torso's colour, -1 when
        grey) and ``flag`` (the flag's colour).

    Example:
        >>> s = make_bam_set(0, n_train=12, n_test=12)
        >>> s.body.shape, s.context.shape, s.splits
        ((36, 32, 32, 3), (36, 32, 32, 3), ('train', 'test', 'test_iid'))
        >>> bool(np.all(s.truth["flag"][s.truth["kind"] > 0] == s.truth["y"][s.truth["kind"] > 0]))
        True
    """
    _check_counts(n_train=n_train, n_test=n_test)
    if not (0 <= misleading and 0 <= neutral and misleading + neutral < 1):
        raise ValueError(f"misleading and neutral must be shares summing below 1, got "
                         f"{misleading} and {neutral}")  # fmt: skip
    rng = np.random.default_rng([seed, 1])
    seen, held_out = (0, 1, 2), (3, 4, 5)
    args = dict(body_size=body_size, context_size=context_size, noise=noise,
                shares=(misleading, neutral), clutter=clutter)  # fmt: skip
    parts = [_bam_split(rng, n_train, "train", seen, **args),
             _bam_split(rng, n_test, "test", held_out, **args),
             _bam_split(rng, n_test, "test_iid", seen, **args)]  # fmt: skip
    d = _concat(parts)
    k = len(PALETTE)
    settings = {"seed": seed, "n_train": n_train, "n_test": n_test, "body_size": body_size,
                "context_size": context_size, "noise": noise, "misleading": misleading,
                "neutral": neutral, "clutter": clutter}  # fmt: skip
    return ModuleSet("bam", tuple(PALETTE), tuple(range(k)), d["context"], d["body"],
                     np.eye(k, dtype=np.float32)[d["y"]], d["split"],
                     {n: d[n] for n in ("y", "kind", "decoy", "shown", "flag")}, settings)


# -------------------------------------------------------------------------------- GSAM
def _grey_people(rng: np.random.Generator, n: int, size: int, clutter: float) -> np.ndarray:
    body = _background(rng, n, size, _GROUND, clutter)
    s = size
    body[:, int(0.1 * s):int(0.28 * s), int(0.4 * s):int(0.6 * s)] = _SKIN
    body[:, int(0.3 * s):int(0.75 * s), int(0.3 * s):int(0.7 * s)] = _NEUTRAL
    body[:, int(0.75 * s):int(0.95 * s), int(0.35 * s):int(0.65 * s)] = _LEGS
    return body


def _gsam_split(rng: np.random.Generator, n: int, name: str, size: int, body_size: int,
                objects: int, grid: int, clutter: float) -> dict[str, Any]:  # fmt: skip
    k = len(PALETTE)
    cell = size // grid
    side = int(0.7 * cell)
    y = rng.integers(0, k, n)
    context = _background(rng, n, size, (110, 110, 110), clutter)
    body = _grey_people(rng, n, body_size, clutter)
    candidates = np.empty((n, objects), dtype=np.int64)
    target = np.empty(n, dtype=np.int64)
    for i in range(n):
        cells = rng.choice(grid * grid, objects, replace=False)
        colours = [y[i], *rng.permutation([j for j in range(k) if j != y[i]])[:objects - 1]]
        for j, (where, colour) in enumerate(zip(cells, colours, strict=True)):
            r, c = divmod(int(where), grid)
            oy, ox = (int(v) for v in rng.integers(0, cell - side + 1, 2))
            y0, x0 = r * cell + oy, c * cell + ox
            if j == 0:  # the target: a white frame around its colour
                context[i, y0:y0 + side, x0:x0 + side] = 245.0
            context[i, y0 + 2:y0 + side - 2, x0 + 2:x0 + side - 2] = _COLOURS[colour]
        target[i] = cells[0]
        candidates[i] = rng.permutation(cells)
    body_u8, context_u8 = _finish(rng, body, context)
    return {"body": body_u8, "context": context_u8, "y": y, "target_cell": target,
            "candidate_cells": candidates, "split": np.full(n, name)}  # fmt: skip


def make_gsam_set(
    seed: int = 0, *, n_train: int = 160, n_test: int = 600, size: int = 64,
    body_size: int = 32, objects: int = 6, clutter: float = 6.0,
) -> ModuleSet:  # fmt: skip
    """GSAM's set: the colour of the one framed square among look-alikes (see the module doc).

    Args:
        seed: Seed of every random choice.
        n_train: Training scenes.
        n_test: Test scenes.
        size: Side of the context images (a multiple of 4: a 4 x 4 grid of cells).
        body_size: Side of the body images (the same grey person everywhere: no cue).
        objects: Squares per scene, each of another colour (at most 6).
        clutter: Standard deviation of the pixel noise.

    Returns:
        A :class:`ModuleSet` whose ``truth`` holds ``y`` (the target's colour),
        ``target_cell`` and ``candidate_cells`` (N, objects), cells of the 4 x 4 grid
        in row-major order, the target's among them.

    Example:
        >>> s = make_gsam_set(0, n_train=12, n_test=12)
        >>> s.context.shape, s.truth["candidate_cells"].shape
        ((24, 64, 64, 3), (24, 6))
    """
    _check_counts(n_train=n_train, n_test=n_test)
    if size % 4 or size < 32:
        raise ValueError(f"size must be a multiple of 4 and at least 32, got {size}")
    if not 2 <= objects <= len(PALETTE):
        raise ValueError(f"objects must be in [2, {len(PALETTE)}], got {objects}")
    rng = np.random.default_rng([seed, 2])
    args = dict(size=size, body_size=body_size, objects=objects, grid=4, clutter=clutter)
    d = _concat([_gsam_split(rng, n_train, "train", **args),
                 _gsam_split(rng, n_test, "test", **args)])  # fmt: skip
    k = len(PALETTE)
    settings = {"seed": seed, "n_train": n_train, "n_test": n_test, "size": size,
                "body_size": body_size, "objects": objects, "clutter": clutter}  # fmt: skip
    return ModuleSet("gsam", tuple(PALETTE), tuple(range(k)), d["context"], d["body"],
                     np.eye(k, dtype=np.float32)[d["y"]], d["split"],
                     {n: d[n] for n in ("y", "target_cell", "candidate_cells")}, settings)


# -------------------------------------------------------------------------------- LSAM
def _relation(a: int, b: int, grid: int) -> int:
    (ra, ca), (rb, cb) = divmod(a, grid), divmod(b, grid)
    return 0 if ra == rb else 1 if ca == cb else 2


def _pairs_by_relation(grid: int) -> list[list[tuple[int, int]]]:
    pairs: list[list[tuple[int, int]]] = [[], [], []]
    for a in range(grid * grid):
        for b in range(a + 1, grid * grid):
            pairs[_relation(a, b, grid)].append((a, b))
    return pairs


def _lsam_split(rng: np.random.Generator, n: int, name: str, size: int, grid: int,
                marker: float, clutter: float) -> dict[str, Any]:  # fmt: skip
    cell = size // grid
    disk, square = int(0.8 * cell), int(0.6 * cell)
    yy, xx = np.mgrid[0:disk, 0:disk]
    round_ = (yy - disk / 2 + 0.5) ** 2 + (xx - disk / 2 + 0.5) ** 2 <= (disk / 2) ** 2
    by_relation = _pairs_by_relation(grid)
    relation = rng.integers(0, 3, n)
    present = rng.random(n) < marker
    context = _background(rng, n, size, (100, 100, 100), clutter)
    cells = np.empty((n, 2), dtype=np.int64)
    marker_cell = np.full(n, -1)
    for i in range(n):
        choices = by_relation[relation[i]]
        a, b = choices[int(rng.integers(len(choices)))]
        cells[i] = rng.permutation([a, b])
        for where in (a, b):
            r, c = divmod(where, grid)
            oy, ox = (int(v) for v in rng.integers(0, cell - disk + 1, 2))
            context[i, r * cell + oy:r * cell + oy + disk, c * cell + ox:c * cell + ox + disk][
                round_] = 240.0
        if present[i]:
            marker_cell[i] = rng.choice([m for m in range(grid * grid) if m not in (a, b)])
            r, c = divmod(int(marker_cell[i]), grid)
            oy, ox = (int(v) for v in rng.integers(0, cell - square + 1, 2))
            context[i, r * cell + oy:r * cell + oy + square,
                    c * cell + ox:c * cell + ox + square] = (200, 60, 200)
    (context_u8,) = _finish(rng, context)
    return {"context": context_u8, "relation": relation, "cells": cells, "marker": present,
            "marker_cell": marker_cell, "split": np.full(n, name)}  # fmt: skip


def make_lsam_set(
    seed: int = 0, *, n_train: int = 1200, n_test: int = 600, size: int = 64,
    marker: float = 0.5, clutter: float = 6.0,
) -> ModuleSet:  # fmt: skip
    """LSAM's set: same row, same column or neither, for two identical disks (see the module doc).

    Args:
        seed: Seed of every random choice.
        n_train: Training scenes.
        n_test: Test scenes.
        size: Side of the context images (a multiple of 4: 4 x 4 patches).
        marker: Share of scenes with the control marker.
        clutter: Standard deviation of the pixel noise.

    Returns:
        A :class:`ModuleSet` (no body images) whose labels are :data:`LSAM_CLASSES`
        and whose ``truth`` holds ``relation`` (0, 1, 2), ``cells`` (N, 2), the
        patches of the two disks (row-major), ``marker`` and ``marker_cell`` (-1
        without a marker).

    Example:
        >>> s = make_lsam_set(0, n_train=12, n_test=12)
        >>> s.body is None, s.labels.shape, s.task
        (True, (24, 4), (0, 1, 2))
    """
    _check_counts(n_train=n_train, n_test=n_test)
    if size % 4 or size < 32:
        raise ValueError(f"size must be a multiple of 4 and at least 32, got {size}")
    if not 0.0 <= marker <= 1.0:
        raise ValueError(f"marker must be a share in [0, 1], got {marker}")
    rng = np.random.default_rng([seed, 3])
    args = dict(size=size, grid=4, marker=marker, clutter=clutter)
    d = _concat([_lsam_split(rng, n_train, "train", **args),
                 _lsam_split(rng, n_test, "test", **args)])  # fmt: skip
    labels = np.zeros((d["relation"].size, len(LSAM_CLASSES)), dtype=np.float32)
    labels[np.arange(labels.shape[0]), d["relation"]] = 1.0
    labels[:, 3] = d["marker"]
    settings = {"seed": seed, "n_train": n_train, "n_test": n_test, "size": size,
                "marker": marker, "clutter": clutter}  # fmt: skip
    return ModuleSet("lsam", LSAM_CLASSES, (0, 1, 2), d["context"], None, labels, d["split"],
                     {n: d[n] for n in ("relation", "cells", "marker", "marker_cell")},
                     settings)


_MAKERS = {"bam": make_bam_set, "gsam": make_gsam_set, "lsam": make_lsam_set}


def make_set(module: str, seed: int = 0, **sizes: Any) -> ModuleSet:
    """The set of ``module`` (``"bam"``, ``"gsam"`` or ``"lsam"``), with the maker's keywords.

    Example:
        >>> make_set("lsam", 1, n_train=8, n_test=8).module
        'lsam'
    """
    if module not in _MAKERS:
        raise ValueError(f"no diagnostic set for {module!r}; choose from {', '.join(_MAKERS)}")
    maker: Any = _MAKERS[module]
    return maker(seed, **sizes)

