"""``EmoticDataset``: body crop + masked context per person, from any of three layouts.

Accepted sources (detected from the folder's content):

* the official release (``<root>/Annotations/Annotations.mat`` + ``<root>/emotic/``),
  also what :func:`make_synthetic_emotic` writes: JPEGs are decoded per sample;
* a cache folder written by :func:`build_emotic_cache` (``emotic_cache.json``):
  samples are sliced from memory-mapped ``uint8`` arrays, no decoding;
* the community preprocessed folder (``{split}.csv`` + ``{split}_*_arr.npy``).

Passing ``cache_dir=`` next to an official root reads through the cache, building it
first if it is missing or incomplete.

Which transform runs when: with ``transform=None`` a sample holds ``uint8`` images
(collate them and run :func:`emotic_batch_transform` on the device); with
``transform=emotic_train_transform()`` / ``emotic_eval_transform()`` the same maths
runs per sample in the DataLoader workers and samples hold normalised float32.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from dagnet_layers.emotic.data.cache import (
    CACHE_FORMAT_VERSION,
    CACHE_MANIFEST,
    build_emotic_cache,
    cache_is_complete,
    split_lock,
    verify_emotic_cache,
)
from dagnet_layers.emotic.data.pixels import (
    MAX_IMAGE_PIXELS,
    _chw,
    crop_body_and_context,
    load_image_rgb,
)
from dagnet_layers.emotic.data.preprocessed import preprocessed_files, read_emotic_preprocessed
from dagnet_layers.emotic.data.records import (
    EMOTIC_SPLITS,
    BadRecordPolicy,
    EmoticRecord,
    EmoticRecords,
    MissingImagePolicy,
    ReadSummary,
    open_npy,
    read_emotic_annotations,
)
from dagnet_layers.emotic.data.transforms import mask_bbox
from dagnet_layers.errors import (
    CorruptFileError,
    MissingFileError,
)
from dagnet_layers.storage import IntegrityError, read_json_object

__all__ = ["EmoticDataset", "NpyRows", "detect_layout"]

logger = logging.getLogger(__name__)

Sample = dict[str, Tensor]


def detect_layout(source: str | os.PathLike[str], split: str) -> str:
    """Which layout a folder holds: ``"official"``, ``"cache"`` or ``"preprocessed"``.

    Args:
        source: A folder.
        split: The split wanted (the preprocessed layout is detected per split).

    Returns:
        The layout name.

    Raises:
        MissingFileError: If the folder matches none of the three layouts.
        CorruptFileError: If a layout's marker file is there but is not a file.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = open(os.path.join(d, "val.csv"), "w").close()
        ...     detect_layout(d, "val")
        'preprocessed'
    """
    src = Path(source)
    markers = {
        "cache": src / CACHE_MANIFEST,
        "official": src / "Annotations" / "Annotations.mat",
        "preprocessed": src / f"{split}.csv",
    }
    for layout, marker in markers.items():
        if marker.is_file():
            return layout
        if marker.exists():
            raise CorruptFileError(marker, "exists but is not a regular file")
    raise MissingFileError(
        src, f"not an EMOTIC folder: expected Annotations/Annotations.mat (official "
        f"release), {CACHE_MANIFEST} (cache) or {split}.csv (preprocessed layout)"
    )


class NpyRows:
    """The rows of a ``.npy`` array, each read with ``pread`` into a new buffer.

    Reading a row of a memory map leaves its pages mapped in the process: after an
    epoch over a decoded-image cache every worker holds the whole cache in its
    resident set (counted by memory limits that measure RSS), although the kernel
    could share and drop those pages. Reading with ``pread`` keeps the file in the
    kernel's page cache only; a process holds the rows it is using.

    Args:
        path: A ``.npy`` file (checked as :func:`~dagnet_layers.emotic.data.open_npy` does).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     np.save(f"{d}/a.npy", np.arange(24, dtype=np.uint8).reshape(4, 2, 3))
        ...     rows = NpyRows(f"{d}/a.npy")
        ...     rows[2].tolist(), len(rows)
        ([[12, 13, 14], [15, 16, 17]], 4)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        mapped = open_npy(path)
        if not mapped.flags.c_contiguous or not isinstance(mapped, np.memmap):
            raise CorruptFileError(path, "expected a C-ordered array")
        self.path = os.fspath(path)
        self.shape, self.dtype, self.offset = mapped.shape, mapped.dtype, int(mapped.offset)
        self.row_bytes = int(np.prod(mapped.shape[1:], dtype=np.int64)) * mapped.dtype.itemsize
        del mapped
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, row: int) -> np.ndarray:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} out of range for {self.path} ({len(self)} rows)")
        out = np.empty(self.shape[1:], dtype=self.dtype)
        got = os.preadv(self._fd, [memoryview(out).cast("B")], self.offset + row * self.row_bytes)
        if got != self.row_bytes:
            raise CorruptFileError(self.path, f"row {row}: read {got} of {self.row_bytes} bytes")
        return out

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("NpyRows holds a file descriptor; open it in each process")


class EmoticDataset(Dataset):
    """EMOTIC persons as paired body / masked-context samples (DAG-Net's I_B and I_C).

    Args:
        source: Official release root (or :func:`make_synthetic_emotic` output), a
            cache folder or a preprocessed folder; see the module docstring.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Side of body and context before any transform. Default: the cache's
            size for a cache, 224 otherwise.
        transform: Optional callable on the sample dict, e.g.
            :func:`emotic_train_transform`. ``None`` keeps ``uint8`` images.
        mask_body: Whether to fill the body box of the context (GSAM input).
        mask_fill: Fill value of the mask (0 = black).
        cache_dir: With an official root: read through this cache, building it if
            needed.
        on_missing_image: ``"error"`` or ``"skip"``, see :func:`read_emotic_annotations`.
        on_bad_record: ``"skip"`` (count bad records by reason) or ``"error"``, the
            same policy in every layout (see :mod:`dagnet_layers.emotic.data.records`).
        max_pixels: Largest image (``width * height``) decoded, see
            :func:`load_image_rgb`; ``None`` for no bound.
        records: Records to use instead of reading the annotations (official layout).
        progress: Show a progress bar while ``cache_dir`` is built.
        verify_rows: In a cache, check each image row read against the CRC-32 its build
            recorded, so a flipped byte is an error naming the file and row instead of
            a silently wrong sample (cost: ``benchmarks/bench_storage.py``, "row check").
            A dataset of a cache also holds the split's
            :func:`~dagnet_layers.emotic.data.split_lock` shared while it lives, so
            that no build rewrites the split under it.

    Sample dict (``dataset[i]``):
        - ``body``: ``(3, S, S)`` uint8 crop of the box, or float32 after a transform.
        - ``context``: ``(3, S, S)`` whole image resized, body box filled with
          ``mask_fill`` when ``mask_body``.
        - ``categories``: float32 ``(26,)`` multi-hot in ``EMOTIC_CATEGORIES`` order.
        - ``vad``: float32 ``(3,)`` valence, arousal, dominance (1-10), NaN if missing.
        - ``index``: int64 scalar, position in the dataset (``records[index]``).
        - ``bbox``: float32 ``(4,)`` x1, y1, x2, y2 of the body in context pixels.

    Attributes:
        layout: ``"official"``, ``"cache"`` or ``"preprocessed"``.
        records: :class:`EmoticRecords` (one per sample) with ``.summary``.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     info = make_synthetic_emotic(d, n_images=12, seed=0, image_size=(96, 72))
        ...     ds = EmoticDataset(info.root, "train", size=64)
        ...     s = ds[0]
        >>> ds.layout, s["body"].shape, s["body"].dtype, s["categories"].shape
        ('official', torch.Size([3, 64, 64]), torch.uint8, torch.Size([26]))
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        split: str,
        *,
        size: int | None = None,
        transform: Callable[[Sample], Sample] | None = None,
        mask_body: bool = True,
        mask_fill: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        on_missing_image: MissingImagePolicy = "error",
        on_bad_record: BadRecordPolicy = "skip",
        max_pixels: int | None = MAX_IMAGE_PIXELS,
        records: EmoticRecords | None = None,
        progress: bool = True,
        verify_rows: bool = True,
    ) -> None:
        if split not in EMOTIC_SPLITS:
            raise ValueError(f"split must be one of {EMOTIC_SPLITS}, got {split!r}")
        if size is not None and int(size) <= 0:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.source = Path(source).expanduser().resolve()
        self.split = split
        self.transform = transform
        self.mask_body = bool(mask_body)
        self.mask_fill = int(mask_fill)
        self.max_pixels = max_pixels
        self.verify_rows = bool(verify_rows)
        self.layout = detect_layout(self.source, split)
        self._arrays: dict[str, np.ndarray] | None = None
        self._array_files: dict[str, Path] = {}
        self._native_size: int

        if cache_dir is not None and self.layout == "official":
            cache_dir = Path(cache_dir).expanduser().resolve()
            want = 224 if size is None else int(size)
            if not cache_is_complete(cache_dir, split, size=want):
                logger.info("EMOTIC cache %s lacks %s at %d px: building it",
                            cache_dir, split, want)  # fmt: skip
                build_emotic_cache(
                    self.source, cache_dir, splits=(split,), size=want,
                    on_missing_image=on_missing_image, on_bad_record=on_bad_record,
                    max_pixels=max_pixels, progress=progress,
                    records={split: records} if records is not None else None,
                )  # fmt: skip
            self.source, self.layout = cache_dir, "cache"

        if self.layout == "official":
            self.records = (
                records
                if records is not None
                else read_emotic_annotations(
                    self.source, split, on_missing_image=on_missing_image,
                    on_bad_record=on_bad_record,
                )
            )
            self._native_size = 224 if size is None else int(size)
        elif self.layout == "cache":
            self._init_cache()
        else:
            self._init_preprocessed(on_bad_record)
        self.size = self._native_size if size is None else int(size)
        self._categories = torch.from_numpy(self.records.multihot())
        self._vad = torch.from_numpy(self.records.vad())

    # ------------------------------------------------------------------ layouts
    def _init_cache(self) -> None:
        # Held shared while the dataset lives (and in forked workers): a build refuses to
        # rewrite the split under it, and it is refused while a build writes the split.
        self._split_lock = split_lock(self.source, self.split).acquire(shared=True)
        try:
            self._open_cache()
        except BaseException:
            self._split_lock.release()  # a dataset that failed to open holds nothing
            raise

    def _open_cache(self) -> None:
        manifest = read_json_object(self.source / CACHE_MANIFEST, "EMOTIC cache manifest")
        entry = manifest.get("splits", {}).get(self.split)
        if entry is None or not entry.get("complete", False):
            raise MissingFileError(
                self.source / CACHE_MANIFEST, f"the cache has no complete {self.split!r} split; "
                f"build it with `dagnet-emotic-cache <root> {self.source} --splits {self.split}`"
            )
        if manifest.get("version") != CACHE_FORMAT_VERSION:
            raise CorruptFileError(
                self.source / CACHE_MANIFEST, f"format version {manifest.get('version')}, this "
                f"version reads {CACHE_FORMAT_VERSION}; rebuild it with `dagnet-emotic-cache "
                f"<root> {self.source} --overwrite`"
            )
        # Sizes and array headers against the manifest: microseconds, and a truncated or
        # swapped file is an error naming it instead of garbage samples.
        verify_emotic_cache(self.source, [self.split], full=False)
        records_file = self.source / f"{self.split}_records.json"
        payload = read_json_object(records_file, "EMOTIC cache records file")
        try:
            summary = ReadSummary(**payload["summary"])
            self.records = EmoticRecords(
                [EmoticRecord.from_dict(r) for r in payload["records"]], summary
            )
            # the array row of each record: persons the build skipped keep their row
            rows = payload.get("rows", range(len(self.records)))
            self._rows = np.asarray(rows, dtype=np.int64).reshape(len(self.records))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(records_file, f"malformed records ({exc!r})") from exc
        if self._rows.size and not 0 <= self._rows.min() <= self._rows.max() < int(entry["n"]):
            raise CorruptFileError(records_file, "rows point outside the cache arrays")
        self._native_size = int(manifest["size"])
        self._array_files = {
            k: self.source / f"{self.split}_{k}.npy"
            for k in ("body", "context", "bbox", "image_of", "body_crc32", "context_crc32")
        }

    def _init_preprocessed(self, on_bad_record: BadRecordPolicy) -> None:
        pre = read_emotic_preprocessed(self.source, self.split, on_bad_record=on_bad_record)
        self.records = pre.records
        self._native_size = 224
        files = preprocessed_files(self.source, self.split)
        self._array_files = {"body": files["body"], "context": files["context"]}

    def _open_arrays(self) -> dict[str, Any]:
        # Opened lazily, once per process: a memmap or a file descriptor must not be
        # pickled into workers. The image arrays are read row by row with pread: a
        # memory map would keep every page it touched resident in each worker (the
        # whole cache, counted in RSS, after an epoch); the small ones stay mapped.
        if self._arrays is None:
            self._arrays = {k: NpyRows(p) if k in ("body", "context") else open_npy(p)
                            for k, p in self._array_files.items()}  # fmt: skip
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = None
        return state

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.records)

    @property
    def categories(self) -> Tensor:
        """All labels, float32 ``(N, 26)`` multi-hot (e.g. for per-category loss weights)."""
        return self._categories

    @property
    def vad(self) -> Tensor:
        """All continuous labels, float32 ``(N, 3)``, NaN where missing."""
        return self._vad

    @property
    def summary(self) -> ReadSummary:
        """What the reader kept and skipped, by reason."""
        return self.records.summary

    def _position(self, index: int) -> int:
        """``index`` (negative counts from the end) as a position, or an IndexError."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.split} persons")
        return index % len(self)

    @staticmethod
    def _check_box_inside(rec: EmoticRecord, index: int, w: int, h: int) -> None:
        """A box reaching outside the image as decoded is an error naming the file."""
        if rec.bbox[2] > w or rec.bbox[3] > h:
            raise CorruptFileError(
                rec.image_path, f"{rec.split} person {index}'s box {rec.bbox} reaches "
                f"outside the decoded {w}x{h} image (annotated {rec.image_size[0]}x"
                f"{rec.image_size[1]}); build a cache to skip and count such persons"
            )

    def _load_images(self, index: int) -> tuple[Tensor, Tensor, Tensor]:
        rec = self.records[index]
        if self.layout == "official":
            image = load_image_rgb(rec.image_path, max_pixels=self.max_pixels,
                                   root=getattr(self.records, "image_root", None))
            self._check_box_inside(rec, index, *image.size)
            body, context, box = crop_body_and_context(image, rec.bbox, self._native_size)
            return torch.from_numpy(body), torch.from_numpy(context), torch.from_numpy(box)
        arrays = self._open_arrays()
        if self.layout == "cache":
            row = int(self._rows[index])
            image_row = int(arrays["image_of"][row])
            body_pixels, context_pixels = arrays["body"][row], arrays["context"][image_row]
            if self.verify_rows:
                self._check_row("body", row, body_pixels)
                self._check_row("context", image_row, context_pixels)
            body = torch.from_numpy(body_pixels)
            context = torch.from_numpy(context_pixels)
            return body, context, torch.from_numpy(np.array(arrays["bbox"][row]))
        row = rec.image_index  # the preprocessed reader skips label-less rows
        body = torch.from_numpy(arrays["body"][row].transpose(2, 0, 1).copy())
        context = torch.from_numpy(arrays["context"][row].transpose(2, 0, 1).copy())
        w, h = rec.image_size
        side = context.shape[-1]
        box = torch.tensor(rec.bbox, dtype=torch.float32) * torch.tensor(
            [side / w, side / h, side / w, side / h]
        )
        return body, context, box

    def _check_row(self, key: str, row: int, pixels: np.ndarray) -> None:
        """A cache row whose CRC-32 differs from the build's is an error naming it."""
        crcs = self._open_arrays()[f"{key}_crc32"]
        if zlib.crc32(pixels) != int(crcs[row]):
            raise IntegrityError(
                self._array_files[key], f"row {row} differs from the CRC-32 its build "
                "recorded (a flipped byte on disk or in memory); `dagnet-emotic-cache "
                f"--verify {self.source}` checks the whole cache, a rebuild with "
                "--overwrite repairs it"
            )

    def __getitem__(self, index: int) -> Sample:
        index = self._position(index)
        body, context, box = self._load_images(index)
        body = _resize_uint8(body, self.size)
        if context.shape[-1] != self.size or context.shape[-2] != self.size:
            box = box * torch.tensor(
                [self.size / context.shape[-1], self.size / context.shape[-2]] * 2
            )
            context = _resize_uint8(context, self.size)
        if self.mask_body:
            # _load_images/_resize_uint8 hand us a fresh copy: fill it in place.
            context = mask_bbox(context, box, self.mask_fill, inplace=True)
        sample: Sample = {
            "body": body,
            "context": context,
            "categories": self._categories[index].clone(),
            "vad": self._vad[index].clone(),
            "index": torch.tensor(index, dtype=torch.int64),
            "bbox": box.to(torch.float32),
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return sample

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={str(self.source)!r}, split={self.split!r}, "
            f"layout={self.layout!r}, n={len(self)}, size={self.size}, "
            f"mask_body={self.mask_body}, transform={self.transform!r})"
        )


def _resize_uint8(img: Tensor, size: int) -> Tensor:
    if img.shape[-2:] == (size, size):
        return img
    pil = Image.fromarray(img.permute(1, 2, 0).numpy())
    return torch.from_numpy(_chw(pil.resize((size, size), Image.Resampling.BILINEAR)))
