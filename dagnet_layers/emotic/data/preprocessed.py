"""The community "preprocessed" EMOTIC layout: ``{split}.csv`` + ``{split}_*_arr.npy``.

A widely used PyTorch baseline converts ``Annotations.mat`` into, per split, a CSV
(columns ``Index, Folder, Filename, Image Size, BBox, Categorical_Labels,
Continuous_Labels, Gender, Age``; list cells are Python literals) and four arrays:
``context`` ``(N, 224, 224, 3)`` and ``body`` ``(N, 128, 128, 3)`` uint8 RGB,
``cat`` ``(N, 26)`` multi-hot and ``cont`` ``(N, 3)`` VAD. ``Image Size`` is
``[width, height]`` (``n_col, n_row``). That conversion drops persons with no
category or with any NaN continuous value.

:func:`read_emotic_preprocessed` reads it into the same :class:`EmoticRecord` kind
as :func:`read_emotic_annotations` (arrays memory-mapped, not loaded), and
:func:`write_emotic_preprocessed` writes it from an official root, streaming into
memory-mapped files so that RAM stays bounded (building the arrays in RAM is the
out-of-memory problem users of the baseline report).
"""

from __future__ import annotations

import ast
import csv
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dagnet_layers.emotic.data.categories import NUM_CATEGORIES
from dagnet_layers.emotic.data.pixels import load_image_rgb
from dagnet_layers.emotic.data.records import (
    EMOTIC_SPLITS,
    VAD_RANGE,
    BadRecordPolicy,
    EmoticRecord,
    EmoticRecords,
    ReadSummary,
    _Policy,
    open_npy,
    read_emotic_annotations,
    resolve_in_root,
)
from dagnet_layers.errors import CorruptFileError, MissingFileError, UnsafePathError

__all__ = [
    "PREPROCESSED_COLUMNS",
    "PreprocessedSplit",
    "preprocessed_files",
    "read_emotic_preprocessed",
    "write_emotic_preprocessed",
]

#: CSV header of the preprocessed layout, in order.
PREPROCESSED_COLUMNS: tuple[str, ...] = (
    "Index", "Folder", "Filename", "Image Size", "BBox",
    "Categorical_Labels", "Continuous_Labels", "Gender", "Age",
)  # fmt: skip

_CONTEXT_SIDE, _BODY_SIDE = 224, 128

logger = logging.getLogger(__name__)


def preprocessed_files(directory: str | os.PathLike[str], split: str) -> dict[str, Path]:
    """Paths of a split's files in the preprocessed layout.

    Args:
        directory: The preprocessed folder.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        Dict with keys ``csv``, ``context``, ``body``, ``cat``, ``cont``.

    Example:
        >>> preprocessed_files("/d", "val")["body"].name
        'val_body_arr.npy'
    """
    d = Path(directory)
    files = {"csv": d / f"{split}.csv"}
    for key in ("context", "body", "cat", "cont"):
        files[key] = d / f"{split}_{key}_arr.npy"
    return files


@dataclass
class PreprocessedSplit:
    """One split of the preprocessed layout.

    Attributes:
        records: One :class:`EmoticRecord` per kept CSV row (``image_path`` is
            ``<image_root>/<folder>/<filename>`` when an image root was given, else
            empty; ``image_index`` is the row's position in the arrays), with a
            :class:`ReadSummary` that counts the rows left out by reason.
        context: ``(M, 224, 224, 3)`` uint8 for all M data rows, memory-mapped read-only.
        body: ``(M, 128, 128, 3)`` uint8 for all M data rows, memory-mapped read-only.
        categories: ``(N, 26)`` float32 multi-hot of the N kept persons.
        vad: ``(N, 3)`` float32 of the kept persons.
        rows: ``(N,)`` int64: the array row of each kept person.
    """

    records: EmoticRecords
    context: np.ndarray
    body: np.ndarray
    categories: np.ndarray
    vad: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.records)


class _BadCell(ValueError):
    """A cell of one row that cannot be parsed: the row is an ``invalid_row``."""


_NON_FINITE = re.compile(r"(?<![\w'\"])(-?)(nan|inf)(?![\w'\"])")


def _literal(cell: str, what: str, numeric: bool = False) -> list:
    if len(cell) > 4096:  # a list of 26 names is ~300 characters; refuse to parse a novel
        raise _BadCell(f"{what} cell is {len(cell)} characters long")
    if numeric:  # Python writes non-finite floats as bare nan / inf: quote them for float()
        cell = _NON_FINITE.sub(lambda m: f"'{m.group(1)}{m.group(2)}'", cell)
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise _BadCell(f"cannot parse {what} cell {cell[:80]!r}") from exc
    if not isinstance(value, list | tuple):
        raise _BadCell(f"{what} cell must be a list, got {cell[:80]!r}")
    return list(value)


def _numbers(values: list, what: str, count: int) -> list[float]:
    if len(values) != count:
        raise _BadCell(f"{what} needs {count} values, got {len(values)}")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise _BadCell(f"{what} holds a value that is not a number: {values}") from exc


def read_emotic_preprocessed(
    directory: str | os.PathLike[str],
    split: str,
    *,
    image_root: str | os.PathLike[str] | None = None,
    on_bad_record: BadRecordPolicy = "skip",
) -> PreprocessedSplit:
    """Read one split of the community preprocessed layout.

    The reader policy is :mod:`~dagnet_layers.emotic.data.records`' (the same as the
    ``.mat`` reader's): rows without any category (the community converter writes
    them for val and test, with an all-zero label vector) are skipped as
    ``no_category``; boxes are clamped to the annotated image size
    (``bbox_clamped``) and skipped when empty (``empty_bbox``); continuous values
    outside 1-10 become NaN (``vad_out_of_range``); rows with an unparsable cell
    (``invalid_row``), an invalid box or image size, an unknown category, an unsafe
    image path (with ``image_root``) or labels in ``cat_arr``/``cont_arr`` that
    differ from the CSV (``labels_disagree``) follow ``on_bad_record``.

    Args:
        directory: Folder holding ``{split}.csv`` and ``{split}_{context,body,cat,
            cont}_arr.npy``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_root: Optional ``<root>/emotic`` folder to fill ``image_path``.
        on_bad_record: ``"skip"`` (default) or ``"error"``, as in
            :func:`~dagnet_layers.emotic.data.read_emotic_annotations`.

    Returns:
        A :class:`PreprocessedSplit`. Labels come from the arrays where they agree
        with the CSV (the arrays hold the converter's float values).

    Raises:
        MissingFileError: If a file of the split is missing (names it).
        CorruptFileError: For a wrong header, a file that is not UTF-8 text or not a
            ``.npy`` array, or arrays whose shapes or lengths disagree with the CSV
            (names the file).
        BadRecordError: For a bad row when ``on_bad_record="error"`` (names it).

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d + "/raw", n_images=12, image_size=(96, 72)).root
        ...     _ = write_emotic_preprocessed(root, d + "/pre", splits=("val",))
        ...     pre = read_emotic_preprocessed(d + "/pre", "val")
        ...     pre.context.shape[1:], pre.body.shape[1:]
        ((224, 224, 3), (128, 128, 3))
    """
    if split not in EMOTIC_SPLITS:
        raise ValueError(f"split must be one of {EMOTIC_SPLITS}, got {split!r}")
    if on_bad_record not in ("skip", "error"):
        raise ValueError(f"on_bad_record must be 'skip' or 'error', got {on_bad_record!r}")
    files = preprocessed_files(directory, split)
    for key, path in files.items():
        if not path.is_file():
            raise MissingFileError(path, f"preprocessed EMOTIC {split} {key} file not found")
    summary = ReadSummary(split, str(files["csv"]))
    policy = _Policy(summary, on_bad_record)
    try:
        records, n_rows = _read_csv(files["csv"], split, image_root, policy)
    except UnicodeDecodeError as exc:
        raise CorruptFileError(files["csv"], f"not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from exc
    except csv.Error as exc:
        raise CorruptFileError(files["csv"], f"not a readable CSV file ({exc})") from exc

    arrays = {key: open_npy(files[key]) for key in ("context", "body", "cat", "cont")}
    expect = {
        "context": ((_CONTEXT_SIDE, _CONTEXT_SIDE, 3), (np.uint8,)),
        "body": ((_BODY_SIDE, _BODY_SIDE, 3), (np.uint8,)),
        "cat": ((NUM_CATEGORIES,), (np.float64, np.float32, np.uint8, np.bool_, np.int64)),
        "cont": ((3,), (np.float64, np.float32)),
    }
    lengths = {len(arr) if arr.ndim else -1 for arr in arrays.values()}
    if len(lengths) == 1 and n_rows not in lengths:  # four arrays agree: the CSV is the odd one
        raise CorruptFileError(
            files["csv"], f"has {n_rows} data rows, but each of the four arrays beside it has "
            f"{lengths.pop()}: the CSV is truncated or does not belong to them"
        )
    for key, (tail, dtypes) in expect.items():
        arr = arrays[key]
        if arr.shape != (n_rows, *tail) or arr.dtype not in dtypes:
            raise CorruptFileError(
                files[key], f"expected shape {(n_rows, *tail)} ({n_rows} CSV rows) and a "
                f"dtype among {[np.dtype(d).name for d in dtypes]}, got {arr.shape} {arr.dtype}"
            )

    records = _check_arrays(records, arrays, files, policy)
    summary.n_persons, summary.n_kept = n_rows, len(records)
    recs = EmoticRecords(records, summary)
    rows = np.asarray([r.image_index for r in records], dtype=np.int64)
    categories = recs.multihot()
    vad = recs.vad()
    summary.log()
    return PreprocessedSplit(recs, arrays["context"], arrays["body"], categories, vad, rows)


def _read_csv(
    path: Path, split: str, image_root: str | os.PathLike[str] | None, policy: _Policy
) -> tuple[list[EmoticRecord], int]:
    records = []
    n_rows = 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != PREPROCESSED_COLUMNS:
            raise CorruptFileError(
                path, f"header must be {list(PREPROCESSED_COLUMNS)}, got {header}"
            )
        for row in reader:
            if not row:
                continue
            row_no = n_rows  # the row's position in the arrays
            n_rows += 1
            where = f"{path} row {row_no}"
            if len(row) != len(PREPROCESSED_COLUMNS):
                policy.bad("invalid_row", where, f"expected {len(PREPROCESSED_COLUMNS)} cells, "
                           f"got {len(row)}")
                continue
            _, folder, filename, size_c, bbox_c, cat_c, cont_c, gender, age = row
            where = f"{path} row {row_no} ({filename})"
            try:
                size = _numbers(_literal(size_c, "Image Size", True), "Image Size", 2)
                bbox = _numbers(_literal(bbox_c, "BBox", True), "BBox", 4)
                cats = [str(c) for c in _literal(cat_c, "Categorical_Labels")]
                cont = _numbers(_literal(cont_c, "Continuous_Labels", True),
                                "Continuous_Labels", 3)
            except _BadCell as exc:
                policy.bad("invalid_row", where, str(exc))
                continue
            checked = policy.person(where, cats, cont, bbox, size[0], size[1])
            if checked is None:
                continue
            categories, vad, box = checked
            image_path = ""
            if image_root is not None:
                try:
                    image_path = resolve_in_root(image_root, folder, filename)
                except UnsafePathError as exc:
                    policy.bad("unsafe_path", where, str(exc))
                    continue
            records.append(
                EmoticRecord(
                    split, row_no, 0, folder, filename, image_path,
                    (int(size[0]), int(size[1])), box, categories, vad, gender, age,
                )
            )  # fmt: skip
    return records, n_rows


def _check_arrays(
    records: list[EmoticRecord],
    arrays: dict[str, np.ndarray],
    files: dict[str, Path],
    policy: _Policy,
) -> list[EmoticRecord]:
    """Drop (or raise for) the rows whose label arrays disagree with the CSV."""
    if not records:
        return records
    rows = np.asarray([r.image_index for r in records], dtype=np.int64)
    csv_cats = EmoticRecords(records).multihot()
    arr_cats = np.asarray(arrays["cat"][rows], dtype=np.float64)
    csv_vad = EmoticRecords(records).vad().astype(np.float64)
    arr_vad = np.asarray(arrays["cont"][rows], dtype=np.float64)
    lo, hi = VAD_RANGE
    arr_vad = np.where((arr_vad >= lo) & (arr_vad <= hi), arr_vad, np.nan)  # as the CSV policy
    cats_ok = (arr_cats == csv_cats).all(axis=1)
    with np.errstate(invalid="ignore"):
        vad_ok = (np.isclose(arr_vad, csv_vad, rtol=1e-5, atol=1e-5)
                  | (np.isnan(arr_vad) & np.isnan(csv_vad))).all(axis=1)
    keep = []
    for i, r in enumerate(records):
        if cats_ok[i] and vad_ok[i]:
            keep.append(r)
            continue
        which = files["cat"] if not cats_ok[i] else files["cont"]
        policy.bad("labels_disagree", f"{files['csv']} row {r.image_index} ({r.filename})",
                   f"{which.name} holds other labels than the CSV")
    return keep


def write_emotic_preprocessed(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    splits: Sequence[str] = EMOTIC_SPLITS,
) -> dict[str, int]:
    """Convert an official root to the community preprocessed layout, in bounded RAM.

    Keeps the baseline's policy (persons with no category or with a NaN continuous
    value are dropped; the first by the reader, which logs its summary, the second
    here, logged as well), its sizes (context 224, body 128) and its CSV format.

    Args:
        root: Official release root.
        out_dir: Folder to write; created if needed.
        splits: Splits to convert.

    Returns:
        Split -> number of persons written.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d, n_images=12, image_size=(96, 72)).root
        ...     counts = write_emotic_preprocessed(root, d + "/pre", splits=("test",))
        >>> sorted(counts)
        ['test']
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        recs = read_emotic_annotations(root, split)
        keep = [r for r in recs if not any(math.isnan(v) for v in r.vad)]
        if len(keep) < len(recs):
            logger.warning(
                "preprocessed %s: dropped %d persons with a NaN continuous value "
                "(baseline policy)", split, len(recs) - len(keep),
            )
        files = preprocessed_files(out, split)
        n = len(keep)
        mm = np.lib.format.open_memmap
        context = mm(files["context"], "w+", np.uint8, (n, _CONTEXT_SIDE, _CONTEXT_SIDE, 3))
        body = mm(files["body"], "w+", np.uint8, (n, _BODY_SIDE, _BODY_SIDE, 3))
        cat = mm(files["cat"], "w+", np.float64, (n, NUM_CATEGORIES))
        cont = mm(files["cont"], "w+", np.float64, (n, 3))
        with open(files["csv"], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(PREPROCESSED_COLUMNS)
            for i, r in enumerate(keep):
                img = load_image_rgb(r.image_path, root=recs.image_root)
                context[i] = np.asarray(img.resize((_CONTEXT_SIDE, _CONTEXT_SIDE)))
                body[i] = np.asarray(
                    img.resize((_BODY_SIDE, _BODY_SIDE), Image.Resampling.BILINEAR, box=r.bbox)
                )
                cat[i] = r.multihot()
                cont[i] = r.vad
                writer.writerow([
                    i, r.folder, r.filename, list(r.image_size), list(r.bbox),
                    list(r.categories), [_num(v) for v in r.vad], r.gender, r.age,
                ])  # fmt: skip
        for arr in (context, body, cat, cont):
            arr.flush()
        del context, body, cat, cont
        written[split] = n
    return written


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)
