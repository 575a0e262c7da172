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


# ------------------------------------------------------------ diagnose() on known outputs
@pytest.fixture(scope="module")
def small_scenes(tmp_path_factory):
    from dagnet_layers.emotic.data import make_diagnostic_emotic

    return make_diagnostic_emotic(tmp_path_factory.mktemp("scenes") / "s", n_images=120,
                                  image_size=64, corrupt_fraction=0.5, clutter=0.0,
                                  split_fractions=(0.2, 0.1, 0.7))  # fmt: skip


def _outputs_for(scenes, split="test", size=32, **kw):
    from dagnet_layers.emotic.data import labels_to_multihot
    from dagnet_layers.emotic.diagnostic import DiagnosticOutputs

    persons = [p for p in scenes.persons if p.split == split]
    labels = np.stack([labels_to_multihot(p.categories) for p in persons]).astype(np.float64)
    return persons, DiagnosticOutputs(tuple(p.filename for p in persons), kw.pop("scores", labels),
                                      labels, size, **kw)  # fmt: skip


def test_cue_masks_cover_the_drawn_cues(small_scenes) -> None:
    """At the scene's own size, the echo mask's pixels carry the echo's colour in the JPEG
    (clutter 0), and the sky mask leaves out the body box."""
    from PIL import Image

    from dagnet_layers.emotic.data.scenes import BODY_COLOURS
    from dagnet_layers.emotic.diagnostic import cue_masks

    checked = 0
    for p in small_scenes.persons:
        masks = cue_masks(p, 64, 64)
        img = np.asarray(Image.open(small_scenes.root / "emotic" / "diagnostic" / "images"
                                    / p.filename).convert("RGB"), dtype=np.float64)  # fmt: skip
        if "echo" in masks:
            colour = np.asarray(BODY_COLOURS[p.body], dtype=np.float64)
            # JPEG's chroma subsampling bleeds the background into a 6-pixel flag's rim
            # (0.16 seen); a mask off the flag reads the grey or the sky (0.5 or more)
            mean = img[masks["echo"]].mean(axis=0)
            assert np.abs(mean / mean.max() - colour / colour.max()).max() < 0.3, p.filename
            checked += 1
        if "sky" in masks:
            x1, y1, x2, y2 = (int(v) for v in p.bbox)
            assert not masks["sky"][y1 + 1:y2 - 1, x1 + 1:x2 - 1].any()
            assert masks["sky"][: int(p.sky_box[3]) - 1].mean() > 0.5
        # half the size: every box scales by one half
        small = cue_masks(p, 64, 32)
        for region, mask in masks.items():
            assert small[region].shape == (32, 32)
            assert abs(small[region].mean() - mask.mean()) < 0.08, (p.filename, region)
    assert checked > 20


def test_diagnose_perfect_and_uniform_outputs(small_scenes) -> None:
    from dagnet_layers.emotic.diagnostic import cue_masks, diagnose

    persons, outputs = _outputs_for(small_scenes)
    # GSAM maps exactly on the echo, BAM weights 1 - corrupted, a uniform adjacency
    echo = np.stack([cue_masks(p, 64, 32).get("echo", np.zeros((32, 32), bool))
                     for p in persons]).astype(np.float32)  # fmt: skip
    corrupted = np.array([p.corrupted is not None for p in persons])
    outputs.attention = echo + 1e-12  # non-zero everywhere for the maps without an echo
    outputs.body_weights = (1.0 - corrupted).astype(np.float32)
    outputs.adjacency = np.ones((16, 16), np.float32)
    outputs.initial_adjacency = np.ones((16, 16), np.float32)
    outputs.partition = 4
    got = diagnose(outputs, small_scenes)
    assert got["map"] == 1.0 and got["family_map"] == {"body": 1.0, "global": 1.0, "local": 1.0}
    assert got["body"]["corrupted"] == 1.0 and got["body"]["clean"] == 1.0
    assert got["body"]["n_corrupted"] > 10 and got["body"]["n_clean"] > 10
    # -1: every corrupted body weighs 0, every clean one 1
    assert got["bam"]["point_biserial"] == pytest.approx(-1.0)
    assert got["bam"]["mean_weight"]["clean"] == 1.0 and got["bam"]["mean_weight"]["occluded"] == 0
    assert got["gsam"]["echo"]["mass"] == pytest.approx(1.0, abs=1e-6)
    assert got["gsam"]["echo"]["pointing"] == 1.0
    assert got["gsam"]["echo"]["chance"] < 0.05
    assert got["lsam"]["ratio"] == pytest.approx(1.0) and got["lsam"]["n"] > 5

    outputs.attention = np.ones_like(echo)  # uniform: the mass is the area, every region
    uniform = diagnose(outputs, small_scenes)["gsam"]
    for region in ("echo", "local", "sky"):
        assert uniform[region]["mass"] == pytest.approx(uniform[region]["chance"])


def test_diagnose_subset_ap_equals_sklearn_on_the_same_rows(small_scenes) -> None:
    """Body-cue mAP on corrupted and on clean bodies, against scikit-learn's AP computed
    here on the rows and columns the definition names."""
    metrics = pytest.importorskip("sklearn.metrics")
    from dagnet_layers.emotic.data import CATEGORY_TO_INDEX
    from dagnet_layers.emotic.data.scenes import BODY_COLOURS, SKY_COLOURS
    from dagnet_layers.emotic.diagnostic import diagnose

    persons, outputs = _outputs_for(small_scenes)
    rng = np.random.default_rng(3)
    outputs.scores = 0.6 * outputs.labels + rng.random(outputs.labels.shape)
    got = diagnose(outputs, small_scenes, protocol="sklearn")

    def expected(rows, names):
        aps = []
        for name in names:
            y = outputs.labels[rows, CATEGORY_TO_INDEX[name]]
            if y.any():
                aps.append(metrics.average_precision_score(y, outputs.scores[rows,
                                                               CATEGORY_TO_INDEX[name]]))
        return float(np.mean(aps))

    corrupted = np.array([p.body is not None and p.corrupted is not None for p in persons])
    clean = np.array([p.body is not None and p.corrupted is None for p in persons])
    assert got["body"]["corrupted"] == pytest.approx(expected(corrupted, BODY_COLOURS))
    assert got["body"]["clean"] == pytest.approx(expected(clean, BODY_COLOURS))
    assert got["family_map"]["global"] == pytest.approx(
        expected(np.ones(len(persons), bool), SKY_COLOURS))


def test_diagnose_refuses_outputs_of_other_data(small_scenes) -> None:
    from dagnet_layers.emotic.diagnostic import DiagnosticOutputs, diagnose

    outputs = DiagnosticOutputs(("elsewhere.jpg",), np.zeros((1, 26)), np.zeros((1, 26)), 32)
    with pytest.raises(ValueError, match="not in the scenes' ground truth"):
        diagnose(outputs, small_scenes)


def test_outputs_round_trip_through_arrays(small_scenes, tmp_path) -> None:
    from dagnet_layers.emotic.diagnostic import DiagnosticOutputs

    _, outputs = _outputs_for(small_scenes, body_weights=np.arange(84, dtype=np.float32) / 84,
                              partition=4, adjacency=np.eye(16, dtype=np.float32))  # fmt: skip
    np.savez(tmp_path / "o.npz", **outputs.to_arrays())
    with np.load(tmp_path / "o.npz") as f:
        back = DiagnosticOutputs.from_arrays(dict(f))
    assert back.filenames == outputs.filenames and back.partition == 4 and back.size == 32
    np.testing.assert_array_equal(back.body_weights, outputs.body_weights)
    assert back.attention is None and back.initial_adjacency is None


def test_collect_outputs_match_the_model_on_each_batch(small_scenes) -> None:
    """Scores, maps, weights and the adjacency, against a direct call on the same batch."""
    from dagnet_layers import build_dagnet
    from dagnet_layers.emotic.data import EmoticDataset, emotic_batch_transform
    from dagnet_layers.emotic.diagnostic import collect_outputs

    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", gcn_hidden=(16, 8), patch_channels=(4, 4),
                         patch_pool=2, fusion_hidden=16).eval()  # fmt: skip
    dataset = EmoticDataset(small_scenes.root, "val", size=32)
    tf = emotic_batch_transform(False, size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    got = collect_outputs(model, dataset, score="softmax", batch_transform=tf, batch_size=5)
    batch = tf(torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))]))
    with torch.no_grad():
        out = model(batch["body"], batch["context"])
    np.testing.assert_allclose(got.scores, out.logits.double().softmax(-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.attention, out.attention_map[:, 0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.body_weights, out.body_weights.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(got.adjacency, out.adjacency.detach().numpy())
    assert got.filenames == tuple(r.filename for r in dataset.records)
    assert got.partition == 4 and got.size == 32
    # the grid initialisation, row-normalised, as the GCN starts
    from dagnet_layers.layers.graph import grid_adjacency

    grid = grid_adjacency(4)
    np.testing.assert_allclose(got.initial_adjacency, (grid / grid.sum(1, keepdim=True)).numpy())


def test_diagnostic_figures_say_synthetic(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from dagnet_layers.figures.diagnostic import (
        plot_adjacency_matrices,
        plot_attention_on_cues,
        plot_body_weights,
        plot_family_ap,
    )

    figs = {
        "ap": plot_family_ap({"baseline": {"body": [0.5, None], "local": [0.3, 0.2]}},
                             tmp_path / "ap.png"),
        "w": plot_body_weights({"clean": [0.6, 0.61], "occluded": []}, tmp_path / "w.png"),
        "att": plot_attention_on_cues(
            [{"image": np.zeros((32, 32, 3), np.uint8), "attention": np.full((4, 4), 0.5),
              "regions": {"echo": [(1, 1, 5, 5)]}, "body_box": (10, 10, 20, 30)}] * 3,
            tmp_path / "att.png", columns=2),
        "adj": plot_adjacency_matrices({"initial": np.eye(4), "learned": -np.eye(4)},
                                       tmp_path / "adj.png"),
    }  # fmt: skip
    for name, fig in figs.items():
        title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        assert "SYNTHETIC" in title, name
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    # a uniform map's caption gives its range, so a bright panel cannot pass for a peak
    assert "0.500-0.500" in figs["att"].axes[0].get_title()
    with pytest.raises(ValueError, match="square"):
        plot_adjacency_matrices({"bad": np.ones((2, 3))})



def _torso_mask(bbox, size):
    """The pixels ``ImageDraw.rectangle`` fills for a person's torso (both ends included)."""
    from PIL import Image, ImageDraw

    x1, y1, x2, y2 = bbox
    mask = Image.new("L", (size, size))
    ImageDraw.Draw(mask).rectangle((x1, y1 + 0.2 * (y2 - y1), x2, y1 + 0.72 * (y2 - y1)),
                                   fill=255)  # fmt: skip
    return np.asarray(mask) > 0


def test_corrupted_torsos_are_grey_in_every_drawn_pixel() -> None:
    """Before JPEG: every pixel PIL drew for an occluded or blurred torso is grey (R = G = B;
    lighting scales the three alike). A crop box leaves out its right column and bottom
    row, which kept the true colour there."""
    from dagnet_layers.emotic.data.scenes import _scene

    rng = np.random.default_rng(0)
    kinds = {"occluded": 0, "blurred": 0}
    for serial in range(80):
        person, img = _scene("train", serial, 96, 1.0, 0.0, rng)
        if person.corrupted is None:
            continue
        pixels = np.asarray(img, dtype=np.int64)[_torso_mask(person.bbox, 96)]
        bad = np.nonzero((pixels[:, 0] != pixels[:, 1]) | (pixels[:, 1] != pixels[:, 2]))[0]
        assert bad.size == 0, (serial, person.corrupted, pixels[bad[:3]])
        kinds[person.corrupted] += 1
    assert min(kinds.values()) > 20, kinds


def test_no_corrupted_body_keeps_a_column_of_its_torso_colour(tmp_path) -> None:
    """In the written JPEGs, no column of a corrupted torso keeps its true colour.

    Each column of the drawn torso, averaged down the torso, is projected on the torso
    colour's chromaticity (away from grey): 1 is the true colour, 0 grey. With the
    torso's last column left uncorrupted, every blurred body kept 0.23 to 0.52 of its
    colour in some column (200 scenes, JPEG quality 95); corrupted whole, at most 0.15,
    which the ground or a neighbouring object bleeds in through JPEG's chroma
    subsampling.
    """
    from PIL import Image

    from dagnet_layers.emotic.data import make_diagnostic_emotic
    from dagnet_layers.emotic.data.scenes import BODY_COLOURS

    def chroma(rgb):
        rgb = np.asarray(rgb, dtype=np.float64)
        return rgb / rgb.sum(-1, keepdims=True) - 1 / 3

    scenes = make_diagnostic_emotic(tmp_path / "d", n_images=60, image_size=96,
                                    corrupt_fraction=1.0, clutter=0.0, jpeg_quality=95)
    checked = 0
    for p in scenes.persons:
        if p.corrupted is None:
            continue
        torso = _torso_mask(p.bbox, 96)
        img = np.asarray(Image.open(scenes.root / "emotic" / "diagnostic" / "images"
                                    / p.filename).convert("RGB"), dtype=np.float64)
        true = chroma(BODY_COLOURS[p.body])
        for col in np.nonzero(torso.any(0))[0]:
            kept = float(chroma(img[torso[:, col], col].mean(0)) @ true / (true @ true))
            assert kept < 0.2, (p.filename, p.corrupted, int(col), kept)
        checked += 1
    assert checked > 40
