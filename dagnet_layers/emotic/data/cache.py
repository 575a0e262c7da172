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

    emotic_cache.json          manifest: format, version, size, per split n / complete,
                               the decoders that wrote it (Pillow and libjpeg versions),
                               and the size + SHA-256 of every file of a complete split
    {split}_records.json       the EmoticRecords a dataset serves, their array rows and
                               their ReadSummary (persons whose image could not be
                               used are counted there, their rows left unused)
    {split}_body.npy           (N, 3, S, S) uint8 body crops
    {split}_context.npy        (M, 3, S, S) uint8 context images, one per image, unmasked
    {split}_image_of.npy       (N,) int64 person -> row of the context array
    {split}_bbox.npy           (N, 4) float32 body box in context pixels
    {split}_done.npy           (N,) bool progress marks
    {split}_body_crc32.npy     (N,) uint32 CRC-32 of each body row, checked as it is read
    {split}_context_crc32.npy  (M,) uint32 the same for each context row

Safety: a build holds the folder's :class:`~dagnet_layers.storage.FolderLock`
(a second build fails at once, naming the first one's PID); the disk space of
every array is reserved when the array is created (``posix_fallocate``), so a
full disk is a one-line :class:`~dagnet_layers.storage.StorageError` at the
start, not a ``SIGBUS`` in the middle; the manifest and records are written
atomically. When a split completes, the size and SHA-256 of each of its files
go into the manifest: :func:`verify_emotic_cache` checks them
(``dagnet-emotic-cache --verify CACHE_DIR``). Every dataset that opens the cache
checks the sizes and array headers and hashes every file but the two image arrays,
and checks each image row it reads against the CRC-32 the build recorded for it.
A dataset holds its split's :func:`split_lock` shared while it lives, and a build
holds it alone while it writes the split: rebuilding a split (``--overwrite``)
that a training run reads is refused, naming the run's PID, instead of changing
the run's data under it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import PIL.features
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dagnet_layers.emotic.data.pixels import MAX_IMAGE_PIXELS, crop_body_and_context, load_image_rgb
from dagnet_layers.emotic.data.records import (
    EMOTIC_SPLITS,
    BadRecordPolicy,
    EmoticRecords,
    MissingImagePolicy,
    ReadSummary,
    load_emotic_mat,
    open_npy,
    read_emotic_annotations,
)
from dagnet_layers.errors import (
    BadRecordError,
    CorruptFileError,
    FileError,
    ImageTooLargeError,
    MissingFileError,
    UnsafePathError,
)
from dagnet_layers.storage import (
    FolderLock,
    IntegrityError,
    ReadersLock,
    StorageError,
    read_json_object,
    sha256_file,
    verify_files,
    write_bytes_atomic,
)

__all__ = [
    "BUILD_SKIP_REASONS",
    "CACHE_FORMAT_VERSION",
    "CACHE_MANIFEST",
    "build_emotic_cache",
    "cache_is_complete",
    "estimate_cache_bytes",
    "row_crc32",
    "split_lock",
    "verify_emotic_cache",
]

logger = logging.getLogger(__name__)

def estimate_cache_bytes(n_persons: int, n_images: int, size: int) -> int:
    """Disk space of one split's cache: a body crop per person, a context per image.

    Example:
        >>> round(estimate_cache_bytes(23_706, 18_316, 224) / 2**30, 1)  # EMOTIC at 224 px, GiB
        5.9
    """
    pixels = 3 * size * size
    return (n_persons + n_images) * pixels + n_persons * (8 + 16 + 1) + (1 << 16)


#: Name of the manifest file that marks a folder as an EMOTIC cache.
CACHE_MANIFEST = "emotic_cache.json"
#: Version of the on-disk cache format; a cache of another version is rebuilt.
#: 2: checksums of every file of a complete split. 3: a CRC-32 per image row, checked
#: as each row is read.
CACHE_FORMAT_VERSION = 3
#: The arrays of a split, with the records file, in manifest order.
_SPLIT_FILES = ("records.json", "body.npy", "context.npy", "image_of.npy", "bbox.npy",
                "done.npy", "body_crc32.npy", "context_crc32.npy")
#: The two large arrays: the cheap check reads their sizes and headers; every other file
#: of a split is small and also hashed when a dataset opens the cache.
_IMAGE_FILES = ("body.npy", "context.npy")
_FORMAT = "dagnet-emotic-cache"


def _decoder() -> str:
    """The decoder and resizer that write a cache's pixels, as a manifest records them.

    Pillow's bilinear resize changed its pass order between releases (12.2, 13.0), and
    libjpeg builds may differ in their IDCT: the same JPEG can come out a grey level
    apart in some pixels. The manifest keeps which one wrote each split.
    """
    turbo = PIL.features.version("libjpeg_turbo")
    jpeg = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {PIL.features.version('jpg')}"
    return f"Pillow {PIL.__version__}, {jpeg}"


def _read_manifest(cache_dir: Path) -> dict[str, Any] | None:
    path = cache_dir / CACHE_MANIFEST
    if not path.exists():
        return None
    manifest = read_json_object(path, "EMOTIC cache manifest")
    if manifest.get("format") != _FORMAT:
        raise CorruptFileError(path, f"not a {_FORMAT} manifest")
    if not isinstance(manifest.get("splits", {}), dict):
        raise CorruptFileError(path, "its 'splits' entry is not an object")
    return manifest


def _write_json(path: Path, payload: Any) -> None:
    # atomic and durable: an interrupted build never leaves half a manifest
    write_bytes_atomic(path, json.dumps(payload).encode())


def _reserve(path: Path, out: Path, split: str) -> None:
    """Allocate a new array file's blocks now, so a full disk fails here, not with SIGBUS.

    A memory-mapped file created with ``truncate`` is sparse: the first write to a page
    with no free block on the disk kills the process with SIGBUS. Where the platform has
    no ``posix_fallocate`` the file stays sparse.
    """
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - macOS, Windows
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        raise StorageError(
            err.errno, f"not enough space in {out} for the {split} cache ({path.name} needs "
            f"{os.fstat(fd).st_size / 2**30:.2f} GiB): {err.strerror or err}"
        ) from err
    finally:
        os.close(fd)


def _split_files(out: Path, split: str) -> dict[str, Path]:
    return {name: out / f"{split}_{name}" for name in _SPLIT_FILES}


def verify_emotic_cache(
    cache_dir: str | os.PathLike[str],
    splits: Sequence[str] | None = None,
    *,
    full: bool = True,
) -> dict[str, int]:
    """Check a cache's files against what its build recorded.

    The cheap check (``full=False``, what :class:`~dagnet_layers.emotic.data.EmoticDataset`
    does on opening a cache) compares each file's size with the manifest and each
    array's header (dtype and shape) with the split's person and image counts, and the
    SHA-256 of every file but the two image arrays (the records, boxes, row indices and
    row checksums: a few MB for EMOTIC). The image rows are checked one by one as a
    dataset reads them, against their CRC-32. The full check also recomputes the image
    arrays' SHA-256 and catches any flipped byte at once; it reads the whole cache
    (cost per GB: ``benchmarks/bench_storage.py``).

    Args:
        cache_dir: The cache folder.
        splits: Splits to check (default: every complete split in the manifest).
        full: Also compare SHA-256 checksums.

    Returns:
        Split -> number of bytes checked.

    Raises:
        FileNotFoundError: no cache manifest, or a file of a split is missing.
        IntegrityError: a file's size, header or checksum differs (names the file),
            or the split was built before checksums were recorded.
        UnsafePathError: a file of the split is a symbolic link.
        ValueError: a requested split is not complete in the cache.
    """
    out = Path(cache_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise MissingFileError(out / CACHE_MANIFEST, "not found: not an EMOTIC cache")
    entries = manifest.get("splits", {})
    names = [s for s, e in entries.items() if e.get("complete")] if splits is None else splits
    checked = {}
    for split in names:
        entry = entries.get(split)
        if entry is None or not entry.get("complete"):
            raise CorruptFileError(out / CACHE_MANIFEST,
                                   f"the cache has no complete {split!r} split to verify")
        recorded = entry.get("files")
        if recorded is not None and not (
            isinstance(recorded, dict)
            and all(isinstance(v, dict) and set(v) == {"size", "sha256"} for v in recorded.values())
            and set(recorded) == set(_SPLIT_FILES)
        ):
            raise CorruptFileError(out / CACHE_MANIFEST, f"malformed file list of {split!r}")
        if not recorded:
            raise IntegrityError(
                out / CACHE_MANIFEST, f"the {split!r} split has no recorded checksums (built "
                "before format 2); rebuild it to verify it"
            )
        files = _split_files(out, split)
        for path in files.values():
            if path.is_symlink():  # never read through a link a stranger put in the cache
                raise UnsafePathError(
                    f"{path}: a cache file is a symbolic link; cache files must be regular "
                    "files inside the cache folder (rebuild the split)"
                )
        verify_files(out, {files[k].name: ({"size": v["size"]}
                                           if not full and k in _IMAGE_FILES else v)
                           for k, v in recorded.items()})  # fmt: skip
        try:
            n, m, size = int(entry["n"]), int(entry["n_images"]), int(manifest["size"])
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptFileError(out / CACHE_MANIFEST, f"malformed {split!r} entry ({err!r})"
                                   ) from err
        expected = {
            "body.npy": (np.uint8, (n, 3, size, size)),
            "context.npy": (np.uint8, (m, 3, size, size)),
            "image_of.npy": (np.int64, (n,)),
            "bbox.npy": (np.float32, (n, 4)),
            "body_crc32.npy": (np.uint32, (n,)),
            "context_crc32.npy": (np.uint32, (m,)),
        }
        for name, (dtype, shape) in expected.items():
            path = files[name]
            try:
                arr = open_npy(path)
            except CorruptFileError as err:
                raise IntegrityError(path, err.problem) from err
            if arr.dtype != dtype or arr.shape != shape:
                raise IntegrityError(
                    path, f"holds {arr.dtype} {arr.shape}, the manifest says "
                    f"{np.dtype(dtype)} {shape}"
                )
            del arr
        checked[split] = sum(int(v["size"]) for v in recorded.values())
    return checked


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
    except ValueError:  # CorruptFileError: rebuilt (or refused) by the builder
        return False
    if manifest is None or manifest.get("version") != CACHE_FORMAT_VERSION:
        return False
    if size is not None and manifest.get("size") != int(size):
        return False
    return bool(manifest.get("splits", {}).get(split, {}).get("complete", False))


class _ImageJobs(Dataset):
    """One item per image: decode once, crop every person of it (runs in workers).

    An image that cannot be used (unreadable, too large, smaller than a box) does not
    stop the build: its persons come back with a skip reason instead of pixels.
    """

    def __init__(
        self, jobs: list[tuple[int, list[int]]], records: EmoticRecords, size: int,
        max_pixels: int | None,
    ) -> None:  # fmt: skip
        self.jobs, self.records, self.size, self.max_pixels = jobs, records, size, max_pixels

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, j: int) -> _Job:
        image_row, persons = self.jobs[j]
        path = self.records[persons[0]].image_path
        size = self.size
        bodies = np.zeros((len(persons), 3, size, size), dtype=np.uint8)
        boxes = np.zeros((len(persons), 4), dtype=np.float32)
        context = np.zeros((3, size, size), dtype=np.uint8)
        bad: dict[int, tuple[str, str]] = {}
        try:
            image = load_image_rgb(path, max_pixels=self.max_pixels,
                                   root=getattr(self.records, "image_root", None))
        except (FileError, UnsafePathError) as exc:  # (a link swapped in since the read)
            reason = {ImageTooLargeError: "image_too_large", MissingFileError: "missing_image",
                      UnsafePathError: "unsafe_path"}
            why = reason.get(type(exc), "unreadable_image")
            return image_row, persons, bodies, context, boxes, dict.fromkeys(
                persons, (why, str(exc))
            )
        w, h = image.size
        for k, p in enumerate(persons):
            box = self.records[p].bbox
            if box[2] > w or box[3] > h:  # the image is smaller than its annotated box
                bad[p] = ("box_outside_image", f"{path}: person record {p}'s box {box} "
                          f"reaches outside the decoded {w}x{h} image")
                continue
            bodies[k], context, boxes[k] = crop_body_and_context(image, box, size)
        if len(bad) == len(persons):  # still store the context: it costs one resize
            context = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
            context = np.ascontiguousarray(context.transpose(2, 0, 1))
        return image_row, persons, bodies, context, boxes, bad


#: What a worker returns for one image: row, persons, bodies, context, boxes and
#: person -> (skip reason, message) for the persons it could not crop.
_Job = tuple[int, list[int], np.ndarray, np.ndarray, np.ndarray, dict[int, tuple[str, str]]]

#: Skip reasons of the cache build (counted in the split's ReadSummary).
BUILD_SKIP_REASONS: tuple[str, ...] = (
    "unreadable_image", "image_too_large", "missing_image", "box_outside_image", "unsafe_path",
)  # fmt: skip


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
    on_bad_record: BadRecordPolicy = "skip",
    max_pixels: int | None = MAX_IMAGE_PIXELS,
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
        on_bad_record: ``"skip"`` (default): bad records, and persons whose image
            cannot be used (``unreadable_image``, ``image_too_large``,
            ``box_outside_image``: the image is smaller than the annotated box), are
            left out and counted in the split's summary, and the build goes on;
            ``"error"``: the first raises :class:`~dagnet_layers.errors.BadRecordError`.
        max_pixels: Largest image decoded (see :func:`load_image_rgb`).
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
        FolderLockedError: Another process is building in ``cache_dir`` (names its PID).
        StorageError: The disk cannot hold the cache (checked before decoding) or
            another write failed; names the folder and the cause.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic, EmoticDataset
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
    writing: dict[str, ReadersLock] = {}  # the splits this build may change, held alone
    try:
        with FolderLock(out, purpose="EMOTIC cache build"):
            return _build(source, out, splits, size, on_missing_image, on_bad_record,
                          max_pixels, num_workers, flush_every, progress, overwrite, records,
                          writing)
    finally:
        for lock in writing.values():
            lock.release()


def _may_write(out: Path, split: str, writing: dict[str, ReadersLock]) -> None:
    """Hold ``split``'s lock alone before changing it: refused while a dataset reads it."""
    if split not in writing:
        writing[split] = split_lock(out, split).acquire(shared=False)


def _build(
    source: str | os.PathLike[str],
    out: Path,
    splits: Sequence[str],
    size: int,
    on_missing_image: MissingImagePolicy,
    on_bad_record: BadRecordPolicy,
    max_pixels: int | None,
    num_workers: int,
    flush_every: int,
    progress: bool,
    overwrite: bool,
    records: dict[str, EmoticRecords] | None,
    writing: dict[str, ReadersLock],
) -> dict[str, int]:
    manifest = _read_manifest(out)
    if manifest is not None and (
        manifest.get("version") != CACHE_FORMAT_VERSION or manifest.get("size") != size
    ):
        if not overwrite:
            held = manifest.get("size")
            if manifest.get("version") != CACHE_FORMAT_VERSION:
                why = (f"it was written in format {manifest.get('version')}; this version "
                       f"reads format {CACHE_FORMAT_VERSION} (a CRC-32 per image row)")
            else:
                why = f"it holds {held} px images, not {size} px"
            raise CorruptFileError(
                out / CACHE_MANIFEST, f"{why}: rebuild it (`dagnet-emotic-cache "
                f"{getattr(source, 'root', source)} "
                f"{out} --size {size} --overwrite`, or overwrite=True) or use another "
                "folder (dagnet-train --cache-dir)"
            )
        for split in EMOTIC_SPLITS:  # every split's entry is dropped: none may be read
            if split in manifest.get("splits", {}):
                _may_write(out, split, writing)
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
                mat = load_emotic_mat(source)
            recs = read_emotic_annotations(
                source, split, on_missing_image=on_missing_image, on_bad_record=on_bad_record,
                mat=mat,
            )
        counts[split] = _build_split(
            recs, out, manifest, split, size, on_bad_record, max_pixels, num_workers,
            flush_every, progress, overwrite, writing,
        )  # fmt: skip
    return counts


def _build_split(
    recs: EmoticRecords,
    out: Path,
    manifest: dict[str, Any],
    split: str,
    size: int,
    on_bad_record: BadRecordPolicy,
    max_pixels: int | None,
    num_workers: int,
    flush_every: int,
    progress: bool,
    overwrite: bool,
    writing: dict[str, ReadersLock],
) -> int:
    fingerprint = _fingerprint(recs, size)
    entry = manifest["splits"].get(split)
    if entry is not None and entry.get("fingerprint") != fingerprint:
        if not overwrite:
            raise CorruptFileError(
                out / CACHE_MANIFEST, f"the cache holds a {split!r} split built from other "
                "annotations; use another folder or overwrite=True"
            )
        entry = None
    if entry is not None and entry.get("complete"):
        verify_emotic_cache(out, [split], full=False)  # a truncated file is not "complete"
        kept = int(entry["n"]) - len(entry.get("bad", {}))
        logger.info("EMOTIC cache %s: %s already complete (%d persons)", out, split, kept)
        return kept
    _may_write(out, split, writing)  # refused while a dataset reads it: no rows change under it
    plan = _allocate(recs, out, manifest, split, size, entry, fingerprint)
    bad = _decode(recs, out, manifest, split, size, plan, on_bad_record, max_pixels,
                  num_workers, flush_every, progress)
    return _finish(recs, out, manifest, split, plan, bad)


def split_lock(cache_dir: str | os.PathLike[str], split: str) -> ReadersLock:
    """The lock that readers of a cache split share and its builder holds alone.

    Every :class:`~dagnet_layers.emotic.data.EmoticDataset` of the split holds it
    shared while it lives; :func:`build_emotic_cache` takes it exclusive before it
    writes the split, and is refused (naming the readers' PIDs) while one reads.
    The file is ``.{split}.lock`` in the cache folder.

    Example:
        >>> split_lock("/data/cache", "val").path.name
        '.val.lock'
    """
    if split not in EMOTIC_SPLITS:  # the name becomes a file name
        raise ValueError(f"split must be one of {EMOTIC_SPLITS}, got {split!r}")
    folder = Path(cache_dir)
    return ReadersLock(folder / f".{split}.lock", f"the {split} split of the cache {folder}")


@dataclass
class _SplitPlan:
    """Where one split's arrays are and what they hold."""

    files: dict[str, Path]
    specs: dict[str, tuple[Any, tuple[int, ...]]]
    image_of: np.ndarray  # person -> row of the context array
    n_images: int
    resume: bool


def _allocate(recs: EmoticRecords, out: Path, manifest: dict[str, Any], split: str, size: int,
              entry: dict[str, Any] | None, fingerprint: str) -> _SplitPlan:  # fmt: skip
    """Group persons by image and create the split's arrays with their disk space
    reserved, recorded in the manifest as incomplete; or find them for a resume."""
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
    decoder = _decoder()
    if not resume:
        _write_json(
            out / f"{split}_records.json",
            {"summary": vars(recs.summary), "records": [r.to_dict() for r in recs]},
        )
        try:
            buffer = io.BytesIO()
            np.save(buffer, image_of)
            write_bytes_atomic(files["image_of"], buffer.getbuffer())
            for key, (dtype, shape) in specs.items():
                arr = np.lib.format.open_memmap(files[key], mode="w+", dtype=dtype, shape=shape)
                del arr
                _reserve(files[key], out, split)
        except OSError as err:
            for path in files.values():  # nothing half-made is left for a resume to trust
                path.unlink(missing_ok=True)
            if isinstance(err, StorageError):
                raise
            raise StorageError(err.errno, f"cannot create the {split} cache in {out}: "
                               f"{err.strerror or err}") from err
        manifest["splits"][split] = {
            "n": n, "n_images": m, "complete": False, "fingerprint": fingerprint,
            "decoders": [decoder],
        }  # fmt: skip
        _write_json(out / CACHE_MANIFEST, manifest)
    elif decoder not in manifest["splits"][split].setdefault("decoders", []):
        # Not refused: the rows differ by a grey level at most. Recorded and said, so
        # that a split with rows of two decoders is never mistaken for one of one.
        earlier = ", ".join(manifest["splits"][split]["decoders"]) or "an unrecorded decoder"
        logger.warning(
            "EMOTIC cache %s: resuming %s with %s; its earlier rows were written by %s and "
            "may differ by a grey level in some pixels (overwrite=True rebuilds it whole)",
            out, split, decoder, earlier,
        )  # fmt: skip
        manifest["splits"][split]["decoders"].append(decoder)
        _write_json(out / CACHE_MANIFEST, manifest)

    return _SplitPlan(files, specs, image_of, m, resume)


def _decode(recs: EmoticRecords, out: Path, manifest: dict[str, Any], split: str, size: int,
            plan: _SplitPlan, on_bad_record: BadRecordPolicy, max_pixels: int | None,
            num_workers: int, flush_every: int, progress: bool) -> dict[str, str]:  # fmt: skip
    """Decode every image not done yet in the DataLoader workers, flushing data before
    progress marks; returns person -> skip reason of the persons left out."""
    files, specs, image_of, m, resume = (plan.files, plan.specs, plan.image_of,
                                         plan.n_images, plan.resume)  # fmt: skip
    def open_all() -> dict[str, np.ndarray]:
        return {k: np.lib.format.open_memmap(files[k], mode="r+") for k in specs}

    arrays = open_all()
    done = np.array(arrays["done"])
    # person -> skip reason of the persons whose image could not be used; recorded in the
    # manifest before their done marks, so a resumed build still knows them.
    bad: dict[str, str] = dict(manifest["splits"][split].get("bad", {}))
    persons_of: dict[int, list[int]] = {}
    for i in np.flatnonzero(~done):
        persons_of.setdefault(int(image_of[i]), []).append(int(i))
    # A resumed image is decoded again for all its persons: its context row is shared.
    jobs = [(row, [int(i) for i in np.flatnonzero(image_of == row)]) for row in sorted(persons_of)]
    if resume and jobs:
        logger.info("EMOTIC cache %s: resuming %s, %d of %d images left", out, split, len(jobs), m)
    loader = DataLoader(
        _ImageJobs(jobs, recs, size, max_pixels), batch_size=None, shuffle=False,
        num_workers=num_workers, collate_fn=_identity,
    )  # fmt: skip

    def record_bad() -> None:
        if manifest["splits"][split].get("bad", {}) != bad:
            manifest["splits"][split]["bad"] = dict(bad)
            _write_json(out / CACHE_MANIFEST, manifest)

    pending: list[int] = []
    n_warned = 0
    bar = tqdm(
        loader, total=len(jobs), desc=f"EMOTIC {split} cache", unit="img", disable=not progress
    )
    for k, (row, persons, bodies, context, boxes, skipped) in enumerate(bar, 1):
        for p, (reason, message) in skipped.items():
            if on_bad_record == "error":
                raise BadRecordError(f"{message} (reason {reason!r}; on_bad_record='skip' "
                                     "skips and counts such persons)")
            if n_warned < 5:
                logger.warning("EMOTIC %s cache: skipping person %d (%s): %s",
                               split, p, reason, message)  # fmt: skip
                n_warned += 1
            bad[str(p)] = reason
        arrays["body"][persons] = bodies
        arrays["context"][row] = context
        arrays["bbox"][persons] = boxes
        pending.extend(persons)
        if k % flush_every == 0:
            arrays = _commit(arrays, pending, open_all, record_bad)
            pending = []
    _commit(arrays, pending, None, record_bad)

    return bad


def _finish(recs: EmoticRecords, out: Path, manifest: dict[str, Any], split: str,
            plan: _SplitPlan, bad: dict[str, str]) -> int:  # fmt: skip
    """Write the records served, the rows' CRC-32s and the files' checksums, then mark
    the split complete."""
    files, m, n = plan.files, plan.n_images, len(recs)
    # The records file lists the persons a dataset serves, with their array rows.
    keep = [i for i in range(n) if str(i) not in bad]
    summary = ReadSummary(**vars(recs.summary))
    summary.skipped = dict(summary.skipped)
    for reason in bad.values():
        summary.skip(reason)
    summary.n_kept = len(keep)
    _write_json(
        out / f"{split}_records.json",
        {"summary": vars(summary), "records": [recs[i].to_dict() for i in keep], "rows": keep},
    )
    if bad:
        summary.log()
    for key in ("body", "context"):
        _write_row_crcs(files[key], out / f"{split}_{key}_crc32.npy")
    manifest["splits"][split]["files"] = {
        name: {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for name, path in _split_files(out, split).items()
    }
    manifest["splits"][split]["complete"] = True
    _write_json(out / CACHE_MANIFEST, manifest)
    logger.info("EMOTIC cache %s: %s complete, %d persons, %d images", out, split, len(keep), m)
    return len(keep)


def row_crc32(rows: np.ndarray) -> np.ndarray:
    """The CRC-32 (:func:`zlib.crc32`) of each row of ``rows``, as ``uint32``.

    Example:
        >>> row_crc32(np.zeros((2, 3), dtype=np.uint8)).tolist() == [zlib.crc32(bytes(3))] * 2
        True
    """
    return np.fromiter((zlib.crc32(row) for row in np.ascontiguousarray(rows)),
                       dtype=np.uint32, count=len(rows))  # fmt: skip


def _write_row_crcs(array_file: Path, out: Path, chunk: int = 256) -> None:
    """Write the CRC-32 of each row of ``array_file`` to ``out`` (a chunk at a time)."""
    rows = open_npy(array_file)
    crcs = np.empty(len(rows), dtype=np.uint32)
    for start in range(0, len(rows), chunk):
        crcs[start:start + chunk] = row_crc32(rows[start:start + chunk])
    del rows
    buffer = io.BytesIO()
    np.save(buffer, crcs)
    write_bytes_atomic(out, buffer.getbuffer())


def _identity(x: Any) -> Any:
    return x


def _commit(
    arrays: dict[str, np.ndarray], pending: list[int], reopen: Any, before_marks: Any
) -> Any:
    """Flush data, call ``before_marks``, then mark ``pending`` done and flush that; drop
    and reopen the maps so the resident pages of the mapping do not grow with the dataset."""
    for key in ("body", "context", "bbox"):
        arrays[key].flush()
    before_marks()
    if pending:
        arrays["done"][pending] = True
    arrays["done"].flush()
    arrays.clear()
    return reopen() if reopen is not None else None
