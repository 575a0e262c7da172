"""How a checkpoint wants to be used: ``inference.json`` beside the weights.

The training engine writes it next to ``config.json`` and ``model.safetensors``::

    {"image_size": 224, "mask_body": true, "mask_fill": 0, "score": "softmax",
     "protocol": "emotic", "thresholds": {"Affection": 0.31, ...},
     "data": {"source": "emotic", "synthetic": false}}

``score`` says how the evaluation made scores from the logits (``softmax`` for the
paper's KL loss, ``sigmoid`` for BCE/focal); the ``thresholds`` (precision =
recall on validation) apply to those scores only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dagnet_layers.emotic.losses import SCORE_KINDS
from dagnet_layers.errors import CorruptFileError
from dagnet_layers.storage import read_json_object

__all__ = [
    "DEFAULT_INFERENCE",
    "DEFAULT_SCORE",
    "INFERENCE_NAME",
    "LEGACY_SCORE",
    "SYNTHETIC_WARNING",
    "read_inference_config",
    "thresholds_of",
]

#: File name of a checkpoint's inference settings.
INFERENCE_NAME = "inference.json"
#: What a checkpoint without ``inference.json`` is run with (the training defaults).
DEFAULT_INFERENCE: dict[str, Any] = {"image_size": 224, "mask_body": True, "mask_fill": 0}
#: Without inference.json: the score of the paper's loss (KL divergence).
DEFAULT_SCORE = "softmax"
#: inference.json written before it recorded its score: the thresholds in it
#: were calibrated on sigmoid scores, the engine's only score then.
LEGACY_SCORE = "sigmoid"
#: What every output of a checkpoint trained on the synthetic demo data says.
SYNTHETIC_WARNING = (
    "warning: this checkpoint was trained on SYNTHETIC demo data, not on EMOTIC: its "
    "scores on a real photo mean nothing about the emotions in it"
)


def read_inference_config(checkpoint: str | Path) -> tuple[dict[str, Any], bool]:
    """``inference.json`` of a checkpoint merged over the defaults, and whether it existed.

    Raises:
        CorruptFileError: The file exists but is not a JSON object with sane values
            (a ``ValueError`` naming the file and the field).
    """
    path = Path(checkpoint) / INFERENCE_NAME
    if not path.exists():
        return dict(DEFAULT_INFERENCE), False
    data = read_json_object(path, INFERENCE_NAME)
    config = {**DEFAULT_INFERENCE, **data}
    size = config["image_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 4096:
        raise CorruptFileError(path, f"image_size must be an int in [1, 4096], got {size!r}")
    thresholds = config.get("thresholds")
    if thresholds is not None and (
        not isinstance(thresholds, dict)
        or not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                   for v in thresholds.values())
    ):
        raise CorruptFileError(path, f"thresholds must map category -> number, got "
                               f"{str(thresholds)[:80]}")
    if "score" in config and config["score"] not in SCORE_KINDS:
        raise CorruptFileError(path, f"score must be one of {SCORE_KINDS}, got "
                               f"{config['score']!r}")
    data = config.get("data")
    if data is not None and not isinstance(data, dict):
        raise CorruptFileError(path, f"data must be an object, got {data!r}")
    return config, True


def thresholds_of(config: dict[str, Any]) -> dict[str, float]:
    """The finite per-category thresholds of an inference config (a category without
    validation positives has none)."""
    out: dict[str, float] = {}
    for name, value in (config.get("thresholds") or {}).items():
        if value is not None and math.isfinite(float(value)):
            out[name] = float(value)
    return out
