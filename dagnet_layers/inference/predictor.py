"""A trained DAG-Net on any picture: persons found or given, each through the eval pipeline.

:class:`Predictor` holds a model and how its checkpoint wants to be used (input
size, body masking, score function, thresholds). Every person goes through
exactly what :class:`~dagnet_layers.emotic.data.EmoticDataset` with the eval
transform gives the model in evaluation (body crop and whole-image context at
``image_size``, the body box masked in the context, each stream normalised with
its backbone's statistics), and its scores are made from the logits as the
engine's evaluation made them for this checkpoint, so the validation thresholds
apply. Persons of several images or video frames are batched together.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dagnet_layers.emotic.data import (
    EMOTIC_CATEGORIES,
    clamp_bbox,
    crop_body_and_context,
    emotic_eval_transform,
    mask_bbox,
    normalization_of,
)
from dagnet_layers.emotic.losses import SCORE_KINDS, scores_from_logits
from dagnet_layers.errors import ConfigError
from dagnet_layers.inference.checkpoint import (
    DEFAULT_SCORE,
    LEGACY_SCORE,
    read_inference_config,
    thresholds_of,
)
from dagnet_layers.models import DAGNet

__all__ = ["Detector", "Frame", "PersonPrediction", "Predictor"]

#: A person detector: RGB images in, per image ``(boxes (K, 4) x1 y1 x2 y2 in pixels,
#: scores (K,))`` out. :class:`~dagnet_layers.inference.TorchvisionPersonDetector` is one;
#: any callable of this shape can replace it.
Detector = Callable[[Sequence[Any]], Sequence[tuple[Any, Any]]]

_AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _as_rgb(image: Any) -> Any:
    """A PIL RGB image from a PIL image of any mode or an ``(H, W, 3)`` uint8 array."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ConfigError(f"expected a PIL image or an (H, W, 3) uint8 array, got "
                          f"{type(image).__name__} {getattr(arr, 'shape', '')} {arr.dtype}")
    return Image.fromarray(arr)


@dataclass
class PersonPrediction:
    """One person in one image or video frame.

    Attributes:
        source: The image or video file (or a caller's name for an in-memory image).
        frame: Frame index in the video; ``None`` for an image.
        time: Seconds into the video; ``None`` for an image.
        person: Position among the persons of this image or frame (0-based).
        box: ``(x1, y1, x2, y2)`` in image pixels, clamped to the image as the
            dataset clamps annotated boxes (what the model saw).
        detector_score: The person detector's confidence; ``None`` for a given box.
        scores: Category -> score (the checkpoint's score function of the logits).
        predicted: Categories at or above their threshold, by decreasing score;
            without thresholds, the ``top_k`` best.
        vad: Valence, arousal, dominance when the model has a VAD head.
        body_weight: BAM's body credibility weight when the model has BAM.
        track: Person identity across the frames of a video (``None`` for images).
        attention_map: The GSAM map ``(h, w)`` when the model has GSAM (not written
            to JSON).
    """

    source: str
    frame: int | None
    time: float | None
    person: int
    box: tuple[int, int, int, int]
    detector_score: float | None
    scores: dict[str, float]
    predicted: list[str]
    vad: tuple[float, float, float] | None = None
    body_weight: float | None = None
    track: int | None = None
    attention_map: np.ndarray | None = field(default=None, repr=False, compare=False)

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best categories with their scores."""
        return sorted(self.scores.items(), key=lambda kv: -kv[1])[:k]

    def to_record(self) -> dict[str, Any]:
        """A JSON-able dict (one JSON Lines record), without the attention map."""
        return {
            "source": self.source, "frame": self.frame, "time": self.time,
            "person": self.person, "track": self.track, "box": list(self.box),
            "detector_score": self.detector_score, "predicted": list(self.predicted),
            "scores": dict(self.scores),
            "vad": None if self.vad is None else dict(zip(("valence", "arousal", "dominance"),
                                                          self.vad, strict=True)),
            "body_weight": self.body_weight,
        }  # fmt: skip


@dataclass
class Frame:
    """An image to predict for: a photo, or one frame of a video.

    Attributes:
        source: Where it comes from (a file name; written to every record).
        image: The RGB image (PIL).
        index: Frame index in the video; ``None`` for a photo.
        time: Seconds into the video; ``None`` for a photo.
        boxes: Person boxes ``x1, y1, x2, y2`` in pixels; ``None``: use the detector.
        detector_scores: A score per box, when the boxes come from a detector.
    """

    source: str
    image: Any
    index: int | None = None
    time: float | None = None
    boxes: Sequence[Sequence[float]] | None = None
    detector_scores: Sequence[float | None] | None = None


@dataclass
class _Job:
    """One image waiting in a batch, with its persons' clamped boxes."""

    frame: Frame
    boxes: list[tuple[int, int, int, int]]
    detector_scores: list[float | None]


class Predictor:
    """A trained model on in-the-wild images: detect (or take) persons, preprocess, score.

    Args:
        model: The model (any :class:`~dagnet_layers.models.DAGNet`).
        image_size: Side of the body and context inputs.
        mask_body: Whether the body box is masked in the context (as in training).
        mask_fill: Pixel value of the mask.
        score: ``"softmax"``, ``"sigmoid"`` or ``"identity"``: how logits become scores.
        thresholds: Category -> threshold on those scores; ``None``: top-k.
        top_k: Categories predicted per person when there are no thresholds.
        detector: Finds persons when no boxes are given (see :data:`Detector`).
        device: Where the model runs.
        amp: ``"bf16"`` or ``"fp16"`` autocast on CUDA (the output layers stay in
            float32); ``None`` for full precision.
        batch_size: Persons per forward pass.
        synthetic: The checkpoint was trained on synthetic data (every output says so).
        categories: Names of the model's outputs (default: EMOTIC's 26).

    Example:
        >>> from dagnet_layers import create_model
        >>> from PIL import Image
        >>> predictor = Predictor(create_model("test_dagnet").eval(), image_size=64)
        >>> people = predictor.predict(Image.new("RGB", (96, 80)), boxes=[(10, 5, 50, 78)])
        >>> len(people), len(people[0].scores), people[0].box
        (1, 26, (10, 5, 50, 78))
    """

    def __init__(
        self, model: DAGNet, *, image_size: int = 224, mask_body: bool = True,
        mask_fill: int = 0, score: str = DEFAULT_SCORE,
        thresholds: dict[str, float] | None = None, top_k: int = 3,
        detector: Detector | None = None, device: str | torch.device = "cpu",
        amp: str | None = None, batch_size: int = 32, synthetic: bool = False,
        categories: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        for name, value in (("image_size", image_size), ("top_k", top_k),
                            ("batch_size", batch_size)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Predictor({name}=...) must be an int >= 1, got {value!r}")
        if score not in SCORE_KINDS:
            raise ConfigError(f"Predictor(score=...) must be one of {SCORE_KINDS}, got {score!r}")
        if amp not in (None, *_AMP):
            raise ConfigError(f"Predictor(amp=...) must be None, 'bf16' or 'fp16', got {amp!r}")
        partition = getattr(model, "partition", None)
        if partition is not None and image_size % partition:
            raise ConfigError(f"Predictor(image_size={image_size}) is not divisible by the "
                              f"model's partition N={partition}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size, self.mask_body, self.mask_fill = image_size, mask_body, int(mask_fill)
        self.score, self.top_k, self.batch_size = score, top_k, batch_size
        self.thresholds = dict(thresholds or {})
        self.detector, self.amp, self.synthetic = detector, amp, synthetic
        n = model.num_classes
        if categories is None:
            categories = EMOTIC_CATEGORIES if n == len(EMOTIC_CATEGORIES) else [
                f"category_{k}" for k in range(n)]
        if len(categories) != n:
            raise ConfigError(f"Predictor(categories=...) has {len(categories)} names for a "
                              f"model with {n} outputs")
        self.categories = list(categories)
        self.transform = emotic_eval_transform(image_size, **normalization_of(model))
        #: Persons left out, by reason (``empty_box``: nothing left inside the image).
        self.skipped: Counter[str] = Counter()
        #: LSAM's learned patch adjacency of the last forward pass (``None`` without LSAM).
        self.adjacency: torch.Tensor | None = None

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, *, device: str | torch.device = "cpu",
        detector: Detector | None = None, **kwargs: Any,
    ) -> Predictor:  # fmt: skip
        """A predictor for a folder written by ``save_pretrained`` (plus ``inference.json``).

        The input size, masking, score function and thresholds come from the
        checkpoint's ``inference.json`` (the training defaults without it);
        ``kwargs`` go to :class:`Predictor` (``top_k``, ``amp``, ``batch_size``...).
        """
        from dagnet_layers.models import was_moved

        source = Path(checkpoint).expanduser()
        for attempt in range(3):
            # one folder for every file: a run's ``last`` link may be re-pointed meanwhile
            # (a Hub name is not a local path: it goes to from_pretrained as it is)
            folder = source.resolve() if source.exists() else source
            try:
                config, has_file = read_inference_config(folder)
                model = DAGNet.from_pretrained(folder, map_location=device)
                break
            except FileNotFoundError:  # the folder was collected: read where the link points
                if attempt < 2 and was_moved(source, folder):
                    continue
                raise
        # An inference.json older than its "score" field was calibrated on sigmoid scores.
        score = str(config.get("score", LEGACY_SCORE if has_file else DEFAULT_SCORE))
        return cls(
            model, image_size=int(config["image_size"]), mask_body=bool(config["mask_body"]),
            mask_fill=int(config["mask_fill"]), score=score, thresholds=thresholds_of(config),
            detector=detector, device=device,
            synthetic=bool((config.get("data") or {}).get("synthetic", False)), **kwargs,
        )  # fmt: skip

    # ------------------------------------------------------------------ preprocessing
    def clamp_boxes(
        self, boxes: Iterable[Sequence[float]], width: int, height: int
    ) -> list[tuple[tuple[int, int, int, int], bool] | None]:
        """Each box clamped to the image as the dataset does; ``None`` where nothing is left."""
        out: list[tuple[tuple[int, int, int, int], bool] | None] = []
        for box in boxes:
            values = [float(v) for v in box]
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                out.append(None)
                continue
            clamped, changed = clamp_bbox(values, width, height)
            x1, y1, x2, y2 = clamped
            out.append(((x1, y1, x2, y2), changed) if x2 > x1 and y2 > y1 else None)
        return out

    def preprocess(self, image: Any, boxes: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Body crops and masked contexts of ``boxes`` (already clamped), as the eval pipeline.

        Returns:
            ``body``, ``context`` ``(P, 3, S, S)`` normalised, ``bbox`` ``(P, 4)``.
        """
        samples = []
        for box in boxes:
            body, context, bbox = crop_body_and_context(image, box, self.image_size)
            context_t, bbox_t = torch.from_numpy(context), torch.from_numpy(bbox)
            if self.mask_body:
                context_t = mask_bbox(context_t, bbox_t, self.mask_fill)
            samples.append(self.transform(
                {"body": torch.from_numpy(body), "context": context_t, "bbox": bbox_t}))
        return {k: torch.stack([s[k] for s in samples]) for k in ("body", "context", "bbox")}

    # -------------------------------------------------------------------- prediction
    def predict(
        self, image: Any, boxes: Sequence[Sequence[float]] | None = None, *,
        source: str = "<image>",
    ) -> list[PersonPrediction]:  # fmt: skip
        """The persons of one image, found by the detector when ``boxes`` is None.

        ``image`` is a PIL image (any mode; converted to RGB) or an ``(H, W, 3)``
        ``uint8`` array.
        """
        return next(iter(self.predict_many([Frame(source, _as_rgb(image), boxes=boxes)])))[1]

    def predict_many(
        self, frames: Iterable[Frame], detect_batch: int = 4
    ) -> Iterator[tuple[Frame, list[PersonPrediction]]]:
        """Predict for a stream of photos or video frames, batching persons across them.

        Args:
            frames: The images; those without boxes go through the detector,
                ``detect_batch`` at a time.
            detect_batch: Images per detector call.

        Yields:
            ``(frame, persons)`` per image, in input order (an image with no person
            yields an empty list).
        """
        pending: list[_Job] = []
        undetected: list[Frame] = []
        n_persons = 0

        def run_pending() -> Iterator[tuple[Frame, list[PersonPrediction]]]:
            nonlocal pending, n_persons
            jobs, pending, n_persons = pending, [], 0
            yield from self._run_jobs(jobs)

        def add(frame: Frame, boxes: Any, scores: Any) -> Iterator[tuple[Frame, list[Any]]]:
            nonlocal n_persons
            boxes = [list(map(float, b)) for b in boxes]
            scores = [None] * len(boxes) if scores is None else [
                None if s is None else float(s) for s in scores]
            if len(scores) != len(boxes):
                raise ConfigError(f"{frame.source}: {len(boxes)} boxes but {len(scores)} "
                                  "detector scores")
            kept, kept_scores = [], []
            for clamped, s in zip(self.clamp_boxes(boxes, *frame.image.size), scores,
                                  strict=True):  # fmt: skip
                if clamped is None:
                    self.skipped["empty_box"] += 1
                    continue
                kept.append(clamped[0])
                kept_scores.append(s)
            pending.append(_Job(frame, kept, kept_scores))
            n_persons += len(kept)
            if n_persons >= self.batch_size:
                yield from run_pending()

        def detect() -> Iterator[tuple[Frame, list[PersonPrediction]]]:
            nonlocal undetected
            batch, undetected = undetected, []
            if batch:
                found = self._detect([f.image for f in batch])
                for frame, (boxes, scores) in zip(batch, found, strict=True):
                    yield from add(frame, boxes, scores)

        for frame in frames:
            if frame.boxes is None:
                if self.detector is None:
                    raise ConfigError("no boxes given and no detector: pass boxes, or build "
                                      "the Predictor with detector=...")
                undetected.append(frame)
                if len(undetected) >= detect_batch:
                    yield from detect()
                continue
            yield from detect()  # keeps the input order
            yield from add(frame, frame.boxes, frame.detector_scores)
        yield from detect()
        yield from run_pending()

    def plot(self, image: Any, persons: Sequence[PersonPrediction], **kwargs: Any) -> Any:
        """The paper's Fig. 2 for ``persons`` of ``image`` (at least one), with each one's
        GSAM map and body weight and the learned patch graph of the last forward pass:
        :func:`~dagnet_layers.figures.plot_prediction` (the ``viz`` extra), whose other
        arguments (``true_labels``, ``dpi``, ``path``...) pass through ``kwargs``."""
        from dagnet_layers.figures import plot_prediction

        maps = [p.attention_map for p in persons]
        weights = [p.body_weight for p in persons]
        return plot_prediction(
            image, [p.box for p in persons],
            [{name: p.scores[name] for name in p.predicted} for p in persons],
            attention_maps=None if maps[0] is None else maps,
            body_weights=None if weights[0] is None else weights,
            adjacency=self.adjacency, partition=getattr(self.model, "partition", None),
            categories=self.categories, **kwargs)  # fmt: skip

    def _detect(self, images: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        assert self.detector is not None
        found = list(self.detector(images))
        dropped = getattr(self.detector, "skipped", None)  # persons it found but left out
        if isinstance(dropped, Counter):
            self.skipped.update(+dropped)  # (+: only the reasons that counted)
            dropped.clear()
        if len(found) != len(images):
            raise ConfigError(f"the detector returned {len(found)} results for {len(images)} "
                              "images; it must return one (boxes, scores) pair per image")
        return [(np.asarray(b, dtype=np.float64).reshape(-1, 4),
                 np.asarray(s, dtype=np.float64).reshape(-1)) for b, s in found]  # fmt: skip

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=_AMP[self.amp])

    @torch.no_grad()
    def _run_jobs(self, jobs: list[_Job]) -> Iterator[tuple[Frame, list[PersonPrediction]]]:
        if not jobs:
            return
        parts = [self.preprocess(job.frame.image, job.boxes) for job in jobs if job.boxes]
        out = None
        if parts:
            body = torch.cat([p["body"] for p in parts]).to(self.device)
            context = torch.cat([p["context"] for p in parts]).to(self.device)
            with self._autocast():
                out = self.model(body, context)
            if out.adjacency is not None:
                self.adjacency = out.adjacency.detach().float().cpu()
            scores = scores_from_logits(out.logits.float(), self.score).cpu().numpy()
        row = 0
        for job in jobs:
            persons = []
            for p, (box, det) in enumerate(zip(job.boxes, job.detector_scores, strict=True)):
                assert out is not None
                persons.append(self._person(job, p, box, det, scores[row], out, row))
                row += 1
            yield job.frame, persons

    def _person(self, job: _Job, p: int, box: tuple[int, int, int, int], det: float | None,
                person_scores: np.ndarray, out: Any, row: int) -> PersonPrediction:  # fmt: skip
        scores = {name: float(v) for name, v in zip(self.categories, person_scores, strict=True)}
        order = sorted(scores, key=lambda c: -scores[c])
        if self.thresholds:
            predicted = [c for c in order if c in self.thresholds
                         and scores[c] >= self.thresholds[c]]  # fmt: skip
        else:
            predicted = order[: self.top_k]
        vad = None if out.vad is None else tuple(float(v) for v in out.vad[row].float())
        weight = None if out.body_weights is None else float(out.body_weights[row].float())
        amap = None if out.attention_map is None else (
            out.attention_map[row].float().reshape(out.attention_map.shape[-2:]).cpu().numpy())
        f = job.frame
        return PersonPrediction(f.source, f.index, f.time, p, box, det, scores, predicted,
                                vad, weight, None, amap)  # type: ignore[arg-type]
