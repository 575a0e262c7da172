"""A small synthetic EMOTIC, written in the exact official layout, whose labels need context.

:func:`make_synthetic_emotic` draws stick-figure "persons" on noisy backgrounds and
writes ``Annotations/Annotations.mat`` (train/val/test, train with ``annotations_*``,
val/test with several annotators and ``combined_*``) plus JPEGs under
``emotic/<db>/images``. It is the demo data of the README and the test bed of the
pipeline and training code. Every cue is large and high-contrast so it survives
downsampling body and context to 64 x 64.

How labels are encoded (see :data:`SYNTHETIC_CUES`):

* **body only** (visible in the body crop): the torso colour gives one of 8
  categories (:data:`TORSO_COLOURS`; a gray torso gives none) and a black pattern
  on the torso one of 3 more (:data:`TORSO_PATTERNS`).
* **context only** (outside every person box, so also outside the masked region):
  12 categories are each a coloured shape placed in the scene
  (:data:`CONTEXT_SHAPES`: disk/square/triangle/ring in magenta/lime/white), shared
  by all persons of the image; ``Sympathy`` means another person is in the image.
* **body and context together**: ``Esteem`` = purple torso (Confidence) *and* a
  white disk (Engagement) in the scene; ``Pleasure`` = yellow torso (Happiness)
  *and* a white square (Peace).

So a body-only model can learn 11 categories, a context-only model 13, and only a
model seeing both can get all 26.

Quirks of the real release are planted on purpose (their places are listed in
:attr:`SyntheticEmotic.quirks`): lone persons and lone categories (squeezed by
scipy into a bare struct / a plain ``str``), a person with no category, NaN
continuous values, boxes past the image edge (one with a fractional coordinate),
a box wholly outside the image (train), a grayscale and a CMYK JPEG per split.
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dagnet_layers._deps import require
from dagnet_layers.emotic.data.categories import CATEGORY_TO_INDEX, EMOTIC_CATEGORIES
from dagnet_layers.emotic.data.records import EMOTIC_SPLITS
from dagnet_layers.storage import read_json_object, write_bytes_atomic

__all__ = [
    "CONTEXT_SHAPES",
    "JOINT_CATEGORIES",
    "SYNTHETIC_CUES",
    "SYNTHETIC_MARKER",
    "TORSO_COLOURS",
    "TORSO_PATTERNS",
    "SyntheticEmotic",
    "SyntheticPerson",
    "make_synthetic_emotic",
    "synthetic_marker",
    "write_synthetic_marker",
]

#: Body cue: torso colour (RGB) -> category. A gray torso carries no category.
TORSO_COLOURS: dict[str, tuple[int, int, int]] = {
    "Anger": (220, 20, 20),
    "Happiness": (250, 225, 0),
    "Sadness": (30, 60, 235),
    "Fear": (0, 220, 230),
    "Excitement": (255, 130, 0),
    "Confidence": (140, 40, 200),
    "Fatigue": (130, 80, 30),
    "Surprise": (255, 150, 190),
}
_NEUTRAL_TORSO = (150, 150, 150)

#: Body cue: black pattern drawn on the torso -> category.
TORSO_PATTERNS: dict[str, str] = {
    "Pain": "horizontal stripes",
    "Suffering": "vertical stripes",
    "Embarrassment": "diagonal cross",
}

_MAGENTA, _LIME, _WHITE = (240, 0, 240), (110, 255, 40), (255, 255, 255)
#: Context cue: (shape, RGB colour) placed outside every person box -> category.
CONTEXT_SHAPES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "Affection": ("disk", _MAGENTA),
    "Annoyance": ("square", _MAGENTA),
    "Anticipation": ("triangle", _MAGENTA),
    "Aversion": ("ring", _MAGENTA),
    "Disapproval": ("disk", _LIME),
    "Disconnection": ("square", _LIME),
    "Disquietment": ("triangle", _LIME),
    "Doubt/Confusion": ("ring", _LIME),
    "Engagement": ("disk", _WHITE),
    "Peace": ("square", _WHITE),
    "Sensitivity": ("triangle", _WHITE),
    "Yearning": ("ring", _WHITE),
}

#: Categories that need body and context together: name -> (body category, context category).
JOINT_CATEGORIES: dict[str, tuple[str, str]] = {
    "Esteem": ("Confidence", "Engagement"),
    "Pleasure": ("Happiness", "Peace"),
}

#: Every category -> where its cue is ("body", "context" or "body+context").
SYNTHETIC_CUES: dict[str, str] = {
    **{c: "body" for c in TORSO_COLOURS},
    **{c: "body" for c in TORSO_PATTERNS},
    **{c: "context" for c in CONTEXT_SHAPES},
    "Sympathy": "context",
    **{c: "body+context" for c in JOINT_CATEGORIES},
}
assert sorted(SYNTHETIC_CUES) == sorted(EMOTIC_CATEGORIES)  # every category has a cue

_POSITIVE = {
    "Affection", "Anticipation", "Confidence", "Engagement", "Esteem", "Excitement",
    "Happiness", "Peace", "Pleasure", "Surprise", "Sympathy", "Yearning",
}  # fmt: skip
_AROUSING = {"Anger", "Excitement", "Fear", "Surprise", "Anticipation", "Annoyance"}
_CALMING = {"Fatigue", "Sadness", "Peace", "Disconnection"}
_DATABASES = ("mscoco", "emodb_small", "framesdb", "ade20k")


@dataclass(frozen=True)
class SyntheticPerson:
    """Ground truth of one person as written to ``Annotations.mat``.

    Attributes:
        split: Split name.
        image_index: Image position in the split.
        person_index: Person position in the image.
        filename: Image file name.
        bbox: Annotated ``(x1, y1, x2, y2)``, possibly past the image edge.
        categories: The label set the reader must return (official order; empty
            for a person annotated with no category).
        vad: The continuous label the reader must return (NaN where planted).
        body_cues: Categories visible in the body crop.
        context_cues: Categories visible in the scene (shapes, Sympathy).
    """

    split: str
    image_index: int
    person_index: int
    filename: str
    bbox: tuple[float, float, float, float]
    categories: tuple[str, ...]
    vad: tuple[float, float, float]
    body_cues: tuple[str, ...]
    context_cues: tuple[str, ...]


@dataclass
class SyntheticEmotic:
    """What :func:`make_synthetic_emotic` wrote. ``os.fspath(obj)`` is the root.

    Attributes:
        root: Dataset root (holds ``Annotations/`` and ``emotic/``).
        n_images: Split -> images written.
        n_persons: Split -> persons listed in the annotations.
        persons: Ground truth of every listed person.
        expected_skips: Split -> reason -> persons the reader must skip.
        quirks: Quirk name -> ``(split, image_index, person_index)`` where planted.
    """

    root: Path
    n_images: dict[str, int] = field(default_factory=dict)
    n_persons: dict[str, int] = field(default_factory=dict)
    persons: list[SyntheticPerson] = field(default_factory=list)
    expected_skips: dict[str, dict[str, int]] = field(default_factory=dict)
    quirks: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)

    def __fspath__(self) -> str:
        return str(self.root)

    def expected_records(self, split: str) -> list[SyntheticPerson]:
        """Persons the reader should keep for ``split``, in file order."""
        skipped = {(s, i, p) for name in ("no_category", "empty_bbox")
                   for s, i, p in self.quirks.get(name, [])}  # fmt: skip
        return [
            q for q in self.persons
            if q.split == split and q.categories
            and (q.split, q.image_index, q.person_index) not in skipped
        ]  # fmt: skip


# ------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    top, bottom = rng.uniform(25, 95, 3), rng.uniform(25, 95, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    img = top * (1 - t) + bottom * t + rng.normal(0.0, 8.0, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw_person(
    draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float],
    colour: tuple[int, int, int], pattern: str | None,
) -> None:  # fmt: skip
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    head = 0.2 * bh
    cx = (x1 + x2) / 2
    draw.ellipse((cx - head / 2, y1, cx + head / 2, y1 + head), fill=(230, 190, 150))
    ty1, ty2 = y1 + head, y1 + 0.72 * bh
    draw.rectangle((x1, ty1, x2, ty2), fill=colour)
    leg = 0.3 * bw
    draw.rectangle((x1 + 0.1 * bw, ty2, x1 + 0.1 * bw + leg, y2), fill=(20, 20, 40))
    draw.rectangle((x2 - 0.1 * bw - leg, ty2, x2 - 0.1 * bw, y2), fill=(20, 20, 40))
    th = ty2 - ty1
    line = max(2, round(min(bw, th) / 7))
    if pattern == "Pain":  # horizontal stripes
        for k in range(1, 4):
            y = ty1 + k * th / 4
            draw.rectangle((x1, y - line / 2, x2, y + line / 2), fill=(0, 0, 0))
    elif pattern == "Suffering":  # vertical stripes
        for k in range(1, 4):
            x = x1 + k * bw / 4
            draw.rectangle((x - line / 2, ty1, x + line / 2, ty2), fill=(0, 0, 0))
    elif pattern == "Embarrassment":  # diagonal cross
        draw.line((x1, ty1, x2, ty2), fill=(0, 0, 0), width=line)
        draw.line((x1, ty2, x2, ty1), fill=(0, 0, 0), width=line)


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, colour: tuple[int, int, int],
    cx: float, cy: float, r: float,
) -> None:  # fmt: skip
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "disk":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)], fill=colour)
    else:  # ring
        draw.ellipse(box, outline=colour, width=max(3, round(0.35 * r)))


def _overlaps(a: tuple[float, ...], b: tuple[float, ...], margin: float) -> bool:
    return not (
        a[2] + margin <= b[0] or b[2] + margin <= a[0]
        or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    )  # fmt: skip


# ------------------------------------------------------------------------- .mat structs
def _cell(strings: list[str]) -> np.ndarray:
    out = np.empty((1, len(strings)), dtype=object)
    for k, s in enumerate(strings):
        out[0, k] = s
    return out


def _num(v: float) -> np.ndarray:
    return np.array([[float(v)]])


def _struct(fields: dict[str, object], n: int | None = None) -> np.ndarray:
    """A 1x1 MATLAB struct from a dict, or a 1xn struct array from a list-valued dict."""
    dtype = [(k, object) for k in fields]
    if n is None:
        out = np.empty((1, 1), dtype=dtype)
        for k, v in fields.items():
            out[0, 0][k] = v
        return out
    out = np.empty((1, n), dtype=dtype)
    for k, values in fields.items():
        for j in range(n):
            out[0, j][k] = values[j]  # type: ignore[index]
    return out


def _vad_struct(vad: tuple[float, float, float]) -> np.ndarray:
    return _struct({"valence": _num(vad[0]), "arousal": _num(vad[1]), "dominance": _num(vad[2])})


def _vad_for(categories: set[str], rng: np.random.Generator) -> np.ndarray:
    pos = len(categories & _POSITIVE)
    neg = len(categories) - pos
    valence = 5.5 + 1.5 * (pos - neg) + rng.normal(0, 0.7)
    arousal = 5.0 + 2.0 * len(categories & _AROUSING) - 2.0 * len(categories & _CALMING)
    dominance = 5.0 + 2.5 * ("Confidence" in categories) - 2.5 * ("Fear" in categories)
    vad = np.array([valence, arousal + rng.normal(0, 0.7), dominance + rng.normal(0, 0.7)])
    return np.clip(np.round(vad), 1, 10)


def _sorted(cats: set[str]) -> tuple[str, ...]:
    return tuple(sorted(cats, key=CATEGORY_TO_INDEX.__getitem__))


#: The fewest images :func:`make_synthetic_emotic` writes: each split needs room for
#: its planted quirks.
MIN_IMAGES = 12


def make_synthetic_emotic(
    out_dir: str | os.PathLike[str],
    n_images: int = 300,
    seed: int = 0,
    image_size: int | tuple[int, int] = (320, 240),
    *,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    jpeg_quality: int = 90,
) -> SyntheticEmotic:
    """Write a small synthetic EMOTIC in the official layout (deterministic per seed).

    About 1.4 persons per image (so ~420 persons for the default 300 images); see
    the module docstring for the cues behind each category and the planted quirks.

    Args:
        out_dir: Root to write (created); holds ``Annotations/Annotations.mat`` and
            ``emotic/<db>/images/*.jpg`` afterwards.
        n_images: Total images over the three splits (at least 12: each split needs
            room for its planted quirks).
        seed: Seed of every random choice; the same seed writes the same files.
        image_size: ``(width, height)`` of every image, or one int for squares.
        split_fractions: Share of images in train, val, test.
        jpeg_quality: JPEG quality of the images.

    Returns:
        A :class:`SyntheticEmotic` (path-like: ``os.fspath`` gives the root) with
        counts, ground truth per person, the skips a reader must report and where
        every quirk is.

    Raises:
        ValueError: For ``n_images < 12``, a too small ``image_size`` or fractions
            that do not sum to 1.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     info = make_synthetic_emotic(d, n_images=12, seed=0, image_size=(96, 72))
        ...     (info.root / "Annotations" / "Annotations.mat").is_file()
        True
        >>> sorted(info.n_images.items())
        [('test', 3), ('train', 7), ('val', 2)]
    """
    scipy_io = require("scipy.io", "writing the synthetic Annotations.mat")

    w, h = (image_size, image_size) if isinstance(image_size, int) else map(int, image_size)
    if n_images < MIN_IMAGES:
        raise ValueError(f"n_images must be at least {MIN_IMAGES} (room for every quirk), "
                         f"got {n_images}")
    if w < 48 or h < 48:
        raise ValueError(f"image_size must be at least 48x48, got {w}x{h}")
    if len(split_fractions) != 3 or not math.isclose(sum(split_fractions), 1.0):
        raise ValueError(f"split_fractions must be 3 shares summing to 1, got {split_fractions}")

    root = Path(out_dir).expanduser().resolve()
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_train = max(4, round(n_images * split_fractions[0]))
    n_val = max(2, round(n_images * split_fractions[1]))
    counts = {"train": n_train, "val": n_val, "test": max(2, n_images - n_train - n_val)}
    info = SyntheticEmotic(root=root, quirks={q: [] for q in _QUIRKS})
    mat: dict[str, np.ndarray] = {}
    serial = 0
    for split in EMOTIC_SPLITS:
        skips = {"no_category": 0, "empty_bbox": 0}
        image_structs = []
        for i in range(counts[split]):
            serial += 1
            image = _SyntheticImage(split, i, serial, w, h)
            image_structs.append(
                _write_image(image, root, rng, info, skips, jpeg_quality=jpeg_quality)
            )
        fields = list(image_structs[0].keys())
        mat[split] = _struct({k: [s[k] for s in image_structs] for k in fields}, len(image_structs))
        info.n_images[split] = counts[split]
        info.n_persons[split] = sum(1 for q in info.persons if q.split == split)
        info.expected_skips[split] = {k: v for k, v in skips.items() if v}

    _write_annotations_mat(root / "Annotations" / "Annotations.mat", mat, scipy_io)
    write_synthetic_marker(root, "make_synthetic_emotic")
    return info


#: The MAT-file header's free text (116 bytes). scipy writes ``Created on: <time>``
#: there, so two writes of the same data a second apart differed byte for byte.
_MAT_DESCRIPTION = b"MATLAB 5.0 MAT-file, written by dagnet_layers' synthetic EMOTIC writer"


def _write_annotations_mat(path: Path, mat: dict[str, Any], scipy_io: Any) -> None:
    """Write ``mat`` as a MATLAB 5 file whose bytes depend on the data only.

    ``scipy.io.savemat`` puts the current time in the header's free text (bytes
    0-115), which no reader interprets; it is replaced by a fixed text, so that
    the same seed writes the same file. Written atomically.
    """
    buffer = io.BytesIO()
    scipy_io.savemat(buffer, mat, oned_as="row")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_DESCRIPTION.ljust(116, b" ")
    write_bytes_atomic(path, data)


#: The file a synthetic writer leaves at the dataset's root, so that whatever trains on
#: it (``dagnet-train --data-root``) labels its numbers SYNTHETIC, as the demo's are.
SYNTHETIC_MARKER = "SYNTHETIC.json"


def write_synthetic_marker(root: str | os.PathLike[str], writer: str) -> None:
    """Mark ``root`` as synthetic data written by ``writer`` (see :func:`synthetic_marker`)."""
    body = {"synthetic": True, "writer": writer,
            "note": "SYNTHETIC data in the EMOTIC layout, not EMOTIC: numbers from it say "
                    "nothing about EMOTIC and are not comparable with the paper's"}  # fmt: skip
    write_bytes_atomic(Path(root) / SYNTHETIC_MARKER, (json.dumps(body, indent=1) + "\n").encode())


def synthetic_marker(root: str | os.PathLike[str]) -> dict[str, object] | None:
    """What the synthetic marker of a dataset root says, or ``None`` for real data.

    The writers of this package (:func:`make_synthetic_emotic`,
    :func:`~dagnet_layers.emotic.data.make_diagnostic_emotic`) leave
    :data:`SYNTHETIC_MARKER` at the root; the training command reads it to label its
    outputs. A marker that cannot be read is an error naming the file, not "real data".

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     before = synthetic_marker(d)
        ...     write_synthetic_marker(d, "a test")
        ...     before, synthetic_marker(d)["writer"]
        (None, 'a test')
    """
    path = Path(root) / SYNTHETIC_MARKER
    if not path.exists() and not path.is_symlink():
        return None
    return read_json_object(path, "synthetic-data marker")


# ----------------------------------------------------------------------- one image
#: Every quirk :attr:`SyntheticEmotic.quirks` lists; each sits on the first images of a split.
_QUIRKS = ("lone_person", "lone_category", "no_category", "vad_missing", "bbox_past_edge",
           "empty_bbox", "grayscale", "cmyk", "several_annotators")  # fmt: skip


@dataclass(frozen=True)
class _SyntheticImage:
    """Where one image sits: its split, its place in the split, its file and size."""

    split: str
    index: int  # position in the split; the planted quirks key on it
    serial: int  # position over all splits; names the file and picks the database
    w: int
    h: int

    @property
    def database(self) -> str:
        return _DATABASES[self.serial % len(_DATABASES)]

    @property
    def filename(self) -> str:
        if self.database == "mscoco":
            return f"COCO_{self.split}2014_{self.serial:012d}.jpg"
        return f"syn_{self.split}_{self.serial:05d}.jpg"

    @property
    def lone(self) -> bool:
        """The lone-person, lone-category quirk: one person with exactly one category."""
        return self.index == 0


@dataclass
class _Person:
    """A person as drawn: box, torso colour and pattern (each a category or None)."""

    box: tuple[float, float, float, float]
    colour: str | None
    pattern: str | None

    @property
    def body_cues(self) -> set[str]:
        return {c for c in (self.colour, self.pattern) if c is not None}


def _write_image(
    image: _SyntheticImage, root: Path, rng: np.random.Generator, info: SyntheticEmotic,
    skips: dict[str, int], *, jpeg_quality: int,
) -> dict[str, object]:  # fmt: skip
    """Draw one image's people and scene, save the JPEG, and return its ``.mat`` struct.

    The random draws happen in a fixed order (people, scene cues, pixels,
    annotations), so a seed always writes the same files.
    """
    people = _place_people(image, rng)
    scene = _place_scene_cues(image, people, rng)
    _render(image, people, scene, root, rng, info, jpeg_quality)
    persons = []
    for p, row in enumerate(_annotate(image, people, set(scene), rng, info, skips)):
        box, annotated, vad_out, body, scene_cues = row
        struct, expected_vad = _person_struct(image.split, box, annotated, vad_out, rng, info,
                                              image.index, p)  # fmt: skip
        persons.append(struct)
        info.persons.append(
            SyntheticPerson(
                image.split, image.index, p, image.filename, box, _sorted(annotated),
                expected_vad, _sorted(body), _sorted(scene_cues),
            )
        )  # fmt: skip
    person_fields = list(persons[0].keys())
    return {
        "filename": image.filename,
        "folder": f"{image.database}/images",
        "image_size": _struct({"n_col": _num(image.w), "n_row": _num(image.h)}),
        "original_database": _struct({"name": image.database, "info": "synthetic"}),
        "person": _struct({k: [pp[k] for pp in persons] for k in person_fields}, len(persons)),
    }  # fmt: skip


def _place_people(image: _SyntheticImage, rng: np.random.Generator) -> list[_Person]:
    """Boxes that do not overlap, then each torso's colour and pattern (the body cues)."""
    i, w, h = image.index, image.w, image.h
    if image.lone or i == 2:
        n_people = 1
    else:
        n_people = 2 if i == 1 else 1 + int(rng.random() < 0.35)
    boxes: list[tuple[float, float, float, float]] = []
    for p in range(n_people):
        for _ in range(40):
            bh = rng.uniform(0.55, 0.9) * h
            bw = bh * rng.uniform(0.4, 0.55)
            x1 = rng.uniform(0, w - bw)
            y1 = rng.uniform(0, h - bh)
            cand = (round(x1), round(y1), round(x1 + bw), round(y1 + bh))
            if not any(_overlaps(cand, b, 4) for b in boxes):
                break
        if i == 2 and p == 0:  # quirk: a box past the right (and top) edge
            bw = cand[2] - cand[0]
            cand = (w - 0.6 * bw, -6.0, w + 0.4 * bw + 0.5, cand[3] - cand[1] - 6.0)
        boxes.append(tuple(float(v) for v in cand))
    colour_names = list(TORSO_COLOURS)
    colours = [
        None if rng.random() < 0.2 else colour_names[int(rng.integers(len(colour_names)))]
        for _ in range(n_people)
    ]
    patterns = [
        None if rng.random() < 0.55 else list(TORSO_PATTERNS)[int(rng.integers(3))]
        for _ in range(n_people)
    ]
    if image.lone:  # exactly one category: a coloured torso, nothing else
        colours[0] = colour_names[int(rng.integers(len(colour_names)))]
        patterns[0] = None
    return [_Person(*person) for person in zip(boxes, colours, patterns, strict=True)]


def _place_scene_cues(
    image: _SyntheticImage, people: list[_Person], rng: np.random.Generator
) -> dict[str, tuple[float, float]]:
    """Context shapes (category -> centre) outside every box; some pair with a torso colour."""
    w, h = image.w, image.h
    radius = _shape_radius(image)
    wanted = [] if image.lone else [s for s in CONTEXT_SHAPES if rng.random() < 0.12]
    colours = [person.colour for person in people]
    for body_cat, ctx_cat in JOINT_CATEGORIES.values():
        if not image.lone and body_cat in colours and ctx_cat not in wanted:
            if rng.random() < 0.5:
                wanted.append(ctx_cat)
    placed: dict[str, tuple[float, float]] = {}
    taken = [person.box for person in people]
    for name in wanted[:3]:
        for _ in range(60):
            cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
            sb = (cx - radius, cy - radius, cx + radius, cy + radius)
            if not any(_overlaps(sb, b, 4) for b in taken):
                placed[name] = (cx, cy)
                taken.append(sb)
                break
    return placed


def _shape_radius(image: _SyntheticImage) -> float:
    return 0.11 * min(image.w, image.h)


def _render(
    image: _SyntheticImage, people: list[_Person], scene: dict[str, tuple[float, float]],
    root: Path, rng: np.random.Generator, info: SyntheticEmotic, jpeg_quality: int,
) -> None:  # fmt: skip
    """Background, shapes, people; the grayscale and CMYK quirks; the JPEG."""
    img = Image.fromarray(_background(rng, image.w, image.h))
    draw = ImageDraw.Draw(img)
    for name, (cx, cy) in scene.items():
        shape, colour = CONTEXT_SHAPES[name]
        _draw_shape(draw, shape, colour, cx, cy, _shape_radius(image))
    for person in people:
        _draw_person(draw, person.box, TORSO_COLOURS.get(person.colour, _NEUTRAL_TORSO),
                     person.pattern)  # fmt: skip
    img_dir = root / "emotic" / image.database / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    if image.index == 3:
        img = img.convert("L")
        info.quirks["grayscale"].append((image.split, image.index, -1))
    elif image.index == 4:
        img = img.convert("CMYK")
        info.quirks["cmyk"].append((image.split, image.index, -1))
    img.save(img_dir / image.filename, quality=jpeg_quality)


_Row = tuple[tuple[float, float, float, float], set[str], np.ndarray, set[str], set[str]]


def _annotate(
    image: _SyntheticImage, people: list[_Person], placed: set[str], rng: np.random.Generator,
    info: SyntheticEmotic, skips: dict[str, int],
) -> list[_Row]:  # fmt: skip
    """Per person: (box, annotated categories, VAD, body cues, scene cues), quirks planted.

    The truth is the body cues, the scene cues (shapes, and Sympathy when
    another person is there) and the joint categories both complete.
    """
    split, i = image.split, image.index
    if image.lone:
        info.quirks["lone_person"].append((split, i, 0))
        info.quirks["lone_category"].append((split, i, 0))
    scene = placed | ({"Sympathy"} if len(people) > 1 else set())
    rows: list[_Row] = []
    for p, person in enumerate(people):
        body = person.body_cues
        true = body | scene
        true |= {j for j, (b, c) in JOINT_CATEGORIES.items() if b in body and c in scene}
        vad = _vad_for(true, rng)
        annotated = set(true)
        if i == 1 and p == 1:  # a person annotated with no category at all
            annotated = set()
            info.quirks["no_category"].append((split, i, p))
        if not annotated:
            skips["no_category"] += 1
            if (split, i, p) not in info.quirks["no_category"]:
                info.quirks["no_category"].append((split, i, p))
        vad_out = vad.astype(np.float64)
        if i % 9 == 5 and p == 0:  # NaN continuous value(s)
            vad_out[int(rng.integers(3))] = np.nan
            info.quirks["vad_missing"].append((split, i, p))
        if i == 2 and p == 0:
            info.quirks["bbox_past_edge"].append((split, i, p))
        rows.append((person.box, annotated, vad_out, body, scene))
    if split == "train" and i == 3:  # a box wholly outside the image
        rows.append(((image.w + 5.0, 10.0, image.w + 40.0, 60.0), {"Peace"},
                     np.array([5.0, 5.0, 5.0]), set(), set()))  # fmt: skip
        info.quirks["empty_bbox"].append((split, i, len(rows) - 1))
        skips["empty_bbox"] += 1
    return rows


def _person_struct(
    split: str, box: tuple[float, ...], annotated: set[str], vad: np.ndarray,
    rng: np.random.Generator, info: SyntheticEmotic | None, i: int, p: int,
) -> tuple[dict[str, object], tuple[float, float, float]]:  # fmt: skip
    """The person's .mat fields and the VAD a reader must return for it (several
    annotators on val/test are listed in ``info``'s quirks when ``info`` is given)."""
    gender = ("Male", "Female")[int(rng.integers(2))]
    age = ("Adult", "Teenager", "Kid")[int(rng.integers(3))]
    bbox = np.array([box], dtype=np.float64)
    cats = list(_sorted(annotated))
    if split == "train":
        fields = {
            "body_bbox": bbox,
            "annotations_categories": _struct({"categories": _cell(cats)}),
            "annotations_continuous": _vad_struct(tuple(vad)),
            "gender": gender,
            "age": age,
        }
        return fields, tuple(float(v) for v in vad)
    # val/test: K annotators, each a noisy view of the truth; combined = their union
    # (the truth) and the mean of their continuous values, NaN kept where planted.
    k = 1 + int(rng.integers(3))
    if k > 1 and info is not None:  # None: no quirk bookkeeping (the diagnostic scenes)
        info.quirks["several_annotators"].append((split, i, p))
    views, noisy = [], []
    for _ in range(k):
        views.append(_cell([c for c in cats if rng.random() > 0.2] or cats[:1]))
        noisy.append(np.clip(np.nan_to_num(vad, nan=5.0) + rng.integers(-1, 2, 3), 1, 10))
    combined = np.mean(noisy, axis=0)
    combined[np.isnan(vad)] = np.nan
    keys = ("valence", "arousal", "dominance")
    fields = {
        "body_bbox": bbox,
        "annotations_categories": _struct({"categories": views}, k),
        "combined_categories": _cell(cats),
        "annotations_continuous": _struct(
            {key: [_num(v[j]) for v in noisy] for j, key in enumerate(keys)}, k
        ),
        "combined_continuous": _vad_struct(tuple(combined)),
        "gender": gender,
        "age": age,
    }
    return fields, tuple(float(v) for v in combined)
