"""The diagnostic metrics against hand-built cases and independent references (scipy,
PatchPartition): a map exactly on the mask scores 1, a uniform map scores the mask's area."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dagnet_layers.emotic.diagnostic import (
    adjacency_contrast,
    attention_mass_in_mask,
    patches_touched,
    point_biserial,
    pointing_game,
)
from dagnet_layers.layers import PatchPartition


def test_mass_on_the_mask_is_one_and_uniform_is_the_area() -> None:
    rng = np.random.default_rng(0)
    masks = rng.random((5, 32, 48)) < 0.3
    masks[:, 0, 0] = True  # no empty mask
    area = masks.reshape(5, -1).mean(1)
    np.testing.assert_allclose(attention_mass_in_mask(masks.astype(float), masks), 1.0)
    np.testing.assert_allclose(attention_mass_in_mask(np.ones((5, 32, 48)), masks), area)
    # a uniform map on the feature grid stays uniform once upsampled to the mask
    np.testing.assert_allclose(attention_mass_in_mask(torch.full((5, 1, 4, 6), 0.7), masks),
                               area)  # fmt: skip
    # the complement of the mask: nothing on it
    np.testing.assert_allclose(attention_mass_in_mask((~masks).astype(float), masks), 0.0)
    assert np.isnan(attention_mass_in_mask(np.zeros((32, 48)), masks[0]))[0]
    with pytest.raises(ValueError, match="non-negative"):
        attention_mass_in_mask(-np.ones((4, 4)), np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="same B"):
        attention_mass_in_mask(np.ones((2, 4, 4)), np.ones((3, 4, 4), bool))


def test_pointing_game_hits_only_on_the_mask() -> None:
    mask = np.zeros((2, 8, 8), bool)
    mask[:, 2:4, 2:4] = True
    att = np.zeros((2, 8, 8))
    att[0, 3, 3] = 1.0  # peak on the cue
    att[1, 7, 7] = 1.0  # peak elsewhere
    assert pointing_game(att, mask).tolist() == [True, False]


def test_point_biserial_equals_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    flags = rng.random(50) < 0.4
    weights = rng.random(50) - 0.3 * flags
    expected = stats.pointbiserialr(flags, weights).statistic
    assert point_biserial(weights, flags) == pytest.approx(expected, rel=1e-12)
    assert np.isnan(point_biserial([0.5, 0.5, 0.5], [True, False, True]))
    assert np.isnan(point_biserial([0.1, 0.2], [True, True]))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_patches_touched_follow_patch_partition_order(n: int) -> None:
    rng = np.random.default_rng(n)
    mask = np.zeros((12 * n, 12 * n), bool)
    for y, x in rng.integers(0, 12 * n, size=(3, 2)):
        mask[y, x] = True
    patches = PatchPartition(n)(torch.from_numpy(mask)[None, None].float())[0, :, 0]
    expected = [k for k in range(n * n) if patches[k].any()]
    assert patches_touched(mask, n).tolist() == expected


def test_adjacency_contrast_against_hand_counts() -> None:
    a = torch.zeros(9, 9)
    a[0, 4] = a[4, 0] = 3.0
    a[0, 8] = -3.0  # magnitudes count
    a[1, 2] = 0.9
    a.fill_diagonal_(7.0)  # self-loops are left out
    got = adjacency_contrast(a, [0, 4, 8])
    # cue pairs: 6 ordered pairs among {0, 4, 8}: |3| + |3| + |-3| = 9 -> 1.5
    # the other 72 - 6 = 66 off-diagonal pairs hold 0.9
    assert got["cue"] == pytest.approx(1.5)
    assert got["rest"] == pytest.approx(0.9 / 66)
    assert got["ratio"] == pytest.approx(1.5 / (0.9 / 66))


# ------------------------------------------------------------------ the diagnostic scenes
def test_diagnostic_scenes_read_back_and_put_each_cue_where_they_say(tmp_path) -> None:
    import json

    from PIL import Image

    from dagnet_layers.emotic.data import (
        DIAGNOSTIC_CUES,
        make_diagnostic_emotic,
        read_emotic_annotations,
    )
    from dagnet_layers.emotic.data.scenes import BODY_COLOURS, LOCAL_OBJECTS

    scenes = make_diagnostic_emotic(tmp_path / "d", n_images=40, image_size=96,
                                    corrupt_fraction=0.5, clutter=0.0)  # fmt: skip
    by_file = {p.filename: p for p in scenes.persons}
    for split in ("train", "val", "test"):
        records = read_emotic_annotations(scenes.root, split)
        assert records.summary.skipped == {}  # every person has a label
        for r in records:
            truth = by_file[r.filename]
            assert r.categories == truth.categories and r.bbox == tuple(int(v) for v in truth.bbox)
            families = {DIAGNOSTIC_CUES[c] for c in r.categories}
            assert families <= {"body", "global", "local"}
    saved = json.loads((scenes.root / "diagnostic.json").read_text())
    assert saved["synthetic"] is True and len(saved["persons"]) == 40
    assert sum(p.corrupted is not None for p in scenes.persons) > 5

    def colour_at(p, box):
        img = Image.open(scenes.root / "emotic" / "diagnostic" / "images" / p.filename)
        x, y = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        return np.asarray(img.convert("RGB"), dtype=np.float64)[y, x]

    def same_colour(got, want):  # lighting scales every channel by one factor
        want = np.asarray(want, dtype=np.float64)
        return np.allclose(got / got.max(), want / want.max(), atol=0.12)

    checked = 0
    for p in scenes.persons:
        if p.echo_box is not None:  # the echo repeats the torso's colour
            assert same_colour(colour_at(p, p.echo_box), BODY_COLOURS[p.body]), p.filename
            checked += 1
        for name, box in p.local:  # a filled shape's centre has the object's colour
            shape, colour = LOCAL_OBJECTS[name]
            if shape != "ring":
                assert same_colour(colour_at(p, box), colour), (p.filename, name)
        if p.corrupted == "occluded":  # the torso's centre is grey
            x1, y1, x2, y2 = p.bbox
            got = colour_at(p, (x1, y1 + 0.3 * (y2 - y1), x2, y1 + 0.6 * (y2 - y1)))
            assert np.ptp(got) < 12, (p.filename, got)
    assert checked > 10
    again = make_diagnostic_emotic(tmp_path / "e", n_images=40, image_size=96,
                                   corrupt_fraction=0.5, clutter=0.0)  # fmt: skip
    assert again.persons == scenes.persons  # deterministic per seed
