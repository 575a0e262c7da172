"""DataLoader throughput of the EMOTIC pipeline: JPEG path vs memory-mapped cache path.

Writes a synthetic EMOTIC (official layout) with COCO-sized 640 x 480 JPEGs into a
temporary folder, builds the cache, and prints samples/s of a shuffled DataLoader at
224 x 224 with the paper's training augmentation (flip + colour jitter 0.4), with the
augmentation either per sample in the workers or batched after collation:

* ``jpeg``: decode + crop + resize + per-sample augmentation in the workers;
* ``jpeg+batch``: decode + crop + resize in the workers, batched augmentation;
* ``cache``: memory-mapped slices + per-sample augmentation in the workers;
* ``cache+batch``: memory-mapped slices in the workers, augmentation batched on the
  collated uint8 batch (what a training loop does on its device: ``--device cuda``);
* ``jpeg-loader`` / ``cache-loader``: the uint8 batches alone, what the loader hands to a
  training loop whose augmentation runs batched on an accelerator
  (``examples/train_emotic.py`` on CUDA); on a CPU-only machine the augmentation
  arithmetic (about 1.5 ms of CPU per sample at 224 px) bounds the other rows.

Besides wall-clock samples/s it prints samples per CPU-second (main process plus
loader workers, from /proc), which holds up when other jobs share the machine.

Not a test: numbers depend on the machine and on what else runs on it. Run::

    python benchmarks/bench_data.py --images 400 --workers 2 --rounds 3 --min-time 3
    python benchmarks/bench_data.py --quick --out runs/bench_data.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    EndlessLoader,
    default_output,
    environment,
    environment_markdown,
    fmt,
    loadavg,
    markdown_table,
    write_outputs,
)

from dagnet_layers.emotic.data import (
    EmoticDataset,
    build_emotic_cache,
    emotic_batch_transform,
    emotic_train_transform,
    make_synthetic_emotic,
)


class _Stream(EndlessLoader):
    """An endless iterator over a DataLoader that also reads its processes' CPU time."""

    def cpu_seconds(self) -> float:
        """CPU time of this process plus the loader's worker processes (Linux /proc)."""
        total = time.process_time()
        tick = os.sysconf("SC_CLK_TCK")
        for worker in getattr(self.it, "_workers", []):
            try:
                fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            except (OSError, IndexError, ValueError):
                return float("nan")
        return total


def _throughput(stream: _Stream, n_batches: int, batch_fn=None, *, skip: int = 0,
                min_time: float = 0.0) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second of main + workers), steady state.

    The first ``skip`` batches are taken untimed: the workers prepared them while the
    other paths were being timed, so they would arrive at no cost. Then at least
    ``n_batches`` batches and at least ``min_time`` seconds are timed.
    """
    for _ in range(skip):
        next(stream)
    n, batches, start, cpu = 0, 0, time.perf_counter(), stream.cpu_seconds()
    while batches < n_batches or time.perf_counter() - start < min_time:
        batch = next(stream)
        if batch_fn is not None:
            batch = batch_fn(batch)
        n += batch["body"].shape[0]
        batches += 1
    wall = time.perf_counter() - start
    return n / wall, n / (stream.cpu_seconds() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="synthetic images to write")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6,
                        help="timed batches per path and round, at least")
    parser.add_argument("--min-time", type=float, default=3.0,
                        help="timed seconds per path and round, at least (after the batches "
                        "the workers prefetched while other paths ran are drained untimed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="device of the batched augmentation")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON to write (and .md beside it); default "
                        "runs/benchmarks/data_<device>.json")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.batches, args.batch_size, args.rounds, args.min_time = 24, 2, 8, 1, 0.0
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
            "jpeg-loader": (EmoticDataset(info, "train", size=args.size), None),
            "cache-loader": (EmoticDataset(work / "cache", "train"), None),
        }
        load_start = loadavg()
        streams = {name: _Stream(DataLoader(ds, **common)) for name, (ds, _) in paths.items()}
        for name, stream in streams.items():  # warm-up: worker start, first decodes
            _throughput(stream, 1, paths[name][1])
        # Interleaved rounds, median per path: load changes on a shared machine hit
        # every path alike instead of whichever ran at the wrong moment.
        rounds: dict[str, list[float]] = {name: [] for name in paths}
        cpu_rounds: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, stream in streams.items():
                wall, cpu = _throughput(stream, args.batches, paths[name][1],
                                        skip=stream.prefetched, min_time=args.min_time)
                rounds[name].append(wall)
                cpu_rounds[name].append(cpu)
        results = {name: statistics.median(v) for name, v in rounds.items()}
        per_cpu = {name: statistics.median(v) for name, v in cpu_rounds.items()}
        print(f"load average before timing: {fmt(load_start)} on {os.cpu_count()} CPUs")
        for name, value in results.items():
            spread = ", ".join(f"{v:.0f}" for v in rounds[name])
            print(f"{name:>12}: {value:8.1f} samples/s  {per_cpu[name]:8.1f} samples/CPU-s"
                  f"  (rounds: {spread})")  # fmt: skip
        del streams
        speedups = {
            "cache/jpeg": results["cache"] / results["jpeg"],
            "cache+batch/jpeg+batch": results["cache+batch"] / results["jpeg+batch"],
            "cache+batch/jpeg": results["cache+batch"] / results["jpeg"],
            "cache-loader/jpeg-loader": results["cache-loader"] / results["jpeg-loader"],
        }
        for name, value in speedups.items():
            a, b = name.split("/")
            print(f"speed-up {name}: {value:.1f}x wall, {per_cpu[a] / per_cpu[b]:.1f}x per CPU-s")

    env = environment(device, cpus=os.cpu_count(), workers=args.workers,
                      image=[args.width, args.height], size=args.size,
                      batch_size=args.batch_size, images=args.images, rounds=args.rounds,
                      min_batches=args.batches, min_time_s=args.min_time, quick=args.quick,
                      loadavg_1min_start=load_start, loadavg_1min_end=loadavg())
    report = {
        "benchmark": "data",
        "environment": env,
        "samples_per_s": results,
        "samples_per_cpu_s": per_cpu,
        "rounds": rounds,
        "cpu_rounds": cpu_rounds,
        "speedups": speedups,
    }
    rows = [(k, f"{v:.1f} ({min(rounds[k]):.0f}-{max(rounds[k]):.0f})",
             f"{per_cpu[k]:.1f} ({min(cpu_rounds[k]):.0f}-{max(cpu_rounds[k]):.0f})")
            for k, v in results.items()]  # fmt: skip
    md = (f"# Data pipeline benchmark: {env['device_name']}, {os.cpu_count()} CPUs, "
          f"{args.workers} workers\n\n"
          f"{args.width} x {args.height} JPEGs -> {args.size} px, batch {args.batch_size}, "
          f"1-min load average {fmt(load_start)} before timing and {fmt(env['loadavg_1min_end'])} "
          f"after (this benchmark's main process and {args.workers} workers count in it; more "
          "than that means other jobs shared the machine).\n\n"
          f"Median of {args.rounds} interleaved rounds (min-max), each at least "
          f"{args.batches} batches and {args.min_time:g} s after draining the prefetched "
          "batches.\n\n"
          + markdown_table(["path", "samples/s", "samples/CPU-s"], rows)
          + "\n\n" + environment_markdown(env))  # fmt: skip
    out = args.out or default_output("data", device, args.quick)
    print("wrote", *write_outputs(report, md, out))


if __name__ == "__main__":
    main()
