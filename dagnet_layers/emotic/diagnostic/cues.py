"""A model read on the mixed-cue scenes, one person per image, in the EMOTIC layout.

The scenes of :func:`~dagnet_layers.emotic.data.make_diagnostic_emotic`, in the
official EMOTIC layout, put a body cue, a whole-scene cue and local objects in one
image, with every cue's box and every body's corruption in ``diagnostic.json``.
:func:`collect_outputs` runs a model over a split and keeps what each module
produced (scores, GSAM maps, BAM weights, the LSAM adjacency), :func:`cue_masks`
draws each person's cue regions at the model's input size, and :func:`diagnose`
turns both into numbers: AP per cue family, body-cue AP on corrupted and clean
bodies, the body weight against corruption, the GSAM map's mass and peak on each
cue against chance, and the learned adjacency between the patches a local cue lies in.

Every cue is present in every scene at once, so these numbers describe a model; they
cannot show that a module is *needed*. The per-module sets of
:mod:`dagnet_layers.emotic.diagnostic.sets`, with their oracle and control arms, do
that (``dagnet-diagnose``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dagnet_layers.emotic.data.categories import CATEGORY_TO_INDEX, EMOTIC_CATEGORIES
from dagnet_layers.emotic.data.scenes import DIAGNOSTIC_CUES, DiagnosticPerson, DiagnosticScenes
from dagnet_layers.emotic.diagnostic.metrics import (
    adjacency_contrast,
    attention_mass_in_mask,
    patches_touched,
    point_biserial,
    pointing_game,
)
from dagnet_layers.emotic.engine.runtime import _forward, move_batch
from dagnet_layers.emotic.losses import SCORE_KINDS, scores_from_logits
from dagnet_layers.emotic.metrics import average_precision
from dagnet_layers.layers.graph import normalize_adjacency

__all__ = [
    "CUE_FAMILIES",
    "CUE_REGIONS",
    "DiagnosticOutputs",
    "body_kind",
    "collect_outputs",
    "cue_boxes",
    "cue_masks",
    "diagnose",
]

#: The cue families of the diagnostic scenes, in report order.
CUE_FAMILIES: tuple[str, ...] = ("body", "global", "local")
#: The context regions whose GSAM attention is measured: the echo flag (the body cue
#: repeated in the scene), the local objects, the sky (the global cue, less the body).
CUE_REGIONS: tuple[str, ...] = ("echo", "local", "sky")


# --------------------------------------------------------------- on diagnostic scenes
def _box_mask(mask: np.ndarray, box: Sequence[float], scale: float, value: bool = True) -> None:
    """Set the pixels of ``mask`` whose centres lie in ``box`` (scene pixels) times ``scale``."""
    size_y, size_x = mask.shape
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    cols = (np.arange(size_x) + 0.5 >= x1) & (np.arange(size_x) + 0.5 <= x2)
    rows = (np.arange(size_y) + 0.5 >= y1) & (np.arange(size_y) + 0.5 <= y2)
    mask[np.ix_(rows, cols)] = value


def cue_masks(person: DiagnosticPerson, scene_size: int, size: int) -> dict[str, np.ndarray]:
    """Each cue region of one diagnostic person as a ``(size, size)`` mask of the context.

    The context is the whole (square) scene resized to ``size``, so a box in scene
    pixels scales by ``size / scene_size``; a pixel belongs to a region when its
    centre lies in it.

    Returns:
        ``{"echo": ..., "local": ..., "sky": ...}`` for the cues this person has
        (see :data:`CUE_REGIONS`): the echo flag, the union of the local objects, and
        the sky less the body box (masked in the context).

    Example:
        >>> from dagnet_layers.emotic.data import DiagnosticPerson
        >>> p = DiagnosticPerson("test", "x.jpg", (0, 4, 2, 8), ("Peace",), None, None,
        ...                      None, "Peace", (0, 0, 8, 4), (), ())
        >>> masks = cue_masks(p, scene_size=8, size=4)
        >>> sorted(masks), masks["sky"].astype(int).tolist()
        (['sky'], [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    """
    scale = size / scene_size
    out: dict[str, np.ndarray] = {}
    for region, boxes in cue_boxes(person).items():
        out[region] = np.zeros((size, size), bool)
        for box in boxes:
            _box_mask(out[region], box, scale)
    if "sky" in out:
        _box_mask(out["sky"], person.bbox, scale, value=False)
    return out


def cue_boxes(person: DiagnosticPerson) -> dict[str, list[tuple[float, float, float, float]]]:
    """Each cue region this person has (:data:`CUE_REGIONS`) as boxes in scene pixels.

    Example:
        >>> from dagnet_layers.emotic.data import DiagnosticPerson
        >>> p = DiagnosticPerson("test", "x.jpg", (0, 4, 2, 8), ("Surprise",), None, None,
        ...                      (5, 5, 6, 6), None, (0, 0, 8, 4),
        ...                      (("Surprise", (1, 1, 2, 2)),), ())
        >>> cue_boxes(p)
        {'echo': [(5, 5, 6, 6)], 'local': [(1, 1, 2, 2)]}
    """
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    if person.echo_box is not None:
        out["echo"] = [person.echo_box]
    if person.local:
        out["local"] = [box for _, box in person.local]
    if person.sky is not None:
        out["sky"] = [person.sky_box]
    return out


def body_kind(person: DiagnosticPerson) -> str:
    """``"clean"``, ``"occluded"``, ``"blurred"`` or ``"no_body_cue"`` (a grey torso).

    Example:
        >>> from dagnet_layers.emotic.data import DiagnosticPerson
        >>> p = DiagnosticPerson("test", "x.jpg", (0, 4, 2, 8), ("Anger",), "Anger",
        ...                      "blurred", None, None, (0, 0, 8, 4), (), ())
        >>> body_kind(p)
        'blurred'
    """
    return "no_body_cue" if person.body is None else person.corrupted or "clean"


@dataclass
class DiagnosticOutputs:
    """What one model produced on every person of a split, in dataset order.

    Attributes:
        filenames: Image file name per person (the key into the scenes' ground truth).
        scores: float64 ``(N, 26)`` scores (the loss's score function of the logits).
        labels: ``(N, 26)`` multi-hot labels.
        size: Side of the model's body and context inputs.
        attention: float32 ``(N, h, w)`` GSAM maps, or ``None`` without GSAM.
        body_weights: float32 ``(N,)`` BAM weights, or ``None`` without BAM.
        adjacency: float32 ``(M, M)`` LSAM propagation matrix, or ``None`` without the GCN.
        partition: Patches per side of the local stream, or ``None``.
        initial_adjacency: float32 ``(M, M)`` propagation matrix the GCN started from
            (its initialisation, normalised as in the forward pass), or ``None``.
    """

    filenames: tuple[str, ...]
    scores: np.ndarray
    labels: np.ndarray
    size: int
    attention: np.ndarray | None = None
    body_weights: np.ndarray | None = None
    adjacency: np.ndarray | None = None
    partition: int | None = None
    initial_adjacency: np.ndarray | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save with :func:`numpy.savez` (absent outputs left out)."""
        out = {"filenames": np.asarray(self.filenames), "scores": self.scores,
               "labels": self.labels, "size": np.asarray(self.size)}  # fmt: skip
        for key in ("attention", "body_weights", "adjacency", "initial_adjacency"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.partition is not None:
            out["partition"] = np.asarray(self.partition)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> DiagnosticOutputs:
        """Rebuild from :meth:`to_arrays` output (e.g. an ``np.load`` of the saved file)."""
        def get(key: str) -> np.ndarray | None:
            return np.asarray(arrays[key]) if key in arrays else None

        partition = get("partition")
        return cls(tuple(str(f) for f in arrays["filenames"]), np.asarray(arrays["scores"]),
                   np.asarray(arrays["labels"]), int(arrays["size"]), get("attention"),
                   get("body_weights"), get("adjacency"),
                   None if partition is None else int(partition),
                   get("initial_adjacency"))  # fmt: skip


@torch.no_grad()
def collect_outputs(
    model: torch.nn.Module,
    dataset: Any,
    *,
    score: str,
    batch_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> DiagnosticOutputs:
    """Run a DAG-Net over every person of ``dataset`` and keep what each module produced.

    Args:
        model: A :class:`~dagnet_layers.models.DAGNet` (put in eval mode here).
        dataset: An :class:`~dagnet_layers.emotic.data.EmoticDataset` of uint8 samples
            (official layout or its cache), e.g. a diagnostic scenes' test split.
        score: How logits become scores (``"softmax"`` for the KL loss...).
        batch_transform: The eval transform, applied to each batch on ``device``.
        device: Where to run.
        batch_size: Persons per forward pass.

    Returns:
        The :class:`DiagnosticOutputs`, in dataset order.
    """
    if score not in SCORE_KINDS:
        raise ValueError(f"collect_outputs: score must be one of {SCORE_KINDS}, got {score!r}")
    from torch.utils.data import DataLoader

    device = torch.device(device)
    model.eval()
    parts: dict[str, list[np.ndarray]] = {"scores": [], "labels": [], "attention": [],
                                          "body_weights": []}  # fmt: skip
    adjacency = None
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = move_batch(batch, device)
        if batch_transform is not None:
            batch = batch_transform(batch)
        out = _forward(model, batch)
        parts["scores"].append(scores_from_logits(out.logits, score).cpu().numpy())
        parts["labels"].append(batch["categories"].cpu().numpy())
        if out.attention_map is not None:
            parts["attention"].append(out.attention_map[:, 0].float().cpu().numpy())
        if out.body_weights is not None:
            parts["body_weights"].append(out.body_weights.float().cpu().numpy())
        if out.adjacency is not None:
            adjacency = out.adjacency.detach().float().cpu().numpy()
    if not parts["scores"]:
        raise ValueError("collect_outputs: the dataset is empty")
    records = dataset.records
    joined = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    initial = None
    graph = getattr(model, "local_graph", None)
    if adjacency is not None and hasattr(graph, "initial_adjacency"):
        initial = normalize_adjacency(graph.initial_adjacency(), graph.normalization).numpy()
    return DiagnosticOutputs(
        filenames=tuple(r.filename for r in records), scores=joined["scores"],
        labels=joined["labels"], size=int(dataset.size), attention=joined["attention"],
        body_weights=joined["body_weights"], adjacency=adjacency,
        partition=getattr(model, "partition", None), initial_adjacency=initial,
    )  # fmt: skip


def _mean(values: Any) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _family_columns(family: str) -> np.ndarray:
    return np.array([CATEGORY_TO_INDEX[c] for c in EMOTIC_CATEGORIES
                     if DIAGNOSTIC_CUES.get(c) == family])  # fmt: skip


def _subset_map(scores: np.ndarray, labels: np.ndarray, rows: np.ndarray, columns: np.ndarray,
                protocol: str, ties: str) -> float | None:  # fmt: skip
    if rows.sum() < 2:
        return None
    ap = average_precision(scores[rows][:, columns], labels[rows][:, columns],
                           protocol=protocol, ties=ties)  # type: ignore[arg-type]  # fmt: skip
    return _mean(ap)


def diagnose(outputs: DiagnosticOutputs, scenes: DiagnosticScenes, *, protocol: str = "emotic",
             ties: str = "octave") -> dict[str, Any]:  # fmt: skip
    """Every diagnostic number of one model on one split, against the scenes' ground truth.

    Returns:
        A JSON-ready dict (``None`` where a number has no data):

        - ``n``: persons; ``map``: mAP over the cue categories with positives;
          ``family_map``: mAP per cue family (:data:`CUE_FAMILIES`);
        - ``body``: body-cue mAP on persons whose body is ``corrupted`` and on
          those whose body is ``clean`` (persons with a body cue only), and their
          counts;
        - ``bam`` (with BAM): ``point_biserial`` of the weight against corruption
          (persons with a body cue; negative when corrupted bodies weigh less) and
          the mean weight of ``clean``, ``occluded``, ``blurred`` and ``no_body_cue``
          bodies;
        - ``gsam`` (with GSAM): per region of :data:`CUE_REGIONS`, the map's mean
          ``mass`` on the region, its ``chance`` (the region's mean area: what a
          uniform map scores), ``pointing`` (share of maps whose peak is on it),
          and ``n``; and ``range``, the maps' mean max - min (near 0: the maps are
          uniform, whatever their mass says);
        - ``lsam`` (with the GCN): mean ``|A_ij|`` between the patches the local
          objects lie in (``cue``, persons whose objects touch two patches or
          more) against the other pairs (``rest``), their ``ratio``, the same
          ratio of the initial adjacency (``ratio_initial``: a grid already links
          neighbouring patches), ``n``, and the adjacency's mean diagonal and
          off-diagonal magnitude.
    """
    truth = scenes.by_filename()
    missing = [f for f in outputs.filenames if f not in truth]
    if missing:
        raise ValueError(f"diagnose: {len(missing)} persons are not in the scenes' ground "
                         f"truth at {scenes.root} (e.g. {missing[0]!r}): outputs of other data?")
    persons = [truth[f] for f in outputs.filenames]
    s, y = outputs.scores, outputs.labels
    cue_cols = np.array(sorted(CATEGORY_TO_INDEX[c] for c in DIAGNOSTIC_CUES))
    everyone = np.ones(len(persons), bool)
    report: dict[str, Any] = {
        "n": len(persons),
        "map": _subset_map(s, y, everyone, cue_cols, protocol, ties),
        "family_map": {
            f: _subset_map(s, y, everyone, _family_columns(f), protocol, ties)
            for f in CUE_FAMILIES
        },
    }
    has_body = np.array([p.body is not None for p in persons])
    corrupted = np.array([p.corrupted is not None for p in persons])
    body_cols = _family_columns("body")
    report["body"] = {
        "corrupted": _subset_map(s, y, has_body & corrupted, body_cols, protocol, ties),
        "clean": _subset_map(s, y, has_body & ~corrupted, body_cols, protocol, ties),
        "n_corrupted": int((has_body & corrupted).sum()),
        "n_clean": int((has_body & ~corrupted).sum()),
    }
    if outputs.body_weights is not None:
        w = np.asarray(outputs.body_weights, dtype=np.float64)
        kinds = np.array([body_kind(p) for p in persons])
        report["bam"] = {
            "point_biserial": point_biserial(w[has_body], corrupted[has_body]),
            "mean_weight": {k: _mean(w[kinds == k])
                            for k in ("clean", "occluded", "blurred", "no_body_cue")},
        }
    if outputs.attention is not None:
        report["gsam"] = _gsam_report(outputs, persons, scenes)
    if outputs.adjacency is not None and outputs.partition is not None:
        report["lsam"] = _lsam_report(outputs, persons, scenes)
    return report


def _scene_size(scenes: DiagnosticScenes) -> int:
    return int(scenes.settings.get("image_size") or 0) or int(
        max(max(p.sky_box[2], p.bbox[2]) for p in scenes.persons))


def _gsam_report(outputs: DiagnosticOutputs, persons: list[DiagnosticPerson],
                 scenes: DiagnosticScenes) -> dict[str, Any]:  # fmt: skip
    assert outputs.attention is not None
    scene_size, size = _scene_size(scenes), outputs.size
    by_region: dict[str, tuple[list[int], list[np.ndarray]]] = {r: ([], []) for r in CUE_REGIONS}
    for i, p in enumerate(persons):
        for region, mask in cue_masks(p, scene_size, size).items():
            if mask.any():
                by_region[region][0].append(i)
                by_region[region][1].append(mask)
    out: dict[str, Any] = {}
    for region, (rows, masks) in by_region.items():
        if not rows:
            out[region] = {"n": 0, "mass": None, "chance": None, "pointing": None}
            continue
        maps, stack = outputs.attention[rows], np.stack(masks)
        out[region] = {
            "n": len(rows),
            "mass": _mean(attention_mass_in_mask(maps, stack)),
            "chance": _mean(stack.reshape(len(rows), -1).mean(1)),
            "pointing": _mean(pointing_game(maps, stack)),
        }
    flat = outputs.attention.reshape(len(outputs.attention), -1).astype(np.float64)
    out["range"] = _mean(flat.max(1) - flat.min(1))
    return out


def _lsam_report(outputs: DiagnosticOutputs, persons: list[DiagnosticPerson],
                 scenes: DiagnosticScenes) -> dict[str, Any]:  # fmt: skip
    assert outputs.adjacency is not None and outputs.partition is not None
    a, n = np.abs(outputs.adjacency.astype(np.float64)), outputs.partition
    scene_size, size = _scene_size(scenes), outputs.size
    side = size - size % n  # the partition's "resize" policy drops the remainder
    groups = []  # the cue patches of each person whose local objects touch two or more
    for p in persons:
        if p.local:
            nodes = patches_touched(cue_masks(p, scene_size, side)["local"], n)
            if nodes.size >= 2:
                groups.append(nodes)

    def contrast(matrix: np.ndarray) -> tuple[float | None, float | None, float | None]:
        parts = [adjacency_contrast(matrix, nodes) for nodes in groups]
        cue, rest = _mean([c["cue"] for c in parts]), _mean([c["rest"] for c in parts])
        ratio = cue / rest if cue is not None and rest else None
        return cue, rest, ratio

    cue, rest, ratio = contrast(a)
    initial = (contrast(np.abs(outputs.initial_adjacency.astype(np.float64)))[2]
               if outputs.initial_adjacency is not None else None)  # fmt: skip
    off = ~np.eye(a.shape[0], dtype=bool)
    return {"n": len(groups), "cue": cue, "rest": rest, "ratio": ratio,
            "ratio_initial": initial, "diagonal": float(np.diag(a).mean()),
            "off_diagonal": float(a[off].mean())}
