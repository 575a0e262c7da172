"""Where the persons are: torchvision's COCO detectors, or boxes from a JSON/CSV file.

EMOTIC's persons are annotated with body boxes, which is what a COCO ``person``
detector finds. :class:`TorchvisionPersonDetector` wraps any detection model of
:mod:`torchvision.models.detection`; its weights come through torchvision's own
mechanism (downloaded once into torch's cache, ``TORCH_HOME``), or from a local
file, or random for tests. Any callable with the :data:`~dagnet_layers.inference.Detector`
shape can replace it.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dagnet_layers._detectors import PERSON_DETECTORS
from dagnet_layers.errors import (
    BadRecordError,
    ConfigError,
    CorruptFileError,
    MissingFileError,
    WeightsUnavailableError,
)

__all__ = ["PERSON_DETECTORS", "TorchvisionPersonDetector", "boxes_for", "read_boxes_file"]

#: COCO's label of ``person`` in torchvision's detection models.
_COCO_PERSON = 1


class TorchvisionPersonDetector:
    """A torchvision COCO detector that keeps only persons.

    Args:
        name: A model of :data:`PERSON_DETECTORS` (any torchvision detection model
            trained on COCO works).
        weights: ``"DEFAULT"`` (torchvision's best COCO weights, through its cache),
            a weights enum name such as ``"COCO_V1"``, a path to a state dict
            (``.pth``/``.pt``) for the same architecture, or ``None`` for random
            weights (tests).
        score_threshold: Detections below this confidence are dropped.
        max_persons: At most this many persons per image, the most confident.
        min_size: Boxes narrower or lower than this many pixels are dropped.
        device: Where the detector runs.

    Attributes:
        skipped: Persons found (at or above ``score_threshold``) but not returned, by
            reason: ``person_over_max_persons`` (past the ``max_persons`` most
            confident of their image) and ``person_too_small`` (under ``min_size``).
            :class:`~dagnet_layers.inference.Predictor` moves these counts into its
            own ``skipped``, so a crowd cut to ``max_persons`` is reported, not silent.

    Example:
        >>> from PIL import Image
        >>> detect = TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=None,
        ...                                    score_threshold=0.0)
        >>> [(b.shape[1], s.ndim) for b, s in detect([Image.new("RGB", (64, 48))])]
        [(4, 1)]
    """

    def __init__(
        self, name: str = "fasterrcnn_resnet50_fpn_v2", weights: str | Path | None = "DEFAULT",
        *, score_threshold: float = 0.5, max_persons: int = 20, min_size: float = 8.0,
        device: str | torch.device = "cpu",
    ) -> None:  # fmt: skip
        from torchvision import models

        if not 0.0 <= float(score_threshold) <= 1.0:
            raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if isinstance(max_persons, bool) or not isinstance(max_persons, int) or max_persons < 1:
            raise ConfigError(f"max_persons must be an int >= 1, got {max_persons!r}")
        available = set(models.list_models(module=models.detection))
        if name not in available:
            raise ConfigError(f"unknown detector {name!r}; choose one of {list(PERSON_DETECTORS)}"
                              " or another torchvision detection model")
        self.name, self.score_threshold = name, float(score_threshold)
        self.max_persons, self.min_size = max_persons, float(min_size)
        self.device = torch.device(device)
        builder = models.get_model_builder(name)
        state = None
        if weights is None:
            model = builder(weights=None, weights_backbone=None)
        elif isinstance(weights, Path) or Path(str(weights)).suffix in (".pth", ".pt"):
            path = Path(weights)
            if not path.is_file():
                raise MissingFileError(path, "detector weights not found")
            model = builder(weights=None, weights_backbone=None)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except Exception as err:
                raise CorruptFileError(path, f"not a state dict of {name} ({err})") from err
        else:
            enum = models.get_model_weights(name)
            try:
                chosen = enum.DEFAULT if str(weights) == "DEFAULT" else enum[str(weights)]
            except KeyError as err:
                raise ConfigError(f"{name} has no weights {weights!r}; choose from "
                                  f"{['DEFAULT', *enum.__members__]}") from err
            categories = chosen.meta.get("categories", [])
            if categories and categories[_COCO_PERSON] != "person":
                raise ConfigError(f"{name} weights {chosen} are not COCO's: no 'person' label")
            try:
                model = builder(weights=chosen)  # torchvision's cache, else a download
            except MemoryError:
                raise
            except Exception as err:
                from torch.hub import get_dir

                cached = Path(get_dir()) / "checkpoints" / Path(str(chosen.url)).name
                why = f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
                if cached.is_file():  # there, but unusable: a torn download, a bad copy
                    raise CorruptFileError(
                        cached, f"the cached {name} {chosen} weights cannot be loaded ({why}); "
                        "delete the file to download it again, or give --detector-weights "
                        "FILE.pth") from err
                raise WeightsUnavailableError(
                    f"person detector {name}: its {chosen} weights are not in torchvision's "
                    f"cache ({cached.parent}) and could not be downloaded ({why})"
                ) from err
        self.model = model.to(self.device).eval()
        self.skipped: Counter[str] = Counter()

    @torch.no_grad()
    def __call__(self, images: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image (PIL RGB), the persons' boxes ``(K, 4)`` and scores ``(K,)``, best first."""
        tensors = [torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
                   .permute(2, 0, 1).to(self.device, torch.float32) / 255.0
                   for im in images]  # fmt: skip
        if not tensors:
            return []
        results = []
        for out in self.model(tensors):
            boxes, scores, labels = (out[k].float().cpu() for k in ("boxes", "scores", "labels"))
            wide = (boxes[:, 2] - boxes[:, 0] >= self.min_size) & (
                boxes[:, 3] - boxes[:, 1] >= self.min_size)
            person = (labels == _COCO_PERSON) & (scores >= self.score_threshold)
            self.skipped["person_too_small"] += int((person & ~wide).sum())
            keep = person & wide
            boxes, scores = boxes[keep], scores[keep]
            self.skipped["person_over_max_persons"] += max(0, len(scores) - self.max_persons)
            order = torch.argsort(scores, descending=True, stable=True)[: self.max_persons]
            results.append((boxes[order].numpy(), scores[order].numpy()))
        return results


def _box(values: Any, where: str) -> list[float]:
    """Four finite numbers with x1 < x2 and y1 < y2, or a :class:`BadRecordError`.

    A box is a sequence of numbers (JSON numbers, or CSV fields that parse as numbers):
    not a string (``"1357"`` is not the box 1, 3, 5, 7) and not booleans.
    """
    wrong = (f"{where}: a box must be 4 finite numbers x1 y1 x2 y2 with x1 < x2 and "
             f"y1 < y2, got {str(values)[:80]!r}")
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise BadRecordError(wrong)
    box = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise BadRecordError(wrong)
        try:
            box.append(float(v))
        except ValueError:
            raise BadRecordError(wrong) from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise BadRecordError(wrong)
    if not (box[0] < box[2] and box[1] < box[3]):
        raise BadRecordError(wrong)
    return box


def read_boxes_file(path: str | Path) -> dict[str, list[list[float]]]:
    """Person boxes per image from a JSON or CSV file.

    JSON: ``{"photo.jpg": [[x1, y1, x2, y2], ...], ...}``. CSV: a header with
    ``image,x1,y1,x2,y2`` and one row per person. Image names are matched against
    the input files by their path as given, then by file name.

    Raises:
        MissingFileError: No such file.
        CorruptFileError: Not JSON/CSV of that shape (names the file).
        BadRecordError: A box that is not 4 finite numbers (names the file and row).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "boxes file not found")
    boxes: dict[str, list[list[float]]] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CorruptFileError(path, f"not valid JSON ({err})") from err
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise CorruptFileError(path, 'expected {"image": [[x1, y1, x2, y2], ...]}')
        for image, rows in data.items():
            boxes[str(image)] = [_box(r, f"{path}: {image}[{k}]") for k, r in enumerate(rows)]
        return boxes
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)  # fields are bounded by csv's own field_size_limit
            needed = {"image", "x1", "y1", "x2", "y2"}
            if not reader.fieldnames or not needed <= {c.strip() for c in reader.fieldnames}:
                raise CorruptFileError(path, "expected a CSV header with image,x1,y1,x2,y2, got "
                                       f"{reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                row = {(k or "").strip(): v for k, v in row.items()}
                box = _box([row[c] for c in ("x1", "y1", "x2", "y2")], f"{path}:{line}")
                boxes.setdefault(str(row["image"]).strip(), []).append(box)
    except UnicodeDecodeError as err:
        raise CorruptFileError(path, f"not a UTF-8 CSV ({err})") from err
    except csv.Error as err:  # a field over csv.field_size_limit(), a stray NUL...
        raise CorruptFileError(path, f"not a boxes CSV ({err})") from err
    return boxes


def boxes_for(boxes: dict[str, list[list[float]]], path: str | Path) -> list[list[float]] | None:
    """The boxes :func:`read_boxes_file` lists for an image: by its path as given, else by
    its file name; ``None`` when it is not listed (its persons are detected).

    Example:
        >>> boxes_for({"a.jpg": [[1, 2, 3, 4]]}, "photos/a.jpg"), boxes_for({}, "b.jpg")
        ([[1, 2, 3, 4]], None)
    """
    path = Path(path)
    found = boxes.get(str(path))
    return found if found is not None else boxes.get(path.name)
