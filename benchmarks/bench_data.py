"""DataLoader throughput of the EMOTIC pipeline: JPEG path vs memory-mapped cache path.

Writes a synthetic EMOTIC (official layout) with COCO-sized 640 x 480 JPEGs into a
temporary folder, builds the cache, and prints samples/s of a shuffled DataLoader at
224 x 224 with the paper's training augmentation (flip + colour jitter 0.4), with the
augmentation either per sample in the workers or batched after collation:

* ``jpeg``: decode + crop + resize + per-sample augmentation in the workers;
* ``jpeg+batch``: decode + crop + resize in the workers, batched augmentation;
* ``cache``: memory-mapped slices + per-sample augmentation in the workers;
* ``cache+batch``: memory-mapped slices in the workers, augmentation batched on the
  collated uint8 batch (what a training loop does on its device: ``--device cuda``).

Not a test: numbers depend on the machine and on what else runs on it. Run::

    python benchmarks/bench_data.py --images 400 --workers 2 --batches 12
    python benchmarks/bench_data.py --quick --out runs/bench_data.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dagnet_layers.data import (
    EmoticDataset,
    build_emotic_cache,
    emotic_batch_transform,
    emotic_train_transform,
    make_synthetic_emotic,
)


def _throughput(loader: DataLoader, n_batches: int, batch_fn=None) -> float:
    it = iter(loader)
    next(it)  # warm-up: worker start and first decode are not steady state
    n, start = 0, time.perf_counter()
    for _ in range(n_batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if batch_fn is not None:
            batch = batch_fn(batch)
        n += batch["body"].shape[0]
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic images to write")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=12, help="timed batches per path")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="device of the batched augmentation")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="write JSON (+ .md) here")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batches, args.batch_size = 24, 2, 8
    torch.set_num_threads(1)  # workers are the parallelism; keep the comparison fair
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        t0 = time.perf_counter()
        info = make_synthetic_emotic(
            work / "raw", n_images=args.images, seed=0, image_size=(args.width, args.height)
        )
        t1 = time.perf_counter()
        build_emotic_cache(info, work / "cache", splits=("train",), size=args.size,
                           num_workers=args.workers, progress=False)  # fmt: skip
        t2 = time.perf_counter()
        print(f"synthetic data: {t1 - t0:.1f} s; cache build (train): {t2 - t1:.1f} s")

        common = dict(batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                      drop_last=True, persistent_workers=args.workers > 0)  # fmt: skip
        per_sample = emotic_train_transform(args.size)
        batched = emotic_batch_transform(train=True, size=args.size).to(device)

        def on_device(batch):
            return batched({k: v.to(device, non_blocking=True) for k, v in batch.items()})

        paths = {
            "jpeg": (EmoticDataset(info, "train", size=args.size, transform=per_sample), None),
            "jpeg+batch": (EmoticDataset(info, "train", size=args.size), on_device),
            "cache": (EmoticDataset(work / "cache", "train", transform=per_sample), None),
            "cache+batch": (EmoticDataset(work / "cache", "train"), on_device),
        }
        results = {}
        for name, (ds, batch_fn) in paths.items():
            loader = DataLoader(ds, **common)
            results[name] = _throughput(loader, args.batches, batch_fn)
            print(f"{name:>12}: {results[name]:8.1f} samples/s  ({len(ds)} persons)")
        speedups = {
            "cache/jpeg": results["cache"] / results["jpeg"],
            "cache+batch/jpeg+batch": results["cache+batch"] / results["jpeg+batch"],
            "cache+batch/jpeg": results["cache+batch"] / results["jpeg"],
        }
        for name, value in speedups.items():
            print(f"speed-up {name}: {value:.1f}x")

    if args.out is not None:
        report = {
            "benchmark": "data",
            "env": {
                "device": str(device), "torch": torch.__version__, "cpus": os.cpu_count(),
                "python": platform.python_version(), "workers": args.workers,
                "image": [args.width, args.height], "size": args.size,
                "batch_size": args.batch_size, "date": time.strftime("%Y-%m-%d"),
            },
            "samples_per_s": results,
            "speedups": speedups,
        }  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        rows = ["| path | samples/s |", "|---|---|"]
        rows += [f"| {k} | {v:.1f} |" for k, v in results.items()]
        args.out.with_suffix(".md").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
