"""Diagnostic scenes: synthetic EMOTIC where body, whole-scene and local-object cues are apart.

:func:`make_diagnostic_emotic` writes, in the official layout (``Annotations.mat``
and JPEGs, readable by every reader of this package), one person per image whose
categories come from three separately controllable cue families, each tied to its
own categories (:data:`DIAGNOSTIC_CUES`):

- **body**: the torso's colour. A share of the bodies (``corrupt_fraction``) is
  corrupted (the torso covered by a grey occluder, or blurred), so the body cue is
  unreliable there; the same category is then still told by the context: a
  flag of the torso's colour stands beside every person (the *echo*);
- **global**: the colour of the whole scene's sky, behind everything;
- **local**: small objects (one or two), each inside one or two patches of a
  4 x 4 partition, at random places outside the person.

Nuisance that carries no label: distractor objects of colours no cue uses, clutter
(pixel noise) and lighting (a global brightness factor).

Every output says SYNTHETIC. Beside the annotations, ``diagnostic.json`` records
per person where each cue is (boxes in pixels; the global cue covers the scene
outside the person) and whether the body is corrupted, so the metrics of
:mod:`dagnet_layers.emotic.diagnostic` can read each module against it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dagnet_layers._deps import require
from dagnet_layers.emotic.data.records import EMOTIC_SPLITS
from dagnet_layers.emotic.data.synthetic import (
    _draw_person,
    _draw_shape,
    _num,
    _person_struct,
    _sorted,
    _struct,
    _vad_for,
    _write_annotations_mat,
    write_synthetic_marker,
)
from dagnet_layers.errors import CorruptFileError
from dagnet_layers.storage import read_json_object, write_bytes_atomic

__all__ = ["DIAGNOSTIC_CUES", "DIAGNOSTIC_JSON", "DiagnosticPerson", "DiagnosticScenes",
           "make_diagnostic_emotic", "read_diagnostic_scenes"]

#: The ground-truth file :func:`make_diagnostic_emotic` writes at the root (last, so
#: its presence says the scenes are complete).
DIAGNOSTIC_JSON = "diagnostic.json"

#: Body cue: torso colour -> category (the echo flag beside the person repeats it).
BODY_COLOURS: dict[str, tuple[int, int, int]] = {
    "Anger": (220, 20, 20), "Happiness": (250, 225, 0), "Sadness": (30, 60, 235),
    "Fear": (0, 220, 230), "Excitement": (255, 130, 0), "Fatigue": (130, 80, 30),
}  # fmt: skip
#: Global cue: the sky's colour -> category.
SKY_COLOURS: dict[str, tuple[int, int, int]] = {
    "Peace": (150, 200, 255), "Disquietment": (90, 20, 60), "Engagement": (255, 190, 120),
    "Yearning": (170, 120, 220), "Disconnection": (40, 110, 40),
}  # fmt: skip
#: Local cue: a small object (shape, colour) -> category.
LOCAL_OBJECTS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "Affection": ("disk", (240, 0, 240)), "Annoyance": ("square", (240, 0, 240)),
    "Anticipation": ("triangle", (110, 255, 40)), "Aversion": ("ring", (110, 255, 40)),
    "Surprise": ("disk", (255, 255, 255)),
}  # fmt: skip
#: Every cue category -> its family.
DIAGNOSTIC_CUES: dict[str, str] = {
    **dict.fromkeys(BODY_COLOURS, "body"), **dict.fromkeys(SKY_COLOURS, "global"),
    **dict.fromkeys(LOCAL_OBJECTS, "local"),
}  # fmt: skip
_NEUTRAL_TORSO = (150, 150, 150)
_NEUTRAL_SKY = (120, 120, 120)
_DISTRACTORS = (("disk", (0, 0, 0)), ("triangle", (100, 100, 100)), ("square", (60, 30, 0)))


@dataclass(frozen=True)
class DiagnosticPerson:
    """Ground truth of one diagnostic person (one per image).

    Attributes:
        split: Split name.
        filename: Image file name.
        bbox: The annotated body box ``(x1, y1, x2, y2)``.
        categories: Every category its cues tell (official order).
        body: The body cue's category, or ``None`` (a grey torso).
        corrupted: How the body is corrupted: ``"occluded"``, ``"blurred"`` or ``None``.
        echo_box: The flag repeating the body cue beside the person, or ``None``.
        sky: The global cue's category, or ``None``.
        sky_box: Where the sky is drawn ``(0, 0, width, horizon)`` (grey when
            ``sky`` is ``None``); the body in front of it is masked in the context.
        local: Per local object: ``(category, (x1, y1, x2, y2))``.
        distractors: Boxes of the unlabelled distractor objects.
    """

    split: str
    filename: str
    bbox: tuple[float, float, float, float]
    categories: tuple[str, ...]
    body: str | None
    corrupted: str | None
    echo_box: tuple[float, float, float, float] | None
    sky: str | None
    sky_box: tuple[float, float, float, float]
    local: tuple[tuple[str, tuple[float, float, float, float]], ...]
    distractors: tuple[tuple[float, float, float, float], ...]


@dataclass
class DiagnosticScenes:
    """What :func:`make_diagnostic_emotic` wrote; ``os.fspath(obj)`` is the root.

    Attributes:
        root: Dataset root.
        persons: Ground truth of every person, one per image, in file order.
        settings: The writer's arguments (``n_images``, ``seed``, ``image_size``,
            ``corrupt_fraction``, ``split_fractions``, ``clutter``, ``jpeg_quality``).
    """

    root: Path
    persons: list[DiagnosticPerson] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    def by_filename(self) -> dict[str, DiagnosticPerson]:
        """Persons keyed by image file name (each image holds one person)."""
        return {p.filename: p for p in self.persons}

    def __fspath__(self) -> str:
        return str(self.root)


def make_diagnostic_emotic(
    out_dir: str | os.PathLike[str], n_images: int = 600, seed: int = 0, image_size: int = 128,
    *, corrupt_fraction: float = 0.3, split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    clutter: float = 6.0, jpeg_quality: int = 92,
) -> DiagnosticScenes:  # fmt: skip
    """Write diagnostic scenes in the official EMOTIC layout (deterministic per seed).

    Args:
        out_dir: Root to write (``Annotations/``, ``emotic/diagnostic/images``,
            ``diagnostic.json``).
        n_images: Images (one person each) over the three splits (at least 12).
        seed: Seed of every random choice.
        image_size: Side of the square images (at least 64; a multiple of 4 keeps
            every local object inside a 4 x 4 partition's patches).
        corrupt_fraction: Share of the bodies corrupted (occluded or blurred).
        split_fractions: Share of the images in train, val, test.
        clutter: Standard deviation of the pixel noise.
        jpeg_quality: JPEG quality.

    Returns:
        The ground truth of every person.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     scenes = make_diagnostic_emotic(d, n_images=12, image_size=64)
        ...     len(scenes.persons), (scenes.root / "diagnostic.json").is_file()
        (12, True)
    """
    scipy_io = require("scipy.io", "writing the diagnostic Annotations.mat")
    if n_images < 12:
        raise ValueError(f"n_images must be at least 12, got {n_images}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")
    if not 0.0 <= corrupt_fraction <= 1.0:
        raise ValueError(f"corrupt_fraction must be in [0, 1], got {corrupt_fraction}")
    if len(split_fractions) != 3 or not math.isclose(sum(split_fractions), 1.0):
        raise ValueError(f"split_fractions must be 3 shares summing to 1, got {split_fractions}")
    root = Path(out_dir).expanduser().resolve()
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    images = root / "emotic" / "diagnostic" / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    settings = {"n_images": n_images, "seed": seed, "image_size": image_size,
                "corrupt_fraction": corrupt_fraction, "split_fractions": list(split_fractions),
                "clutter": clutter, "jpeg_quality": jpeg_quality}  # fmt: skip
    n_train = max(4, round(n_images * split_fractions[0]))
    n_val = max(2, round(n_images * split_fractions[1]))
    counts = {"train": n_train, "val": n_val, "test": max(2, n_images - n_train - n_val)}
    scenes = DiagnosticScenes(root, settings=settings)
    mat: dict[str, np.ndarray] = {}
    serial = 0
    for split in EMOTIC_SPLITS:
        structs = []
        for i in range(counts[split]):
            serial += 1
            person, img = _scene(split, serial, image_size, corrupt_fraction, clutter, rng)
            img.save(images / person.filename, quality=jpeg_quality)
            vad = _vad_for(set(person.categories), rng).astype(np.float64)
            fields, _ = _person_struct(split, person.bbox, set(person.categories), vad, rng,
                                       None, i, 0)  # fmt: skip
            structs.append({
                "filename": person.filename, "folder": "diagnostic/images",
                "image_size": _struct({"n_col": _num(image_size), "n_row": _num(image_size)}),
                "original_database": _struct({"name": "diagnostic", "info": "SYNTHETIC"}),
                "person": _struct({k: [v] for k, v in fields.items()}, 1),
            })  # fmt: skip
            scenes.persons.append(person)
        mat[split] = _struct({k: [s[k] for s in structs] for k in structs[0]}, len(structs))
    _write_annotations_mat(root / "Annotations" / "Annotations.mat", mat, scipy_io)
    write_synthetic_marker(root, "make_diagnostic_emotic")
    record = {"synthetic": True, "note": "SYNTHETIC diagnostic scenes, not EMOTIC",
              **settings, "cues": DIAGNOSTIC_CUES,
              "persons": [asdict(p) for p in scenes.persons]}  # fmt: skip
    write_bytes_atomic(root / DIAGNOSTIC_JSON, (json.dumps(record, indent=1) + "\n").encode())
    return scenes


_SETTINGS = ("n_images", "seed", "image_size", "corrupt_fraction", "split_fractions", "clutter",
             "jpeg_quality")


def _box(value: object) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    box = tuple(float(v) for v in value)  # type: ignore[union-attr]
    if len(box) != 4:
        raise ValueError(f"a box needs 4 numbers, got {value!r}")
    return box  # type: ignore[return-value]


def read_diagnostic_scenes(root: str | os.PathLike[str]) -> DiagnosticScenes:
    """Read back what :func:`make_diagnostic_emotic` wrote into ``root``.

    Raises:
        MissingFileError: ``root`` has no ``diagnostic.json`` (no complete scenes).
        CorruptFileError: the file is not what the writer writes; names it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     written = make_diagnostic_emotic(d, n_images=12, image_size=64)
        ...     read_diagnostic_scenes(d).persons == written.persons
        True
    """
    root = Path(root).expanduser().resolve()
    path = root / DIAGNOSTIC_JSON
    record = read_json_object(path, "diagnostic scenes' ground truth")
    try:
        persons = [DiagnosticPerson(
            split=str(p["split"]), filename=str(p["filename"]), bbox=_box(p["bbox"]),
            categories=tuple(str(c) for c in p["categories"]), body=p["body"],
            corrupted=p["corrupted"], echo_box=_box(p["echo_box"]), sky=p["sky"],
            sky_box=_box(p["sky_box"]),
            local=tuple((str(n), _box(b)) for n, b in p["local"]),
            distractors=tuple(_box(b) for b in p["distractors"]),
        ) for p in record["persons"]]  # type: ignore[arg-type]  # fmt: skip
        settings = {k: record[k] for k in _SETTINGS}
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptFileError(path, f"not diagnostic scenes' ground truth ({err!r}); "
                               "write the scenes again") from None
    return DiagnosticScenes(root, persons, settings)


Box = tuple[float, float, float, float]


def _free_box(rng: np.random.Generator, size: int, side: float,
              taken: list[tuple[float, ...]]) -> Box | None:  # fmt: skip
    for _ in range(80):
        x1, y1 = rng.uniform(1, size - side - 1, 2)
        box = (float(x1), float(y1), float(x1 + side), float(y1 + side))
        if all(box[2] + 2 <= t[0] or t[2] + 2 <= box[0] or box[3] + 2 <= t[1]
               or t[3] + 2 <= box[1] for t in taken):  # fmt: skip
            return box
    return None


def _scene(split: str, serial: int, size: int, corrupt_fraction: float, clutter: float,
           rng: np.random.Generator) -> tuple[DiagnosticPerson, Image.Image]:  # fmt: skip
    """One image: sky and ground, the person, the echo flag, local objects, distractors."""
    body = None if rng.random() < 0.2 else list(BODY_COLOURS)[int(rng.integers(len(BODY_COLOURS)))]
    sky = None if rng.random() < 0.3 else list(SKY_COLOURS)[int(rng.integers(len(SKY_COLOURS)))]
    n_local = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    local_names = [str(x) for x in rng.choice(list(LOCAL_OBJECTS), size=n_local, replace=False)]
    if body is None and sky is None and not local_names:  # every person has a label
        body = list(BODY_COLOURS)[int(rng.integers(len(BODY_COLOURS)))]
    corrupted = None
    if body is not None and rng.random() < corrupt_fraction:
        corrupted = "occluded" if rng.random() < 0.5 else "blurred"

    horizon = int(size * rng.uniform(0.35, 0.5))
    arr = np.empty((size, size, 3), dtype=np.float64)
    arr[:horizon] = SKY_COLOURS.get(sky, _NEUTRAL_SKY) if sky else _NEUTRAL_SKY
    arr[horizon:] = (95, 90, 80)
    arr += rng.normal(0.0, clutter, arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)

    bh = rng.uniform(0.5, 0.7) * size
    bw = bh * rng.uniform(0.4, 0.5)
    x1 = rng.uniform(0.05 * size, 0.95 * size - bw)
    y1 = rng.uniform(0.05 * size, 0.98 * size - bh)
    bbox = (float(round(x1)), float(round(y1)), float(round(x1 + bw)), float(round(y1 + bh)))
    _draw_person(draw, bbox, BODY_COLOURS.get(body, _NEUTRAL_TORSO) if body else _NEUTRAL_TORSO,
                 None)  # fmt: skip
    taken: list[tuple[float, ...]] = [bbox]
    echo_box = None
    if body is not None:  # the echo: a flag of the torso's colour, outside the body box
        side = 0.1 * size
        echo_box = _free_box(rng, size, side, taken)
        if echo_box is not None:
            draw.rectangle(echo_box, fill=BODY_COLOURS[body])
            taken.append(echo_box)
    local = []
    for name in local_names:
        box = _free_box(rng, size, 0.12 * size, taken)
        if box is None:
            continue
        shape, colour = LOCAL_OBJECTS[name]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        _draw_shape(draw, shape, colour, cx, cy, 0.06 * size)
        local.append((name, box))
        taken.append(box)
    distractors = []
    for _ in range(int(rng.integers(0, 3))):
        box = _free_box(rng, size, 0.1 * size, taken)
        if box is None:
            continue
        shape, colour = _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))]
        _draw_shape(draw, shape, colour, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2,
                    0.05 * size)  # fmt: skip
        distractors.append(box)
        taken.append(box)

    if corrupted is not None:
        # the pixels _draw_person filled for the torso: a rectangle includes both its
        # ends, a crop box leaves out its right column and bottom row, so the region is
        # the drawn torso's own bounding box, not the torso box passed to crop()
        x1, y1, x2, y2 = bbox
        mask = Image.new("L", img.size)
        ImageDraw.Draw(mask).rectangle((x1, y1 + 0.2 * (y2 - y1), x2, y1 + 0.72 * (y2 - y1)),
                                       fill=255)  # fmt: skip
        torso = mask.getbbox()  # (left, top, right, bottom), right and bottom excluded
        assert torso is not None
        if corrupted == "occluded":
            img.paste((128, 128, 128), torso)
        else:
            region = img.crop(torso).filter(ImageFilter.GaussianBlur(radius=0.2 * (x2 - x1)))
            # a blur keeps the mean colour: desaturate it too, so the cue is unreliable
            img.paste(region.convert("L").convert("RGB"), torso[:2])
    light = rng.uniform(0.75, 1.25)  # lighting: a brightness factor on the whole image
    img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) * light, 0, 255)
                          .astype(np.uint8))  # fmt: skip

    categories = {c for c in (body, sky) if c is not None} | {n for n, _ in local}
    person = DiagnosticPerson(
        split, f"diag_{split}_{serial:05d}.jpg", bbox, _sorted(categories), body, corrupted,
        echo_box, sky, (0.0, 0.0, float(size), float(horizon)), tuple(local),
        tuple(distractors))  # fmt: skip
    return person, img
