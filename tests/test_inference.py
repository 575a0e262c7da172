"""In-the-wild prediction: detectors, photos, folders, videos, tracks, outputs, the command.

No network: the detector is a stub through the public callable hook, or a torchvision
model with random weights; videos are written by the test.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from dagnet_layers import EMOTIC_CATEGORIES, create_model
from dagnet_layers.commands.args import AUTO_DETECTORS, PREDICT_DETECTORS
from dagnet_layers.emotic.data import crop_body_and_context, emotic_eval_transform, mask_bbox
from dagnet_layers.errors import BadRecordError, ConfigError, CorruptFileError, MissingFileError
from dagnet_layers.inference import (
    PERSON_DETECTORS,
    IoUTracker,
    Predictor,
    TorchvisionPersonDetector,
    VideoWriter,
    expand_inputs,
    iter_frames,
    predict_files,
    read_boxes_file,
)


def need_av():
    """PyAV (the ``video`` extra) for the tests that write or read videos."""
    return pytest.importorskip("av", reason="video needs the video extra (PyAV)")

BOX = (20, 10, 50, 70)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "best"
    create_model("test_dagnet").eval().save_pretrained(folder)
    (folder / "inference.json").write_text(json.dumps({
        "image_size": 64, "mask_body": True, "mask_fill": 0, "score": "softmax",
        "thresholds": {c: 0.04 for c in EMOTIC_CATEGORIES},
        "data": {"source": "synthetic", "synthetic": True},
    }))  # fmt: skip
    return folder


def photo(path: Path, colour: tuple[int, int, int] = (200, 60, 60), size=(96, 80)) -> Path:
    img = Image.new("RGB", size, (90, 140, 200))
    img.paste(colour, BOX)
    img.save(path)
    return path


class StubDetector:
    """The public detector hook: per image, boxes and scores; records what it saw."""

    def __init__(self, boxes_for=None) -> None:
        self.calls: list[int] = []
        self.boxes_for = boxes_for or (lambda image: ([BOX], [0.9]))

    def __call__(self, images):
        self.calls.append(len(images))
        return [self.boxes_for(im) for im in images]


def by_hand(checkpoint: Path, image: Image.Image, box) -> torch.Tensor:
    """Scores of one person, written out: crop, mask, eval transform with the backbone's
    timm statistics, the saved model, softmax (the checkpoint's score)."""
    from dagnet_layers import DAGNet

    model = DAGNet.from_pretrained(checkpoint).eval()
    cfg = timm.create_model("test_resnet").pretrained_cfg
    body, context, bbox = crop_body_and_context(image, box, 64)
    sample = emotic_eval_transform(64, mean=cfg["mean"], std=cfg["std"])({
        "body": torch.from_numpy(body), "bbox": torch.from_numpy(bbox),
        "context": mask_bbox(torch.from_numpy(context), torch.from_numpy(bbox), 0),
    })  # fmt: skip
    with torch.no_grad():
        logits = model(sample["body"][None], sample["context"][None]).logits.double()
    return torch.softmax(logits, dim=1)[0]


# ----------------------------------------------------------------------- the predictor
def test_detected_persons_score_as_a_direct_model_call(checkpoint: Path, tmp_path: Path) -> None:
    detector = StubDetector(lambda im: ([BOX, (60, 5, 90, 78), (200, 0, 300, 10)],
                                        [0.9, 0.7, 0.6]))  # fmt: skip
    predictor = Predictor.from_checkpoint(checkpoint, detector=detector)
    image = Image.open(photo(tmp_path / "a.png")).convert("RGB")
    persons = predictor.predict(image)
    assert [p.box for p in persons] == [BOX, (60, 5, 90, 78)]  # the third lies outside
    assert predictor.skipped == {"empty_box": 1}
    assert [p.detector_score for p in persons] == pytest.approx([0.9, 0.7])
    for p in persons:
        expected = by_hand(checkpoint, image, p.box)
        got = torch.tensor([p.scores[c] for c in EMOTIC_CATEGORIES], dtype=torch.float64)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
        assert p.predicted == sorted((c for c in EMOTIC_CATEGORIES if p.scores[c] >= 0.04),
                                     key=lambda c: -p.scores[c])  # fmt: skip
        assert p.body_weight is not None and p.attention_map is not None
    assert predictor.synthetic and predictor.adjacency is not None


def test_persons_are_batched_across_images_and_keep_the_input_order(
    checkpoint: Path, tmp_path: Path
) -> None:
    from dagnet_layers.inference import Frame

    detector = StubDetector()
    predictor = Predictor.from_checkpoint(checkpoint, detector=detector, batch_size=3)
    image = Image.open(photo(tmp_path / "a.png")).convert("RGB")
    frames = [Frame(f"img{k}", image, boxes=[BOX] * (k % 3) if k % 2 else None)
              for k in range(7)]  # fmt: skip
    out = list(predictor.predict_many(frames, detect_batch=2))
    assert [f.source for f, _ in out] == [f"img{k}" for k in range(7)]
    assert [len(p) for _, p in out] == [1, 1, 1, 0, 1, 2, 1]
    assert sum(detector.calls) == 4 and max(detector.calls) <= 2
    ref = out[0][1][0].scores
    for _, persons in out:
        for p in persons:  # the same crop in a batch of others scores the same
            assert p.scores == pytest.approx(ref, rel=1e-5, abs=1e-7)


def test_arrays_and_other_modes_are_accepted_and_bad_inputs_named(checkpoint: Path) -> None:
    predictor = Predictor.from_checkpoint(checkpoint)
    rgb = Image.new("RGB", (64, 48), (120, 30, 200))
    ref = predictor.predict(rgb, [(5, 5, 30, 40)])[0].scores
    assert predictor.predict(np.asarray(rgb), [(5, 5, 30, 40)])[0].scores == ref
    assert predictor.predict(rgb.convert("RGBA"), [(5, 5, 30, 40)])[0].scores == ref
    with pytest.raises(ConfigError, match="uint8 array"):
        predictor.predict(np.zeros((48, 64), dtype=np.float32), [(5, 5, 30, 40)])
    with pytest.raises(ConfigError, match="score"):
        Predictor(predictor.model, score="tanh")


def test_a_detector_that_miscounts_and_no_detector_are_errors(checkpoint: Path) -> None:
    image = Image.new("RGB", (64, 64))
    with pytest.raises(ConfigError, match="one \\(boxes, scores\\) pair per image"):
        Predictor.from_checkpoint(checkpoint, detector=lambda ims: []).predict(image)
    with pytest.raises(ConfigError, match="no detector"):
        Predictor.from_checkpoint(checkpoint).predict(image)


def test_torchvision_detector_keeps_confident_persons_best_first() -> None:
    detector = TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=None,
                                         score_threshold=0.5, max_persons=2)  # fmt: skip

    def fake(images):  # labels: 1 = person, 3 = car (COCO)
        return [{"boxes": torch.tensor([[0, 0, 20, 30], [5, 5, 40, 40], [1, 1, 30, 30],
                                        [2, 2, 4, 40], [3, 3, 30, 33]], dtype=torch.float32),
                 "scores": torch.tensor([0.6, 0.95, 0.99, 0.9, 0.8]),
                 "labels": torch.tensor([1, 1, 3, 1, 1])} for _ in images]  # fmt: skip

    detector.model = fake
    ((boxes, scores),) = detector([Image.new("RGB", (64, 48))])
    # the car and the 2-pixel-wide box are dropped; the best two persons remain
    assert scores.tolist() == pytest.approx([0.95, 0.8])
    assert boxes.tolist() == [[5, 5, 40, 40], [3, 3, 30, 33]]
    # the two persons left out are counted, the car is not a person
    assert detector.skipped == {"person_too_small": 1, "person_over_max_persons": 1}


def test_persons_the_detector_leaves_out_are_counted_in_the_summary(
    checkpoint: Path, tmp_path: Path
) -> None:
    from dagnet_layers.inference import predict_files

    detector = TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=None,
                                         max_persons=1)  # fmt: skip
    detector.model = lambda images: [{  # three persons, one of them 2 pixels wide
        "boxes": torch.tensor([[2, 2, 30, 40], [20, 5, 60, 44], [1, 1, 3, 40]],
                              dtype=torch.float32),
        "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1])}
        for _ in images]  # fmt: skip
    predictor = Predictor.from_checkpoint(checkpoint, detector=detector)
    paths = [photo(tmp_path / "a.png"), photo(tmp_path / "b.png")]
    summary = predict_files(predictor, paths, output_dir=None, progress=False)
    assert summary.persons == 2
    assert summary.skipped == {"person_over_max_persons": 2, "person_too_small": 2}
    assert "person_over_max_persons=2" in summary.line()
    assert not detector.skipped and not predictor.skipped  # moved, not counted twice


def test_detector_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown detector"):
        TorchvisionPersonDetector("resnet50", weights=None)
    with pytest.raises(ConfigError, match="no weights 'NOPE'"):
        TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights="NOPE")
    with pytest.raises(MissingFileError):
        TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=tmp_path / "w.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(CorruptFileError, match=r"bad\.pth"):
        TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=tmp_path / "bad.pth")
    assert PREDICT_DETECTORS == PERSON_DETECTORS  # --help lists them without torchvision
    assert set(AUTO_DETECTORS.values()) <= set(PERSON_DETECTORS)


# ---------------------------------------------------------------------- boxes, tracks
def test_boxes_files_json_and_csv(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text(json.dumps({"a.png": [[1, 2, 30, 40]], "b.png": []}))
    assert read_boxes_file(tmp_path / "b.json") == {"a.png": [[1, 2, 30, 40]], "b.png": []}
    (tmp_path / "b.csv").write_text("image,x1,y1,x2,y2\na.png,1,2,30,40\na.png,5,6,7,8\n")
    assert read_boxes_file(tmp_path / "b.csv") == {"a.png": [[1, 2, 30, 40], [5, 6, 7, 8]]}
    (tmp_path / "bad.csv").write_text("image,x1,y1,x2,y2\na.png,1,2,x,4\n")
    with pytest.raises(BadRecordError, match=r"bad\.csv:2"):
        read_boxes_file(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text('{"a.png": [[1, 2, 3]]}')
    with pytest.raises(BadRecordError, match=r"a.png\[0\]"):
        read_boxes_file(tmp_path / "bad.json")
    (tmp_path / "head.csv").write_text("file,a,b\n")
    with pytest.raises(CorruptFileError, match="image,x1,y1,x2,y2"):
        read_boxes_file(tmp_path / "head.csv")


def test_tracker_follows_overlap_not_order_and_forgets_after_a_gap() -> None:
    t = IoUTracker(iou_threshold=0.3, max_gap=1)
    assert t.update([(0, 0, 10, 20), (50, 0, 60, 20)]) == [0, 1]
    assert t.update([(51, 0, 61, 20), (1, 0, 11, 20)]) == [1, 0]  # listed the other way round
    assert t.update([(2, 0, 12, 20)]) == [0]  # person 1 missed once
    assert t.update([(2, 0, 12, 20)]) == [0]  # twice: forgotten
    assert t.update([(52, 0, 62, 20), (2, 0, 12, 20)]) == [2, 0]


# -------------------------------------------------------------- files, folders, videos
def write_video(path: Path, n: int = 6) -> None:
    need_av()
    with VideoWriter(path, fps=5) as writer:
        for k in range(n):
            img = Image.new("RGB", (96, 80), (90, 140, 200))
            img.paste((200, 60, 60), (20 + 3 * k, 10, 50 + 3 * k, 70))
            writer.write(img)


def test_folder_and_video_give_records_pictures_timeline_and_counted_skips(
    checkpoint: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    photo(folder / "empty.png", colour=(90, 140, 200))  # the stub finds no one here
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an input")
    write_video(folder / "clip.mp4")

    def boxes_for(image):
        arr = np.asarray(image)
        cols = np.nonzero((arr[..., 0] > 150).any(axis=0))[0]
        if not len(cols):
            return [], []
        return [(int(cols[0]), 10, int(cols[-1]) + 1, 70)], [0.8]

    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector(boxes_for))
    paths = expand_inputs([folder])
    assert [p.name for p in paths] == ["a.png", "broken.jpg", "clip.mp4", "empty.png"]
    summary = predict_files(predictor, paths, output_dir=tmp_path / "out", every=2,
                            progress=False)  # fmt: skip
    assert (summary.photos, summary.videos, summary.frames, summary.persons) == (2, 1, 3, 4)
    assert summary.skipped == {"unreadable_image": 1, "no_person": 1}
    assert summary.line().startswith("SYNTHETIC checkpoint: 4 persons")

    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    assert len(records) == 4 and all(r["synthetic"] for r in records)
    video = [r for r in records if r["frame"] is not None]
    assert [r["frame"] for r in video] == [0, 2, 4]
    assert {r["track"] for r in video} == {0}  # one person followed through the clip
    assert [r["time"] for r in video] == pytest.approx([0.0, 0.4, 0.8])
    assert video[2]["box"][0] > video[0]["box"][0]  # the person moved right
    with (tmp_path / "out" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and set(EMOTIC_CATEGORIES) <= set(rows[0])
    assert float(rows[0]["Peace"]) == pytest.approx(records[0]["scores"]["Peace"], rel=1e-5)

    annotated = tmp_path / "out" / "annotated"
    assert sorted(p.name for p in annotated.iterdir()) == [
        "a_dagnet.png", "clip_dagnet.mp4", "clip_timeline.png", "empty_dagnet.png"]
    with need_av().open(str(annotated / "clip_dagnet.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (80, 96, 3)
    # the synthetic note is a red band across the top of every picture
    top = np.asarray(Image.open(annotated / "a_dagnet.png"))[1]
    assert (top[:, 0] > 150).all() and (top[:, 2] < 80).all()


def test_inputs_that_do_not_exist_are_named(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere\.jpg: no such file or folder"):
        expand_inputs([tmp_path / "nowhere.jpg"])
    with pytest.raises(MissingFileError, match="matches no photo or video"):
        expand_inputs([str(tmp_path / "*.png")])


def test_unreadable_video_is_counted(checkpoint: Path, tmp_path: Path) -> None:
    need_av()
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector())
    summary = predict_files(predictor, [tmp_path / "bad.mp4"], output_dir=None, progress=False)
    assert summary.skipped == {"unreadable_video": 1} and summary.persons == 0


# ---------------------------------------------------------------------- the command
def test_command_on_a_folder_with_a_boxes_file(checkpoint: Path, tmp_path: Path,
                                               capsys) -> None:  # fmt: skip
    from dagnet_layers.commands import predict

    folder = tmp_path / "in"
    folder.mkdir()
    photo(folder / "a.png")
    photo(folder / "b.png")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x1,y1,x2,y2\na.png,20,10,50,70\nb.png,20,10,50,70\nb.png,60,5,90,78\n")
    code = predict.main(["--checkpoint", str(checkpoint), str(folder), "--boxes-file",
                         str(boxes), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("warning: this checkpoint was trained on SYNTHETIC")
    assert "3 persons in 2 photos and 0 frames of 0 videos; skipped: none" in text
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    assert [(Path(r["source"]).name, r["person"]) for r in records] == [
        ("a.png", 0), ("b.png", 0), ("b.png", 1)]
    assert records[0]["detector_score"] is None
    image = Image.open(folder / "b.png").convert("RGB")
    expected = by_hand(checkpoint, image, (60, 5, 90, 78))
    got = torch.tensor([records[2]["scores"][c] for c in EMOTIC_CATEGORIES], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_command_detects_with_a_torchvision_model(checkpoint: Path, tmp_path: Path,
                                                  capsys) -> None:  # fmt: skip
    from dagnet_layers.commands import predict

    code = predict.main(["--checkpoint", str(checkpoint), str(photo(tmp_path / "a.png")),
                         "--detector", "ssdlite320_mobilenet_v3_large", "--detector-weights",
                         "none", "--det-threshold", "0", "--max-persons", "2", "--no-plot",
                         "--json", str(tmp_path / "a.json")])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "found by ssdlite320_mobilenet_v3_large (confidence >= 0.0)" in text
    report = json.loads((tmp_path / "a.json").read_text())
    assert len(report["persons"]) <= 2
    assert all(0 <= p["detector_score"] <= 1 for p in report["persons"])


@pytest.mark.parametrize(("extra", "flag", "message"), [
    (["--every", "0"], "--every", ">= 1"),
    (["--det-threshold", "2"], "--det-threshold", "in [0, 1]"),
    (["--box", "1", "2", "3", "4", "--image", "x.png"], "--box", "single photo"),
    (["--true-labels", "Peace"], "--true-labels", "needs --box"),
    (["--boxes-file", "missing.json"], "--boxes-file", "boxes file not found"),
])
def test_command_argument_errors_name_the_argument(
    checkpoint: Path, tmp_path: Path, capsys, extra: list[str], flag: str, message: str
) -> None:
    from dagnet_layers.commands import predict

    a = photo(tmp_path / "a.png")
    photo(tmp_path / "x.png")
    extra = [str(tmp_path / e) if e == "x.png" else e for e in extra]
    with pytest.raises(SystemExit) as info:
        predict.main(["--checkpoint", str(checkpoint), "--image", str(a), *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and message in err


def test_one_photo_with_output_files_runs_the_model_once(checkpoint: Path, tmp_path: Path,
                                                         monkeypatch, capsys) -> None:  # fmt: skip
    from dagnet_layers.commands import predict

    calls = []
    real = Predictor._run_jobs

    def counted(self, jobs):
        calls.append(len(jobs))
        return real(self, jobs)

    monkeypatch.setattr(Predictor, "_run_jobs", counted)
    code = predict.main(["--checkpoint", str(checkpoint), str(photo(tmp_path / "a.png")),
                         "--box", "20", "10", "50", "70", "--output-dir", str(tmp_path / "out"),
                         "--json", str(tmp_path / "a.json"), "--no-plot"])  # fmt: skip
    assert code == 0 and calls == [1]
    text = capsys.readouterr().out
    assert f"wrote {tmp_path / 'out' / 'predictions.jsonl'}" in text
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").open()]
    report = json.loads((tmp_path / "a.json").read_text())
    assert record["scores"] == report["persons"][0]["scores"] and record["box"] == list(BOX)


@pytest.fixture()
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs: writes beyond it fail with ENOSPC, as on a full disk."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_names_the_table_and_leaves_no_empty_file(checkpoint: Path, tmp_path: Path,
                                                              full_disk: Path) -> None:  # fmt: skip
    from dagnet_layers.errors import StorageError

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(40):
        Image.new("RGB", (80, 60), (i, 90, 200)).save(photos / f"p{i:02d}.png")
    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector())
    (full_disk / "filler").write_bytes(b"x" * (60 << 10))  # leave almost nothing
    with pytest.raises(StorageError, match=r"predictions\.(jsonl|csv)") as info:
        predict_files(predictor, sorted(photos.iterdir()), output_dir=full_disk / "out",
                      annotate=False, progress=False)  # fmt: skip
    assert "No space left" in str(info.value)
    assert not [p.name for p in (full_disk / "out").glob("*")]  # no empty or half table


def test_csv_cells_cannot_start_a_spreadsheet_formula(checkpoint: Path, tmp_path: Path,
                                                      monkeypatch) -> None:  # fmt: skip
    """OWASP's CSV injection advice: a leading ' before = + - @ in text cells."""
    import csv

    monkeypatch.chdir(tmp_path)
    photo = Path("=HYPERLINK(x)+a.png")  # as typed on the command line, relative
    Image.new("RGB", (80, 60)).save(photo)
    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector())
    predict_files(predictor, [photo], output_dir=tmp_path / "out", annotate=False,
                  progress=False)  # fmt: skip
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["source"] == "'=HYPERLINK(x)+a.png" for r in rows)
    jsonl = (tmp_path / "out" / "predictions.jsonl").read_text()
    assert '"source": "' + str(photo) in jsonl  # JSON keeps the name as it is


def test_an_interrupted_run_keeps_the_prediction_rows_written(checkpoint: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """Ctrl-C after some frames: the tables hold those rows under their names (only an
    OSError, such as a full disk, drops them)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        Image.new("RGB", (80, 60), (i, 90, 200)).save(photos / f"p{i}.png")
    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector())
    seen = []

    def stop_after_two(frame, persons) -> None:
        seen.append(frame)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, sorted(photos.iterdir()), output_dir=tmp_path / "out",
                      annotate=False, progress=False, on_frame=stop_after_two)  # fmt: skip
    rows = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert len(rows) >= 2 and not list((tmp_path / "out").glob(".*tmp*"))


def test_a_video_is_written_under_a_temporary_name_and_renamed_whole(tmp_path: Path) -> None:
    """It used to stream into its final name: a kill or a full disk left half a video
    there, unplayable, under the name of a finished one."""
    need_av()
    path = tmp_path / "clip_dagnet.mp4"
    writer = VideoWriter(path, fps=5)
    rng = np.random.default_rng(0)
    for _ in range(100):  # noise, past the encoder's lookahead: it writes before the end
        writer.write(Image.fromarray(rng.integers(0, 255, (80, 96, 3), np.uint8)))
    assert [p.name for p in tmp_path.iterdir()] == [f".clip_dagnet.tmp-{os.getpid()}.mp4"]
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["clip_dagnet.mp4"]
    assert sum(1 for _ in iter_frames([path])) == 100  # whole and readable
    aborted = VideoWriter(tmp_path / "other.mp4", fps=5)
    aborted.write(Image.new("RGB", (96, 80)))
    aborted.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["clip_dagnet.mp4"]
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "failed.mp4", fps=5) as w:
        w.write(Image.new("RGB", (96, 80)))
        raise RuntimeError("a failure elsewhere")
    with pytest.raises(KeyboardInterrupt), VideoWriter(tmp_path / "stopped.mp4", fps=5) as w:
        w.write(Image.new("RGB", (96, 80)))
        raise KeyboardInterrupt  # Ctrl-C: the frames so far make a shorter video
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_dagnet.mp4", "stopped.mp4"]


def test_a_full_disk_names_the_video_and_leaves_none(tmp_path: Path, full_disk: Path) -> None:
    from dagnet_layers.errors import StorageError

    need_av()
    rng = np.random.default_rng(0)
    (full_disk / "filler").write_bytes(b"x" * (40 << 10))
    with pytest.raises(StorageError, match=r"cannot write the video .*noise\.mp4") as info:
        with VideoWriter(full_disk / "noise.mp4", fps=5) as writer:
            for _ in range(20):  # noise does not compress: 24 KiB left fill at once
                writer.write(Image.fromarray(rng.integers(0, 255, (240, 320, 3), np.uint8)))
    assert info.value.errno == errno.ENOSPC or "space" in str(info.value).lower(), info.value
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("stop", [RuntimeError, KeyboardInterrupt])
def test_a_run_stopped_mid_video_keeps_it_only_for_ctrl_c(checkpoint: Path, tmp_path: Path,
                                                          stop: type) -> None:  # fmt: skip
    """A failure mid-video (out of memory, a bug) left the half video under its final
    name; only Ctrl-C keeps the frames so far, as a shorter video."""
    write_video(tmp_path / "clip.mp4", n=6)
    predictor = Predictor.from_checkpoint(checkpoint, detector=StubDetector())
    seen = []

    def stop_after_three(frame, persons) -> None:
        seen.append(frame)
        if len(seen) == 3:
            raise stop("stopped")

    out = tmp_path / "out"
    with pytest.raises(stop):
        predict_files(predictor, [tmp_path / "clip.mp4"], output_dir=out, progress=False,
                      on_frame=stop_after_three)  # fmt: skip
    videos = sorted(p.name for p in (out / "annotated").iterdir())
    assert videos == (["clip_dagnet.mp4"] if stop is KeyboardInterrupt else []), videos
    if stop is KeyboardInterrupt:
        assert sum(1 for _ in iter_frames([out / "annotated" / "clip_dagnet.mp4"])) == 2


def test_a_killed_writers_temporary_video_is_removed_by_the_next(tmp_path: Path) -> None:
    need_av()
    dead = tmp_path / ".clip.tmp-999999999.mp4"  # no such process
    alive = tmp_path / f".clip.tmp-{os.getppid()}.mp4"  # a living process's: left alone
    dead.write_bytes(b"half a video")
    alive.write_bytes(b"being written")
    with VideoWriter(tmp_path / "clip.mp4", fps=5) as writer:
        writer.write(Image.new("RGB", (96, 80)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "clip.mp4"]
