"""Emotions in the wild: a trained DAG-Net on photos, folders and videos.

The wing above the toolkit and the figures: it imports the zoo (the model), the
toolkit (the eval preprocessing, the score functions) and the figures (the
annotated pictures), and only the programs import it.

- :class:`Predictor`: a checkpoint with its ``inference.json`` (input size,
  masking, score function, thresholds); each person through exactly the
  dataset's eval preprocessing; persons batched across images and frames;
- persons from :class:`TorchvisionPersonDetector` (torchvision's COCO
  detectors, weights through torchvision's cache), from boxes given or read by
  :func:`read_boxes_file`, or from any callable with the :data:`Detector` shape;
- :func:`predict_files`: photos, folders, globs and videos (the ``video`` extra)
  to JSON Lines, CSV, annotated pictures and videos and per-person timelines,
  with every skip counted by reason.

Example:
    >>> from dagnet_layers.inference import Predictor, TorchvisionPersonDetector
    >>> predictor = Predictor.from_checkpoint(  # doctest: +SKIP
    ...     "runs/dagnet/checkpoints/best", detector=TorchvisionPersonDetector())
    >>> for person in predictor.predict(Image.open("photo.jpg").convert("RGB")):  # doctest: +SKIP
    ...     print(person.box, person.predicted)
"""

from dagnet_layers.inference.checkpoint import (
    INFERENCE_NAME,
    SYNTHETIC_WARNING,
    read_inference_config,
    thresholds_of,
)
from dagnet_layers.inference.detect import (
    PERSON_DETECTORS,
    TorchvisionPersonDetector,
    boxes_for,
    read_boxes_file,
)
from dagnet_layers.inference.media import (
    SKIP_REASONS,
    Skipped,
    VideoWriter,
    expand_inputs,
    is_video,
    iter_frames,
    video_fps,
)
from dagnet_layers.inference.predictor import Detector, Frame, PersonPrediction, Predictor
from dagnet_layers.inference.run import PredictionSummary, predict_files
from dagnet_layers.inference.track import IoUTracker, box_iou

__all__ = [
    "INFERENCE_NAME",
    "PERSON_DETECTORS",
    "SKIP_REASONS",
    "SYNTHETIC_WARNING",
    "Detector",
    "Frame",
    "IoUTracker",
    "PersonPrediction",
    "PredictionSummary",
    "Predictor",
    "Skipped",
    "TorchvisionPersonDetector",
    "VideoWriter",
    "box_iou",
    "boxes_for",
    "expand_inputs",
    "is_video",
    "iter_frames",
    "predict_files",
    "read_boxes_file",
    "read_inference_config",
    "thresholds_of",
    "video_fps",
]
