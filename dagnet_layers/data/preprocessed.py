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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dagnet_layers.data.categories import CATEGORY_TO_INDEX, NUM_CATEGORIES
from dagnet_layers.data.records import (
    EMOTIC_SPLITS,
    EmoticRecord,
    EmoticRecords,
    ReadSummary,
    read_emotic_annotations,
)

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


def _literal(cell: str, what: str, where: str) -> list:
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{where}: cannot parse {what} cell {cell!r}") from exc
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: {what} cell must be a list, got {cell!r}")
    return list(value)


def read_emotic_preprocessed(
    directory: str | os.PathLike[str],
    split: str,
    *,
    image_root: str | os.PathLike[str] | None = None,
) -> PreprocessedSplit:
    """Read one split of the community preprocessed layout.

    Args:
        directory: Folder holding ``{split}.csv`` and ``{split}_{context,body,cat,
            cont}_arr.npy``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_root: Optional ``<root>/emotic`` folder to fill ``image_path``.

    Returns:
        A :class:`PreprocessedSplit`; labels are taken from the CSV and checked
        against ``cat_arr``/``cont_arr``. Rows without any category (the
        community converter writes them for val and test, with an all-zero
        label vector) have nothing to evaluate: they are skipped and counted
        as ``no_category``, as the ``.mat`` reader does.

    Raises:
        FileNotFoundError: If a file of the split is missing (names it).
        ValueError: For a wrong header, an unparsable cell, an unknown category,
            arrays whose shapes or lengths disagree with the CSV, or labels in the
            arrays that differ from the CSV (names the row).

    Example:
        >>> import tempfile
        >>> from dagnet_layers.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d + "/raw", n_images=12, image_size=(96, 72)).root
        ...     _ = write_emotic_preprocessed(root, d + "/pre", splits=("val",))
        ...     pre = read_emotic_preprocessed(d + "/pre", "val")
        ...     pre.context.shape[1:], pre.body.shape[1:]
        ((224, 224, 3), (128, 128, 3))
    """
    if split not in EMOTIC_SPLITS:
        raise ValueError(f"split must be one of {EMOTIC_SPLITS}, got {split!r}")
    files = preprocessed_files(directory, split)
    for key, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"preprocessed EMOTIC {split} {key} file not found: {path}")
    records = []
    n_rows = 0
    summary = ReadSummary(split, str(files["csv"]))
    with open(files["csv"], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != PREPROCESSED_COLUMNS:
            raise ValueError(
                f"{files['csv']}: header must be {list(PREPROCESSED_COLUMNS)}, got {header}"
            )
        for row in reader:
            if not row:
                continue
            row_no = n_rows  # the row's position in the arrays
            n_rows += 1
            where = f"{files['csv']} row {row_no}"
            if len(row) != len(PREPROCESSED_COLUMNS):
                raise ValueError(f"{where}: expected {len(PREPROCESSED_COLUMNS)} cells, got {row}")
            _, folder, filename, size_c, bbox_c, cat_c, cont_c, gender, age = row
            size = _literal(size_c, "Image Size", where)
            bbox = _literal(bbox_c, "BBox", where)
            cats = [str(c) for c in _literal(cat_c, "Categorical_Labels", where)]
            cont = [float(v) for v in _literal(cont_c, "Continuous_Labels", where)]
            if len(size) != 2 or len(bbox) != 4 or len(cont) != 3:
                raise ValueError(f"{where}: Image Size needs 2, BBox 4, Continuous_Labels 3 values")
            for name in cats:
                if name not in CATEGORY_TO_INDEX:
                    raise ValueError(f"{where} ({filename}): unknown category {name!r}")
            if not cats:
                summary.skip("no_category")
                continue
            path = str(Path(image_root) / folder / filename) if image_root is not None else ""
            records.append(
                EmoticRecord(
                    split, row_no, 0, folder, filename, path,
                    (int(size[0]), int(size[1])), tuple(int(v) for v in bbox),
                    tuple(sorted(set(cats), key=CATEGORY_TO_INDEX.__getitem__)),
                    tuple(cont), gender, age,
                )
            )  # fmt: skip
    summary.n_persons, summary.n_kept = n_rows, len(records)
    recs = EmoticRecords(records, summary)
    rows = np.asarray([r.image_index for r in records], dtype=np.int64)

    arrays = {k: np.load(files[k], mmap_mode="r") for k in ("context", "body", "cat", "cont")}
    expect = {
        "context": (_CONTEXT_SIDE, _CONTEXT_SIDE, 3),
        "body": (_BODY_SIDE, _BODY_SIDE, 3),
        "cat": (NUM_CATEGORIES,),
        "cont": (3,),
    }
    for key, tail in expect.items():
        arr = arrays[key]
        if arr.shape != (n_rows, *tail):
            raise ValueError(
                f"{files[key]}: expected shape {(n_rows, *tail)} to match {n_rows} CSV "
                f"rows, got {arr.shape}"
            )
    categories = np.asarray(arrays["cat"][rows], dtype=np.float32).reshape(-1, NUM_CATEGORIES)
    vad = np.asarray(arrays["cont"][rows], dtype=np.float32).reshape(-1, 3)
    csv_cats = recs.multihot()
    bad = np.flatnonzero((csv_cats != categories).any(axis=1))
    if bad.size:
        raise ValueError(
            f"{files['cat']} disagrees with {files['csv']} at {bad.size} rows, "
            f"first row {rows[bad[0]]}"
        )
    summary.log()
    return PreprocessedSplit(recs, arrays["context"], arrays["body"], categories, vad, rows)


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
        >>> from dagnet_layers.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d, n_images=12, image_size=(96, 72)).root
        ...     counts = write_emotic_preprocessed(root, d + "/pre", splits=("test",))
        >>> sorted(counts)
        ['test']
    """
    from dagnet_layers.data.dataset import load_image_rgb

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
                img = load_image_rgb(r.image_path)
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
