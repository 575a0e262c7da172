"""Resident memory of the cache path: rows read with pread against a memory-mapped cache.

Reads one epoch of a decoded-image cache through a ``DataLoader`` with worker
processes, twice per round and alternately: as the dataset reads it
(:class:`~dagnet_layers.emotic.data.NpyRows`, ``pread`` into fresh buffers) and
through read-only memory maps of the same files (the way it read them before). A
thread samples the process tree every 20 ms: the sum of the resident set sizes
(RSS: what memory limits that count RSS see) and of the proportional set sizes
(PSS: shared pages split between the processes that map them). Each figure is the
median over ``--rounds`` rounds with its min-max; samples/s of each epoch too.

The cache is written once (synthetic EMOTIC at ``--size`` px; the first round reads it
from the page cache like every later one).

Example::

    python benchmarks/bench_cache_memory.py                   # about 0.5 GB of cache
    python benchmarks/bench_cache_memory.py --images 300 --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    default_output,
    environment,
    environment_markdown,
    loadavg,
    markdown_table,
    write_outputs,
)

from dagnet_layers.emotic.data import EmoticDataset, make_synthetic_emotic, open_npy


class _MappedDataset(EmoticDataset):
    """The same dataset reading the image rows through memory maps (the old way)."""

    def _open_arrays(self) -> dict[str, Any]:
        if self._arrays is None:
            self._arrays = {k: open_npy(p) for k, p in self._array_files.items()}
        return self._arrays

    def _load_images(self, index: int) -> Any:
        import numpy as np

        arrays = self._open_arrays()
        row = int(self._rows[index])
        body = torch.from_numpy(np.array(arrays["body"][row]))
        context = torch.from_numpy(np.array(arrays["context"][int(arrays["image_of"][row])]))
        return body, context, torch.from_numpy(np.array(arrays["bbox"][row]))


def _tree_memory(proc: psutil.Process) -> tuple[int, int]:
    rss = pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


def _epoch(dataset: EmoticDataset, workers: int, batch: int) -> dict[str, float]:
    proc = psutil.Process()
    peak = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, pss = _tree_memory(proc)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.02)

    base_rss, base_pss = _tree_memory(proc)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=True,
                        persistent_workers=False)  # fmt: skip
    start = time.perf_counter()
    n = sum(len(b["body"]) for b in loader)
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    del loader
    return {"peak_rss_mib": peak[0] / 2**20, "peak_pss_mib": peak[1] / 2**20,
            "base_rss_mib": base_rss / 2**20, "base_pss_mib": base_pss / 2**20,
            "samples_per_s": n / seconds}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="synthetic images in the cache")
    p.add_argument("--size", type=int, default=224, help="cache side in pixels")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    p.add_argument("--dir", type=Path, default=None, help="where the data and cache go")
    p.add_argument("--quick", action="store_true", help="a small cache, one round")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (and .md beside it)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.size, args.rounds = min(args.images, 60), min(args.size, 64), 1
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = make_synthetic_emotic(Path(tmp) / "syn", n_images=args.images, seed=0,
                                     image_size=(320, 240))  # fmt: skip
        cache = Path(tmp) / "cache"
        EmoticDataset(root.root, "train", size=args.size, cache_dir=cache)  # builds it
        cache_mib = sum(f.stat().st_size for f in cache.glob("train_*.npy")) / 2**20
        readers = {"pread (NpyRows)": EmoticDataset, "memory map": _MappedDataset}
        load_start = loadavg()
        results: dict[str, list[dict[str, float]]] = {name: [] for name in readers}
        for _ in range(args.rounds):
            for name, cls in readers.items():
                results[name].append(_epoch(cls(cache, "train"), args.workers, args.batch_size))
    rows, report = [], {}
    for name, runs in results.items():
        summary = {}
        for key in ("peak_rss_mib", "peak_pss_mib", "samples_per_s"):
            values = [r[key] for r in runs]
            summary[key] = {"median": statistics.median(values), "min": min(values),
                            "max": max(values)}  # fmt: skip
        report[name] = summary
        rows.append((name, *(f"{summary[k]['median']:,.0f} ({summary[k]['min']:,.0f}-"
                             f"{summary[k]['max']:,.0f})"
                             for k in ("peak_rss_mib", "peak_pss_mib", "samples_per_s"))))
    env = environment(torch.device("cpu"), images=args.images, size=args.size,
                      workers=args.workers, batch_size=args.batch_size, rounds=args.rounds,
                      cache_train_mib=round(cache_mib, 1), loadavg_1min_start=load_start,
                      loadavg_1min_end=loadavg())  # fmt: skip
    md = ("# Resident memory of the cache path\n\n"
          f"One epoch over a {cache_mib:,.0f} MiB train cache ({args.size} px), "
          f"{args.workers} workers, median (min-max) of {args.rounds} alternated rounds; "
          "memory is the whole process tree's.\n\n"
          + markdown_table(["reader", "peak RSS MiB", "peak PSS MiB", "samples/s"], rows)
          + "\n\n" + environment_markdown(env))  # fmt: skip
    out = args.out or default_output("cache_memory", torch.device("cpu"), args.quick)
    paths = write_outputs({"environment": env, "cache_train_mib": cache_mib, "readers": report},
                          md, out)  # fmt: skip
    print(md)
    print("wrote", *paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
