"""Tests of the EMOTIC readers, dataset, cache and synthetic data (dagnet_layers.emotic.data).

Everything runs on a small synthetic EMOTIC written once per session in a temporary
folder; no timing is asserted.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from dagnet_layers.commands.entry import cache_entry
from dagnet_layers.emotic.data import (
    CONTEXT_SHAPES,
    EMOTIC_CATEGORIES,
    SYNTHETIC_CUES,
    TORSO_COLOURS,
    EmoticDataset,
    EmoticRecord,
    build_emotic_cache,
    cache_is_complete,
    clamp_bbox,
    crop_body_and_context,
    detect_layout,
    emotic_eval_transform,
    emotic_train_transform,
    labels_to_multihot,
    load_image_rgb,
    make_synthetic_emotic,
    read_emotic_annotations,
    read_emotic_preprocessed,
    write_emotic_preprocessed,
)
from dagnet_layers.emotic.data import cache as cache_mod
from dagnet_layers.emotic.data.cache import verify_emotic_cache
from dagnet_layers.errors import BadRecordError
from dagnet_layers.storage import FolderLock, FolderLockedError, IntegrityError, StorageError

SPLITS = ("train", "val", "test")
W, H = 160, 120


@pytest.fixture(scope="session")
def syn(tmp_path_factory: pytest.TempPathFactory):
    return make_synthetic_emotic(tmp_path_factory.mktemp("syn"), n_images=40, seed=3,
                                 image_size=(W, H))  # fmt: skip


@pytest.fixture(scope="session")
def cache_dir(syn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    build_emotic_cache(syn, out, size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def pre_dir(syn, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    write_emotic_preprocessed(syn, out)
    return out


def _copy_root(syn, dst: Path) -> Path:
    shutil.copytree(syn.root, dst)
    return dst


def _same_vad(a, b) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------- reader
@pytest.mark.parametrize("split", SPLITS)
def test_synthetic_read_back_exactly(syn, split: str) -> None:
    recs = read_emotic_annotations(syn, split)
    expected = syn.expected_records(split)
    assert len(recs) == len(expected)
    assert recs.summary.n_images == syn.n_images[split]
    assert recs.summary.n_persons == syn.n_persons[split]
    assert recs.summary.skipped == syn.expected_skips[split]
    assert recs.summary.n_kept == len(recs)
    for r, q in zip(recs, expected, strict=True):
        assert (r.image_index, r.person_index, r.filename) == (q.image_index, q.person_index,
                                                               q.filename)  # fmt: skip
        assert r.categories == q.categories
        assert _same_vad(r.vad, q.vad)
        assert r.bbox == clamp_bbox(q.bbox, W, H)[0]
        assert r.image_size == (W, H)
        assert Path(r.image_path).is_file()
        assert r.image_path.endswith(f"emotic/{r.folder}/{r.filename}")
        assert r.gender in ("Male", "Female") and r.age in ("Adult", "Teenager", "Kid")


def test_quirks_are_planted_and_handled(syn) -> None:
    for quirk, places in syn.quirks.items():
        assert places, f"quirk {quirk} not planted"
    train = read_emotic_annotations(syn, "train")
    by_key = {(r.split, r.image_index, r.person_index): r for r in train}
    # lone person with a lone category: scipy squeezes both; still one record, one name
    lone = by_key[("train", 0, 0)]
    assert len(lone.categories) == 1
    assert not any(k[1] == 0 and k[2] > 0 for k in by_key)
    # past the edge: clamped to the image, kept and flagged
    past = by_key[("train", 2, 0)]
    raw = next(q.bbox for q in syn.persons if (q.split, q.image_index, q.person_index)
               == ("train", 2, 0))  # fmt: skip
    assert raw[2] > W and raw[1] < 0 and raw[2] != int(raw[2])
    assert past.bbox[2] == W and past.bbox[1] == 0
    assert train.summary.flagged["bbox_clamped"] >= 1
    # empty after clamping and no category: skipped, never returned
    for split, i, p in syn.quirks["empty_bbox"] + syn.quirks["no_category"]:
        if split == "train":
            assert ("train", i, p) not in by_key
    # NaN continuous values: kept, NaN in place, counted
    nan_kept = [r for r in train if r.vad_missing]
    assert nan_kept and train.summary.flagged["vad_missing"] == len(nan_kept)
    assert all(r.categories for r in nan_kept)
    # several annotators on val/test, one on train
    val = read_emotic_annotations(syn, "val")
    assert max(r.n_annotators for r in val) > 1
    assert {r.n_annotators for r in train} == {1}


def test_skips_are_logged(syn, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dagnet_layers.emotic.data.records"):
        read_emotic_annotations(syn, "train")
    assert any("skipped" in m and "no_category=" in m and "empty_bbox=1" in m
               for m in caplog.messages)  # fmt: skip


def test_missing_image_is_an_error_naming_it(syn, tmp_path: Path) -> None:
    root = _copy_root(syn, tmp_path / "root")
    victim = read_emotic_annotations(root, "val")[0]
    Path(victim.image_path).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of \d+ val images are missing") as err:
        read_emotic_annotations(root, "val")
    assert victim.filename in str(err.value)
    recs = read_emotic_annotations(root, "val", on_missing_image="skip")
    n_gone = sum(1 for q in syn.expected_records("val") if q.filename == victim.filename)
    assert recs.summary.skipped["missing_image"] == n_gone
    assert all(r.filename != victim.filename for r in recs)


def test_bad_inputs_give_clear_errors(syn, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        read_emotic_annotations(syn, "validation")
    with pytest.raises(FileNotFoundError, match=r"Annotations\.mat"):
        read_emotic_annotations(tmp_path, "train")
    mat_path = syn.root / "Annotations" / "Annotations.mat"
    for name, payload in [("corrupt", b"MATLAB 5.0 MAT-file junk" + bytes(300)),
                          ("truncated", mat_path.read_bytes()[: mat_path.stat().st_size // 3])]:
        (tmp_path / name / "Annotations").mkdir(parents=True)
        (tmp_path / name / "Annotations" / "Annotations.mat").write_bytes(payload)
        with pytest.raises(ValueError, match="corrupt or truncated"):
            read_emotic_annotations(tmp_path / name, "train", check_images=False)
    raw = scipy.io.loadmat(mat_path)
    only_train = tmp_path / "only_train"
    (only_train / "Annotations").mkdir(parents=True)
    scipy.io.savemat(only_train / "Annotations" / "Annotations.mat", {"train": raw["train"]})
    with pytest.raises(ValueError, match=r"no 'val' split; it holds \['train'\]"):
        read_emotic_annotations(only_train, "val")


def test_unknown_category_names_person_and_image(syn, tmp_path: Path) -> None:
    root = _copy_root(syn, tmp_path / "root")
    mat_path = root / "Annotations" / "Annotations.mat"
    raw = scipy.io.loadmat(mat_path)
    image = raw["train"][0, 1]
    person = image["person"][0, 0]
    person["annotations_categories"][0, 0]["categories"][0, 0] = np.array(["Joy"])
    scipy.io.savemat(mat_path, {k: v for k, v in raw.items() if not k.startswith("__")})
    filename = str(image["filename"][0])
    with pytest.raises(BadRecordError, match=rf"train person 0 in image {filename} .*'Joy'"):
        read_emotic_annotations(root, "train", on_bad_record="error")
    # the default policy skips the person and counts it by its reason
    clean = read_emotic_annotations(syn.root, "train")
    recs = read_emotic_annotations(root, "train")
    assert recs.summary.skipped["unknown_category"] == 1
    assert len(recs) == len(clean) - 1
    assert (1, 0) not in {(r.image_index, r.person_index) for r in recs}


def test_clamp_and_multihot_basics() -> None:
    assert clamp_bbox([10.9, 5, 20.2, 30], 100, 100) == ((10, 5, 20, 30), False)
    assert clamp_bbox([-1, -1, 500, 500], 64, 48) == ((0, 0, 64, 48), True)
    assert clamp_bbox([70, 10, 90, 20], 64, 48) == ((64, 10, 64, 20), True)
    with pytest.raises(ValueError, match="four finite"):
        clamp_bbox([1, 2, 3], 10, 10)
    assert labels_to_multihot(EMOTIC_CATEGORIES).sum() == 26
    with pytest.raises(ValueError, match="unknown EMOTIC category 'Joy'"):
        labels_to_multihot(["Joy"])


def test_record_dict_round_trip(syn) -> None:
    r = next(r for r in read_emotic_annotations(syn, "train") if r.vad_missing)
    back = EmoticRecord.from_dict(r.to_dict())
    assert back.bbox == r.bbox and back.categories == r.categories
    assert _same_vad(back.vad, r.vad)


# ----------------------------------------------------------------------------- synthetic
def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_is_deterministic(tmp_path: Path) -> None:
    a = make_synthetic_emotic(tmp_path / "a", n_images=12, seed=5, image_size=(64, 48))
    b = make_synthetic_emotic(tmp_path / "b", n_images=12, seed=5, image_size=(64, 48))
    c = make_synthetic_emotic(tmp_path / "c", n_images=12, seed=6, image_size=(64, 48))
    assert _digest(a.root) == _digest(b.root) != _digest(c.root)
    assert repr(a.persons) == repr(b.persons)  # NaN != NaN, reprs compare


def test_synthetic_bytes_do_not_depend_on_the_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # scipy's savemat writes time.asctime() into the MAT header: two writes a second
    # apart used to differ byte for byte (seen as a flaky determinism test in CI).
    import time

    import scipy.io

    a = make_synthetic_emotic(tmp_path / "a", n_images=12, seed=5, image_size=(64, 48))
    monkeypatch.setattr(time, "asctime", lambda *_: "Thu Jan  1 00:00:00 1970")
    b = make_synthetic_emotic(tmp_path / "b", n_images=12, seed=5, image_size=(64, 48))
    assert _digest(a.root) == _digest(b.root)
    mat = a.root / "Annotations" / "Annotations.mat"
    assert mat.read_bytes()[:116].rstrip().endswith(b"synthetic EMOTIC writer")
    assert set(scipy.io.loadmat(mat)) >= {"train", "val", "test"}  # still a MAT file


@pytest.mark.slow
def test_synthetic_default_size_covers_every_category(tmp_path: Path) -> None:
    info = make_synthetic_emotic(tmp_path / "d", seed=0)
    assert 300 <= sum(info.n_persons.values()) <= 600
    train = read_emotic_annotations(info, "train").multihot()
    assert (train.sum(0) >= 3).all(), dict(zip(EMOTIC_CATEGORIES, train.sum(0), strict=True))
    for split in ("val", "test"):
        assert read_emotic_annotations(info, split).multihot().sum(0).min() >= 1
    assert set(SYNTHETIC_CUES) == set(EMOTIC_CATEGORIES)
    assert {v for v in SYNTHETIC_CUES.values()} == {"body", "context", "body+context"}


def test_synthetic_cues_are_in_body_and_context(syn) -> None:
    """Torso colours are in the body crop; context shapes are outside the person box."""
    recs = read_emotic_annotations(syn, "train")
    truth = {(q.image_index, q.person_index): q for q in syn.persons if q.split == "train"}
    gray = {i for s, i, _ in syn.quirks["grayscale"] + syn.quirks["cmyk"] if s == "train"}
    checked_body = checked_ctx = 0
    for r in recs:
        if r.image_index in gray:
            continue
        q = truth[(r.image_index, r.person_index)]
        img = np.asarray(load_image_rgb(r.image_path)).astype(int)
        x1, y1, x2, y2 = r.bbox
        colour = [c for c in q.body_cues if c in TORSO_COLOURS]
        plain = len(colour) == len(q.body_cues)  # no black pattern over the torso
        if colour and plain and x2 - x1 > 10:
            torso = img[y1 + (y2 - y1) // 4 : y1 + (y2 - y1) // 2, x1 + 2 : x2 - 2]
            dist = np.abs(torso - np.array(TORSO_COLOURS[colour[0]])).sum(-1)
            assert (dist < 60).mean() > 0.5, (r.filename, colour)
            checked_body += 1
        outside = np.ones(img.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        for cue in q.context_cues:
            if cue in CONTEXT_SHAPES:
                dist = np.abs(img - np.array(CONTEXT_SHAPES[cue][1])).sum(-1)
                assert ((dist < 60) & outside).sum() > 30, (r.filename, cue)
                checked_ctx += 1
    assert checked_body > 5 and checked_ctx > 5


# ----------------------------------------------------------------------------- dataset
def test_dataset_sample_contract(syn) -> None:
    ds = EmoticDataset(syn, "val", size=48)
    assert ds.layout == "official" and len(ds) == len(syn.expected_records("val"))
    s = ds[1]
    assert set(s) == {"body", "context", "categories", "vad", "index", "bbox"}
    assert s["body"].shape == s["context"].shape == (3, 48, 48)
    assert s["body"].dtype == s["context"].dtype == torch.uint8
    assert s["categories"].dtype == torch.float32 and s["categories"].shape == (26,)
    assert s["vad"].dtype == torch.float32 and s["vad"].shape == (3,)
    assert s["index"].dtype == torch.int64 and s["index"].item() == 1
    rec = ds.records[1]
    np.testing.assert_array_equal(s["categories"].numpy(), rec.multihot())
    expected_box = np.array(rec.bbox, np.float32) * np.array([48 / W, 48 / H] * 2, np.float32)
    np.testing.assert_allclose(s["bbox"].numpy(), expected_box, rtol=1e-6)
    batch = default_collate([ds[i] for i in range(4)])
    assert batch["body"].shape == (4, 3, 48, 48) and batch["index"].tolist() == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_body_is_the_crop_and_context_is_masked(syn) -> None:
    ds = EmoticDataset(syn, "train", size=32)
    unmasked = EmoticDataset(syn, "train", size=32, mask_body=False, records=ds.records)
    i = 2
    rec = ds.records[i]
    body, context, box = crop_body_and_context(load_image_rgb(rec.image_path), rec.bbox, 32)
    s, u = ds[i], unmasked[i]
    assert torch.equal(s["body"], torch.from_numpy(body))
    assert torch.equal(u["context"], torch.from_numpy(context))
    x1, y1 = math.floor(box[0]), math.floor(box[1])
    x2, y2 = math.ceil(box[2]), math.ceil(box[3])
    assert (s["context"][:, y1:y2, x1:x2] == 0).all()
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[y1:y2, x1:x2] = False
    assert torch.equal(s["context"][:, outside], u["context"][:, outside])


def test_grayscale_and_cmyk_decode_to_rgb(syn) -> None:
    ds = EmoticDataset(syn, "train", size=32)
    for split, i, _ in syn.quirks["grayscale"] + syn.quirks["cmyk"]:
        if split != "train":
            continue
        idx = next(k for k, r in enumerate(ds.records) if r.image_index == i)
        path = ds.records[idx].image_path
        assert Image.open(path).mode in ("L", "CMYK")
        assert ds[idx]["body"].shape == (3, 32, 32)
        assert load_image_rgb(path).mode == "RGB"


def test_transforms_in_dataset_and_loader(syn) -> None:
    ds = EmoticDataset(syn, "train", size=40, transform=emotic_train_transform(size=32))
    batch = next(iter(DataLoader(ds, batch_size=5, shuffle=True, num_workers=0)))
    assert batch["body"].shape == (5, 3, 32, 32) and batch["body"].dtype == torch.float32
    assert batch["bbox"].dtype == torch.float32
    assert (batch["bbox"] >= 0).all() and (batch["bbox"] <= 32).all()
    ev = EmoticDataset(syn, "val", size=32, transform=emotic_eval_transform(32))
    assert ev[0]["context"].dtype == torch.float32
    assert torch.isnan(ds.vad).any()  # NaN VAD persons survive to the dataset


def test_decode_error_names_file(syn, tmp_path: Path) -> None:
    root = _copy_root(syn, tmp_path / "root")
    ds = EmoticDataset(root, "test", size=16)
    Path(ds.records[0].image_path).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=rf"{ds.records[0].filename}: cannot decode the image"):
        ds[0]


def test_unknown_folder_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an EMOTIC folder"):
        EmoticDataset(tmp_path, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        EmoticDataset(tmp_path, "dev")


# ----------------------------------------------------------------------------- cache
@pytest.mark.parametrize("split", SPLITS)
def test_cache_equals_jpeg_path(syn, cache_dir: Path, split: str) -> None:
    jpeg = EmoticDataset(syn, split, size=64)
    cached = EmoticDataset(cache_dir, split)
    assert cached.layout == "cache" and cached.size == 64 and len(cached) == len(jpeg)
    assert cached.summary.skipped == jpeg.summary.skipped
    for i in range(len(jpeg)):
        a, b = jpeg[i], cached[i]
        for key in ("body", "context", "categories", "index", "bbox"):
            assert torch.equal(a[key], b[key]), (split, i, key)
        assert torch.equal(torch.isnan(a["vad"]), torch.isnan(b["vad"]))


def test_cache_dir_argument_builds_transparently(syn, tmp_path: Path, capsys) -> None:
    ds = EmoticDataset(syn, "val", size=24, cache_dir=tmp_path / "c", progress=False)
    assert "EMOTIC val cache" not in capsys.readouterr().err  # dagnet-train --no-progress
    assert ds.layout == "cache" and cache_is_complete(tmp_path / "c", "val", size=24)
    EmoticDataset(syn, "test", size=24, cache_dir=tmp_path / "c")
    assert "EMOTIC test cache" in capsys.readouterr().err  # a bar by default
    assert not cache_is_complete(tmp_path / "c", "train")
    again = EmoticDataset(syn, "val", size=24, cache_dir=tmp_path / "c")
    assert torch.equal(again[0]["body"], ds[0]["body"])
    with pytest.raises(ValueError, match="holds 24 px images, not 32 px"):
        build_emotic_cache(syn, tmp_path / "c", splits=("val",), size=32, progress=False)


def test_cache_resumes_after_interruption(syn, cache_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "c"
    real = cache_mod._ImageJobs.__getitem__
    calls = {"n": 0}

    def flaky(self, j):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # stands for a killed process
        return real(self, j)

    monkeypatch.setattr(cache_mod._ImageJobs, "__getitem__", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_emotic_cache(syn, out, splits=("train",), size=64, flush_every=2, progress=False)
    assert not cache_is_complete(out, "train")
    done = np.load(out / "train_done.npy")
    assert 0 < done.sum() < done.size
    monkeypatch.setattr(cache_mod._ImageJobs, "__getitem__", real)
    calls["n"] = 0
    counting = {"n": 0}

    def count(self, j):
        counting["n"] += 1
        return real(self, j)

    monkeypatch.setattr(cache_mod._ImageJobs, "__getitem__", count)
    build_emotic_cache(syn, out, splits=("train",), size=64, progress=False)
    assert cache_is_complete(out, "train")
    assert counting["n"] < syn.n_images["train"]  # only the rest was decoded
    for name in ("body", "context", "bbox", "image_of"):
        np.testing.assert_array_equal(np.load(out / f"train_{name}.npy"),
                                      np.load(cache_dir / f"train_{name}.npy"))  # fmt: skip


def test_cache_records_its_decoder_and_a_resume_under_another(
    syn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Pillow's resize changed its pass order between releases: a split whose rows were
    # written by two versions must say so, in the log and in the manifest.
    out = tmp_path / "c"
    here = cache_mod._decoder()
    assert here.startswith(f"Pillow {PIL.__version__}, libjpeg")
    real = cache_mod._ImageJobs.__getitem__
    calls = {"n": 0}

    def flaky(self, j):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, j)

    monkeypatch.setattr(cache_mod._ImageJobs, "__getitem__", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_emotic_cache(syn, out, splits=("val",), size=16, flush_every=1, progress=False)
    manifest = json.loads((out / cache_mod.CACHE_MANIFEST).read_text())
    assert manifest["splits"]["val"]["decoders"] == [here]
    monkeypatch.setattr(cache_mod._ImageJobs, "__getitem__", real)
    monkeypatch.setattr(cache_mod, "_decoder", lambda: "Pillow 99.0.0, libjpeg-turbo 9.9")
    with caplog.at_level(logging.WARNING, logger=cache_mod.logger.name):
        build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    said = [r.getMessage() for r in caplog.records if "written by" in r.getMessage()]
    assert len(said) == 1 and "Pillow 99.0.0" in said[0] and here in said[0]
    manifest = json.loads((out / cache_mod.CACHE_MANIFEST).read_text())
    assert manifest["splits"]["val"]["complete"]
    assert manifest["splits"]["val"]["decoders"] == [here, "Pillow 99.0.0, libjpeg-turbo 9.9"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=cache_mod.logger.name):  # complete: no resume
        build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    assert not [r for r in caplog.records if "written by" in r.getMessage()]


def test_cache_cli(syn, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cache_entry([str(syn.root), str(tmp_path / "cli"), "--splits", "test",
                         "--size", "16", "--workers", "0", "--no-progress"])  # fmt: skip
    assert rc == 0
    assert "test:" in capsys.readouterr().out
    assert cache_is_complete(tmp_path / "cli", "test", size=16)
    assert cache_entry([str(tmp_path / "nowhere"), str(tmp_path / "x"), "--workers", "0"]) == 2
    assert "Annotations.mat" in capsys.readouterr().err


def test_cache_with_workers(syn, tmp_path: Path) -> None:
    n = build_emotic_cache(syn, tmp_path / "w", splits=("val",), size=16, num_workers=2,
                           progress=False)  # fmt: skip
    assert n["val"] == len(syn.expected_records("val"))
    ds = EmoticDataset(tmp_path / "w", "val")
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch["body"].shape == (4, 3, 16, 16)


# ----------------------------------------------------------------------------- preprocessed
@pytest.mark.parametrize("split", SPLITS)
def test_preprocessed_layout_matches_official(syn, pre_dir: Path, split: str) -> None:
    pre = read_emotic_preprocessed(pre_dir, split)
    official = read_emotic_annotations(syn, split)
    kept = [r for r in official if not r.vad_missing]  # the baseline drops NaN VAD
    assert len(pre) == len(kept) and pre.context.shape == (len(kept), 224, 224, 3)
    assert pre.body.shape == (len(kept), 128, 128, 3)
    for p, o in zip(pre.records, kept, strict=True):
        assert (p.folder, p.filename, p.bbox, p.image_size) == (o.folder, o.filename, o.bbox,
                                                                o.image_size)  # fmt: skip
        assert p.categories == o.categories and p.vad == o.vad
        assert (p.gender, p.age) == (o.gender, o.age)
    np.testing.assert_array_equal(pre.categories, np.stack([r.multihot() for r in kept]))
    np.testing.assert_array_equal(pre.vad, np.array([r.vad for r in kept], np.float32))


def test_dataset_reads_preprocessed_layout(syn, pre_dir: Path) -> None:
    assert detect_layout(pre_dir, "val") == "preprocessed"
    ds = EmoticDataset(pre_dir, "val", size=32)
    official = EmoticDataset(syn, "val", size=32)
    by_person = {(r.filename, r.bbox): i for i, r in enumerate(official.records)}
    for i, r in enumerate(ds.records):
        j = by_person[(r.filename, r.bbox)]
        s, o = ds[i], official[j]
        assert torch.equal(s["categories"], o["categories"])
        assert torch.equal(s["vad"], o["vad"])
        np.testing.assert_allclose(s["bbox"].numpy(), o["bbox"].numpy(), rtol=1e-5)
        assert s["body"].shape == s["context"].shape == (3, 32, 32)
        # different resizing chains (224/128 first), same picture
        assert (s["body"].float() - o["body"].float()).abs().mean() < 12


def test_preprocessed_rows_without_category_are_skipped_and_counted(
    pre_dir: Path, tmp_path: Path
) -> None:
    # The community converter writes val/test persons with no category, with an
    # all-zero label vector; there is nothing to evaluate on them.
    folder = tmp_path / "pre"
    shutil.copytree(pre_dir, folder)
    lines = (folder / "val.csv").read_text().splitlines()
    rows = list(csv.reader(lines))
    empty = 1  # the second person
    rows[1 + empty][5] = "[]"
    with open(folder / "val.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    cats = np.load(folder / "val_cat_arr.npy")
    cats[empty] = 0
    np.save(folder / "val_cat_arr.npy", cats)
    full = read_emotic_preprocessed(pre_dir, "val")
    pre = read_emotic_preprocessed(folder, "val")
    assert len(pre) == len(full) - 1
    assert pre.records.summary.skipped == {"no_category": 1}
    assert pre.records.summary.n_persons == len(full) and pre.records.summary.n_kept == len(pre)
    assert pre.rows.tolist() == [r for r in range(len(full)) if r != empty]
    assert not (pre.categories.sum(axis=1) == 0).any()
    ds, ds_full = EmoticDataset(folder, "val", size=32), EmoticDataset(pre_dir, "val", size=32)
    # Person 1 of the filtered set is person 2 of the full one: pixels and labels follow.
    assert torch.equal(ds[1]["body"], ds_full[2]["body"])
    assert torch.equal(ds[1]["context"], ds_full[2]["context"])
    assert torch.equal(ds[1]["categories"], ds_full[2]["categories"])


def test_preprocessed_errors(pre_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(pre_dir, bad)
    (bad / "val_cont_arr.npy").unlink()
    with pytest.raises(FileNotFoundError, match="val cont file not found"):
        read_emotic_preprocessed(bad, "val")
    np.save(bad / "val_cont_arr.npy", np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"val_cont_arr\.npy: expected shape"):
        read_emotic_preprocessed(bad, "val")
    cats = np.load(pre_dir / "test_cat_arr.npy")
    cats[0] = 1 - cats[0]
    np.save(bad / "test_cat_arr.npy", cats)
    with pytest.raises(BadRecordError, match=r"test\.csv row 0 .*test_cat_arr\.npy holds other"):
        read_emotic_preprocessed(bad, "test", on_bad_record="error")
    good = read_emotic_preprocessed(pre_dir, "test")
    skipped = read_emotic_preprocessed(bad, "test")  # the default policy counts the row
    assert skipped.records.summary.skipped.get("labels_disagree") == 1
    assert 0 not in skipped.rows.tolist() and len(skipped) == len(good) - (0 in good.rows)
    text = (pre_dir / "train.csv").read_text().splitlines()
    (bad / "train.csv").write_text("\n".join([text[0], text[1].replace("[", "{", 1)]) + "\n")
    with pytest.raises(BadRecordError, match=r"row 0 .*cannot parse Image Size"):
        read_emotic_preprocessed(bad, "train", on_bad_record="error")
    (bad / "train.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="header must be"):
        read_emotic_preprocessed(bad, "train")


# ----------------------------------------------------------------- cache integrity
@pytest.fixture()
def small_cache(syn, tmp_path: Path) -> Path:
    out = tmp_path / "cache"
    build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    return out


@pytest.mark.parametrize("name", ["body", "context", "bbox", "image_of", "done",
                                  "body_crc32", "context_crc32"])
def test_cache_full_verify_names_a_flipped_byte(small_cache: Path, name: str) -> None:
    assert verify_emotic_cache(small_cache)["val"] > 0
    path = small_cache / f"val_{name}.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # in the array data: the header and size still look right
    path.write_bytes(bytes(data))
    if name in ("body", "context"):  # the image arrays: checked row by row when read
        verify_emotic_cache(small_cache, full=False)
    else:  # the small files: hashed by the cheap check every dataset runs on opening
        with pytest.raises(IntegrityError, match=rf"val_{name}\.npy: does not match"):
            verify_emotic_cache(small_cache, full=False)
    with pytest.raises(IntegrityError, match=rf"val_{name}\.npy: does not match"):
        verify_emotic_cache(small_cache)  # the full check sees every file
    assert cache_entry(["--verify", str(small_cache)]) == 2


def test_a_flipped_byte_in_the_records_file_is_caught_when_the_cache_opens(
    small_cache: Path,
) -> None:
    path = small_cache / "val_records.json"
    text = path.read_text()
    digit = next(i for i, c in enumerate(text) if c.isdigit() and i > len(text) // 2)
    path.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    with pytest.raises(IntegrityError, match=r"val_records\.json: does not match"):
        EmoticDataset(small_cache, "val")


@pytest.mark.parametrize("key", ["body", "context"])
def test_a_flipped_byte_in_an_image_row_is_caught_when_the_row_is_read(
    small_cache: Path, key: str
) -> None:
    dataset = EmoticDataset(small_cache, "val")
    row = int(dataset._rows[0]) if key == "body" else int(
        np.load(small_cache / "val_image_of.npy")[int(dataset._rows[0])])
    arr = np.load(small_cache / f"val_{key}.npy", mmap_mode="r+")
    arr[row, 0, 0, 0] ^= 0x01
    arr.flush()
    del arr
    with pytest.raises(IntegrityError, match=rf"val_{key}\.npy: row {row} differs"):
        EmoticDataset(small_cache, "val")[0]
    unchecked = EmoticDataset(small_cache, "val", verify_rows=False)[0]  # served as data
    assert unchecked["body"].shape[0] == 3


def test_cache_cheap_check_on_open_names_a_truncated_array(small_cache: Path) -> None:
    assert len(EmoticDataset(small_cache, "val")) > 0
    path = small_cache / "val_context.npy"
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(IntegrityError, match=r"val_context\.npy: has \d+ bytes"):
        EmoticDataset(small_cache, "val")


def test_cache_verify_cli(small_cache: Path, capsys: pytest.CaptureFixture) -> None:
    assert cache_entry(["--verify", str(small_cache)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("val: ") and " MiB verified in " in out
    assert f"(written by Pillow {PIL.__version__}, libjpeg" in out
    assert cache_entry(["--verify", str(small_cache.parent / "nowhere")]) == 2
    assert "not an EMOTIC cache" in capsys.readouterr().err


def test_cache_build_is_locked(syn, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    with FolderLock(out, purpose="another build"):
        with pytest.raises(FolderLockedError, match=f"in use by process {os.getpid()}"):
            build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)  # free again


@pytest.mark.parametrize("below", ["", "sub"])
def test_a_file_where_the_locked_folder_must_be_is_named(tmp_path: Path, below: str) -> None:
    in_the_way = tmp_path / "a_file"
    in_the_way.write_text("")
    folder = in_the_way / below if below else in_the_way
    with pytest.raises(StorageError, match=f"{re.escape(str(in_the_way))} is a file, not a "
                       "folder"):  # fmt: skip
        FolderLock(folder, purpose="test").acquire()


@pytest.mark.parametrize(("flag", "value", "least"), [
    ("--size", "0", 1), ("--workers", "-1", 0), ("--max-pixels", "0", 1)])
def test_cache_cli_refuses_numbers_below_their_least(
    syn, tmp_path: Path, capsys, flag: str, value: str, least: int
) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as info:
        cache_entry([str(syn.root), str(tmp_path / "cache"), flag, value])
    assert info.value.code == 2 and not (tmp_path / "cache").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"dagnet-emotic-cache: error: argument {flag}: must be >= {least}, got {value}")


def test_cache_full_disk_is_an_error_before_decoding(
    syn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    out = tmp_path / "cache"
    with pytest.raises(StorageError, match=r"not enough space in .* for the val cache"):
        build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    assert not list(out.glob("val_*.npy"))  # nothing a resume could trust
    monkeypatch.undo()
    build_emotic_cache(syn, out, splits=("val",), size=16, progress=False)
    assert cache_is_complete(out, "val")


BUILD_ON_TMPFS = """
import sys
from dagnet_layers.commands.entry import cache_entry
sys.exit(cache_entry([sys.argv[1], sys.argv[2], "--splits", "train", "--size", "64",
                      "--workers", "0", "--no-progress"]))
"""


@pytest.mark.slow
def test_cache_on_a_real_full_disk_fails_cleanly_not_with_sigbus(syn, tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        proc = subprocess.run([sys.executable, "-c", BUILD_ON_TMPFS, str(syn.root),
                               str(mount / "cache")], capture_output=True, text=True,
                              timeout=120)
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    assert proc.returncode == 2, proc.stderr[-2000:]  # not -SIGBUS
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("dagnet-emotic-cache: error: ")
    assert "No space left on device" in last and "train cache" in last


def test_cache_build_checks_a_split_it_finds_complete(syn, small_cache: Path) -> None:
    path = small_cache / "val_body.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(IntegrityError, match=r"val_body\.npy: has"):
        build_emotic_cache(syn, small_cache, splits=("val",), size=16, progress=False)


def test_cache_rows_are_read_without_a_memory_map(tmp_path: Path) -> None:
    """The dataset reads the cache's image rows with pread: the same bytes as a memory map
    of the file (numpy's own reader), and a truncated file is named."""
    from dagnet_layers.emotic.data import EmoticDataset, NpyRows, make_synthetic_emotic
    from dagnet_layers.errors import CorruptFileError

    info = make_synthetic_emotic(tmp_path / "syn", n_images=12, image_size=(64, 48))
    ds = EmoticDataset(info.root, "train", size=32, cache_dir=tmp_path / "cache")
    body = np.load(tmp_path / "cache" / "train_body.npy", mmap_mode="r")
    context = np.load(tmp_path / "cache" / "train_context.npy", mmap_mode="r")
    image_of = np.load(tmp_path / "cache" / "train_image_of.npy")
    rows = NpyRows(tmp_path / "cache" / "train_body.npy")
    assert len(rows) == body.shape[0]
    for k in range(len(rows)):
        assert np.array_equal(rows[k], body[k]) and rows[k].flags.writeable
    for index in range(len(ds)):
        row = int(ds._rows[index])
        sample_context = ds._load_images(index)[1].numpy()
        assert np.array_equal(sample_context, context[image_of[row]])
    assert all(not isinstance(a, np.memmap) for k, a in ds._open_arrays().items()
               if k in ("body", "context"))  # fmt: skip
    with pytest.raises(IndexError):
        rows[len(rows)]
    data = (tmp_path / "cache" / "train_body.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[: len(data) - 10])
    with pytest.raises(CorruptFileError, match=r"short\.npy"):
        NpyRows(tmp_path / "short.npy")


def test_a_cache_of_an_older_format_is_named_with_the_command_that_rebuilds_it(
    syn, small_cache: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old"
    shutil.copytree(small_cache, old)
    manifest = json.loads((old / cache_mod.CACHE_MANIFEST).read_text())
    manifest["version"] = 2
    (old / cache_mod.CACHE_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"written in format 2.*--size 16 --overwrite"):
        build_emotic_cache(syn, old, splits=("val",), size=16, progress=False)
    # the trainer's own caches (demo, $DAGNET_CACHE) are rebuilt without asking
    from dagnet_layers.emotic.data.sources import _renew_old_format

    _renew_old_format(small_cache)
    assert (small_cache / cache_mod.CACHE_MANIFEST).is_file()  # the current format: kept
    _renew_old_format(old)
    assert not old.exists()


@pytest.mark.quick
def test_emotic_datasets_is_the_commands_data_path(tmp_path: Path) -> None:
    """The toolkit's one call: a cache folder given is used, None decodes JPEGs, the demo
    keeps its cache inside its folder, and the refusals name the argument."""
    from dagnet_layers.emotic.data import demo_datasets, emotic_datasets

    root = make_synthetic_emotic(tmp_path / "raw", n_images=12, image_size=(64, 48)).root
    cached = emotic_datasets(root, cache=tmp_path / "cache", size=16, progress=False)
    assert {s: d.layout for s, d in cached.items()} == dict.fromkeys(
        ("train", "val", "test"), "cache")
    plain = emotic_datasets(root, cache=None, size=16)
    assert plain["val"].layout == "official" and len(plain["val"]) == len(cached["val"])
    for kwargs, says in (({"jpeg_decode": "gpu"}, "jpeg_decode must be one of"),
                         ({"jpeg_decode": "device", "cache": tmp_path / "c2"}, "no cache folder")):
        with pytest.raises(ValueError, match=says):
            emotic_datasets(root, size=16, **kwargs)
    with pytest.raises(ValueError, match="in the cache layout"):
        emotic_datasets(tmp_path / "cache", size=16, jpeg_decode="device")
    demo = demo_datasets(tmp_path / "demo", n_images=12, seed=1, size=16, progress=False)
    assert demo["train"].source == tmp_path / "demo" / "n12-seed1" / "cache-16px"
    no_cache = demo_datasets(tmp_path / "demo", n_images=12, seed=1, size=16, cache=None)
    assert no_cache["train"].layout == "official"  # --no-cache holds for the demo too
