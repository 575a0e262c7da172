"""From a source to the three datasets, the fast way: one call for a program or a notebook.

:func:`emotic_datasets` takes where the data is (an official release, the community
preprocessed layout, a cache folder) and the cache choice, and returns the train, val
and test datasets that ``dagnet-train`` trains on, with its policy:

- ``cache="auto"`` (the default) decodes an official release's JPEGs once into a
  cache under ``$DAGNET_CACHE`` (:func:`default_cache_dir`) when the disk has room for
  it (:func:`choose_cache`), and otherwise decodes them every epoch, saying so; a
  folder is used as the cache; ``None`` decodes every epoch. Other layouts are read
  as they are.
- ``jpeg_decode`` chooses where JPEGs read every epoch are decoded: in the DataLoader
  workers (:class:`~dagnet_layers.emotic.data.EmoticDataset`) or batched on the
  device (:class:`~dagnet_layers.emotic.data.EmoticJpegDataset`); ``"auto"`` picks
  the device on CUDA.
- Under ``torch.distributed``, rank 0 chooses and builds the cache while the others
  wait, and every rank reads the same one (``rank`` defaults to the process's rank in
  the initialised process group, else 0).

:func:`demo_datasets` does the same for the synthetic demo set, written once into a
folder (:func:`write_demo_set`), with its cache inside it. Caches that this module
placed itself are rebuilt when they are in an older format; a folder the caller names
is the caller's to rebuild (``dagnet-emotic-cache --overwrite``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import torch

from dagnet_layers._distributed import barrier, from_rank0
from dagnet_layers._paths import cache_home
from dagnet_layers.emotic.data.cache import (
    CACHE_FORMAT_VERSION,
    CACHE_MANIFEST,
    _read_manifest,
    cache_is_complete,
    estimate_cache_bytes,
)
from dagnet_layers.emotic.data.dataset import EmoticDataset, detect_layout
from dagnet_layers.emotic.data.jpeg import JPEG_DECODE_MODES, EmoticJpegDataset
from dagnet_layers.emotic.data.pixels import MAX_IMAGE_PIXELS
from dagnet_layers.emotic.data.records import (
    EMOTIC_SPLITS,
    BadRecordPolicy,
    load_emotic_mat,
    read_emotic_annotations,
)
from dagnet_layers.emotic.data.synthetic import make_synthetic_emotic
from dagnet_layers.storage import read_json_object

__all__ = [
    "CACHE_HEADROOM",
    "choose_cache",
    "default_cache_dir",
    "demo_datasets",
    "emotic_datasets",
    "sized_cache_dir",
    "write_demo_set",
]

logger = logging.getLogger(__name__)

#: Free space a cache build leaves on its disk at least (bytes).
CACHE_HEADROOM = 1 << 30

CacheChoice = str | os.PathLike[str] | None


def sized_cache_dir(folder: str | os.PathLike[str], size: int) -> Path:
    """``folder`` named by ``size`` (``<folder>-<size>px``): one cache holds one image
    size, so a run at another size gets its own instead of a refusal. A cache an
    earlier version built in ``folder`` itself at this size is reused.

    Example:
        >>> sized_cache_dir("/nowhere/emotic-0a1b2c3d", 224).name
        'emotic-0a1b2c3d-224px'
    """
    folder = Path(folder)
    try:
        built = read_json_object(folder / CACHE_MANIFEST, "EMOTIC cache manifest").get("size")
    except (OSError, ValueError):  # none, or unreadable: not this size's
        built = None
    return folder if built == size else folder.with_name(f"{folder.name}-{size}px")


def default_cache_dir(source: str | os.PathLike[str], size: int) -> Path:
    """Where a dataset's cache at ``size`` px goes unless the caller names one: under
    ``$DAGNET_CACHE`` (default ``~/.cache/dagnet_layers``), named by the dataset's
    folder, a hash of its path and the size (:func:`sized_cache_dir`).

    Example:
        >>> folder = default_cache_dir("/data/emotic", 224)
        >>> folder.parent.name, folder.name.startswith("emotic-"), folder.name[-5:]
        ('emotic-cache', True, '224px')
    """
    resolved = Path(source).expanduser().resolve()
    tag = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return sized_cache_dir(cache_home() / "emotic-cache" / f"{resolved.name}-{tag}", size)


def choose_cache(source: str | os.PathLike[str], size: int) -> Path | None:
    """The default cache folder when the disk has room for what is not cached yet, else
    ``None`` (and a warning saying so).

    The cost of asking is reading the official annotations (no image is opened); the
    room needed is :func:`~dagnet_layers.emotic.data.estimate_cache_bytes` per split
    not yet complete, plus :data:`CACHE_HEADROOM`.
    """
    source = Path(source)
    folder = default_cache_dir(source, size)
    needed, mat = 0, None
    for split in EMOTIC_SPLITS:
        if cache_is_complete(folder, split, size=size):
            continue
        mat = mat if mat is not None else load_emotic_mat(source)  # read once, not per split
        records = read_emotic_annotations(source, split, check_images=False, mat=mat)
        images = {r.image_path for r in records}
        needed += estimate_cache_bytes(len(records), len(images), size)
    if needed == 0:
        logger.info("reading the decoded images from the cache %s (--no-cache, cache=None, "
                    "decodes JPEGs instead)", folder)
        return folder
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed + CACHE_HEADROOM > free:
        logger.warning("no room for the decoded-image cache (%.1f GiB needed, %.1f GiB free "
                       "at %s): decoding JPEGs every epoch; a cache folder elsewhere "
                       "(dagnet-train --cache-dir DIR) avoids that",
                       needed / 2**30, free / 2**30, existing)
        return None
    logger.info("decoding the images once into the cache %s (%.1f GiB; --no-cache decodes "
                "JPEGs every epoch instead, --cache-dir DIR puts it elsewhere)",
                folder, needed / 2**30)
    return folder


def _renew_old_format(cache: Path) -> None:
    """Delete a cache this module placed itself when it is in an older format, so that it
    is built again: the user never chose that folder."""
    try:
        manifest = _read_manifest(cache)
    except ValueError:
        return  # a damaged manifest: the builder names it
    version = None if manifest is None else manifest.get("version")
    if manifest is not None and version != CACHE_FORMAT_VERSION:
        logger.warning("the decoded cache %s is in format %s, this version writes format %d: "
                       "rebuilding it", cache, version, CACHE_FORMAT_VERSION)
        shutil.rmtree(cache)


def write_demo_set(directory: str | os.PathLike[str], n_images: int = 600, seed: int = 0,
                   *, rank: int | None = None) -> Path:  # fmt: skip
    """Write the synthetic demo set once (rank 0; the others wait) and return its root,
    ``<directory>/n<n_images>-seed<seed>``. It is SYNTHETIC, not EMOTIC (see
    :func:`~dagnet_layers.emotic.data.make_synthetic_emotic`)."""
    root = Path(directory).expanduser() / f"n{n_images}-seed{seed}"
    if _rank(rank) == 0 and not (root / "Annotations" / "Annotations.mat").is_file():
        logger.info("writing the synthetic EMOTIC-format demo set to %s", root)
        make_synthetic_emotic(root, n_images=n_images, seed=seed)
    barrier()
    return root


def emotic_datasets(
    source: str | os.PathLike[str],
    *,
    cache: CacheChoice = "auto",
    size: int = 224,
    jpeg_decode: Literal["auto", "workers", "device"] = "auto",
    device: torch.device | str | None = None,
    mask_body: bool = True,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
    on_bad_record: BadRecordPolicy = "skip",
    progress: bool = True,
    rank: int | None = None,
) -> dict[str, EmoticDataset]:
    """Train, val and test datasets of ``uint8`` samples from ``source``, as
    ``dagnet-train`` reads them (see the module docstring for the policy).

    Args:
        source: An official release root, a preprocessed folder or a cache folder.
        cache: ``"auto"``, a cache folder, or ``None`` (official layout only).
        size: Side of body and context.
        jpeg_decode: ``"auto"``, ``"workers"`` or ``"device"`` (JPEGs read every
            epoch decoded on ``device``; refuses ``cache``).
        device: The training device, for ``jpeg_decode="auto"``.
        mask_body: Fill the body box of the context (GSAM's input).
        max_pixels: Largest image decoded.
        on_bad_record: ``"skip"`` (count bad records by reason) or ``"error"``.
        progress: Show progress bars while a cache is built.
        rank: This process's rank under ``torch.distributed`` (rank 0 builds); default:
            the initialised process group's, else 0.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}``: :class:`EmoticDataset`, or
        :class:`EmoticJpegDataset` (batches then need a
        :class:`~dagnet_layers.emotic.data.JpegBatchDecoder`).

    Raises:
        ValueError: For an unknown ``jpeg_decode``, or ``"device"`` with a cache or a
            source that is not in the official layout.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d + "/raw", n_images=12, image_size=(64, 48)).root
        ...     sets = emotic_datasets(root, cache=d + "/cache", size=32, progress=False)
        ...     sorted(sets), sets["val"].layout
        (['test', 'train', 'val'], 'cache')
    """
    if jpeg_decode not in JPEG_DECODE_MODES:
        raise ValueError(f"jpeg_decode must be one of {JPEG_DECODE_MODES}, got {jpeg_decode!r}")
    rank = _rank(rank)
    source = Path(source)
    layout = detect_layout(source, "train")
    if jpeg_decode == "device":
        if layout != "official":
            raise ValueError(f"jpeg_decode='device' decodes the official layout's JPEGs; "
                             f"{source} is in the {layout} layout")
        if cache not in (None, "auto"):
            raise ValueError("jpeg_decode='device' reads the JPEGs: give no cache folder")
        chosen = None
    elif cache == "auto":
        # (a folder that is already a cache, or the preprocessed layout, is read as it is)
        chosen = from_rank0(choose_cache(source, size) if rank == 0 and layout == "official"
                            else None, rank)  # fmt: skip
        if chosen is not None and rank == 0:
            _renew_old_format(chosen)  # ours to rebuild
    else:
        chosen = None if cache is None or layout != "official" else Path(cache)
    return _datasets(source, layout, chosen, size, jpeg_decode, device, mask_body, max_pixels,
                     on_bad_record, progress, rank, hint=cache == "auto")


def demo_datasets(
    directory: str | os.PathLike[str],
    n_images: int = 600,
    seed: int = 0,
    *,
    cache: CacheChoice = "auto",
    **options: Any,
) -> dict[str, EmoticDataset]:
    """:func:`emotic_datasets` of the synthetic demo set in ``directory`` (written once
    by :func:`write_demo_set`). ``cache="auto"`` keeps its cache inside the demo set's
    folder (``cache-<size>px``); ``options`` are :func:`emotic_datasets`'.

    The data is SYNTHETIC, not EMOTIC: numbers from it say nothing about EMOTIC.
    """
    rank = _rank(options.get("rank"))
    root = write_demo_set(directory, n_images, seed, rank=rank)
    if cache == "auto" and options.get("jpeg_decode", "auto") != "device":
        cache = sized_cache_dir(root / "cache", int(options.get("size", 224)))
        if rank == 0:
            _renew_old_format(cache)  # ours to rebuild
    return emotic_datasets(root, cache=cache, **options)


def _rank(rank: int | None) -> int:
    """``rank``, or this process's in the initialised process group, else 0."""
    if rank is not None:
        return int(rank)
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _datasets(source: Path, layout: str, cache: Path | None, size: int, jpeg_decode: str,
              device: torch.device | str | None, mask_body: bool, max_pixels: int | None,
              on_bad_record: BadRecordPolicy, progress: bool, rank: int,
              hint: bool) -> dict[str, EmoticDataset]:  # fmt: skip
    """The three datasets, rank 0 building the cache while the others wait; ``hint``:
    say that a cache would be faster (the caller did not decline one)."""
    jpegs = cache is None and layout == "official"  # decoded every epoch
    device = None if device is None else torch.device(device)
    on_device = jpegs and (jpeg_decode == "device" or (
        jpeg_decode == "auto" and device is not None and device.type == "cuda"))
    if jpegs:
        where = (f"batched on {device or 'the training device'} (--jpeg-decode workers, "
                 "jpeg_decode='workers', decodes them in the DataLoader workers)" if on_device
                 else "in the DataLoader workers")
        logger.info("decoding JPEGs every epoch, %s%s", where, "; a cache on a disk with room "
                    "(--cache-dir DIR) decodes them once into memory-mapped arrays (several "
                    "times faster to read)" if hint else "")
    datasets = {}
    for split in EMOTIC_SPLITS:
        if cache is not None and rank != 0:
            barrier()  # let rank 0 build the cache first
        if on_device:
            datasets[split] = EmoticJpegDataset(source, split, size=size, max_pixels=max_pixels,
                                                on_bad_record=on_bad_record)  # fmt: skip
        else:
            datasets[split] = EmoticDataset(
                source, split, size=size, max_pixels=max_pixels, on_bad_record=on_bad_record,
                cache_dir=cache, mask_body=mask_body, progress=progress,
            )  # fmt: skip
        if cache is not None and rank == 0:
            barrier()
        summary = datasets[split].records.summary
        logger.info("%s: %d persons (%s)", split, len(datasets[split]), summary)
    return datasets
