"""Hostile and broken inputs: confined to the data root, bounded, every failure named or counted.

Files from strangers (annotations, community conversions, caches, checkpoints) are
corrupted in every way a disk, a transfer or a careless script corrupts them, and
each outcome must be one of:

* ``named``: a :class:`~dagnet_layers.errors.DAGNetError` whose message names the file;
* ``counted``: the reader skipped records and counted them by reason;
* ``same``: the corruption did not change what the library serves;
* ``undetectable``: pixel bytes changed inside a format that carries no checksum
  (a JPEG's entropy-coded data, the community layout's ``.npy`` pixel arrays):
  the sample differs and nothing can tell. These are listed, never hidden.

Anything else (another exception type, a message without the file, a silently
different label) fails the test.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from dagnet_layers import DAGNet, build_dagnet
from dagnet_layers.commands import predict as predict_command
from dagnet_layers.commands import train as train_command
from dagnet_layers.commands.entry import cache_entry
from dagnet_layers.emotic.data import (
    EmoticDataset,
    build_emotic_cache,
    load_image_rgb,
    make_synthetic_emotic,
    read_emotic_annotations,
    read_emotic_preprocessed,
    write_emotic_preprocessed,
)
from dagnet_layers.emotic.data import cache as cache_mod
from dagnet_layers.emotic.data.cache import verify_emotic_cache
from dagnet_layers.emotic.data.preprocessed import PREPROCESSED_COLUMNS
from dagnet_layers.emotic.data.records import resolve_in_root
from dagnet_layers.emotic.losses import DAGNetCriterion
from dagnet_layers.errors import (
    BadRecordError,
    ConfigError,
    CorruptFileError,
    DAGNetError,
    ImageTooLargeError,
    MissingFileError,
    UnknownOptionError,
    UnsafePathError,
    WeightsUnavailableError,
)

W, H = 64, 48
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def syn(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_emotic(tmp_path_factory.mktemp("syn"), n_images=12, seed=5,
                                 image_size=(W, H))  # fmt: skip


@pytest.fixture(scope="module")
def pre_dir(syn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    write_emotic_preprocessed(syn.root, out, splits=("val",))
    return out


@pytest.fixture(scope="module")
def cache_dir(syn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    build_emotic_cache(syn.root, out, splits=("val",), size=16, progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                 patch_channels=(4, 4), fusion_hidden=8).save_pretrained(out)  # fmt: skip
    thresholds = {"Peace": 0.5, "Anger": None}
    (out / "inference.json").write_text(json.dumps({"image_size": 32, "thresholds": thresholds,
                                                    "score": "softmax"}))  # fmt: skip
    return out


def _raw(root: Path) -> dict:
    return scipy.io.loadmat(root / "Annotations" / "Annotations.mat")


def _save(root: Path, raw: dict) -> None:
    mat = {k: v for k, v in raw.items() if not k.startswith("__")}
    scipy.io.savemat(root / "Annotations" / "Annotations.mat", mat)


def _persons(raw: dict, split: str, i: int) -> int:
    return raw[split][0, i]["person"].size


# ============================================================ path traversal
def test_resolve_in_root_refuses_every_escape(tmp_path: Path) -> None:
    root = tmp_path / "emotic"
    (root / "ok").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    assert resolve_in_root(root, "ok", "a.jpg") == str(root / "ok" / "a.jpg")
    escapes = [("..", "x.jpg"), ("ok/../..", "x.jpg"), ("ok", "../../x.jpg"),
               ("/etc", "passwd"), ("ok", "/etc/passwd"), ("ok\\..\\..", "x.jpg"),
               ("C:", "x.jpg"), ("ok", "a\x00.jpg"), ("link", "x.jpg")]  # fmt: skip
    for parts in escapes:
        with pytest.raises(UnsafePathError, match="leaves the data root"):
            resolve_in_root(root, *parts)
    # a folder linked in on purpose is accepted when asked, '..' never
    assert resolve_in_root(root, "link", "x.jpg", allow_outside_symlinks=True)
    with pytest.raises(UnsafePathError):
        resolve_in_root(root, "..", "x.jpg", allow_outside_symlinks=True)


def test_a_link_swapped_in_after_the_read_does_not_lead_out(syn, tmp_path: Path) -> None:
    """The paths were checked when the annotations were read; an image replaced by a
    link to a file outside the root afterwards was opened and served. The check is
    now made on the opened file, by every reader of the official layout's images."""
    from dagnet_layers.emotic.data import EmoticJpegDataset, load_image_rgb
    from dagnet_layers.storage import open_in_root

    root = tmp_path / "syn"
    shutil.copytree(syn.root, root)
    records = read_emotic_annotations(root, "val")
    assert records.image_root == str(root / "emotic")
    dataset = EmoticDataset(root, "val", size=16, records=records)
    on_device = EmoticJpegDataset(root, "val", size=16, records=records)
    first = dataset[0]["context"]
    outside = tmp_path / "secret.png"
    Image.new("RGB", (W, H), (255, 0, 0)).save(outside)
    victim = Path(records[0].image_path)
    victim.unlink()
    victim.symlink_to(outside)  # swapped in after the read's check
    for read in (lambda: dataset[0], lambda: on_device[0],
                 lambda: load_image_rgb(victim, root=records.image_root)):
        with pytest.raises(UnsafePathError, match=rf"{re.escape(str(victim))} leads outside "
                           "the data root"):
            read()
    with pytest.raises(BadRecordError, match="unsafe_path"):
        build_emotic_cache(root, tmp_path / "cache", splits=("val",), size=16,
                           records={"val": records}, on_bad_record="error", progress=False)
    build_emotic_cache(root, tmp_path / "cache2", splits=("val",), size=16,
                       records={"val": records}, progress=False)  # skipped and counted
    cached = EmoticDataset(tmp_path / "cache2", "val")
    assert cached.records.summary.skipped["unsafe_path"] >= 1
    # a link that stays inside the root is followed; without a root nothing is checked
    inside = victim.with_name("inside.png")
    Image.new("RGB", (W, H), (0, 0, 255)).save(inside)
    victim.unlink()
    victim.symlink_to(inside.name)
    assert dataset[0]["context"].shape == first.shape
    with open_in_root(victim, root / "emotic") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    lax = read_emotic_annotations(root, "val", allow_outside_symlinks=True)
    assert lax.image_root is None


def test_mat_paths_leaving_the_root_are_skipped_and_counted(syn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (W, H), (255, 0, 0)).save(outside / "exists.jpg")
    (root / "emotic" / "linked").symlink_to(outside)
    raw = _raw(root)
    hostile = {0: ("../../outside", "exists.jpg"), 1: ("../../outside", "missing.jpg"),
               2: ("x", str(outside / "exists.jpg")), 3: ("linked", "exists.jpg")}  # fmt: skip
    n_hostile = 0
    for i, (folder, filename) in hostile.items():
        raw["train"][0, i]["folder"] = np.array([folder])
        raw["train"][0, i]["filename"] = np.array([filename])
        n_hostile += _persons(raw, "train", i)
    _save(root, raw)
    clean = read_emotic_annotations(syn.root, "train")
    recs = read_emotic_annotations(root, "train")
    assert recs.summary.skipped["unsafe_path"] == n_hostile
    base = os.path.realpath(root / "emotic")
    assert all(os.path.realpath(r.image_path).startswith(base + os.sep) for r in recs)
    assert len(recs) + n_hostile == len(clean) + sum(clean.summary.skipped.values()) - sum(
        v for k, v in recs.summary.skipped.items() if k != "unsafe_path"
    )
    # The messages do not tell whether the outside file exists.
    messages = []
    for i in (0, 1):
        with pytest.raises(BadRecordError) as info:
            only = _raw(root)
            only["train"] = only["train"][:, i:i + 1]
            _save(root, only)
            read_emotic_annotations(root, "train", on_bad_record="error")
        messages.append(str(info.value).replace("exists", "NAME").replace("missing", "NAME"))
        _save(root, raw)
    assert messages[0] == messages[1]
    # The dataset and the cache never read outside the root either.
    ds = EmoticDataset(root, "train")
    assert ds.summary.skipped["unsafe_path"] == n_hostile
    build_emotic_cache(root, tmp_path / "cache", splits=("train",), size=16, progress=False)
    cached = EmoticDataset(tmp_path / "cache", "train")
    assert cached.summary.skipped["unsafe_path"] == n_hostile and len(cached) == len(ds)


def test_csv_paths_leaving_the_root_are_skipped(pre_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pre"
    shutil.copytree(pre_dir, bad)
    lines = (bad / "val.csv").read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[1], "../../..", 1)
    (bad / "val.csv").write_text("\n".join(lines) + "\n")
    good = read_emotic_preprocessed(pre_dir, "val", image_root=tmp_path / "emotic")
    pre = read_emotic_preprocessed(bad, "val", image_root=tmp_path / "emotic")
    assert pre.records.summary.skipped["unsafe_path"] == 1
    assert len(pre) == len(good) - 1


@pytest.mark.parametrize("cut", ["last_row", "half", "extra_row"])
def test_a_csv_that_disagrees_with_its_four_arrays_is_blamed(pre_dir: Path, tmp_path: Path,
                                                             cut: str) -> None:  # fmt: skip
    """The four arrays agree on their length: a CSV with fewer or more rows is named,
    not the first array compared with it."""
    bad = tmp_path / "pre"
    shutil.copytree(pre_dir, bad)
    text = (bad / "val.csv").read_text()
    lines = text.splitlines()
    cut_text = {"last_row": "\n".join(lines[:-1]) + "\n", "half": text[: len(text) // 2],
                "extra_row": text + lines[-1] + "\n"}[cut]
    (bad / "val.csv").write_text(cut_text)
    with pytest.raises(CorruptFileError) as info:
        read_emotic_preprocessed(bad, "val")
    assert info.value.path == str(bad / "val.csv"), info.value
    assert "each of the four arrays beside it has" in str(info.value)


def test_one_array_of_another_length_is_blamed(pre_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pre"
    shutil.copytree(pre_dir, bad)
    cont = np.load(bad / "val_cont_arr.npy")
    np.save(bad / "val_cont_arr.npy", cont[:-1])
    with pytest.raises(CorruptFileError) as info:
        read_emotic_preprocessed(bad, "val")
    assert info.value.path == str(bad / "val_cont_arr.npy"), info.value


def test_a_symlinked_cache_file_is_refused(cache_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cache"
    shutil.copytree(cache_dir, bad)
    target = tmp_path / "elsewhere.npy"
    shutil.copy(bad / "val_body.npy", target)
    (bad / "val_body.npy").unlink()
    (bad / "val_body.npy").symlink_to(target)
    with pytest.raises(UnsafePathError, match=r"val_body\.npy: a cache file is a symbolic link"):
        EmoticDataset(bad, "val")


# ============================================================ the record policy
def _csv_with(pre_dir: Path, dst: Path, row: int, **cells: str) -> Path:
    shutil.copytree(pre_dir, dst)
    import csv

    with open(dst / "val.csv", newline="") as f:
        rows = list(csv.reader(f))
    for name, value in cells.items():
        rows[row + 1][PREPROCESSED_COLUMNS.index(name.replace("_", " ") if name == "Image_Size"
                                                  else name)] = value
    with open(dst / "val.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return dst


@pytest.mark.parametrize(
    ("cells", "reason", "kind"),
    [
        ({"BBox": "[50, 10, 5, 40]"}, "invalid_bbox", "skipped"),
        ({"BBox": "[900, 900, 950, 950]"}, "empty_bbox", "skipped"),
        ({"BBox": "[1, 2, 3]"}, "invalid_row", "skipped"),
        ({"BBox": "[1, 2, 'a', 4]"}, "invalid_row", "skipped"),
        ({"BBox": "[1e400, 2, 3, 4]"}, "invalid_bbox", "skipped"),
        ({"Image_Size": "[0, 0]"}, "invalid_image_size", "skipped"),
        ({"Image_Size": "[nan, 5]"}, "invalid_image_size", "skipped"),
        ({"BBox": "[nan, 2, 3, 4]"}, "invalid_bbox", "skipped"),
        ({"Categorical_Labels": "['Joy']"}, "unknown_category", "skipped"),
        ({"Categorical_Labels": "x" * 5000}, "invalid_row", "skipped"),
        ({"Categorical_Labels": "['Peace', 'Peace']"}, "duplicate_category", "flagged"),
        ({"BBox": "[-10, -10, 500, 500]"}, "bbox_clamped", "flagged"),
    ],
)
def test_csv_bad_rows_follow_the_policy(pre_dir: Path, tmp_path: Path, cells: dict,
                                        reason: str, kind: str) -> None:  # fmt: skip
    bad = _csv_with(pre_dir, tmp_path / "pre", 0, **cells)
    good = read_emotic_preprocessed(pre_dir, "val")
    if reason == "duplicate_category":  # keep the arrays in agreement with the CSV
        cat = np.load(bad / "val_cat_arr.npy")
        cat[0] = 0
        cat[0, 18] = 1
        np.save(bad / "val_cat_arr.npy", cat)
    pre = read_emotic_preprocessed(bad, "val")
    summary = pre.records.summary
    before = getattr(good.records.summary, kind).get(reason, 0)
    assert getattr(summary, kind).get(reason, 0) == before + 1, summary
    if kind == "skipped":
        assert 0 not in pre.rows.tolist()
        if reason != "empty_bbox":  # a box outside the image is data, not a defect
            with pytest.raises(BadRecordError, match=r"val\.csv row 0"):
                read_emotic_preprocessed(bad, "val", on_bad_record="error")
    else:
        rec = pre.records[pre.rows.tolist().index(0)]
        x1, y1, x2, y2 = rec.bbox
        assert 0 <= x1 < x2 <= rec.image_size[0] and 0 <= y1 < y2 <= rec.image_size[1]


def test_a_clamped_csv_box_is_masked(pre_dir: Path, tmp_path: Path) -> None:
    bad = _csv_with(pre_dir, tmp_path / "pre", 0, BBox="[-10, -10, 500, 500]")
    ds = EmoticDataset(bad, "val", size=32)
    i = ds.records.index(next(r for r in ds.records if r.image_index == 0))
    assert (ds[i]["context"] == 0).all()  # the whole image is the body: all masked


@pytest.mark.parametrize("value", ["42", "-3", "1e9", "inf"])
def test_csv_vad_outside_the_scale_becomes_missing(pre_dir: Path, tmp_path: Path,
                                                   value: str) -> None:  # fmt: skip
    bad = _csv_with(pre_dir, tmp_path / "pre", 0, Continuous_Labels=f"[{value}, 5, 5]")
    cont = np.load(bad / "val_cont_arr.npy")
    cont[0] = (float(value), 5, 5)
    np.save(bad / "val_cont_arr.npy", cont)
    pre = read_emotic_preprocessed(bad, "val")
    assert pre.records.summary.flagged["vad_out_of_range"] == 1
    row = pre.rows.tolist().index(0)
    assert math.isnan(pre.vad[row, 0]) and pre.vad[row, 1] == 5
    assert np.isfinite(pre.vad[~np.isnan(pre.vad)]).all()


def test_cont_array_is_checked_against_the_csv(pre_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pre"
    shutil.copytree(pre_dir, bad)
    cont = np.load(bad / "val_cont_arr.npy")
    cont[1, 2] += 1.5
    np.save(bad / "val_cont_arr.npy", cont)
    pre = read_emotic_preprocessed(bad, "val")
    assert pre.records.summary.skipped["labels_disagree"] == 1 and 1 not in pre.rows.tolist()
    with pytest.raises(BadRecordError, match=r"val_cont_arr\.npy holds other labels"):
        read_emotic_preprocessed(bad, "val", on_bad_record="error")


def test_mat_bad_fields_follow_the_same_policy(syn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    raw = _raw(root)
    img = raw["val"][0, 0]
    img["image_size"][0, 0]["n_col"] = np.array([[0]])
    n_size = _persons(raw, "val", 0)
    person = raw["val"][0, 1]["person"][0, 0]
    person["combined_continuous"][0, 0]["valence"] = np.array([[42.0]])
    cats = person["combined_categories"]  # a (1, K) cell array of names
    person["combined_categories"] = np.concatenate([cats, cats[:, :1]], axis=1)
    _save(root, raw)
    recs = read_emotic_annotations(root, "val")
    clean = read_emotic_annotations(syn.root, "val")
    assert recs.summary.skipped["invalid_image_size"] == n_size
    assert recs.summary.flagged["vad_out_of_range"] == 1
    assert recs.summary.flagged.get("duplicate_category", 0) == 1
    r = next(r for r in recs if (r.image_index, r.person_index) == (1, 0))
    c = next(r for r in clean if (r.image_index, r.person_index) == (1, 0))
    assert math.isnan(r.vad[0]) and r.categories == c.categories


def test_cache_build_counts_unusable_images_and_goes_on(syn, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    recs = read_emotic_annotations(root, "train")
    by_image = collections.Counter(r.image_path for r in recs)
    paths = sorted(by_image)
    Image.new("RGB", (8, 6)).save(paths[0], "JPEG")  # smaller than its boxes
    Path(paths[1]).write_bytes(Path(paths[1]).read_bytes()[:50])  # truncated
    Image.new("RGB", (400, 400)).save(paths[2], "JPEG")  # over max_pixels below
    out = tmp_path / "cache"
    n = build_emotic_cache(root, out, splits=("train",), size=16, progress=False,
                           max_pixels=300 * 300, flush_every=1)  # fmt: skip
    ds = EmoticDataset(out, "train")
    skipped = ds.summary.skipped
    assert skipped["unreadable_image"] == by_image[paths[1]]
    assert skipped["image_too_large"] == by_image[paths[2]]
    small = [r for r in recs if r.image_path == paths[0]]
    assert skipped["box_outside_image"] == len(small)  # every box reaches past 8 x 6
    n_bad = sum(skipped.get(k, 0) for k in cache_mod.BUILD_SKIP_REASONS)
    assert n["train"] == len(ds) == len(recs) - n_bad
    assert all(r.image_path not in paths[1:3] for r in ds.records)
    for i in range(len(ds)):
        assert ds[i]["body"].shape == (3, 16, 16)
    # the same build under the strict policy stops at the first unusable image
    with pytest.raises(BadRecordError):
        build_emotic_cache(root, tmp_path / "strict", splits=("train",), size=16, progress=False,
                           max_pixels=300 * 300, on_bad_record="error")  # fmt: skip


def test_cache_skips_survive_a_resume(syn, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    recs = read_emotic_annotations(root, "train")
    first = recs[0].image_path
    Path(first).write_bytes(b"not an image")
    out = tmp_path / "cache"
    calls = {"n": 0}
    real = cache_mod._commit

    def dying_commit(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed after the bad image was committed
        return result

    monkeypatch.setattr(cache_mod, "_commit", dying_commit)
    with pytest.raises(KeyboardInterrupt):
        build_emotic_cache(root, out, splits=("train",), size=16, progress=False, flush_every=1)
    monkeypatch.setattr(cache_mod, "_commit", real)
    build_emotic_cache(root, out, splits=("train",), size=16, progress=False, flush_every=1)
    ds = EmoticDataset(out, "train")
    n_first = sum(r.image_path == first for r in recs)
    assert ds.summary.skipped["unreadable_image"] == n_first
    assert all(r.image_path != first for r in ds.records)


# ============================================================ images
@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "P", "PA", "LA", "RGBA", "CMYK", "1"])
def test_images_decode_in_every_mode(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    gray8 = rng.integers(0, 256, (6, 5)).astype(np.uint8)
    if mode in ("I;16", "I"):
        img = Image.fromarray(gray8.astype(np.uint16) * 257)  # mode I;16
        img = img if mode == "I;16" else img.convert("I")
        want = np.repeat(gray8[..., None], 3, axis=2)
    elif mode == "F":
        img = Image.fromarray(gray8.astype(np.float32) / 255.0)  # mode F
        want = np.repeat(gray8[..., None], 3, axis=2)
    else:
        img = Image.fromarray(np.repeat(gray8[..., None], 3, axis=2), "RGB").convert(mode)
        want = np.asarray(img.convert("RGB"))
    path = tmp_path / ("x.tif" if mode in ("F", "I", "CMYK", "PA") else "x.png")
    img.save(path)
    got = np.asarray(load_image_rgb(path))
    assert got.shape == (6, 5, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, mode


def test_a_16_bit_png_named_jpg_is_not_white(tmp_path: Path) -> None:
    ramp = (np.arange(30).reshape(5, 6) * 2000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")  # a 16-bit grayscale PNG
    (tmp_path / "a.png").rename(tmp_path / "a.jpg")
    got = np.asarray(load_image_rgb(tmp_path / "a.jpg"))[..., 0]
    assert np.array_equal(got, np.round(ramp / 257).astype(np.uint8))


def test_oversized_images_are_refused_before_decoding(tmp_path: Path) -> None:
    Image.new("L", (1000, 1000)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError, match=r"big\.png: 1000 x 1000"):
        load_image_rgb(tmp_path / "big.png", max_pixels=999_999)
    assert load_image_rgb(tmp_path / "big.png", max_pixels=None).size == (1000, 1000)
    # above Pillow's own bomb limit: still our error, naming the file
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 100_000
    try:
        with pytest.raises(ImageTooLargeError, match=r"big\.png"):
            load_image_rgb(tmp_path / "big.png", max_pixels=None)
    finally:
        Image.MAX_IMAGE_PIXELS = old


# ============================================================ corrupted files, every kind
def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip_head":
        b = bytearray(data)
        b[min(8, len(b) - 1)] ^= 0xFF
        path.write_bytes(bytes(b))
    elif how == "flip_mid":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x5A
        path.write_bytes(bytes(b))
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(len(data)).bytes(len(data)))
    elif how == "text":
        path.write_bytes(b"\xff\xfe not what you expected \x00\n")
    elif how == "directory":
        path.unlink()
        path.mkdir()
    else:  # pragma: no cover
        raise ValueError(how)


CORRUPTIONS = ("empty", "truncate", "flip_head", "flip_mid", "garbage", "text", "directory")


def _serve_dataset(source: Path) -> tuple[list, dict]:
    ds = EmoticDataset(source, "val", size=16)
    samples = []
    for i in range(len(ds)):
        s = ds[i]
        samples.append({k: s[k].clone() for k in ("body", "context", "categories", "vad")})
    return samples, dict(ds.summary.skipped)


def _serve_cache(source: Path) -> tuple[list, dict]:
    verify_emotic_cache(source)  # the full check: every checksum
    return _serve_dataset(source)


def _serve_model(source: Path) -> tuple[list, dict]:
    model = DAGNet.from_pretrained(source)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    config, _ = predict_command.read_inference_config(source)
    return [{"logits": model.forward_logits(x, x).detach()}, config], {}


def _equal(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
    return a == b


def _labels_only(samples: list) -> list:
    return [{k: s[k] for k in ("categories", "vad")} for s in samples if "categories" in s]


def _outcome(folder: Path, name: str, how: str, serve: Callable, baseline) -> str:
    _corrupt(folder / name, how)
    try:
        samples, skipped = serve(folder)
    except DAGNetError as err:
        assert name in str(err), f"{name}/{how}: the error does not name the file: {err}"
        assert "\n" not in str(err).strip() or "Traceback" not in str(err)
        return "named"
    except Exception as err:
        pytest.fail(f"{name}/{how}: {type(err).__name__} is not a library error: {err}")
    base_samples, base_skipped = baseline
    if sum(skipped.values()) > sum(base_skipped.values()):
        return "counted"
    if _equal(samples, base_samples):
        return "same"
    # Labels must never change silently; pixels can, in formats without checksums.
    assert _equal(_labels_only(samples), _labels_only(base_samples)), (
        f"{name}/{how}: labels changed silently"
    )
    return "undetectable"


def _targets(syn, pre_dir: Path, cache_dir: Path, model_dir: Path):
    image = read_emotic_annotations(syn.root, "val")[0].image_path
    image_rel = os.path.relpath(image, syn.root)
    return [
        ("official", syn.root, "Annotations/Annotations.mat", _serve_dataset, ()),
        ("official", syn.root, image_rel, _serve_dataset, ("flip_mid",)),
        ("preprocessed", pre_dir, "val.csv", _serve_dataset, ()),
        ("preprocessed", pre_dir, "val_cat_arr.npy", _serve_dataset, ()),
        ("preprocessed", pre_dir, "val_cont_arr.npy", _serve_dataset, ()),
        ("preprocessed", pre_dir, "val_body_arr.npy", _serve_dataset, ("flip_mid",)),
        ("preprocessed", pre_dir, "val_context_arr.npy", _serve_dataset, ("flip_mid",)),
        ("cache", cache_dir, "emotic_cache.json", _serve_cache, ()),
        ("cache", cache_dir, "val_records.json", _serve_cache, ()),
        *[("cache", cache_dir, f"val_{k}.npy", _serve_cache, ())
          for k in ("body", "context", "bbox", "image_of", "done")],
        ("model", model_dir, "config.json", _serve_model, ()),
        ("model", model_dir, "model.safetensors", _serve_model, ()),
        ("model", model_dir, "inference.json", _serve_model, ()),
    ]


def test_every_corrupted_file_is_named_or_counted(syn, pre_dir, cache_dir, model_dir,
                                                  tmp_path: Path) -> None:  # fmt: skip
    tally: collections.Counter = collections.Counter()
    for layout, src, name, serve, may_be_undetectable in _targets(syn, pre_dir, cache_dir,
                                                                  model_dir):  # fmt: skip
        baseline = serve(src)
        for how in CORRUPTIONS:
            folder = tmp_path / f"{layout}-{Path(name).name}-{how}"
            shutil.copytree(src if layout != "official" else syn.root, folder)
            outcome = _outcome(folder, name, how, serve, baseline)
            if outcome == "undetectable":
                assert how in may_be_undetectable, f"{name}/{how}: served different data silently"
            tally[outcome] += 1
            shutil.rmtree(folder)
    total = sum(tally.values())
    print(f"\ncorrupted-file cases: {total}, outcomes: {dict(tally)}")
    assert total == 17 * len(CORRUPTIONS)
    assert tally["named"] >= 0.8 * total


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.sampled_from(PREPROCESSED_COLUMNS[3:7]), value=st.text(max_size=40))
@example(cell=PREPROCESSED_COLUMNS[3], value="\x00")  # a NUL, every run
def test_fuzzed_csv_cells_are_kept_or_counted(pre_dir: Path, tmp_path_factory, cell: str,
                                              value: str) -> None:  # fmt: skip
    import csv

    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(pre_dir, folder, dirs_exist_ok=True)
    with open(folder / "val.csv", newline="") as f:
        rows = list(csv.reader(f))
    rows[1][PREPROCESSED_COLUMNS.index(cell)] = value
    buffer = io.StringIO()
    try:
        csv.writer(buffer).writerows(rows)
        text = buffer.getvalue()
    except csv.Error:  # Python 3.10's writer refuses a NUL, which other tools do write
        token = uuid.uuid4().hex
        rows[1][PREPROCESSED_COLUMNS.index(cell)] = token
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        text = buffer.getvalue().replace(token, '"' + value.replace('"', '""') + '"')
    (folder / "val.csv").write_bytes(text.encode("utf-8"))
    good = read_emotic_preprocessed(pre_dir, "val")
    try:
        pre = read_emotic_preprocessed(folder, "val")
    except CorruptFileError as err:  # e.g. a NUL byte that the csv module refuses
        assert "val.csv" in str(err)
        return
    summary = pre.records.summary
    changed = sum(summary.skipped.values()) - sum(good.records.summary.skipped.values())
    assert changed in (0, 1)
    if changed == 0:  # kept: it parsed to a valid row, so it is a sane record
        rec = pre.records[pre.rows.tolist().index(0)] if 0 in pre.rows.tolist() else None
        if rec is not None:
            x1, y1, x2, y2 = rec.bbox
            assert 0 <= x1 < x2 <= rec.image_size[0] and 0 <= y1 < y2 <= rec.image_size[1]
            assert all(math.isnan(v) or 1 <= v <= 10 for v in rec.vad)


# ============================================================ configs and the public API
@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("partition", 1000, "partition=...) must be at most 32"),
        ("gcn_hidden", [10**9], "gcn_hidden=...) must be at most 16,384"),
        ("gcn_hidden", "1024", "gcn_hidden=...) must be a sequence of ints"),
        ("dropout", "0.5", "dropout=...) must be a number"),
        ("use_bam", "yes", "use_bam=...) must be True or False"),
        ("num_classes", 0, "num_classes=...) must be an int >= 1"),
        ("gcn_readout", "median", "gcn_readout=...) must be one of"),
        ("parition", 4, "unknown option 'parition' (did you mean 'partition'?)"),
    ],
)
def test_hostile_config_json_is_refused_before_allocating(model_dir: Path, tmp_path: Path,
                                                          field: str, value, match: str) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"][field] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError,
                       match=r"config\.json: invalid model config: .*" + re.escape(match)):
        DAGNet.from_pretrained(folder)


def test_api_names_what_it_wants() -> None:
    with pytest.raises(UnknownOptionError, match=r"'parition' \(did you mean 'partition'\?\)"):
        build_dagnet("test_resnet", "test_resnet", parition=6)
    with pytest.raises(UnknownOptionError, match=r"'gcn_hiden' \(did you mean 'gcn_hidden'\?\)"):
        build_dagnet("test_resnet", "test_resnet", gcn_hiden=(8,))
    with pytest.raises(ConfigError, match="dropout"):
        build_dagnet("test_resnet", "test_resnet", dropout="0.1")
    model = build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,))
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(TypeError, match=r"floating-point tensor .* got torch.uint8"):
        model((x * 255).to(torch.uint8), x)
    with pytest.raises(ValueError, match="training mode needs a batch of at least 2"):
        model(x[:1], x[:1])
    meta = torch.empty(2, 3, 32, 32, device="meta")  # was "Tensor on device cpu is not on
    for body, context, name in ((meta, x, "body"), (x, meta, "context")):  # the expected..."
        with pytest.raises(ValueError, match=rf"DAGNet {name} is on the meta device, the "
                           rf"model's parameters on cpu; move one .*{name}.to\('cpu'\)"):
            model(body, context)
    model.eval()
    ref = model.forward_logits(x, x)
    assert torch.allclose(model.forward_logits(x.double(), x.double()), ref)
    assert model.forward_logits(x.half(), x.half()).dtype == torch.float32


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 2.0])
def test_criterion_refuses_impossible_labels(bad: float) -> None:
    criterion = DAGNetCriterion("bce", aux_weight=0)
    target = torch.zeros(2, 26)
    target[1, 3] = bad
    with pytest.raises(ValueError, match=r"targets must be finite and in \[0, 1\].*\(1, 3\)"):
        criterion({"logits": torch.zeros(2, 26)}, {"categories": target})


# ============================================================ the command lines
def test_cache_cli_prints_one_line(syn, tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    _corrupt(root / "Annotations" / "Annotations.mat", "truncate")
    code = cache_entry([str(root), str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("dagnet-emotic-cache: error: ") and "Annotations.mat" in err
    assert "\n" not in err and "Traceback" not in err
    with pytest.raises(CorruptFileError):  # --debug shows the real exception
        cache_entry([str(root), str(tmp_path / "cache"), "--no-progress", "--debug"])


def test_train_cli_prints_one_line(syn, tmp_path: Path, capsys) -> None:
    root = tmp_path / "root"
    shutil.copytree(syn.root, root)
    _corrupt(root / "Annotations" / "Annotations.mat", "garbage")
    train = train_command
    code = train.run_cli(["--data-root", str(root), "--output-dir", str(tmp_path / "run"),
                          "--no-pretrained", "--no-progress", "--epochs", "1"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("dagnet-train: error: ") and "Annotations.mat" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_a_refusal_in_words_is_one_line_with_status_2(capsys) -> None:
    """A program's ``SystemExit("...")`` (an existing run folder, flags for another model
    on --resume...) reads like every other refusal; an exit status passes through."""
    from dagnet_layers.cli import run_cli

    def refuse(argv):
        raise SystemExit("/runs/x already holds a training run;\npass --resume")

    assert run_cli(refuse, [], prog="dagnet-train") == 2
    assert capsys.readouterr().err == ("dagnet-train: error: /runs/x already holds a "
                                       "training run; pass --resume\n")
    for code in (0, 2, None):
        def leave(argv, code=code):
            raise SystemExit(code)

        with pytest.raises(SystemExit) as info:
            run_cli(leave, [], prog="dagnet-train")
        assert info.value.code == code


def test_predict_cli_prints_one_line(model_dir: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["partition"] = 10**6
    (folder / "config.json").write_text(json.dumps(meta))
    Image.new("RGB", (40, 30)).save(tmp_path / "p.jpg")
    from dagnet_layers.commands.entry import predict_entry

    with pytest.raises(SystemExit) as info:  # argparse's usage line, then the one error line
        predict_entry(["--checkpoint", str(folder), "--image", str(tmp_path / "p.jpg"),
                       "--box", "1", "1", "20", "20", "--no-plot"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and "config.json" in err[-1] and "partition" in err[-1]
    assert err[-1].startswith("dagnet-predict: error: argument --checkpoint: ")
    assert not any("Traceback" in line for line in err)


def test_box_with_a_folder_named_like_a_photo_says_it_is_a_folder(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    """A folder ``dir.jpg`` holding one photo was told "--box is for a single photo"."""
    from dagnet_layers.commands.entry import predict_entry

    folder = tmp_path / "dir.jpg"
    folder.mkdir()
    Image.new("RGB", (40, 30)).save(folder / "p.jpg")
    box = ["--box", "1", "1", "20", "20", "--no-plot"]
    for inputs, says in (([str(folder)], f"{folder} is a folder (1 photo or video in the "
                          "inputs): give the photo's path"),
                         ([str(folder / "p.jpg")] * 2, "the inputs hold 2 photos or videos")):
        with pytest.raises(SystemExit) as info:
            predict_entry(["--checkpoint", str(model_dir), *inputs, *box])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert info.value.code == 2 and says in err, err


# ============================================== saved settings: verified or bounded (issue 33)
@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"thresholds": {"Peace": float("inf")}}, r"thresholds\['Peace'\] must be a finite"),
        ({"thresholds": {"Peace": -0.1}}, r"thresholds\['Peace'\] must be a finite"),
        ({"thresholds": {"Peace": 1.5}}, r"thresholds\['Peace'\] must be a finite"),
        ({"thresholds": {"Peacefulness": 0.5}}, r"thresholds for unknown categories \['Peace"),
        ({"thresholds": [0.5]}, "thresholds must be an object"),
        ({"mask_fill": 1e9}, r"mask_fill must be a number in \[0, 255\]"),
        ({"mask_fill": "x"}, r"mask_fill must be a number in \[0, 255\]"),
        ({"mask_body": "no"}, "mask_body must be true or false"),
        ({"image_size": 4096}, r"image_size must be an int in \[1, 1024\]"),
        ({"junk": 1}, r"unknown field\(s\) \['junk'\]"),
        ({"data": {"synthetic": "false"}}, "data.synthetic must be true or false"),
        ({"val_map": "high"}, "val_map must be a number or null"),
    ],
)
def test_hostile_inference_json_is_refused_naming_the_field(
    model_dir: Path, tmp_path: Path, fields: dict, match: str
) -> None:
    from dagnet_layers.inference import Predictor, read_inference_config

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    settings = {**json.loads((folder / "inference.json").read_text()), **fields}
    (folder / "inference.json").write_text(json.dumps(settings))
    for load in (read_inference_config, Predictor.from_checkpoint):
        with pytest.raises(CorruptFileError, match=r"inference\.json: " + match):
            load(folder)


@pytest.mark.parametrize("name", ["../../etc/passwd", "hf-hub:someone/backbone",
                                  "local-dir:/tmp/elsewhere", "resnet5O"])
def test_a_saved_backbone_name_is_checked_before_timm_sees_it(model_dir: Path, tmp_path: Path,
                                                              name: str) -> None:  # fmt: skip
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["body_backbone"] = meta["model_args"]["body_backbone"] = name
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=r"config\.json: body_backbone .* timm"):
        DAGNet.from_pretrained(folder)


def test_junk_fields_in_a_config_json_are_refused(model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["trust_remote_code"] = True
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=r"unknown field\(s\) \['trust_remote_code'\]"):
        DAGNet.from_pretrained(folder)


@pytest.mark.parametrize("what", ["nested", "huge"])
def test_a_config_json_too_deep_or_too_big_is_refused(model_dir: Path, tmp_path: Path,
                                                      what: str) -> None:  # fmt: skip
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    if what == "nested":
        text, match = '{"config": ' + "[" * 200_000 + "]" * 200_000 + "}", "nested too deeply"
    else:
        meta = json.loads((folder / "config.json").read_text())
        meta["label_names"] = ["x" * (2 << 20)]
        text, match = json.dumps(meta), "more than the 1,048,576"
    (folder / "config.json").write_text(text)
    with pytest.raises(CorruptFileError, match=r"config\.json: .*" + match):
        DAGNet.from_pretrained(folder)


def test_a_changed_digit_in_a_checkpoints_inference_json_is_caught(tmp_path: Path) -> None:
    """The manifest's checksum covers inference.json: a predictor refuses the edited file."""
    from dagnet_layers.emotic.engine import save_checkpoint
    from dagnet_layers.inference import Predictor
    from dagnet_layers.storage import IntegrityError

    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                         patch_channels=(4, 4), fusion_hidden=8)  # fmt: skip
    folder = save_checkpoint(tmp_path / "ckpt", model, epoch=0, extra={"inference": {
        "image_size": 32, "score": "softmax", "thresholds": {"Peace": 0.25}}})
    assert Predictor.from_checkpoint(folder).thresholds == {"Peace": 0.25}
    path = folder / "inference.json"
    path.write_text(path.read_text().replace("0.25", "0.35"))  # still valid, now wrong
    with pytest.raises(IntegrityError, match=r"inference\.json"):
        Predictor.from_checkpoint(folder)


# ============================================== offline detectors and inputs (issue 33)
def _offline(monkeypatch, tmp_path: Path) -> None:
    """No cached detector weights, and the download fails as it does with no network."""
    import urllib.error

    import torchvision.models._api as tv_api

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_network)


def test_an_unavailable_detector_is_one_line_naming_the_commands_own_options(
    model_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from dagnet_layers.commands import predict
    from dagnet_layers.commands.args import build_demo_parser
    from dagnet_layers.commands.entry import predict_entry

    _offline(monkeypatch, tmp_path)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (40, 30)).save(tmp_path / name)
    code = predict_entry(["--checkpoint", str(model_dir), "--detector",
                          "ssdlite320_mobilenet_v3_large", "--no-progress",
                          "--output-dir", str(tmp_path / "out"), str(tmp_path / "*.jpg")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err  # no usage block
    assert err[0].startswith("dagnet-predict: error: person detector ssdlite320")
    assert "could not be downloaded" in err[0] and "--boxes-file" in err[0]
    assert "argument --detector" not in err[0]  # the user gave no wrong flag
    args = build_demo_parser().parse_args(["--checkpoint", str(model_dir), "--detector",
                                           "ssdlite320_mobilenet_v3_large"])
    with pytest.raises(WeightsUnavailableError) as info:
        predict._detector(build_demo_parser(), args, "demo")
    assert "--detector-weights FILE.pth" in str(info.value) and "--box" not in str(info.value)


def test_a_folder_and_a_glob_leave_out_the_same_non_images(tmp_path: Path) -> None:
    from collections import Counter

    from dagnet_layers.inference import expand_inputs

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (8, 8)).save(folder / name)
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    by_folder, by_glob = Counter(), Counter()
    assert expand_inputs([folder], skipped=by_folder) == sorted(folder.glob("*.[jp][pn]g"))
    assert expand_inputs([str(folder / "*")], skipped=by_glob) == expand_inputs([folder])
    assert by_folder["not_a_photo_or_video"] == by_glob["not_a_photo_or_video"] == 1
    assert by_folder["folder"] == by_glob["folder"] == 1
    (folder / "gone.jpg").symlink_to(folder / "nowhere.jpg")  # a dangling link
    by_folder, by_glob = Counter(), Counter()
    assert expand_inputs([folder], skipped=by_folder) == expand_inputs([str(folder / "*")],
                                                                       skipped=by_glob)
    assert by_folder["not_a_regular_file"] == by_glob["not_a_regular_file"] == 1
    with pytest.raises(MissingFileError, match="matches no photo or video"):
        expand_inputs([str(folder / "*.txt")])


def test_a_corrupt_cached_detector_file_is_named_not_blamed_on_the_network(
    tmp_path: Path, monkeypatch
) -> None:
    import torchvision

    from dagnet_layers.inference import TorchvisionPersonDetector

    _offline(monkeypatch, tmp_path)
    weights = torchvision.models.get_model_weights("ssdlite320_mobilenet_v3_large").DEFAULT
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a torn download")
    import torchvision.models._api as tv_api

    def load_cached(url, *args, **kwargs):  # what torchvision does with a cached file
        return torch.load(cached, weights_only=True)

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", load_cached)
    with pytest.raises(CorruptFileError, match="delete the file to download it again") as info:
        TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large")
    assert str(cached) in str(info.value) and "could not be downloaded" not in str(info.value)


def test_a_checkpoint_missing_the_inference_json_its_manifest_lists_is_refused(
    tmp_path: Path,
) -> None:
    """Falling back to the defaults (224 px, no thresholds) would change predictions."""
    from dagnet_layers.emotic.engine import save_checkpoint
    from dagnet_layers.inference import read_inference_config

    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                         patch_channels=(4, 4), fusion_hidden=8)  # fmt: skip
    folder = save_checkpoint(tmp_path / "ckpt", model, epoch=0,
                             extra={"inference": {"image_size": 32}})  # fmt: skip
    (folder / "inference.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"inference\.json"):
        read_inference_config(folder)


def test_identity_scores_may_have_thresholds_outside_zero_one(model_dir: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """A regression loss's raw outputs (score 'identity') are not probabilities."""
    from dagnet_layers.inference import read_inference_config

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "inference.json").write_text(json.dumps(
        {"image_size": 32, "score": "identity", "thresholds": {"Peace": -0.03}}))
    assert read_inference_config(folder)[0]["thresholds"] == {"Peace": -0.03}


def test_train_refuses_an_image_size_its_checkpoint_could_not_hold(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        train_command.main(["--image-size", "1100"])
    assert info.value.code == 2 and "--image-size: must be <= 1024" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "match"), [
    ("label_names", [["nested"]] * 26, "label_names must be a list of 26 strings"),
    ("label_names", ["a"], "label_names must be a list of 26 strings"),
    ("num_classes", 5, "num_classes must be the config's 26"),
    ("architecture", "resnet50", "architecture must be 'dagnet'"),
    ("pretrained_cfg", "x", "pretrained_cfg must be an object"),
    ("version", 2, "version must be a version string"),
])
def test_the_timm_fields_of_a_config_json_are_checked(
    model_dir: Path, tmp_path: Path, field: str, value, match: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    meta = json.loads((folder / "config.json").read_text())
    meta[field] = value
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match=r"config\.json: " + match):
        DAGNet.from_pretrained(folder)


def test_api_misuse_gets_errors_that_say_what_was_wanted() -> None:
    from dagnet_layers import create_model
    from dagnet_layers.emotic.engine import evaluate, train_one_epoch

    with pytest.raises(TypeError, match=r"create_model\(name=...\) needs a model name"):
        create_model(None)
    with pytest.raises(TypeError, match="aux_weight must be a number, got '1'"):
        DAGNetCriterion("kl", aux_weight="1")
    model = create_model("test_dagnet")
    with pytest.raises(ValueError, match=r"max_steps=...\) must be an int >= 1"):
        train_one_epoch(model, [], DAGNetCriterion("kl"), torch.optim.SGD(model.parameters()),
                        max_steps="3", progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="the loader gave no batch"):
        evaluate(model, [], score="softmax", progress=False)
    with pytest.raises(UnknownOptionError, match=r"body_backbone_kwargs \['bogus_option'\]"):
        build_dagnet("test_resnet", "test_resnet", body_backbone_kwargs={"bogus_option": 1})


@pytest.mark.parametrize(("content", "match"), [
    ('{"a.jpg": ["1357"]}', "4 finite numbers"),
    ('{"a.jpg": [[true, 1, 20, 20]]}', "4 finite numbers"),
    ('{"a.jpg": [[30, 1, 20, 20]]}', "x1 < x2"),
    ('{"a.jpg": [["1", "2", "30", "40"]]}', None),  # numbers written as strings: fine
])
def test_boxes_are_numbers_checked(tmp_path: Path, content: str, match: str | None) -> None:
    from dagnet_layers.inference import read_boxes_file

    (tmp_path / "boxes.json").write_text(content)
    if match is None:
        assert read_boxes_file(tmp_path / "boxes.json") == {"a.jpg": [[1.0, 2.0, 30.0, 40.0]]}
        return
    with pytest.raises(BadRecordError, match=match):
        read_boxes_file(tmp_path / "boxes.json")


def test_a_huge_csv_field_names_the_boxes_file(tmp_path: Path) -> None:
    from dagnet_layers.inference import read_boxes_file

    (tmp_path / "boxes.csv").write_text("image,x1,y1,x2,y2\n" + "a" * 200_000 + ",1,2,3,4\n")
    with pytest.raises(CorruptFileError, match=r"boxes\.csv: not a boxes CSV"):
        read_boxes_file(tmp_path / "boxes.csv")


def test_one_photos_box_off_the_image_is_an_error_not_no_person(
    model_dir: Path, tmp_path: Path, capsys
) -> None:
    from dagnet_layers.commands.entry import predict_entry

    Image.new("RGB", (40, 30)).save(tmp_path / "p.jpg")
    (tmp_path / "boxes.json").write_text('{"p.jpg": [[100, 100, 120, 130]]}')
    with pytest.raises(SystemExit) as info:
        predict_entry(["--checkpoint", str(model_dir), str(tmp_path / "p.jpg"), "--boxes-file",
                       str(tmp_path / "boxes.json"), "--no-plot"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2 and "lies outside the 40x30 image" in err


def test_open_in_root_accepts_a_root_given_through_a_link_or_relative(
    tmp_path: Path, monkeypatch
) -> None:
    from dagnet_layers.storage import open_in_root

    real = tmp_path / "disk" / "emotic"
    real.mkdir(parents=True)
    (real / "a.jpg").write_bytes(b"jpeg")
    (tmp_path / "data").symlink_to(tmp_path / "disk")  # /data -> /mnt/disk, say
    monkeypatch.chdir(tmp_path)
    for root in (tmp_path / "data" / "emotic", Path("data/emotic"), Path("disk/emotic")):
        with open_in_root(root / "a.jpg", root) as f:
            assert f.read() == b"jpeg"
    os.mkfifo(real / "fifo.jpg")  # a reader must not block on it
    with pytest.raises(MissingFileError, match="not a regular file"):
        open_in_root(real / "fifo.jpg", real)
