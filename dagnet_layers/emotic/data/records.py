"""Reading the official EMOTIC annotations (``Annotations/Annotations.mat``) into records.

The release (Kosti et al., TPAMI 2020) stores one MATLAB struct per image with a
``person`` struct array inside. This module turns it into a flat list of
:class:`EmoticRecord`, one per usable person, and says what it left out and why.

Label policy (the same for every split):

* train reads ``annotations_categories`` / ``annotations_continuous``; val and test
  read the annotators' ``combined_categories`` / ``combined_continuous``, which is
  what the official evaluation uses.
* a person with no category is skipped (reason ``"no_category"``);
* a NaN (or absent) valence, arousal or dominance keeps the person, with that value
  NaN in :attr:`EmoticRecord.vad`; losses mask it (counted as ``"vad_missing"``
  in :attr:`ReadSummary.flagged`);
* a box reaching past the image edge is clamped to it (``"bbox_clamped"``), a box
  empty after clamping is skipped (``"empty_bbox"``);
* an image file that does not exist is an error naming it, unless the caller passes
  ``on_missing_image="skip"`` (reason ``"missing_image"``).

Bad records (the same policy in the ``.mat``, CSV/npy and cache layouts, see
:data:`BAD_RECORD_REASONS`): with ``on_bad_record="skip"`` (the default) each is
left out and counted by its reason, with ``"error"`` the first one raises a
:class:`~dagnet_layers.errors.BadRecordError` naming the record:

* ``"unsafe_path"``: the image's ``folder``/``filename`` is absolute, holds a
  ``..`` component or a NUL byte, or resolves outside ``<root>/emotic`` through a
  symbolic link (pass ``allow_outside_symlinks=True`` for image folders linked in
  on purpose). The message never says whether anything exists outside the root;
* ``"invalid_bbox"``: a box that is not four finite numbers, or whose corners are
  swapped (``x2 < x1`` or ``y2 < y1``);
* ``"invalid_image_size"``: an annotated width or height that is not a positive
  finite number;
* ``"unknown_category"``: a category name that is not one of the 26;
* (CSV layout) ``"invalid_row"``: a row with a wrong number of cells or a cell
  that does not parse; ``"labels_disagree"``: ``cat_arr``/``cont_arr`` hold other
  labels for the row than the CSV.

Kept, but flagged: a continuous value outside the official 1-10 scale or
infinite is replaced by NaN (so losses mask it; ``"vad_out_of_range"``), a
category listed twice is kept once (``"duplicate_category"``).

Every skip is counted by reason in a :class:`ReadSummary` attached to the returned
list and logged once through :mod:`logging`; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dagnet_layers._deps import require
from dagnet_layers.emotic.data.categories import CATEGORY_TO_INDEX, NUM_CATEGORIES
from dagnet_layers.errors import BadRecordError, CorruptFileError, MissingFileError, UnsafePathError

__all__ = [
    "BAD_RECORD_REASONS",
    "EMOTIC_SPLITS",
    "VAD_RANGE",
    "EmoticRecord",
    "EmoticRecords",
    "ReadSummary",
    "clamp_bbox",
    "labels_to_multihot",
    "load_emotic_mat",
    "open_npy",
    "read_emotic_annotations",
    "resolve_in_root",
]

logger = logging.getLogger(__name__)

#: The three splits of the release, as named in ``Annotations.mat``.
EMOTIC_SPLITS: tuple[str, ...] = ("train", "val", "test")

MissingImagePolicy = Literal["error", "skip"]
BadRecordPolicy = Literal["skip", "error"]

#: The reasons a record is left out by the bad-record policy (``on_bad_record``).
BAD_RECORD_REASONS: tuple[str, ...] = (
    "unsafe_path", "invalid_bbox", "invalid_image_size", "unknown_category",
    "invalid_row", "labels_disagree",
)  # fmt: skip

#: The official scale of valence, arousal and dominance (inclusive).
VAD_RANGE: tuple[float, float] = (1.0, 10.0)


@dataclass(frozen=True)
class EmoticRecord:
    """One annotated person of EMOTIC.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_index: Position of the image in the split's struct array (0-based).
        person_index: Position of the person in the image's ``person`` array (0-based).
        folder: Image folder as annotated, e.g. ``"mscoco/images"``.
        filename: Image file name as annotated.
        image_path: ``<root>/emotic/<folder>/<filename>``, absolute (empty string
            when the records come from a layout without images).
        image_size: ``(width, height)`` as annotated (``n_col``, ``n_row``).
        bbox: ``(x1, y1, x2, y2)`` ints, clamped to the image and truncated the way
            the community baseline does, so that ``image[y1:y2, x1:x2]`` is the body.
        categories: Category names in :data:`EMOTIC_CATEGORIES` order, no repeats.
        vad: ``(valence, arousal, dominance)`` on 1-10, NaN where missing.
        gender: ``"Male"``/``"Female"`` (empty string where missing).
        age: ``"Adult"``/``"Teenager"``/``"Kid"`` (empty string where missing).
        n_annotators: Number of category annotators (1 on train).

    Example:
        >>> r = EmoticRecord("train", 0, 0, "mscoco/images", "a.jpg", "/d/a.jpg",
        ...                  (64, 48), (1, 2, 30, 40), ("Peace",), (5.0, float("nan"), 6.0))
        >>> float(r.multihot()[18]), r.vad_missing
        (1.0, True)
    """

    split: str
    image_index: int
    person_index: int
    folder: str
    filename: str
    image_path: str
    image_size: tuple[int, int]
    bbox: tuple[int, int, int, int]
    categories: tuple[str, ...]
    vad: tuple[float, float, float]
    gender: str = ""
    age: str = ""
    n_annotators: int = 1

    @property
    def vad_missing(self) -> bool:
        """Whether any of valence, arousal, dominance is NaN."""
        return any(math.isnan(v) for v in self.vad)

    def multihot(self) -> np.ndarray:
        """The categories as a float32 ``(26,)`` multi-hot vector in official order."""
        return labels_to_multihot(self.categories)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN stays a float NaN); inverse of ``EmoticRecord(**d)``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmoticRecord:
        """Rebuild a record from :meth:`to_dict` output (lists become tuples)."""
        d = dict(d)
        for key in ("image_size", "bbox", "categories", "vad"):
            d[key] = tuple(d[key])
        d["vad"] = tuple(float("nan") if v is None else float(v) for v in d["vad"])
        return cls(**d)


@dataclass
class ReadSummary:
    """What a reader kept, skipped and flagged, by reason.

    Attributes:
        split: The split read.
        source: The file or folder read.
        n_images: Images listed in the split.
        n_persons: Persons listed in the split (before any skip).
        n_kept: Persons returned.
        skipped: Reason -> count of persons left out (``no_category``,
            ``empty_bbox``, ``missing_image``, ...).
        flagged: Reason -> count of persons kept but worth knowing about
            (``vad_missing``, ``bbox_clamped``).

    Example:
        >>> s = ReadSummary("train", "x.mat", n_images=2, n_persons=3, n_kept=2)
        >>> s.skip("no_category"); s.n_skipped
        1
    """

    split: str
    source: str
    n_images: int = 0
    n_persons: int = 0
    n_kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        """Count ``count`` persons left out for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def flag(self, reason: str, count: int = 1) -> None:
        """Count ``count`` kept persons flagged with ``reason``."""
        self.flagged[reason] = self.flagged.get(reason, 0) + count

    @property
    def n_skipped(self) -> int:
        """Total number of persons left out."""
        return sum(self.skipped.values())

    def __str__(self) -> str:
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "none"

        return (
            f"EMOTIC {self.split} from {self.source}: {self.n_images} images, "
            f"{self.n_persons} persons, kept {self.n_kept}, skipped {self.n_skipped} "
            f"({fmt(self.skipped)}), flagged ({fmt(self.flagged)})"
        )

    def log(self) -> None:
        """Log the summary: a warning when anything was skipped, info otherwise."""
        level = logging.WARNING if self.n_skipped else logging.INFO
        logger.log(level, "%s", self)


class EmoticRecords(list):
    """A ``list`` of :class:`EmoticRecord` carrying the :class:`ReadSummary` of its read.

    Attributes:
        summary: What the read kept, skipped and flagged.
        image_root: The folder every ``image_path`` must stay in when its image is
            opened (:func:`~dagnet_layers.storage.open_in_root`), or ``None``: the
            reader's check then stands alone. :func:`read_emotic_annotations` sets it
            to ``<root>/emotic`` unless ``allow_outside_symlinks``.

    Example:
        >>> recs = EmoticRecords([], ReadSummary("val", "x.mat"))
        >>> len(recs), recs.summary.split, recs.image_root
        (0, 'val', None)
    """

    def __init__(self, records: Iterable[EmoticRecord] = (), summary: ReadSummary | None = None,
                 image_root: str | None = None) -> None:  # fmt: skip
        super().__init__(records)
        self.summary = summary if summary is not None else ReadSummary("", "")
        self.image_root = image_root

    def multihot(self) -> np.ndarray:
        """All labels as a float32 ``(N, 26)`` multi-hot array."""
        out = np.zeros((len(self), NUM_CATEGORIES), dtype=np.float32)
        for i, r in enumerate(self):
            out[i] = r.multihot()
        return out

    def vad(self) -> np.ndarray:
        """All continuous labels as a float32 ``(N, 3)`` array, NaN where missing."""
        return np.asarray([r.vad for r in self], dtype=np.float32).reshape(len(self), 3)


def labels_to_multihot(categories: Iterable[str]) -> np.ndarray:
    """Encode category names as a float32 ``(26,)`` multi-hot vector.

    Args:
        categories: Names from :data:`EMOTIC_CATEGORIES`.

    Returns:
        ``np.ndarray`` of shape ``(26,)``, dtype float32.

    Raises:
        ValueError: For a name that is not an EMOTIC category.

    Example:
        >>> labels_to_multihot(["Anger", "Yearning"]).nonzero()[0].tolist()
        [1, 25]
    """
    out = np.zeros(NUM_CATEGORIES, dtype=np.float32)
    for name in categories:
        if name not in CATEGORY_TO_INDEX:
            raise ValueError(f"unknown EMOTIC category {name!r}")
        out[CATEGORY_TO_INDEX[name]] = 1.0
    return out


def clamp_bbox(
    bbox: Sequence[float], width: int, height: int
) -> tuple[tuple[int, int, int, int], bool]:
    """Clamp an ``[x1, y1, x2, y2]`` box to a ``width x height`` image.

    Coordinates are clamped to ``[0, width]`` / ``[0, height]`` and truncated to
    ints, as the community preprocessing does, so ``image[y1:y2, x1:x2]`` is the
    crop. The box is empty when ``x2 <= x1`` or ``y2 <= y1`` afterwards.

    Args:
        bbox: Four numbers ``x1, y1, x2, y2`` in pixels (may be outside the image).
        width: Image width in pixels.
        height: Image height in pixels.

    Returns:
        ``(box, clamped)``: the int box and whether clamping changed a coordinate.

    Raises:
        ValueError: If ``bbox`` does not hold four finite numbers.

    Example:
        >>> clamp_bbox([-5, 10, 70.7, 40], width=64, height=48)
        ((0, 10, 64, 40), True)
    """
    values = [float(v) for v in np.asarray(bbox, dtype=np.float64).ravel()]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox must hold four finite numbers x1, y1, x2, y2, got {values}")
    x1, y1, x2, y2 = values
    cx1, cx2 = (min(max(v, 0.0), float(width)) for v in (x1, x2))
    cy1, cy2 = (min(max(v, 0.0), float(height)) for v in (y1, y2))
    clamped = (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)
    return (int(cx1), int(cy1), int(cx2), int(cy2)), clamped



# --------------------------------------------------------------------------- the policy


def resolve_in_root(
    root: str | os.PathLike[str],
    *parts: str,
    allow_outside_symlinks: bool = False,
) -> str:
    """Join path ``parts`` read from a data file under ``root``, refusing to leave it.

    The parts come from strangers' annotation files: an absolute part, a ``..``
    component, a NUL byte or (unless ``allow_outside_symlinks``) a symbolic link
    that points outside ``root`` is refused. Nothing is opened and the answer does
    not depend on whether anything exists outside ``root``.

    Args:
        root: The folder every path must stay in (e.g. ``<root>/emotic``).
        *parts: Path fragments as annotated (``folder``, ``filename``).
        allow_outside_symlinks: Accept a path whose symbolic links lead outside
            ``root`` (for image folders linked in on purpose); ``..`` and absolute
            parts are refused all the same.

    Returns:
        The joined path (not resolved), as a string.

    Raises:
        UnsafePathError: Naming the annotated parts and why they are refused.

    Example:
        >>> resolve_in_root("/data/emotic", "mscoco/images", "a.jpg")
        '/data/emotic/mscoco/images/a.jpg'
        >>> try:
        ...     resolve_in_root("/data/emotic", "../../etc", "passwd")
        ... except UnsafePathError as err:
        ...     print(err)
        path '../../etc/passwd' leaves the data root: it has a '..' component
    """
    shown = "/".join(parts)
    for part in parts:
        if "\x00" in part:
            raise UnsafePathError(f"path {shown!r} leaves the data root: it holds a NUL byte")
        if os.path.isabs(part) or part.startswith(("/", "\\")) or (
            len(part) > 1 and part[1] == ":"
        ):
            raise UnsafePathError(f"path {shown!r} leaves the data root: it is absolute")
        if ".." in part.replace("\\", "/").split("/"):
            raise UnsafePathError(f"path {shown!r} leaves the data root: it has a '..' component")
    joined = os.path.join(os.fspath(root), *parts)
    if not allow_outside_symlinks:
        base = os.path.realpath(root)
        real = os.path.realpath(joined)
        if os.path.commonpath([base, real]) != base:
            raise UnsafePathError(
                f"path {shown!r} leaves the data root through a symbolic link; pass "
                "allow_outside_symlinks=True if image folders are linked in on purpose"
            )
    return joined


@dataclass
class _Policy:
    """Applies the module's record policy and counts into a :class:`ReadSummary`."""

    summary: ReadSummary
    on_bad_record: BadRecordPolicy = "skip"

    def bad(self, reason: str, where: str, detail: str) -> None:
        """A bad record: raise under ``"error"``, else count it as skipped."""
        if self.on_bad_record == "error":
            raise BadRecordError(f"{where}: {detail} (reason {reason!r}; on_bad_record='skip' "
                                 "skips and counts such records)")
        self.summary.skip(reason)

    def person(
        self,
        where: str,
        names: Sequence[str],
        vad: Sequence[float],
        bbox: Any,
        width: float,
        height: float,
    ) -> tuple[tuple[str, ...], tuple[float, float, float], tuple[int, int, int, int]] | None:
        """Check one person; return ``(categories, vad, box)`` or ``None`` when skipped."""
        unknown = sorted({n for n in names if n not in CATEGORY_TO_INDEX})
        if unknown:
            self.bad("unknown_category", where, f"unknown categories {unknown}")
            return None
        if not names:
            self.summary.skip("no_category")
            return None
        if not (_positive_finite(width) and _positive_finite(height)):
            self.bad("invalid_image_size", where, f"image size {width} x {height} is not "
                     "two positive numbers")
            return None
        try:
            box, clamped = clamp_bbox(bbox, int(width), int(height))
        except ValueError as exc:
            self.bad("invalid_bbox", where, str(exc))
            return None
        x1, y1, x2, y2 = (float(v) for v in np.asarray(bbox, dtype=np.float64).ravel())
        if x2 < x1 or y2 < y1:
            self.bad("invalid_bbox", where, f"box {[x1, y1, x2, y2]} has x2 < x1 or y2 < y1")
            return None
        if box[2] <= box[0] or box[3] <= box[1]:
            self.summary.skip("empty_bbox")
            return None
        if clamped:
            self.summary.flag("bbox_clamped")
        if len(set(names)) < len(names):
            self.summary.flag("duplicate_category")
        categories = tuple(sorted(set(names), key=CATEGORY_TO_INDEX.__getitem__))
        values = [float(v) for v in vad]
        lo, hi = VAD_RANGE
        if any(not math.isnan(v) and not lo <= v <= hi for v in values):
            self.summary.flag("vad_out_of_range")
            values = [v if lo <= v <= hi else float("nan") for v in values]
        if any(math.isnan(v) for v in values):
            self.summary.flag("vad_missing")
        return categories, (values[0], values[1], values[2]), box


def open_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a ``.npy`` file read-only, or raise a library error naming it.

    NumPy reports a damaged header or a truncated body with many exception types
    (``ValueError``, ``EOFError``, ``SyntaxError``, ``tokenize.TokenError``...);
    all become a :class:`~dagnet_layers.errors.CorruptFileError`. Object arrays
    are refused (no pickle is ever loaded).

    Args:
        path: The file.

    Returns:
        The read-only memory map.

    Raises:
        MissingFileError: The file does not exist.
        CorruptFileError: It is not a readable, pickle-free ``.npy`` array.
    """
    if not os.path.isfile(path):
        raise MissingFileError(path, "array file not found")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise CorruptFileError(
            path, f"not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from exc


def _positive_finite(v: float) -> bool:
    try:
        return math.isfinite(float(v)) and float(v) >= 1
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- .mat parsing
# scipy's ``squeeze_me=True, struct_as_record=False`` turns a lone struct into a bare
# ``mat_struct`` and a lone string cell into a ``str``; these helpers undo both.


def _as_list(x: Any) -> list[Any]:
    """A struct array, a lone struct, a cell or a lone string, as a flat list."""
    if x is None:
        return []
    if isinstance(x, np.ndarray):
        return list(x.ravel())
    return [x]


def _as_str(x: Any) -> str:
    if isinstance(x, str):
        return x.strip()
    if isinstance(x, np.ndarray):
        return "" if x.size == 0 else _as_str(x.ravel()[0])
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace").strip()
    return str(x).strip()


def _as_str_list(x: Any) -> list[str]:
    out = []
    for item in _as_list(x):
        s = _as_str(item)
        if s:
            out.append(s)
    return out


def _as_float(x: Any) -> float:
    arr = np.asarray(x, dtype=np.float64).ravel() if not isinstance(x, str) else None
    if arr is None or arr.size == 0:
        return float("nan")
    return float(arr[0])


def _field(obj: Any, name: str, where: str) -> Any:
    names = getattr(obj, "_fieldnames", None)
    if names is None or name not in names:
        raise ValueError(
            f"{where}: expected a struct with field {name!r}, got fields {names} "
            "(is this the EMOTIC Annotations.mat?)"
        )
    return getattr(obj, name)


def _vad_of(struct: Any, where: str) -> tuple[float, float, float]:
    return tuple(_as_float(_field(struct, k, where)) for k in ("valence", "arousal", "dominance"))


def load_emotic_mat(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``<root>/Annotations/Annotations.mat`` loaded once, to give several
    :func:`read_emotic_annotations` calls as ``mat=`` (it is read whole for every split).

    Raises:
        MissingFileError: No such file.
        CorruptFileError: It is not a readable ``.mat`` file.
    """
    return _load_mat(Path(root).expanduser().resolve() / "Annotations" / "Annotations.mat")


def _load_mat(path: Path) -> dict[str, Any]:
    scipy_io = require("scipy.io", f"reading {path.name}")
    if not path.is_file():
        raise MissingFileError(path, "EMOTIC annotations not found")
    try:
        return scipy_io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises many types on corrupt or truncated files
        raise CorruptFileError(
            path, f"not readable as a MATLAB .mat file ({type(exc).__name__}: {exc}); "
            "the file is corrupt or truncated"
        ) from exc


def _person_labels(
    person: Any, split: str, where: str
) -> tuple[list[str], tuple[float, float, float], int]:
    """Categories, VAD and annotator count of one person, per the split's policy."""
    if split == "train":
        annotators = _as_list(_field(person, "annotations_categories", where))
        names: list[str] = []
        for ann in annotators:
            names.extend(_as_str_list(_field(ann, "categories", where)))
        conts = _as_list(_field(person, "annotations_continuous", where))
        if len(conts) == 1:
            vad = _vad_of(conts[0], where)
        elif conts:  # several train annotators (not in the release): average, NaN-aware
            vals = np.array([_vad_of(c, where) for c in conts], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                counts = np.isfinite(vals).sum(0)
                sums = np.nansum(vals, 0)
            vad = tuple(
                float(s / c) if c else float("nan") for s, c in zip(sums, counts, strict=True)
            )
        else:
            vad = (float("nan"),) * 3
        n_ann = len(annotators)
    else:
        names = _as_str_list(_field(person, "combined_categories", where))
        n_ann = len(_as_list(_field(person, "annotations_categories", where)))
        combined = _as_list(_field(person, "combined_continuous", where))
        vad = _vad_of(combined[0], where) if combined else (float("nan"),) * 3
    return names, vad, n_ann


def read_emotic_annotations(
    root: str | os.PathLike[str],
    split: str,
    *,
    on_missing_image: MissingImagePolicy = "error",
    on_bad_record: BadRecordPolicy = "skip",
    check_images: bool = True,
    allow_outside_symlinks: bool = False,
    mat: dict[str, Any] | None = None,
) -> EmoticRecords:
    """Read one split of the official EMOTIC release into person records.

    Reads ``<root>/Annotations/Annotations.mat`` with :func:`scipy.io.loadmat` and
    applies the policy of this module's docstring: train uses ``annotations_*``,
    val/test ``combined_*``; persons with no category or a box empty after clamping
    are skipped and counted; NaN continuous values are kept as NaN; lone persons,
    lone categories and several annotators are all handled; bad records (unsafe
    image paths, invalid boxes or sizes, unknown categories) follow
    ``on_bad_record``.

    Args:
        root: Dataset root holding ``Annotations/`` and ``emotic/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        on_missing_image: ``"error"`` (default) raises naming the missing files;
            ``"skip"`` skips their persons and counts them as ``"missing_image"``.
        on_bad_record: ``"skip"`` (default) leaves bad records out, counted by
            reason; ``"error"`` raises :class:`~dagnet_layers.errors.BadRecordError`
            at the first.
        check_images: Whether to check that image files exist at all.
        allow_outside_symlinks: Accept image paths that symbolic links under
            ``<root>/emotic`` lead outside it (see :func:`resolve_in_root`).
        mat: An already loaded ``loadmat(..., squeeze_me=True,
            struct_as_record=False)`` dict, to read several splits from one load.

    Returns:
        :class:`EmoticRecords`: a list of :class:`EmoticRecord` in file order, with
        its :class:`ReadSummary` as ``.summary`` (also logged).

    Raises:
        MissingFileError: If ``Annotations.mat`` or (with ``on_missing_image=
            "error"``) any image is missing; the message names the file(s).
        CorruptFileError: For a corrupt or truncated file, a split absent from it
            or a malformed struct (names the file and the image).
        BadRecordError: For a bad record when ``on_bad_record="error"``.
        ValueError: For an unknown ``split`` or policy.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     root = make_synthetic_emotic(d, n_images=12, seed=0).root
        ...     recs = read_emotic_annotations(root, "val")
        >>> recs.summary.split, isinstance(recs[0], EmoticRecord)
        ('val', True)
    """
    if split not in EMOTIC_SPLITS:
        raise ValueError(f"split must be one of {EMOTIC_SPLITS}, got {split!r}")
    if on_missing_image not in ("error", "skip"):
        raise ValueError(f"on_missing_image must be 'error' or 'skip', got {on_missing_image!r}")
    if on_bad_record not in ("skip", "error"):
        raise ValueError(f"on_bad_record must be 'skip' or 'error', got {on_bad_record!r}")
    root = Path(root).expanduser().resolve()
    mat_path = root / "Annotations" / "Annotations.mat"
    if mat is None:
        mat = _load_mat(mat_path)
    if split not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise CorruptFileError(mat_path, f"has no {split!r} split; it holds {found}")

    summary = ReadSummary(split, str(mat_path))
    policy = _Policy(summary, on_bad_record)
    try:
        records = _read_split(root, split, mat[split], policy, allow_outside_symlinks)
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        if isinstance(exc, BadRecordError | UnsafePathError):
            raise
        # A malformed struct: a missing field, a string where a number belongs...
        raise CorruptFileError(mat_path, str(exc)) from exc
    if check_images:
        records = _check_images(records, summary, on_missing_image, root)
    summary.n_kept = len(records)
    summary.log()
    # Checked again when each image is opened: a link swapped in later cannot lead out.
    return EmoticRecords(records, summary,
                         None if allow_outside_symlinks else str(root / "emotic"))  # fmt: skip


def _read_split(
    root: Path, split: str, entries: Any, policy: _Policy, allow_outside_symlinks: bool
) -> list[EmoticRecord]:
    summary = policy.summary
    images = _as_list(entries)
    summary.n_images = len(images)
    records: list[EmoticRecord] = []
    for i, image in enumerate(images):
        where = f"{split} image {i}"
        filename = _as_str(_field(image, "filename", where))
        folder = _as_str(_field(image, "folder", where))
        where = f"{split} image {i} ({filename})"
        size = _field(image, "image_size", where)
        width = _as_float(_field(size, "n_col", where))
        height = _as_float(_field(size, "n_row", where))
        persons = _as_list(_field(image, "person", where))
        summary.n_persons += len(persons)
        try:
            image_path = resolve_in_root(
                root / "emotic", folder, filename, allow_outside_symlinks=allow_outside_symlinks
            )
        except UnsafePathError as exc:
            for _ in persons:
                policy.bad("unsafe_path", f"{split} image {i}", str(exc))
            continue
        for p, person in enumerate(persons):
            pwhere = f"{split} person {p} in image {filename} (image index {i})"
            names, vad, n_ann = _person_labels(person, split, pwhere)
            checked = policy.person(
                pwhere, names, vad, _field(person, "body_bbox", pwhere), width, height
            )
            if checked is None:
                continue
            categories, vad, box = checked
            gender = _as_str(getattr(person, "gender", ""))
            age = _as_str(getattr(person, "age", ""))
            records.append(
                EmoticRecord(
                    split, i, p, folder, filename, image_path, (int(width), int(height)), box,
                    categories, vad, gender, age, n_ann,
                )
            )  # fmt: skip
    return records


def _check_images(
    records: list[EmoticRecord],
    summary: ReadSummary,
    policy: MissingImagePolicy,
    root: Path,
) -> list[EmoticRecord]:
    exists: dict[str, bool] = {}
    for r in records:
        if r.image_path not in exists:
            exists[r.image_path] = os.path.isfile(r.image_path)
    missing = sorted(p for p, ok in exists.items() if not ok)
    if not missing:
        return records
    n_persons = Counter(r.image_path for r in records if not exists[r.image_path])
    if policy == "error":
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise MissingFileError(
            missing[0], f"{len(missing)} of {len(exists)} {summary.split} images are missing "
            f"under {root / 'emotic'} ({sum(n_persons.values())} persons), e.g. {shown}; pass "
            "on_missing_image='skip' to skip their persons"
        )
    summary.skip("missing_image", sum(n_persons.values()))
    return [r for r in records if exists[r.image_path]]
