"""Predict EMOTIC emotions for the persons in photos, folders, globs and videos.

Usage::

    dagnet-predict --checkpoint RUN_DIR/checkpoints/best photo.jpg
    dagnet-predict --checkpoint RUN_DIR/checkpoints/best photos/ "more/*.png" clip.mp4 \\
        --output-dir predictions
    dagnet-predict --checkpoint RUN_DIR/checkpoints/best --image photo.jpg \\
        --box 120 40 310 460 --box 400 80 520 470 --true-labels "Happiness" --true-labels ""

Persons are found by a torchvision COCO person detector (``--detector``; its
weights come through torchvision's cache) unless boxes are given (``--box`` for
one photo, ``--boxes-file`` for many). Every person goes through
:class:`~dagnet_layers.inference.Predictor`: exactly the preprocessing of
``EmoticDataset`` with the eval transform, and scores made from the logits as the
engine's evaluation made them for this checkpoint (``inference.json``: ``softmax``
for the paper's KL loss, ``sigmoid`` for BCE/focal), so the validation thresholds
apply. With thresholds, the labels at or above their category's precision = recall
threshold are the predictions (marked ``*``); without them the top-k.

One photo prints a table per person and draws the paper's Fig. 2 with the GSAM
attention map, BAM's body weight and LSAM's graph (``--output``). Several inputs
or a video write ``predictions.jsonl``, ``predictions.csv`` and ``annotated/``
(pictures, annotated videos, per-person timelines) into ``--output-dir``. A
checkpoint trained on the synthetic demo data says so in every output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from dagnet_layers import EMOTIC_CATEGORIES
from dagnet_layers.commands.args import AUTO_DETECTORS, build_predict_parser
from dagnet_layers.commands.checks import usable_device
from dagnet_layers.emotic.data import MAX_IMAGE_PIXELS, clamp_bbox, load_image_rgb
from dagnet_layers.errors import DAGNetError, WeightsUnavailableError
from dagnet_layers.inference import (
    INFERENCE_NAME,
    SYNTHETIC_WARNING,
    PersonPrediction,
    Predictor,
    TorchvisionPersonDetector,
    boxes_for,
    expand_inputs,
    predict_files,
    read_boxes_file,
    read_inference_config,
)
from dagnet_layers.inference.checkpoint import DEFAULT_SCORE, LEGACY_SCORE
from dagnet_layers.inference.media import is_video
from dagnet_layers.storage import file_in_the_way, write_bytes_atomic


def _fail(parser: argparse.ArgumentParser, argument: str, message: str) -> NoReturn:
    parser.error(f"argument {argument}: {message}")  # exits with status 2


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
            _fail(parser, "--box", f"{where} is empty inside the {width}x{height} image after "
                  f"clamping to {box}; boxes are x1 y1 x2 y2 in pixels with x2 > x1 and y2 > y1")
        boxes.append((box, clamped))
    return boxes


def parse_true_labels(
    parser: argparse.ArgumentParser, raw: list[str] | None, n_boxes: int
) -> list[list[str]] | None:
    """``--true-labels`` strings as category lists (case-insensitive names), one per box."""
    if raw is None:
        return None
    if len(raw) != n_boxes:
        _fail(parser, "--true-labels", f"give it once per --box ({n_boxes}), got {len(raw)}; "
              "use '' for a person without labels")
    by_lower = {c.lower(): c for c in EMOTIC_CATEGORIES}
    out = []
    for text in raw:
        names = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [n for n in names if n.lower() not in by_lower]
        if unknown:
            _fail(parser, "--true-labels", f"unknown categor{'y' if len(unknown) == 1 else 'ies'}"
                  f" {unknown}; choose from {', '.join(EMOTIC_CATEGORIES)}")
        out.append([by_lower[n.lower()] for n in names])
    return out


def _check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The numeric flags of ``dagnet-predict`` and ``dagnet-demo`` (those ``args`` has)."""
    for flag in ("--top-k", "--every", "--batch-size", "--max-persons"):
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None and value < 1:
            _fail(parser, flag, f"must be >= 1, got {value}")
    if not 0.0 <= args.det_threshold <= 1.0:
        _fail(parser, "--det-threshold", f"must be in [0, 1], got {args.det_threshold}")


def _check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The files and folders ``dagnet-predict`` writes, before any model is loaded: a file
    standing where a folder must be, or a figure suffix matplotlib cannot write, is one
    ``argument --flag: ...`` line instead of an OS error after the predictions."""
    for flag, path, folder in (("--output", args.output, False), ("--json", args.json, False),
                               ("--jsonl", args.jsonl, False), ("--csv", args.csv, False),
                               ("--output-dir", args.output_dir, True)):  # fmt: skip
        if path is None:
            continue
        blocking = file_in_the_way(path, folder)
        if blocking is not None:
            _fail(parser, flag, f"{blocking} is a file, not a folder")
        if not folder and path.is_dir():
            _fail(parser, flag, f"{path} is a folder; give a file name")
    if args.output is not None and not args.no_plot:
        from matplotlib.backend_bases import FigureCanvasBase

        kinds = sorted(FigureCanvasBase.get_supported_filetypes())
        suffix = args.output.suffix.lower().lstrip(".")
        if suffix not in kinds:
            _fail(parser, "--output", f"{args.output}: the figure's suffix says its format; "
                  f"give one of .{', .'.join(kinds)}")


def _check_checkpoint(parser: argparse.ArgumentParser, checkpoint: Path) -> tuple[dict, bool]:
    if not checkpoint.is_dir():
        _fail(parser, "--checkpoint", f"{checkpoint} is not a folder")
    for name in ("config.json", "model.safetensors"):
        if not (checkpoint / name).is_file():
            _fail(parser, "--checkpoint", f"{checkpoint} has no {name}; pass a folder written "
                  "by DAGNet.save_pretrained (e.g. RUN_DIR/checkpoints/best)")
    try:
        return read_inference_config(checkpoint)
    except ValueError as err:
        _fail(parser, "--checkpoint", str(err))


#: What each command can do instead of downloading the detector's weights.
_DETECTOR_WAYS_OUT = {
    "predict": "give the boxes yourself (--box X1 Y1 X2 Y2 for one photo, --boxes-file FILE "
               "for many) or a local state dict (--detector-weights FILE.pth)",
    "demo": "give a local state dict (--detector-weights FILE.pth)",
}  # fmt: skip


def _detector(parser: argparse.ArgumentParser, args: argparse.Namespace,
              command: str = "predict") -> Any:  # fmt: skip
    """The person detector, or one line saying how to do without a download."""
    weights: Any = args.detector_weights
    if str(weights).lower() == "none":
        weights = None
    if args.detector == "auto":
        args.detector = AUTO_DETECTORS.get(torch.device(args.device).type, AUTO_DETECTORS["cpu"])
    try:
        return TorchvisionPersonDetector(args.detector, weights, score_threshold=args.det_threshold,
                                         max_persons=args.max_persons, device=args.device)
    except WeightsUnavailableError as err:  # not cached, and no network: not a flag's fault
        raise WeightsUnavailableError(f"{err}; {_DETECTOR_WAYS_OUT[command]}") from err
    except (DAGNetError, ValueError) as err:
        _fail(parser, "--detector-weights", str(err))


def main(argv: Sequence[str] | None = None, prog: str = "dagnet-predict") -> int:
    """Run the command line; returns the exit status (argument errors exit with 2)."""
    parser = build_predict_parser(prog)
    args = parser.parse_args(argv)
    _check_numbers(parser, args)
    _check_outputs(parser, args)
    if args.checkpoint.exists():  # a run's ``last`` link, resolved once: every file
        args.checkpoint = args.checkpoint.expanduser().resolve()  # from one checkpoint
    inference, has_inference = _check_checkpoint(parser, args.checkpoint)
    raw_inputs = [*args.image, *args.inputs]
    if not raw_inputs:
        _fail(parser, "INPUT", "give at least one photo, folder, glob or video")
    device = usable_device(parser, args.device)
    left_out: Counter[str] = Counter()
    try:
        paths = expand_inputs(raw_inputs, recursive=args.recursive, skipped=left_out)
    except DAGNetError as err:
        _fail(parser, "--image" if args.image else "INPUT", str(err))
    single = len(paths) == 1 and not is_video(paths[0]) and not Path(raw_inputs[0]).is_dir()
    if args.box and not single:
        _fail(parser, "--box", _why_not_single(raw_inputs, paths))
    if args.true_labels is not None and not args.box:
        _fail(parser, "--true-labels", "needs --box (one label list per box)")
    boxes_per_file = None
    if args.boxes_file is not None:
        try:
            boxes_per_file = read_boxes_file(args.boxes_file)
        except DAGNetError as err:
            _fail(parser, "--boxes-file", str(err))
    needs_detector = not args.box and (
        boxes_per_file is None or any(boxes_for(boxes_per_file, p) is None for p in paths))
    detector = _detector(parser, args) if needs_detector else None
    try:
        predictor = Predictor.from_checkpoint(
            args.checkpoint, device=device, detector=detector, top_k=args.top_k,
            batch_size=args.batch_size, amp=None if args.amp == "none" else args.amp)
    except (DAGNetError, FileNotFoundError, ValueError) as err:
        _fail(parser, "--checkpoint", str(err))

    if single:
        if left_out:  # the other entries of a glob or folder that held one photo
            print("skipped: " + ", ".join(f"{k}={v}" for k, v in sorted(left_out.items())))
        return _one_photo(parser, args, predictor, paths[0], inference, has_inference,
                          boxes_per_file)
    output_dir = args.output_dir or Path("dagnet_predictions")
    if predictor.synthetic:
        print(SYNTHETIC_WARNING)
    summary = predict_files(
        predictor, paths, output_dir=output_dir, jsonl=args.jsonl, csv_path=args.csv,
        annotate=not args.no_annotate, every=args.every, boxes=boxes_per_file,
        progress=not args.no_progress)
    summary.skipped.update(left_out)  # the inputs' files that were not photos or videos
    print(summary.line())
    for path in summary.outputs:
        print(f"wrote {path}")
    return 0


def _why_not_single(raw_inputs: list[str], paths: list[Path]) -> str:
    """Why ``--box`` does not apply, in terms of what was given (a folder named
    ``dir.jpg`` holding one photo is still a folder)."""
    n = len(paths)
    counted = f"{n} photo{'s' if n != 1 else ''} or video{'s' if n != 1 else ''}"
    folders = [raw for raw in raw_inputs if Path(raw).is_dir()]
    if folders:
        return (f"is for one photo given by its file name; {folders[0]} is a folder ({counted} "
                "in the inputs): give the photo's path, or --boxes-file for boxes per file")
    if n == 1:
        return (f"is for a single photo; {paths[0]} is a video, whose persons are detected "
                "in each frame")
    return f"is for a single photo; the inputs hold {counted}: use --boxes-file for several"


def _one_photo(
    parser: argparse.ArgumentParser, args: argparse.Namespace, predictor: Predictor,
    path: Path, inference: dict[str, Any], has_inference: bool,
    boxes_per_file: dict[str, list[list[float]]] | None,
) -> int:  # fmt: skip
    """One photo: the table, the figure, the JSON (and --output-dir outputs when asked)."""
    try:
        image = load_image_rgb(path, max_pixels=MAX_IMAGE_PIXELS)
    except (OSError, ValueError) as err:
        _fail(parser, "--image" if args.image else "INPUT", str(err))
    width, height = image.size
    given, clamped_notes = _given_boxes(parser, args, path, boxes_per_file, width, height)
    true_labels = parse_true_labels(parser, args.true_labels, len(args.box or []))
    summary = None
    if args.output_dir is not None or args.jsonl is not None or args.csv is not None:
        # one pass writes the files and gives the persons of the table and the figure
        persons: list[PersonPrediction] = []
        summary = predict_files(
            predictor, [path], output_dir=args.output_dir, jsonl=args.jsonl, csv_path=args.csv,
            annotate=not args.no_annotate, boxes=None if given is None else {str(path): given},
            progress=False, on_frame=lambda _, found: persons.extend(found))
    else:
        persons = predictor.predict(image, given, source=str(path))
    _print_settings(args, predictor, path, (width, height), given, persons,
                    summary.skipped if summary is not None else predictor.skipped,
                    inference, has_inference)  # fmt: skip
    for i, box in clamped_notes:
        print(f"note: box {i} ({' '.join(args.box[i - 1])}) reaches past the image; clamped "
              f"to {box}")
    _print_table(persons, args.top_k, bool(predictor.thresholds))
    if args.json is not None:
        _write_json(args, predictor, path, persons, true_labels, inference)
    if summary is not None:
        for out in summary.outputs:
            print(f"wrote {out}")
    if not args.no_plot and persons:
        _figure(args, predictor, image, persons, true_labels, path)
    elif not persons:
        print("no person found: no figure")
    return 0


def _given_boxes(parser: argparse.ArgumentParser, args: argparse.Namespace, path: Path,
                 boxes_per_file: dict[str, list[list[float]]] | None, width: int, height: int,
                 ) -> tuple[list[list[float]] | None, list[tuple[int, Any]]]:  # fmt: skip
    """The photo's boxes from ``--box`` (clamped, with notes) or ``--boxes-file``, or
    ``None`` for the detector; a box off the image is an error naming it."""
    if args.box:
        parsed = parse_boxes(parser, args.box, width, height)
        return ([list(b) for b, _ in parsed],
                [(i, b) for i, (b, c) in enumerate(parsed, start=1) if c])  # fmt: skip
    if boxes_per_file is None:
        return None, []
    given = boxes_for(boxes_per_file, path)
    for k, box in enumerate(given or []):  # one photo: a box off the image is an error
        clamped, _ = clamp_bbox(box, width, height)
        if clamped[2] <= clamped[0] or clamped[3] <= clamped[1]:
            _fail(parser, "--boxes-file", f"{args.boxes_file}: box {k} of {path.name} "
                  f"{box} lies outside the {width}x{height} image")
    return given, []


def _print_settings(args: argparse.Namespace, predictor: Predictor, path: Path,
                    size: tuple[int, int], given: list[list[float]] | None,
                    persons: list[PersonPrediction], left_out: Any, inference: dict[str, Any],
                    has_inference: bool) -> None:  # fmt: skip
    """What the table rests on: the checkpoint, the image, the persons' source, the
    settings' source and the score."""
    width, height = size
    score = predictor.score
    if predictor.synthetic:
        print(SYNTHETIC_WARNING)
    model = predictor.model
    print(f"checkpoint: {args.checkpoint}  ({model.config.body_backbone} body, "
          f"{model.config.context_backbone} context, N={model.partition})")
    print(f"image: {path}  {width}x{height}, model input {predictor.image_size}x"
          f"{predictor.image_size}, body masked in context: {predictor.mask_body}")
    if given is None:
        over, small = (left_out.get(f"person_{k}", 0) for k in ("over_max_persons", "too_small"))
        print(f"persons: {len(persons)} found by {args.detector} (confidence >= "
              f"{args.det_threshold})" + (f"; {over} more left out by --max-persons "
              f"{args.max_persons}" if over else "") + (f"; {small} left out as smaller than "
              f"{getattr(predictor.detector, 'min_size', '?')} px" if small else ""))
    if not has_inference:
        print(f"note: no {INFERENCE_NAME} in the checkpoint: using image_size 224, a masked "
              f"body and {DEFAULT_SCORE} scores (the training defaults)")
    elif "score" not in inference:
        print(f"note: {INFERENCE_NAME} does not name its score (written by an older version): "
              f"using {LEGACY_SCORE} scores, on which its thresholds were calibrated")
    if predictor.thresholds:
        print(f"scores: {score}(logits); '*' = at or above the category's precision = recall "
              f"threshold ({len(predictor.thresholds)} calibrated on validation)")
    else:
        print(f"scores: {score}(logits); no thresholds in {INFERENCE_NAME}: predictions are "
              f"the top-{args.top_k} categories by score")


def _write_json(args: argparse.Namespace, predictor: Predictor, path: Path,
                persons: list[PersonPrediction], true_labels: Any,
                inference: dict[str, Any]) -> None:  # fmt: skip
    """``--json``: the persons' records with the settings they were made with."""
    records = []
    for p in persons:
        record = p.to_record()
        record["person"] = p.person + 1
        record["true_labels"] = None if true_labels is None else true_labels[p.person]
        records.append(record)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.json, (json.dumps({
        "image": str(path), "checkpoint": str(args.checkpoint), "score": predictor.score,
        "data": inference.get("data"),
        "warning": SYNTHETIC_WARNING if predictor.synthetic else None,
        "thresholds": INFERENCE_NAME if predictor.thresholds else None,
        "persons": records,
    }, indent=2) + "\n").encode())  # fmt: skip
    print(f"wrote {args.json}")


def _print_table(persons: list[PersonPrediction], top_k: int, thresholds: bool) -> None:
    header = f"{'person':>6}  {'box (x1, y1, x2, y2)':<24}  {'body_w':>6}  top emotions"
    print(header)
    print("-" * max(len(header), 80))
    for p in persons:
        top = [name for name, _ in p.top(top_k)]
        cells = [f"{name} {p.scores[name]:.3f}{'*' if thresholds and name in p.predicted else ''}"
                 for name in top]
        box_text = "(" + ", ".join(str(v) for v in p.box) + ")"
        weight = "-" if p.body_weight is None else f"{p.body_weight:.3f}"
        print(f"{p.person + 1:>6}  {box_text:<24}  {weight:>6}  " + "  ".join(cells))
        extra = [n for n in p.predicted if n not in top]
        if extra:
            print(f"{'':>6}  {'':<24}  {'':>6}  also above threshold: " + ", ".join(extra))
        if p.vad is not None:
            v, a, d = p.vad
            print(f"{'':>6}  {'':<24}  {'':>6}  valence {v:.2f}  arousal {a:.2f}  "
                  f"dominance {d:.2f}")


def _figure(args: argparse.Namespace, predictor: Predictor, image: Any,
            persons: list[PersonPrediction], true_labels: Any, path: Path) -> None:
    folder = args.output_dir or Path("dagnet_predictions")  # never litter the current folder
    output = args.output or folder / f"{path.stem}_dagnet.png"
    figure = predictor.plot(image, persons, true_labels=true_labels)
    if predictor.synthetic:
        figure.suptitle("checkpoint trained on SYNTHETIC demo data, not EMOTIC: "
                        "not a prediction of real emotions", color="firebrick")
    from dagnet_layers.figures._style import _save

    _save(figure, output)  # the figures' own: whole or not at all, named on failure
    print(f"wrote {output}")


if __name__ == "__main__":
    from dagnet_layers import cli

    prog = "dagnet_layers.commands.predict"
    sys.exit(cli.run_cli(lambda a: main(a, prog=prog), prog=prog))
