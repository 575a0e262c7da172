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

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.emotic.losses import SCORE_KINDS
from dagnet_layers.errors import CorruptFileError
from dagnet_layers.storage import read_json_object

__all__ = [
    "DEFAULT_INFERENCE",
    "DEFAULT_SCORE",
    "INFERENCE_NAME",
    "LEGACY_SCORE",
    "MAX_IMAGE_SIZE",
    "MAX_SETTINGS_BYTES",
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


#: Largest ``inference.json`` / ``config.json`` read (ours are a few KB).
MAX_SETTINGS_BYTES = 1 << 20
#: Largest input side an ``inference.json`` may ask for: 1,024 is 21 times the
#: paper's 224 in pixels; beyond it one ResNet-50 forward pass needs tens of GB.
MAX_IMAGE_SIZE = 1024

#: The fields ``inference.json`` may hold, and what each must be.
_FIELDS = ("image_size", "mask_body", "mask_fill", "score", "loss", "protocol", "ties",
           "val_map", "data", "thresholds")


def read_inference_config(checkpoint: str | Path) -> tuple[dict[str, Any], bool]:
    """``inference.json`` of a checkpoint merged over the defaults, and whether it existed.

    Every field is checked before use: its type, its range (``image_size`` in
    [1, :data:`MAX_IMAGE_SIZE`], ``mask_fill`` in [0, 255], thresholds finite and in
    [0, 1], each for a known EMOTIC category), and no field is unknown. In a training
    checkpoint (a folder with ``MANIFEST.json``), the file must also match the
    checksum recorded when it was written.

    Raises:
        CorruptFileError: The file is not a JSON object with sane values (a
            ``ValueError`` naming the file and the field).
        IntegrityError: It differs from what the checkpoint's manifest records.
    """
    path = Path(checkpoint) / INFERENCE_NAME
    # first: a manifest that lists the file makes its absence an error, not the defaults
    _verify_against_manifest(Path(checkpoint), INFERENCE_NAME)
    if not path.exists():
        return dict(DEFAULT_INFERENCE), False
    data = read_json_object(path, INFERENCE_NAME, max_bytes=MAX_SETTINGS_BYTES)
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise CorruptFileError(path, f"unknown field(s) {unknown[:5]}; an inference.json "
                               f"holds only {list(_FIELDS)}")
    config = {**DEFAULT_INFERENCE, **data}
    _check_settings(path, config)
    _check_thresholds(path, config)
    data = config.get("data")
    if data is not None:
        if not isinstance(data, dict):
            raise _bad(path, config, "data", "an object")
        if "synthetic" in data and not isinstance(data["synthetic"], bool):
            raise CorruptFileError(path, f"data.synthetic must be true or false, got "
                                   f"{data['synthetic']!r}")
    return config, True


def _bad(path: Path, config: dict[str, Any], field: str, want: str) -> CorruptFileError:
    return CorruptFileError(path, f"{field} must be {want}, got {str(config[field])[:80]!r}")


def _check_settings(path: Path, config: dict[str, Any]) -> None:
    """The preprocessing and scoring fields: types and ranges."""
    size = config["image_size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise _bad(path, config, "image_size", f"an int in [1, {MAX_IMAGE_SIZE}]")
    if not isinstance(config["mask_body"], bool):
        raise _bad(path, config, "mask_body", "true or false")
    fill = config["mask_fill"]
    if not _number(fill) or not 0 <= fill <= 255:
        raise _bad(path, config, "mask_fill", "a number in [0, 255] (a pixel value)")
    if "score" in config and config["score"] not in SCORE_KINDS:
        raise _bad(path, config, "score", f"one of {SCORE_KINDS}")
    for field in ("loss", "protocol", "ties"):
        if config.get(field) is not None and not isinstance(config[field], str):
            raise _bad(path, config, field, "a string or null")
    if config.get("val_map") is not None and not _number(config["val_map"], finite=False):
        raise _bad(path, config, "val_map", "a number or null")


def _check_thresholds(path: Path, config: dict[str, Any]) -> None:
    """Thresholds: EMOTIC categories only, finite, in [0, 1] for probability scores."""
    thresholds = config.get("thresholds")
    if thresholds is None:
        return
    if not isinstance(thresholds, dict):
        raise _bad(path, config, "thresholds", "an object mapping category -> threshold")
    strangers = sorted(set(thresholds) - set(EMOTIC_CATEGORIES))
    if strangers:
        raise CorruptFileError(path, f"thresholds for unknown categories {strangers[:5]}; "
                               "the categories are EMOTIC's 26")
    # softmax and sigmoid scores are probabilities; "identity" ones (a regression
    # loss's raw outputs) may be any finite number
    probability = config.get("score", LEGACY_SCORE) in ("softmax", "sigmoid")
    for name, value in thresholds.items():
        if value is None:
            continue
        if not _number(value) or (probability and not 0.0 <= value <= 1.0):
            want = "in [0, 1] (a probability score)" if probability else ""
            raise CorruptFileError(path, f"thresholds[{name!r}] must be a finite number "
                                   f"{want} or null, got {value!r}".replace("  ", " "))


def _number(value: Any, finite: bool = True) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) or not finite


def _verify_against_manifest(folder: Path, name: str) -> None:
    """Check ``name`` against the checksum a training checkpoint's manifest records."""
    from dagnet_layers.emotic.engine.checkpoints import MANIFEST_NAME
    from dagnet_layers.storage import verify_files

    manifest_file = folder / MANIFEST_NAME
    if not manifest_file.is_file():
        return  # a save_pretrained folder: the file is bounded, not verified
    manifest = read_json_object(manifest_file, MANIFEST_NAME, max_bytes=MAX_SETTINGS_BYTES)
    files = manifest.get("files")
    if isinstance(files, dict) and isinstance(files.get(name), dict):
        verify_files(folder, {name: files[name]})


def thresholds_of(config: dict[str, Any]) -> dict[str, float]:
    """The finite per-category thresholds of an inference config (a category without
    validation positives has none)."""
    out: dict[str, float] = {}
    for name, value in (config.get("thresholds") or {}).items():
        if value is not None and math.isfinite(float(value)):
            out[name] = float(value)
    return out
