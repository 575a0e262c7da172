"""Reading each module's behaviour against known ground truth: the diagnostic metrics.

On scenes where the location of every cue and the reliability of every body are
known, these numbers say whether a module does its job:

- GSAM: :func:`attention_mass_in_mask` (the share of the attention map's mass on
  the cue region; a uniform map scores the region's area) and
  :func:`pointing_game` (whether the map's peak falls on the region);
- BAM: :func:`point_biserial` between the body weight and the body being
  corrupted (negative when BAM trusts corrupted bodies less);
- LSAM: :func:`patches_touched` (which of the N x N patches a cue lies in, in
  :class:`~dagnet_layers.layers.PatchPartition`'s row-major order) and
  :func:`adjacency_contrast` (the learned adjacency's weight between cue patches
  against the rest).

Maps are compared with masks at the mask's resolution: a map is upsampled
bilinearly (``align_corners=False``), as the figures overlay it on the image.

On the scenes of :func:`~dagnet_layers.emotic.data.make_diagnostic_emotic`,
:func:`collect_outputs` runs a model over a split and keeps what each module
produced (scores, GSAM maps, BAM weights, the LSAM adjacency), :func:`cue_masks`
draws each person's cue regions at the model's input size, and
:func:`diagnose` turns both into the numbers of the diagnostic report: AP per cue
family, body-cue AP on corrupted and clean bodies, the body weight against
corruption, the GSAM map's mass and peak on each cue against chance, and the
learned adjacency between the patches a local cue lies in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dagnet_layers.emotic.data.categories import CATEGORY_TO_INDEX, EMOTIC_CATEGORIES
from dagnet_layers.emotic.data.scenes import DIAGNOSTIC_CUES, DiagnosticPerson, DiagnosticScenes
from dagnet_layers.emotic.engine.runtime import _forward, move_batch
from dagnet_layers.emotic.losses import SCORE_KINDS, scores_from_logits
from dagnet_layers.emotic.metrics import average_precision
from dagnet_layers.layers.graph import normalize_adjacency

__all__ = [
    "CUE_FAMILIES",
    "CUE_REGIONS",
    "DiagnosticOutputs",
    "adjacency_contrast",
    "attention_mass_in_mask",
    "body_kind",
    "collect_outputs",
    "cue_boxes",
    "cue_masks",
    "diagnose",
    "patches_touched",
    "point_biserial",
    "pointing_game",
]

#: The cue families of the diagnostic scenes, in report order.
CUE_FAMILIES: tuple[str, ...] = ("body", "global", "local")
#: The context regions whose GSAM attention is measured: the echo flag (the body cue
#: repeated in the scene), the local objects, the sky (the global cue, less the body).
CUE_REGIONS: tuple[str, ...] = ("echo", "local", "sky")


def _maps_and_masks(attention: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` float64 maps upsampled to the masks' size, and ``(B, H, W)`` bool masks."""
    a = torch.as_tensor(np.asarray(attention, dtype=np.float64) if not isinstance(
        attention, torch.Tensor) else attention.detach().double().cpu())  # fmt: skip
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask.cpu())
    if m.dim() == 2:
        m = m[None]
    if a.dim() == 2:
        a = a[None]
    if a.dim() == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.dim() != 3 or m.dim() != 3 or a.shape[0] != m.shape[0]:
        raise ValueError(f"expected maps (B, h, w) or (B, 1, h, w) and masks (B, H, W) with the "
                         f"same B, got {tuple(a.shape)} and {tuple(m.shape)}")
    if torch.any(a < 0):
        raise ValueError("attention maps must be non-negative (GSAM's are sigmoid outputs)")
    if a.shape[-2:] != m.shape[-2:]:
        a = F.interpolate(a[:, None], size=tuple(m.shape[-2:]), mode="bilinear",
                          align_corners=False)[:, 0]  # fmt: skip
    return a, m.bool()


def attention_mass_in_mask(attention: Any, mask: Any) -> np.ndarray:
    """Share of each attention map's mass that lies on its mask, in [0, 1].

    A map exactly on the mask scores 1; a uniform map scores the mask's area (its
    share of the pixels), which is the chance level to compare against.

    Args:
        attention: ``(h, w)``, ``(B, h, w)`` or ``(B, 1, h, w)`` non-negative maps.
        mask: ``(H, W)`` or ``(B, H, W)`` cue masks (bool or 0/1).

    Returns:
        ``(B,)`` float64; NaN for an all-zero map.

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[:2] = True
        >>> attention_mass_in_mask(np.ones((4, 4)), mask)  # uniform: the mask's area
        array([0.5])
        >>> attention_mass_in_mask(mask.astype(float), mask)
        array([1.])
    """
    a, m = _maps_and_masks(attention, mask)
    total = a.flatten(1).sum(1)
    inside = (a * m).flatten(1).sum(1)
    out = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.nan)
    return out.numpy()


def pointing_game(attention: Any, mask: Any) -> np.ndarray:
    """Whether each map's maximum lies on its mask (ties: any maximal pixel on it counts).

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[0, 0] = True
        >>> att = np.zeros((4, 4)); att[0, 0] = 1.0
        >>> pointing_game(att, mask), pointing_game(1.0 - att, mask)
        (array([ True]), array([False]))
    """
    a, m = _maps_and_masks(attention, mask)
    peak = a.flatten(1).max(1).values
    at_peak = a >= peak[:, None, None]
    return (at_peak & m).flatten(1).any(1).numpy()


def point_biserial(values: Sequence[float] | np.ndarray, flags: Sequence[bool] | np.ndarray
                   ) -> float:  # fmt: skip
    """Pearson correlation between a continuous value and a binary flag (point-biserial).

    For BAM: the body weight against "this body is corrupted"; negative when
    corrupted bodies get lower weights. NaN when either side is constant.

    Example:
        >>> round(point_biserial([0.9, 0.8, 0.2, 0.1], [False, False, True, True]), 3)
        -0.99
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    y = np.asarray(flags, dtype=bool).reshape(-1).astype(np.float64)
    if x.shape != y.shape:
        raise ValueError(f"values and flags differ in length: {x.size} and {y.size}")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def patches_touched(mask: Any, n: int, min_fraction: float = 0.0) -> np.ndarray:
    """Indices of the N x N patches (row-major, as PatchPartition numbers them) a mask lies in.

    Args:
        mask: ``(H, W)`` mask with H and W divisible by ``n``.
        n: Patches per side.
        min_fraction: A patch counts when more than this share of its pixels is on
            the mask.

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[0, 3] = mask[3, 0] = True
        >>> patches_touched(mask, 2).tolist()
        [1, 2]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.shape[0] % n or m.shape[1] % n:
        raise ValueError(f"mask must be (H, W) with H and W divisible by n={n}, got {m.shape}")
    h, w = m.shape[0] // n, m.shape[1] // n
    share = m.reshape(n, h, n, w).mean(axis=(1, 3)).reshape(-1)
    return np.nonzero(share > min_fraction)[0]


def adjacency_contrast(adjacency: Any, cue_nodes: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Mean ``|A_ij|`` between cue patches (i != j) against the mean over all other pairs.

    Returns:
        ``{"cue": ..., "rest": ..., "ratio": cue / rest}``; the ratio is above 1 when
        the learned graph links the patches that carry the cue more strongly than
        the others. NaN where a group is empty.

    Example:
        >>> a = np.eye(4) * 5; a[0, 1] = a[1, 0] = 2.0; a[2, 3] = 1.0
        >>> {k: round(v, 6) for k, v in adjacency_contrast(a, [0, 1]).items()}
        {'cue': 2.0, 'rest': 0.1, 'ratio': 20.0}
    """
    a = np.abs(np.asarray(adjacency.detach().cpu() if isinstance(adjacency, torch.Tensor)
                          else adjacency, dtype=np.float64))  # fmt: skip
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got {a.shape}")
    nodes = np.zeros(a.shape[0], dtype=bool)
    nodes[np.asarray(cue_nodes, dtype=np.int64)] = True
    off = ~np.eye(a.shape[0], dtype=bool)
    cue_pairs = off & nodes[:, None] & nodes[None, :]
    rest_pairs = off & ~cue_pairs
    cue = float(a[cue_pairs].mean()) if cue_pairs.any() else float("nan")
    rest = float(a[rest_pairs].mean()) if rest_pairs.any() else float("nan")
    ratio = cue / rest if rest and np.isfinite(rest) and np.isfinite(cue) else float("nan")
    return {"cue": cue, "rest": rest, "ratio": ratio}


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
