"""Predict EMOTIC emotions for the persons in one image with a trained DAG-Net.

Usage::

    dagnet-predict --checkpoint RUN_DIR/checkpoints/best --image photo.jpg \\
        --box 120 40 310 460 --box 400 80 520 470 \\
        --true-labels "Happiness,Engagement" --true-labels "Peace" \\
        --output pred.png --top-k 5

The checkpoint folder is what ``DAGNet.save_pretrained`` writes (``config.json``,
``model.safetensors``) plus, optionally, the training engine's ``inference.json``::

    {"image_size": 224, "mask_body": true, "mask_fill": 0, "score": "softmax",
     "protocol": "emotic", "thresholds": {"Affection": 0.31, ...},
     "data": {"source": "emotic", "synthetic": false}}

Each box goes through exactly the preprocessing of ``EmoticDataset`` with the eval
transform (body crop and whole-image context at ``image_size``, body box masked in
the context, each stream normalised with its backbone's mean and std, as in
training). Scores are made from the logits exactly as the engine's evaluation made
them for this checkpoint (``score``: ``softmax`` for the paper's KL loss,
``sigmoid`` for BCE/focal), so the validation thresholds apply to them. With
thresholds, the labels at or above their category's precision = recall threshold are
the predictions (marked ``*``); without them the top-k labels are shown. A
checkpoint trained on the synthetic demo data says so in the table, the JSON and the
figure. The figure (``--output``) follows the paper's Fig. 2 and adds the GSAM
attention map, BAM's body weight and LSAM's graph.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from dagnet_layers import EMOTIC_CATEGORIES, DAGNet
from dagnet_layers.commands.args import build_predict_parser, predict_entry
from dagnet_layers.emotic.data import (
    clamp_bbox,
    crop_body_and_context,
    emotic_eval_transform,
    load_image_rgb,
    mask_bbox,
    normalization_of,
)
from dagnet_layers.emotic.losses import SCORE_KINDS, scores_from_logits
from dagnet_layers.errors import CorruptFileError
from dagnet_layers.storage import read_json_object

INFERENCE_NAME = "inference.json"
DEFAULT_INFERENCE: dict[str, Any] = {"image_size": 224, "mask_body": True, "mask_fill": 0}
#: Without inference.json: the score of the paper's loss (KL divergence).
DEFAULT_SCORE = "softmax"
#: inference.json written before it recorded its score: the thresholds in it
#: were calibrated on sigmoid scores, the engine's only score then.
LEGACY_SCORE = "sigmoid"
SYNTHETIC_WARNING = (
    "warning: this checkpoint was trained on SYNTHETIC demo data, not on EMOTIC: its "
    "scores on a real photo mean nothing about the emotions in it"
)


def _fail(parser: argparse.ArgumentParser, argument: str, message: str) -> NoReturn:
    parser.error(f"argument {argument}: {message}")  # exits with status 2


def read_inference_config(checkpoint: Path) -> tuple[dict[str, Any], bool]:
    """``inference.json`` of a checkpoint merged over the defaults, and whether it existed.

    Raises:
        CorruptFileError: The file exists but is not a JSON object with sane values
            (a ``ValueError`` naming the file and the field).
    """
    path = checkpoint / INFERENCE_NAME
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


def parse_boxes(
    parser: argparse.ArgumentParser, raw: list[list[str]], width: int, height: int
) -> list[tuple[tuple[int, int, int, int], bool]]:
    """Validate ``--box`` values and clamp them to the image like the dataset does."""
    boxes = []
    for i, values in enumerate(raw, start=1):
        where = f"box #{i} ({' '.join(values)})"
        if len(values) != 4:
            _fail(parser, "--box", f"{where} needs 4 numbers x1 y1 x2 y2, got {len(values)}")
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            _fail(parser, "--box", f"{where} must hold numbers")
        if not all(math.isfinite(v) for v in numbers):
            _fail(parser, "--box", f"{where} must hold finite numbers")
        box, clamped = clamp_bbox(numbers, width, height)
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            _fail(
                parser,
                "--box",
                f"{where} is empty inside the {width}x{height} image after clamping to "
                f"{box}; boxes are x1 y1 x2 y2 in pixels with x2 > x1 and y2 > y1",
            )
        boxes.append((box, clamped))
    return boxes


def parse_true_labels(
    parser: argparse.ArgumentParser, raw: list[str] | None, n_boxes: int
) -> list[list[str]] | None:
    """``--true-labels`` strings as category lists (case-insensitive names), one per box."""
    if raw is None:
        return None
    if len(raw) != n_boxes:
        _fail(
            parser,
            "--true-labels",
            f"give it once per --box ({n_boxes}), got {len(raw)}; use '' for a person "
            "without labels",
        )
    by_lower = {c.lower(): c for c in EMOTIC_CATEGORIES}
    out = []
    for text in raw:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n.lower() not in by_lower]
        if unknown:
            _fail(
                parser,
                "--true-labels",
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown}; "
                f"choose from {', '.join(EMOTIC_CATEGORIES)}",
            )
        out.append([by_lower[n.lower()] for n in names])
    return out


def preprocess(
    image: Any, boxes: Sequence[tuple[int, int, int, int]], size: int, mask_body: bool, fill: int,
    normalization: dict[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Body crops and masked contexts of every box, exactly as ``EmoticDataset`` + eval transform.

    Returns:
        A batch dict with normalised ``body`` and ``context`` ``(P, 3, size, size)``
        and ``bbox`` ``(P, 4)`` in context pixels.
    """
    transform = emotic_eval_transform(size, **(normalization or {}))
    samples = []
    for box in boxes:
        body, context, bbox = crop_body_and_context(image, box, size)
        context_t, bbox_t = torch.from_numpy(context), torch.from_numpy(bbox)
        if mask_body:
            context_t = mask_bbox(context_t, bbox_t, fill)
        samples.append(
            transform({"body": torch.from_numpy(body), "context": context_t, "bbox": bbox_t})
        )
    return {k: torch.stack([s[k] for s in samples]) for k in ("body", "context", "bbox")}


def main(argv: Sequence[str] | None = None, prog: str = "dagnet-predict") -> int:
    """Run the command line; returns the exit status (argument errors exit with 2)."""
    parser = build_predict_parser(prog)
    args = parser.parse_args(argv)
    if args.top_k < 1:
        _fail(parser, "--top-k", f"must be >= 1, got {args.top_k}")

    checkpoint: Path = args.checkpoint
    if not checkpoint.is_dir():
        _fail(parser, "--checkpoint", f"{checkpoint} is not a folder")
    for name in ("config.json", "model.safetensors"):
        if not (checkpoint / name).is_file():
            _fail(
                parser,
                "--checkpoint",
                f"{checkpoint} has no {name}; pass a folder written by DAGNet.save_pretrained "
                "(e.g. RUN_DIR/checkpoints/best)",
            )
    try:
        inference, has_inference = read_inference_config(checkpoint)
    except ValueError as err:
        _fail(parser, "--checkpoint", str(err))
    try:
        device = torch.device(args.device)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        _fail(parser, "--device", f"{args.device!r} is not usable here: {err}")

    try:
        image = load_image_rgb(args.image)
    except (FileNotFoundError, ValueError) as err:
        _fail(parser, "--image", str(err))
    width, height = image.size
    boxes = parse_boxes(parser, args.box, width, height)
    true_labels = parse_true_labels(parser, args.true_labels, len(boxes))

    try:
        model = DAGNet.from_pretrained(checkpoint, map_location=device).eval()
    except (FileNotFoundError, ValueError) as err:
        _fail(parser, "--checkpoint", str(err))
    names = (
        list(EMOTIC_CATEGORIES)
        if model.num_classes == len(EMOTIC_CATEGORIES)
        else [f"category_{k}" for k in range(model.num_classes)]
    )
    size = int(inference["image_size"])
    if model.partition is not None and size % model.partition:
        _fail(
            parser,
            "--checkpoint",
            f"{INFERENCE_NAME} image_size={size} is not divisible by the model's "
            f"partition N={model.partition}",
        )

    batch = preprocess(
        image,
        [b for b, _ in boxes],
        size,
        bool(inference["mask_body"]),
        int(inference["mask_fill"]),
        normalization_of(model),
    )
    with torch.no_grad():
        out = model(batch["body"].to(device), batch["context"].to(device))
    # An inference.json older than its "score" field was calibrated on sigmoid scores.
    score = str(inference.get("score", LEGACY_SCORE if has_inference else DEFAULT_SCORE))
    scores = scores_from_logits(out.logits, score).cpu()
    synthetic = bool((inference.get("data") or {}).get("synthetic", False))

    raw_thresholds = inference.get("thresholds") or None
    thresholds: dict[str, float] = {}
    if raw_thresholds:
        for name, value in raw_thresholds.items():
            if value is not None and math.isfinite(float(value)):
                thresholds[name] = float(value)

    # ---------------------------------------------------------------- report
    if synthetic:
        print(SYNTHETIC_WARNING)
    print(
        f"checkpoint: {checkpoint}  ({model.config.body_backbone} body, "
        f"{model.config.context_backbone} context, N={model.partition})"
    )
    print(
        f"image: {args.image}  {width}x{height}, model input {size}x{size}, "
        f"body masked in context: {bool(inference['mask_body'])}"
    )
    if not has_inference:
        print(
            f"note: no {INFERENCE_NAME} in the checkpoint: using image_size 224, a "
            f"masked body and {DEFAULT_SCORE} scores (the training defaults)"
        )
    elif "score" not in inference:
        print(
            f"note: {INFERENCE_NAME} does not name its score (written by an older version): "
            f"using {LEGACY_SCORE} scores, on which its thresholds were calibrated"
        )
    if thresholds:
        print(
            f"scores: {score}(logits); '*' = at or above the category's precision = recall "
            f"threshold ({len(thresholds)} calibrated on validation)"
        )
    else:
        print(
            f"scores: {score}(logits); no thresholds in {INFERENCE_NAME}: predictions are "
            f"the top-{args.top_k} categories by score"
        )
    for i, (box, clamped) in enumerate(boxes, start=1):
        if clamped:
            given = " ".join(args.box[i - 1])
            print(f"note: box {i} ({given}) reaches past the image; clamped to {box}")

    header = f"{'person':>6}  {'box (x1, y1, x2, y2)':<24}  {'body_w':>6}  top emotions"
    print(header)
    print("-" * max(len(header), 80))
    predictions: list[dict[str, float]] = []
    records = []
    for i, (box, _) in enumerate(boxes):
        person = scores[i]
        order = torch.argsort(person, descending=True, stable=True).tolist()
        top = order[: args.top_k]
        if thresholds:
            chosen = [
                k
                for k in order
                if names[k] in thresholds and float(person[k]) >= thresholds[names[k]]
            ]
        else:
            chosen = top
        predictions.append({names[k]: float(person[k]) for k in chosen})
        weight = None if out.body_weights is None else float(out.body_weights[i])
        cells = []
        for k in top:
            mark = "*" if thresholds and k in chosen else ""
            cells.append(f"{names[k]} {float(person[k]):.3f}{mark}")
        box_text = "(" + ", ".join(str(v) for v in box) + ")"
        weight_text = "-" if weight is None else f"{weight:.3f}"
        print(f"{i + 1:>6}  {box_text:<24}  {weight_text:>6}  " + "  ".join(cells))
        extra = [n for n in predictions[-1] if names.index(n) not in top]
        if extra:
            print(f"{'':>6}  {'':<24}  {'':>6}  also above threshold: " + ", ".join(extra))
        if out.vad is not None:
            v, a, d = (float(x) for x in out.vad[i])
            print(
                f"{'':>6}  {'':<24}  {'':>6}  valence {v:.2f}  arousal {a:.2f}  dominance {d:.2f}"
            )
        records.append(
            {
                "person": i + 1,
                "box": list(box),
                "body_weight": weight,
                "scores": {names[k]: float(person[k]) for k in range(len(names))},
                "predicted": list(predictions[-1]),
                "true_labels": None if true_labels is None else true_labels[i],
            }
        )

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "image": str(args.image),
                    "checkpoint": str(checkpoint),
                    "score": score,
                    "data": inference.get("data"),
                    "warning": SYNTHETIC_WARNING if synthetic else None,
                    "thresholds": "inference.json" if thresholds else None,
                    "persons": records,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")

    if not args.no_plot:
        from dagnet_layers.figures import plot_prediction

        output = args.output or Path(f"{args.image.stem}_dagnet.png")
        figure = plot_prediction(
            image,
            [b for b, _ in boxes],
            predictions,
            attention_maps=None if out.attention_map is None else out.attention_map.cpu(),
            body_weights=None if out.body_weights is None else out.body_weights.cpu(),
            adjacency=None if out.adjacency is None else out.adjacency.cpu(),
            partition=model.partition,
            true_labels=true_labels,
            categories=names,
        )
        if synthetic:
            figure.suptitle("checkpoint trained on SYNTHETIC demo data, not EMOTIC: "
                            "not a prediction of real emotions", color="firebrick")
        output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(output, dpi=figure.dpi)
        print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(predict_entry(prog="dagnet_layers.commands.predict"))
