"""Storage benchmark: what checksums and durable writes cost a checkpoint and the cache.

Measures, on the machine's disk (``--dir``, default a temporary folder):

- one checkpoint of the paper's model (``dagnet_r50_r18``, with an Adam state, as
  ``examples/train_emotic.py`` writes every epoch): the whole
  :func:`~dagnet_layers.emotic.engine.save_checkpoint` (fsync-ed writes, SHA-256 of every
  file, commit) and, separately, the SHA-256 pass alone; the whole
  :func:`~dagnet_layers.emotic.engine.load_checkpoint` and its verification pass alone;
- the cache's full check: SHA-256 throughput of :func:`~dagnet_layers.storage.sha256_file`
  on a file of ``--cache-mb`` MB (what ``dagnet-emotic-cache --verify`` and the end of a
  build do per GB), and the cheap check (sizes and headers, SHA-256 of the small files)
  that every dataset opening the cache runs, on a small built cache;
- the row check: reading every sample of a 224 px cache split with each image row
  checked against its CRC-32 (``verify_rows=True``, the default) and without, in
  alternated rounds; the ratio of the two per round, with its range.

Each figure is the median of ``--repeats`` runs, with the minimum and maximum. The file
system's page cache is warm after the first run (the figures are CPU cost, not cold
disk reads).

Example::

    python benchmarks/bench_storage.py
    python benchmarks/bench_storage.py --quick --out /tmp/storage.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    default_output,
    environment,
    environment_markdown,
    fmt,
    markdown_table,
    write_outputs,
)

from dagnet_layers import create_model
from dagnet_layers.emotic.data import build_emotic_cache, make_synthetic_emotic
from dagnet_layers.emotic.data.cache import verify_emotic_cache
from dagnet_layers.emotic.engine import MANIFEST_NAME, load_checkpoint, save_checkpoint
from dagnet_layers.storage import sha256_file, verify_files


def _times(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples), "runs": repeats}


def bench_checkpoint(model_name: str, folder: Path, repeats: int) -> dict[str, Any]:
    """Save and load one checkpoint of ``model_name`` with an Adam state."""
    torch.manual_seed(0)
    model = create_model(model_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam's two moments per parameter, as in a real run
    target = folder / "ckpt"

    def save() -> None:
        if target.exists():
            shutil.rmtree(target)
        save_checkpoint(target, model, optimizer, epoch=0)

    save_t = _times(save, repeats)
    files = sorted(p for p in target.iterdir() if p.is_file() and p.name != MANIFEST_NAME)
    size = sum(p.stat().st_size for p in files)
    hash_t = _times(lambda: [sha256_file(p) for p in files], repeats)
    other = create_model(model_name)
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-4)
    load_t = _times(lambda: load_checkpoint(target, other, other_opt), repeats)
    import json

    recorded = json.loads((target / MANIFEST_NAME).read_text())["files"]
    verify_t = _times(lambda: verify_files(target, recorded), repeats)
    return {
        "model": model_name,
        "bytes": size,
        "save": save_t,
        "hash_on_save": hash_t,
        "load": load_t,
        "verify_on_load": verify_t,
        "hash_share_of_save": hash_t["median_s"] / save_t["median_s"],
        "verify_share_of_load": verify_t["median_s"] / load_t["median_s"],
    }


def bench_cache(folder: Path, megabytes: int, repeats: int, quick: bool) -> dict[str, Any]:
    """SHA-256 throughput per GB, and the cheap open-time check on a small cache."""
    blob = folder / "blob.bin"
    chunk = os.urandom(1 << 20)
    with open(blob, "wb") as f:
        for _ in range(megabytes):
            f.write(chunk)
    full = _times(lambda: sha256_file(blob), repeats)
    seconds_per_gb = full["median_s"] / (megabytes / 1024)
    root = make_synthetic_emotic(folder / "emotic", n_images=12 if quick else 60,
                                 image_size=(96, 72)).root
    cache = folder / "cache"
    build_emotic_cache(root, cache, splits=("val",), size=64, progress=False)
    cheap = _times(lambda: verify_emotic_cache(cache, ["val"], full=False), repeats)
    return {"hashed_mb": megabytes, "sha256": full, "seconds_per_gb": seconds_per_gb,
            "cheap_check": cheap}


def bench_row_check(folder: Path, repeats: int, quick: bool) -> dict[str, Any]:
    """Per-sample read time of a 224 px cache with and without the CRC-32 row check."""
    from dagnet_layers.emotic.data import EmoticDataset

    root = make_synthetic_emotic(folder / "emotic224", n_images=24 if quick else 240,
                                 image_size=(320, 240)).root  # fmt: skip
    cache = folder / "cache224"
    build_emotic_cache(root, cache, splits=("train",), size=224, progress=False)
    datasets = {flag: EmoticDataset(cache, "train", verify_rows=flag) for flag in (True, False)}
    n = len(datasets[True])
    passes = 2 if quick else 10

    def read_all(dataset: Any) -> float:
        start = time.perf_counter()
        for _ in range(passes):
            for i in range(n):
                dataset[i]
        return (time.perf_counter() - start) / (passes * n)

    for dataset in datasets.values():
        read_all(dataset)  # warm: page cache, file descriptors
    rounds: list[dict[str, float]] = []
    for r in range(max(3, repeats * 2)):
        order = (True, False) if r % 2 == 0 else (False, True)  # alternated
        rounds.append({str(flag): read_all(datasets[flag]) for flag in order})
    ratios = [x["True"] / x["False"] for x in rounds]
    checked = statistics.median(x["True"] for x in rounds)
    unchecked = statistics.median(x["False"] for x in rounds)
    return {"samples": n, "passes": passes, "rounds": rounds,
            "checked_us": 1e6 * checked, "unchecked_us": 1e6 * unchecked,
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}  # fmt: skip


def to_markdown(report: dict[str, Any]) -> str:
    """Tables for the checkpoint and the cache, then the environment."""
    c, k = report["checkpoint"], report["cache"]

    def row(name: str, t: dict[str, float]) -> tuple[str, str, str]:
        return name, fmt(t["median_s"], 3), f"{fmt(t['min_s'], 3)} to {fmt(t['max_s'], 3)}"

    parts = [
        f"# Storage benchmarks: {report['env']['device_name']} (cpu)",
        "",
        f"Checkpoint of `{c['model']}` with an Adam state: {c['bytes'] / 2**20:.1f} MiB in "
        "its files. Median of the runs, with their range; warm page cache.",
        "",
        markdown_table(["step", "seconds (median)", "range"], [
            row("save_checkpoint (fsync-ed writes, SHA-256, commit)", c["save"]),
            row("  of which SHA-256 of every file (one pass, on the bytes written)",
                c["hash_on_save"]),
            row("load_checkpoint (verify, then load)", c["load"]),
            row("  of which verification", c["verify_on_load"]),
        ]),
        "",
        f"Checksums take {100 * c['hash_share_of_save']:.0f} % of a save and "
        f"{100 * c['verify_share_of_load']:.0f} % of a load.",
        "",
        "## Cache",
        "",
        markdown_table(["check", "seconds (median)", "range"], [
            row(f"SHA-256 of a {k['hashed_mb']} MiB file", k["sha256"]),
            row("cheap check on open (sizes + headers, SHA-256 of the small files), one "
                "split", k["cheap_check"]),
        ]),
        "",
        f"Full check: {k['seconds_per_gb']:.2f} s per GiB (the full EMOTIC cache at 224 px "
        "is about 6 GiB: ~" + f"{6 * k['seconds_per_gb']:.0f} s for `--verify`, "
        "and the same once at the end of a build).",
        "",
        *_row_check_markdown(report.get("row_check")),
        "## Environment",
        "",
        environment_markdown(report["env"]),
    ]
    return "\n".join(parts)


def _row_check_markdown(rc: dict[str, Any] | None) -> list[str]:
    if rc is None:
        return []
    return [
        "## Row check",
        "",
        f"Reading every sample of a 224 px cache split ({rc['samples']} persons, "
        f"{rc['passes']} passes per round, {len(rc['rounds'])} alternated rounds; "
        "`EmoticDataset` without a transform, one thread):",
        "",
        markdown_table(["read", "us per sample (median)"], [
            ("rows checked against their CRC-32 (default)", fmt(rc["checked_us"], 1)),
            ("unchecked (verify_rows=False)", fmt(rc["unchecked_us"], 1)),
        ]),
        "",
        f"Checked / unchecked: {rc['ratio_median']:.3f} (range {rc['ratio_min']:.3f} to "
        f"{rc['ratio_max']:.3f} over the rounds).",
        "",
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dagnet_r50_r18", help="registered model to checkpoint")
    p.add_argument("--cache-mb", type=int, default=512, help="size of the hashed file, MiB")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure")
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="tiny model, 16 MiB: a smoke test")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON output (a .md is written next to it). Default: "
                        "runs/benchmarks/storage_<device-slug>[_quick].json; the committed "
                        "benchmarks/results/ are replaced only when named here")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.cache_mb, args.repeats = "test_dagnet", 16, 2
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the storage benchmark; returns the report also written to ``--out``."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        checkpoint = bench_checkpoint(args.model, folder, args.repeats)
        cache = bench_cache(folder, args.cache_mb, args.repeats, args.quick)
        row_check = bench_row_check(folder, args.repeats, args.quick)
    device = torch.device("cpu")
    report = {
        "benchmark": "storage",
        "env": environment(device, quick=args.quick, repeats=args.repeats),
        "checkpoint": checkpoint,
        "cache": cache,
        "row_check": row_check,
    }
    markdown = to_markdown(report)
    print(markdown)
    out = args.out or default_output("storage", device, args.quick)
    json_path, md_path = write_outputs(report, markdown, out)
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
