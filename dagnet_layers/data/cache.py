"""Decode-once cache of EMOTIC body crops and context images in memory-mapped ``uint8`` arrays.

Decoding and resizing JPEGs dominates the cost of an EMOTIC epoch. The cache does it
once: :func:`build_emotic_cache` (CLI: ``dagnet-emotic-cache ROOT CACHE_DIR``) streams
each image's resized context and each person's resized body crop into ``.npy`` files
opened with :func:`numpy.lib.format.open_memmap`, one image at a time, so RAM stays
bounded whatever the dataset size. It shows a progress bar and is resumable: a
per-person ``done`` array is flushed with the data, and a rerun continues where an
interrupted one stopped. ``EmoticDataset(cache_dir)`` (or ``EmoticDataset(root,
cache_dir=...)``) then reads samples by slicing the arrays.

Files per split in ``CACHE_DIR``::

    emotic_cache.json          manifest: format, version, size, per split n / complete
    {split}_records.json       the EmoticRecords and their ReadSummary
    {split}_body.npy           (N, 3, S, S) uint8 body crops
    {split}_context.npy        (M, 3, S, S) uint8 context images, one per image, unmasked
    {split}_image_of.npy       (N,) int64 person -> row of the context array
    {split}_bbox.npy           (N, 4) float32 body box in context pixels
    {split}_done.npy           (N,) bool progress marks
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dagnet_layers.data.dataset import CACHE_MANIFEST, crop_body_and_context, load_image_rgb
from dagnet_layers.data.records import (
    EMOTIC_SPLITS,
    EmoticRecords,
    MissingImagePolicy,
    _load_mat,
    read_emotic_annotations,
)

__all__ = ["CACHE_FORMAT_VERSION", "build_emotic_cache", "cache_is_complete", "main"]

logger = logging.getLogger(__name__)

#: Version of the on-disk cache format; a cache of another version is rebuilt.
CACHE_FORMAT_VERSION = 1
_FORMAT = "dagnet-emotic-cache"


def _read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    path = cache_dir / CACHE_MANIFEST
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a {_FORMAT} manifest")
    return manifest


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    os.replace(tmp, path)  # atomic: an interrupted build never leaves half a manifest


def cache_is_complete(
    cache_dir: str | os.PathLike[str], split: str, size: int | None = None
) -> bool:
    """Whether ``cache_dir`` holds a fully built ``split`` (at ``size`` px, if given).

    Args:
        cache_dir: Cache folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Required side length, or ``None`` for any.

    Returns:
        ``True`` if the split is complete (and of that size).

    Example:
        >>> cache_is_complete("/nonexistent", "train")
        False
    """
    try:
        manifest = _read_manifest(Path(cache_dir))
    except (ValueError, json.JSONDecodeError):
        return False
    if manifest is None or manifest.get("version") != CACHE_FORMAT_VERSION:
        return False
    if size is not None and manifest.get("size") != int(size):
        return False
    return bool(manifest.get("splits", {}).get(split, {}).get("complete", False))


class _ImageJobs(Dataset):
    """One item per image: decode once, crop every person of it (runs in workers)."""

    def __init__(self, jobs: list[tuple[int, list[int]]], records: EmoticRecords, size: int):
        self.jobs, self.records, self.size = jobs, records, size

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, j: int) -> tuple[int, list[int], np.ndarray, np.ndarray, np.ndarray]:
        image_row, persons = self.jobs[j]
        path = self.records[persons[0]].image_path
        image = load_image_rgb(path)
        bodies, boxes, context = [], [], None
        for p in persons:
            try:
                body, context, box = crop_body_and_context(image, self.records[p].bbox, self.size)
            except ValueError as exc:
                raise ValueError(f"{path}, person record {p}: {exc}") from exc
            bodies.append(body)
            boxes.append(box)
        return image_row, persons, np.stack(bodies), context, np.stack(boxes)


def _fingerprint(records: EmoticRecords, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    for r in records:
        h.update(f"{r.folder}/{r.filename}|{r.bbox}|{r.categories}|{r.vad}\n".encode())
    return h.hexdigest()


def build_emotic_cache(
    source: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    splits: Sequence[str] = EMOTIC_SPLITS,
    *,
    size: int = 224,
    on_missing_image: MissingImagePolicy = "error",
    num_workers: int = 0,
    flush_every: int = 256,
    progress: bool = True,
    overwrite: bool = False,
    records: dict[str, EmoticRecords] | None = None,
) -> dict[str, int]:
    """Decode an official EMOTIC root once into a memory-mapped cache (resumable).

    Args:
        source: Official release root (or :func:`make_synthetic_emotic` output).
        cache_dir: Output folder (created). One cache holds one ``size``.
        splits: Splits to build.
        size: Side length of the stored body crops and context images.
        on_missing_image: ``"error"`` or ``"skip"``, see :func:`read_emotic_annotations`.
        num_workers: Decoding processes (``torch.utils.data.DataLoader`` workers).
        flush_every: Images between flushes of data and progress marks; also bounds
            how much work an interruption loses.
        progress: Show a tqdm progress bar.
        overwrite: Rebuild a split whose annotations or size changed instead of
            raising.
        records: Optional pre-read records per split (otherwise read from ``source``).

    Returns:
        Split -> number of persons in the cache.

    Raises:
        ValueError: If the cache exists with another size or other annotations and
            ``overwrite`` is false, or an image cannot be decoded (names the file).
        FileNotFoundError: For a missing annotation or image file.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.data import make_synthetic_emotic, EmoticDataset
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d + "/raw", n_images=12, image_size=(96, 72)).root
        ...     n = build_emotic_cache(root, d + "/cache", size=32, progress=False)
        ...     ds = EmoticDataset(d + "/cache", "val")
        ...     ds.layout, ds[0]["context"].shape, n["val"] == len(ds)
        ('cache', torch.Size([3, 32, 32]), True)
    """
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be a positive int, got {size}")
    for split in splits:
        if split not in EMOTIC_SPLITS:
            raise ValueError(f"splits must be among {EMOTIC_SPLITS}, got {split!r}")
    out = Path(cache_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    if manifest is not None and (
        manifest.get("version") != CACHE_FORMAT_VERSION or manifest.get("size") != size
    ):
        if not overwrite:
            raise ValueError(
                f"cache {out} holds size {manifest.get('size')} (format version "
                f"{manifest.get('version')}), not size {size} (version "
                f"{CACHE_FORMAT_VERSION}); use another folder or overwrite=True"
            )
        manifest = None
    if manifest is None:
        manifest = {"format": _FORMAT, "version": CACHE_FORMAT_VERSION, "size": size, "splits": {}}
        _write_json(out / CACHE_MANIFEST, manifest)

    mat = None
    counts = {}
    for split in splits:
        recs = (records or {}).get(split)
        if recs is None:
            if mat is None:
                root = Path(source).expanduser().resolve()
                mat = _load_mat(root / "Annotations" / "Annotations.mat")
            recs = read_emotic_annotations(
                source, split, on_missing_image=on_missing_image, mat=mat
            )
        counts[split] = _build_split(
            recs, out, manifest, split, size, num_workers, flush_every, progress, overwrite
        )
    return counts


def _build_split(
    recs: EmoticRecords,
    out: Path,
    manifest: dict[str, Any],
    split: str,
    size: int,
    num_workers: int,
    flush_every: int,
    progress: bool,
    overwrite: bool,
) -> int:
    fingerprint = _fingerprint(recs, size)
    entry = manifest["splits"].get(split)
    if entry is not None and entry.get("fingerprint") != fingerprint:
        if not overwrite:
            raise ValueError(
                f"cache {out} holds a {split!r} split built from other annotations; use "
                "another folder or overwrite=True"
            )
        entry = None
    if entry is not None and entry.get("complete"):
        logger.info("EMOTIC cache %s: %s already complete (%d persons)", out, split, entry["n"])
        return int(entry["n"])

    # Persons grouped by image, in first-seen order: each image is decoded once.
    image_rows: dict[str, int] = {}
    image_of = np.empty(len(recs), dtype=np.int64)
    for i, r in enumerate(recs):
        image_of[i] = image_rows.setdefault(r.image_path, len(image_rows))
    n, m = len(recs), len(image_rows)
    files = {k: out / f"{split}_{k}.npy" for k in ("body", "context", "bbox", "done", "image_of")}
    specs = {
        "body": (np.uint8, (n, 3, size, size)),
        "context": (np.uint8, (m, 3, size, size)),
        "bbox": (np.float32, (n, 4)),
        "done": (np.bool_, (n,)),
    }
    resume = entry is not None and all(files[k].is_file() for k in specs)
    if not resume:
        _write_json(
            out / f"{split}_records.json",
            {"summary": vars(recs.summary), "records": [r.to_dict() for r in recs]},
        )
        np.save(files["image_of"], image_of)
        for key, (dtype, shape) in specs.items():
            arr = np.lib.format.open_memmap(files[key], mode="w+", dtype=dtype, shape=shape)
            arr.flush()
            del arr
        manifest["splits"][split] = {
            "n": n, "n_images": m, "complete": False, "fingerprint": fingerprint,
        }  # fmt: skip
        _write_json(out / CACHE_MANIFEST, manifest)

    def open_all() -> dict[str, np.ndarray]:
        return {k: np.lib.format.open_memmap(files[k], mode="r+") for k in specs}

    arrays = open_all()
    done = np.array(arrays["done"])
    persons_of: dict[int, list[int]] = {}
    for i in np.flatnonzero(~done):
        persons_of.setdefault(int(image_of[i]), []).append(int(i))
    # A resumed image is decoded again for all its persons: its context row is shared.
    jobs = [(row, [int(i) for i in np.flatnonzero(image_of == row)]) for row in sorted(persons_of)]
    if resume and jobs:
        logger.info("EMOTIC cache %s: resuming %s, %d of %d images left", out, split, len(jobs), m)
    loader = DataLoader(
        _ImageJobs(jobs, recs, size), batch_size=None, shuffle=False, num_workers=num_workers,
        collate_fn=_identity,
    )  # fmt: skip
    pending: list[int] = []
    bar = tqdm(
        loader, total=len(jobs), desc=f"EMOTIC {split} cache", unit="img", disable=not progress
    )
    for k, (row, persons, bodies, context, boxes) in enumerate(bar, 1):
        arrays["body"][persons] = bodies
        arrays["context"][row] = context
        arrays["bbox"][persons] = boxes
        pending.extend(persons)
        if k % flush_every == 0:
            arrays = _commit(arrays, pending, open_all)
            pending = []
    _commit(arrays, pending, None)
    manifest["splits"][split]["complete"] = True
    _write_json(out / CACHE_MANIFEST, manifest)
    logger.info("EMOTIC cache %s: %s complete, %d persons, %d images", out, split, n, m)
    return n


def _identity(x: Any) -> Any:
    return x


def _commit(arrays: dict[str, np.ndarray], pending: list[int], reopen: Any) -> Any:
    """Flush data, then mark ``pending`` done and flush that; drop and reopen the maps
    so the resident pages of the mapping do not grow with the dataset."""
    for key in ("body", "context", "bbox"):
        arrays[key].flush()
    if pending:
        arrays["done"][pending] = True
    arrays["done"].flush()
    arrays.clear()
    return reopen() if reopen is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``dagnet-emotic-cache ROOT CACHE_DIR [--splits ...] [--size 224]``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Process exit status: 0 on success, 2 for a missing or invalid input (the
        message goes to stderr).
    """
    parser = argparse.ArgumentParser(
        prog="dagnet-emotic-cache",
        description="Decode EMOTIC JPEGs once into a memory-mapped uint8 cache (resumable).",
    )
    parser.add_argument("root", help="EMOTIC root holding Annotations/ and emotic/")
    parser.add_argument("cache_dir", help="output folder of the cache")
    parser.add_argument("--splits", nargs="+", default=list(EMOTIC_SPLITS), choices=EMOTIC_SPLITS)
    parser.add_argument("--size", type=int, default=224, help="side of body and context (224)")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes"
    )
    parser.add_argument(
        "--skip-missing-images", action="store_true",
        help="skip persons whose image file is missing instead of failing",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="rebuild a mismatching cache")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    try:
        counts = build_emotic_cache(
            args.root, args.cache_dir, args.splits, size=args.size,
            on_missing_image="skip" if args.skip_missing_images else "error",
            num_workers=args.workers, progress=not args.no_progress, overwrite=args.overwrite,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        print(f"dagnet-emotic-cache: error: {exc}", file=sys.stderr)
        return 2
    for split, n in counts.items():
        print(f"{split}: {n} persons cached in {args.cache_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
