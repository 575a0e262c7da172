"""In-the-wild prediction throughput: the person detector and DAG-Net, separately and together.

Measures on one device, interleaved so that every figure sees the same machine load
(median and IQR of ``torch.utils.benchmark`` runs):

- **DAG-Net**: persons per second of the model alone (already preprocessed inputs) at
  several batch sizes, and of the preprocessing alone (crop, mask, resize, normalise:
  what :class:`~dagnet_layers.inference.Predictor` does per person on the CPU);
- **detectors**: frames per second of each torchvision person detector on one frame;
- **end to end**: frames per second of :meth:`Predictor.predict_many` on frames with
  ``--persons`` persons each, with boxes given (DAG-Net and preprocessing only) and
  with the fastest detector.

The detectors run with random weights (no download): their arithmetic is that of the
trained ones (the region proposal network always scores its full proposal budget), but
the number of boxes reaching non-maximum suppression differs, so treat the detector
figures as the cost of the network. DAG-Net is the paper's model (``dagnet_r50_r18``,
224 px) with random weights.

Example::

    python benchmarks/bench_predict.py                 # CPU, writes runs/benchmarks/
    python benchmarks/bench_predict.py --device cuda --out benchmarks/results/predict_cuda.json
    python benchmarks/bench_predict.py --quick         # the tiny test model, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_run_arguments,
    configure_torch,
    default_output,
    environment,
    environment_markdown,
    fill_defaults,
    fmt,
    markdown_table,
    resolve_device,
    time_group,
    write_outputs,
)

from dagnet_layers import create_model
from dagnet_layers.inference import Frame, Predictor, TorchvisionPersonDetector

FULL = dict(model="dagnet_r50_r18", image_size=224, frame=(640, 480), batches=(1, 8, 32),
            detectors=("ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_fpn",
                       "fasterrcnn_resnet50_fpn_v2"), min_run_time=6.0)  # fmt: skip
QUICK = dict(model="test_dagnet", image_size=64, frame=(160, 120), batches=(1, 4),
             detectors=("ssdlite320_mobilenet_v3_large",), min_run_time=0.3)  # fmt: skip


def _frame(size: tuple[int, int], persons: int, seed: int = 0) -> tuple[Image.Image, list]:
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    step = w // (persons + 1)
    boxes = [(k * step + 4, h // 8, k * step + step - 4, h - 4) for k in range(persons)]
    return img, boxes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_run_arguments(p, "the model, the preprocessing, each detector and the pipeline")
    p.add_argument("--quick", action="store_true", help="tiny model and frame (a smoke run)")
    p.add_argument("--persons", type=int, default=3, help="persons per frame end to end")
    p.add_argument("--min-run-time", type=float, default=None,
                   help="seconds of timed calls per figure in total")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (and .md beside it)")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.quick:
        args.min_runs = 1
    fill_defaults(args, {"min_run_time": cfg["min_run_time"]})
    device = args.device = resolve_device(args.device)
    configure_torch(args)
    torch.manual_seed(0)
    model = create_model(cfg["model"]).eval()
    predictor = Predictor(model, image_size=cfg["image_size"], device=device)
    image, boxes = _frame(cfg["frame"], args.persons)
    one = predictor.preprocess(image, boxes[:1])

    fns: dict[str, Any] = {}
    for b in cfg["batches"]:
        body = one["body"].expand(b, -1, -1, -1).contiguous().to(device)
        context = one["context"].expand(b, -1, -1, -1).contiguous().to(device)
        fns[f"dagnet batch {b}"] = (lambda body=body, context=context:
                                    torch.no_grad()(model)(body, context))  # fmt: skip
    fns["preprocess 1 person"] = lambda: predictor.preprocess(image, boxes[:1])
    detectors = {name: TorchvisionPersonDetector(name, weights=None, score_threshold=0.0,
                                                 device=device)
                 for name in cfg["detectors"]}  # fmt: skip
    for name, det in detectors.items():
        fns[f"detector {name}"] = lambda det=det: det([image])
    frames = [Frame("bench", image, boxes=boxes)] * 4
    fns[f"pipeline 4 frames x {args.persons} persons, boxes given"] = (
        lambda: list(predictor.predict_many(frames)))
    fastest = cfg["detectors"][0]
    detecting = Predictor(model, image_size=cfg["image_size"], device=device,
                          detector=_FixedCount(detectors[fastest], args.persons, boxes))
    undetected = [Frame("bench", image)] * 4
    fns[f"pipeline 4 frames, {fastest}"] = lambda: list(detecting.predict_many(undetected))

    timings = time_group(fns, device, warmup=2, min_run_time=args.min_run_time,
                         rounds=args.rounds, min_runs=args.min_runs)
    rows, report_rows = [], []
    for name, t in timings.items():
        if isinstance(t, Exception):
            rows.append((name, "error", str(t)[:60], ""))
            continue
        per = (int(name.split()[2]) if name.startswith("dagnet batch") else
               4 if name.startswith("pipeline") else 1)  # fmt: skip
        unit = "persons/s" if name.startswith(("dagnet", "preprocess")) else "frames/s"
        rate = per / (t.median_ms / 1e3)
        rows.append((name, fmt(t.median_ms), fmt(100 * t.iqr_ms / t.median_ms, 1),
                     f"{rate:,.1f} {unit}"))
        report_rows.append({"name": name, "median_ms": t.median_ms, "iqr_ms": t.iqr_ms,
                            "runs": t.runs, "rate": rate, "unit": unit})
    env = environment(device, model=cfg["model"], image_size=cfg["image_size"],
                      frame=cfg["frame"], persons=args.persons, quick=args.quick,
                      detector_weights="random")  # fmt: skip
    md = ("# In-the-wild prediction throughput\n\n"
          + markdown_table(["what", "median ms", "IQR %", "throughput"], rows)
          + "\n\nDetectors with random weights (the cost of the network); DAG-Net "
          "with random weights. Pipeline = preprocessing + DAG-Net (+ detector), 4 frames "
          "per call.\n\n" + environment_markdown(env))  # fmt: skip
    out = args.out or default_output("predict", device, args.quick)
    paths = write_outputs({"environment": env, "results": report_rows}, md, out)
    print(md)
    print("wrote", *paths)
    return 0


class _FixedCount:
    """The detector's arithmetic, then the frame's known persons (random weights find none)."""

    def __init__(self, detector: TorchvisionPersonDetector, n: int, boxes: list) -> None:
        self.detector, self.n, self.boxes = detector, n, boxes

    def __call__(self, images: list) -> list:
        self.detector(images)
        return [(np.asarray(self.boxes[: self.n], dtype=np.float64), np.ones(self.n))
                for _ in images]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
