"""examples/predict.py end to end on a tiny saved model: table, figure, JSON and argument errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from PIL import Image

from dagnet_layers import EMOTIC_CATEGORIES, create_model
from dagnet_layers.emotic.data import crop_body_and_context, emotic_eval_transform, mask_bbox
from dagnet_layers.inference import Predictor

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "predict.py"
ROW = re.compile(r"^\s+(\d+)\s+\((\d+), (\d+), (\d+), (\d+)\)\s+([\d.]+)\s+(.*)$")
CELL = re.compile(r"(\S+) (\d\.\d{3})(\*?)")


@pytest.fixture(scope="module")
def predict() -> ModuleType:
    from dagnet_layers.commands import predict

    return predict


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "best"
    create_model("test_dagnet").eval().save_pretrained(folder)
    thresholds = {c: 0.5 for c in EMOTIC_CATEGORIES}
    thresholds["Fear"] = None  # a category without validation positives
    (folder / "inference.json").write_text(
        json.dumps(
            {
                "image_size": 64,
                "mask_body": True,
                "mask_fill": 0,
                "thresholds": thresholds,
                "protocol": "emotic",
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    img = Image.new("RGB", (120, 80), (100, 150, 210))
    img.paste((200, 60, 60), (20, 20, 50, 78))
    img.save(path, quality=90)
    return path


def rows(text: str) -> list[re.Match[str]]:
    return [m for line in text.splitlines() if (m := ROW.match(line))]


def test_predict_prints_one_row_per_box_and_writes_the_figure(
    predict: ModuleType, checkpoint: Path, photo: Path, tmp_path: Path, capsys
) -> None:
    out_png, out_json = tmp_path / "figs" / "pred.png", tmp_path / "pred.json"
    code = predict.main(
        [
            "--checkpoint",
            str(checkpoint),
            "--image",
            str(photo),
            "--box",
            "20",
            "20",
            "50",
            "78",
            "--box",
            "60",
            "10",
            "200",
            "70",  # past the edge
            "--true-labels",
            "happiness, Engagement",
            "--true-labels",
            "",
            "--output",
            str(out_png),
            "--json",
            str(out_json),
            "--top-k",
            "4",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    table = rows(text)
    assert [int(m[1]) for m in table] == [1, 2]
    assert [tuple(int(v) for v in m.groups()[1:5]) for m in table] == [
        (20, 20, 50, 78),
        (60, 10, 120, 70),
    ]
    assert "box 2 (60 10 200 70) reaches past the image; clamped to (60, 10, 120, 70)" in text
    for m in table:
        assert 0.0 < float(m[6]) < 1.0  # BAM weight
        cells = CELL.findall(m[7])
        assert len(cells) == 4
        assert all(name in EMOTIC_CATEGORIES for name, _, _ in cells)
        scores = [float(s) for _, s, _ in cells]
        assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    report = json.loads(out_json.read_text())
    for m, person in zip(table, report["persons"], strict=True):
        # '*' marks a score at or above its threshold (0.5; the printout rounds it);
        # Fear has none.
        assert all((mark == "*") == (name != "Fear" and person["scores"][name] >= 0.5)
                   for name, _, mark in CELL.findall(m[7]))
    with Image.open(out_png) as img:
        assert img.format == "PNG" and img.size[0] > 0
    assert report["score"] == "sigmoid"
    assert report["persons"][0]["true_labels"] == ["Happiness", "Engagement"]
    assert report["persons"][1]["true_labels"] == []
    first = report["persons"][0]
    assert set(first["scores"]) == set(EMOTIC_CATEGORIES)
    assert "Fear" not in first["predicted"]  # no threshold: never predicted
    assert all(first["scores"][c] >= 0.5 for c in first["predicted"])


def test_predict_matches_the_dataset_preprocessing(
    predict: ModuleType, checkpoint: Path, photo: Path
) -> None:
    """The script's batch equals crop + mask + eval transform done by hand, and the scores
    equal sigmoid(logits) of the saved model on it."""
    image = Image.open(photo).convert("RGB")
    batch = Predictor.from_checkpoint(checkpoint).preprocess(image, [(20, 20, 50, 78)])
    body, context, box = crop_body_and_context(image, (20, 20, 50, 78), 64)
    # each stream normalised as timm says its backbone (test_resnet) wants
    timm_cfg = timm.create_model("test_resnet").pretrained_cfg
    sample = emotic_eval_transform(64, mean=timm_cfg["mean"], std=timm_cfg["std"])(
        {
            "body": torch.from_numpy(body),
            "context": mask_bbox(torch.from_numpy(context), torch.from_numpy(box), 0),
            "bbox": torch.from_numpy(box),
        }
    )
    torch.testing.assert_close(batch["body"][0], sample["body"])
    torch.testing.assert_close(batch["context"][0], sample["context"])
    # The body box is masked: black before normalisation.
    x1, y1, x2, y2 = (int(v) for v in box)
    assert torch.unique(batch["context"][0, 0, y1:y2, x1:x2]).numel() == 1


def test_predict_without_inference_json_falls_back_to_top_k(
    predict: ModuleType, photo: Path, tmp_path: Path, capsys
) -> None:
    folder = create_model("test_dagnet").save_pretrained(tmp_path / "ckpt")
    code = predict.main(
        [
            "--checkpoint",
            str(folder),
            "--image",
            str(photo),
            "--box",
            "20",
            "20",
            "50",
            "78",
            "--no-plot",
            "--top-k",
            "3",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "no inference.json" in text and "top-3 categories by score" in text
    assert "model input 224x224" in text
    (row,) = rows(text)
    assert len(CELL.findall(row[7])) == 3 and "*" not in row[7]


def test_persons_the_detector_leaves_out_are_said_for_one_photo(
    predict: ModuleType, checkpoint: Path, photo: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # fmt: skip
    from dagnet_layers.inference import TorchvisionPersonDetector

    def detector(parser, args):  # the CLI's own detector class, on a stand-in network
        args.detector = "ssdlite320_mobilenet_v3_large"  # as the real one resolves "auto"
        found = TorchvisionPersonDetector("ssdlite320_mobilenet_v3_large", weights=None,
                                          max_persons=args.max_persons)  # fmt: skip
        found.model = lambda images: [{  # three persons, one of them 2 pixels wide
            "boxes": torch.tensor([[2, 2, 60, 70], [50, 5, 110, 78], [1, 1, 3, 40]],
                                  dtype=torch.float32),
            "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 1])}
            for _ in images]  # fmt: skip
        return found

    monkeypatch.setattr(predict, "_detector", detector)
    assert predict.main(["--checkpoint", str(checkpoint), str(photo), "--max-persons", "1",
                         "--no-plot"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert ("persons: 1 found by ssdlite320_mobilenet_v3_large (confidence >= 0.5); 1 more "
            "left out by --max-persons 1; 1 left out as smaller than 8.0 px") in out, out


@pytest.mark.parametrize(
    ("extra", "argument", "message"),
    [
        (["--box", "200", "10", "260", "50"], "--box", "empty inside the 120x80 image"),
        (["--box", "30", "30", "30", "60"], "--box", "empty inside"),
        (["--box", "1", "2", "3"], "--box", "needs 4 numbers x1 y1 x2 y2, got 3"),
        (["--box", "1", "2", "a", "4"], "--box", "must hold numbers"),
        (["--box", "1", "2", "30", "40", "--true-labels", "Joy"], "--true-labels", "'Joy'"),
        (
            ["--box", "1", "2", "30", "40", "--true-labels", "Peace", "--true-labels", "Pain"],
            "--true-labels",
            "once per --box (1), got 2",
        ),
        (["--box", "1", "2", "30", "40", "--top-k", "0"], "--top-k", ">= 1"),
    ],
)
def test_predict_argument_errors_name_the_argument(
    predict: ModuleType, checkpoint: Path, photo: Path, capsys, extra, argument, message
) -> None:
    with pytest.raises(SystemExit) as exc:
        predict.main(["--checkpoint", str(checkpoint), "--image", str(photo), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argument}" in err and message in err


@pytest.mark.parametrize(("extra", "argument", "message"), [
    (["--output", "{tmp}/a_file/fig.png"], "--output", "{tmp}/a_file is a file, not a folder"),
    (["--output", "{tmp}/fig.txt"], "--output", "{tmp}/fig.txt: the figure's suffix says its "
     "format; give one of .avif, .eps"),
    (["--output", "{tmp}/fig"], "--output", "{tmp}/fig: the figure's suffix says its format"),
    (["--output", "{tmp}"], "--output", "{tmp} is a folder; give a file name"),
    (["--json", "{tmp}/a_file/deeper/x.json"], "--json", "{tmp}/a_file is a file, not a folder"),
    (["--csv", "{tmp}/a_file/x.csv"], "--csv", "{tmp}/a_file is a file, not a folder"),
    (["--output-dir", "{tmp}/a_file"], "--output-dir", "{tmp}/a_file is a file, not a folder"),
])
def test_predict_output_errors_come_before_the_model_loads(
    predict: ModuleType, checkpoint: Path, photo: Path, tmp_path: Path, capsys,
    monkeypatch: pytest.MonkeyPatch, extra: list[str], argument: str, message: str,
) -> None:  # fmt: skip
    (tmp_path / "a_file").write_text("")
    loaded = []
    monkeypatch.setattr(predict.Predictor, "from_checkpoint",
                        lambda *a, **k: loaded.append(1))  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        predict.main(["--checkpoint", str(checkpoint), "--image", str(photo),
                      "--box", "1", "2", "30", "40", *[e.format(tmp=tmp_path) for e in extra]])
    assert exc.value.code == 2 and not loaded
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {argument}: {message.format(tmp=tmp_path)}" in err, err


def test_predict_file_errors_name_the_argument(
    predict: ModuleType, checkpoint: Path, photo: Path, tmp_path: Path, capsys
) -> None:
    box = ["--box", "1", "2", "30", "40"]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text("{}")
    cases = [
        ([str(tmp_path / "nowhere"), str(photo)], "--checkpoint", "is not a folder"),
        ([str(incomplete), str(photo)], "--checkpoint", "has no model.safetensors"),
        ([str(checkpoint), str(tmp_path / "missing.jpg")], "--image", "no such file or folder"),
        ([str(checkpoint), str(not_an_image)], "--image", "cannot decode the image"),
    ]
    for (ckpt, image), argument, message in cases:
        with pytest.raises(SystemExit) as exc:
            predict.main(["--checkpoint", ckpt, "--image", image, *box])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {argument}" in err and message in err, err


def test_predict_scores_follow_the_checkpoint_and_flag_synthetic_data(
    predict: ModuleType, photo: Path, tmp_path: Path, capsys
) -> None:
    torch.manual_seed(0)
    model = create_model("test_dagnet").eval()
    folder = model.save_pretrained(tmp_path / "ckpt")
    (folder / "inference.json").write_text(json.dumps({
        "image_size": 64, "mask_body": True, "mask_fill": 0, "score": "softmax",
        "data": {"source": "synthetic", "synthetic": True},
    }))
    out_json, out_png = tmp_path / "p.json", tmp_path / "p.png"
    code = predict.main(["--checkpoint", str(folder), "--image", str(photo), "--box", "20",
                         "20", "50", "78", "--json", str(out_json), "--output", str(out_png)])
    assert code == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("warning: this checkpoint was trained on SYNTHETIC")
    assert "scores: softmax(logits)" in text
    report = json.loads(out_json.read_text())
    assert report["score"] == "softmax" and "SYNTHETIC" in report["warning"]
    image = Image.open(photo).convert("RGB")
    # normalised as timm says the backbone (test_resnet: mean = std = 0.5) wants
    timm_cfg = timm.create_model("test_resnet").pretrained_cfg
    norm = {"mean": timm_cfg["mean"], "std": timm_cfg["std"]}
    body, context, box = crop_body_and_context(image, (20, 20, 50, 78), 64)
    sample = emotic_eval_transform(64, **norm)({
        "body": torch.from_numpy(body),
        "context": mask_bbox(torch.from_numpy(context), torch.from_numpy(box), 0),
        "bbox": torch.from_numpy(box),
    })
    batch = {k: v[None] for k, v in sample.items()}
    with torch.no_grad():
        logits = model(batch["body"], batch["context"]).logits.double()
    expected = torch.softmax(logits, dim=1)[0]
    got = torch.tensor([report["persons"][0]["scores"][c] for c in EMOTIC_CATEGORIES],
                       dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
    assert out_png.stat().st_size > 0


def test_one_photo_writes_its_figure_into_the_output_folder_not_the_current_one(
    checkpoint, tmp_path: Path, monkeypatch
) -> None:
    from dagnet_layers.commands.entry import predict_entry

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    Image.new("RGB", (80, 60)).save(tmp_path / "photo.jpg")
    assert predict_entry(["--checkpoint", str(checkpoint), str(tmp_path / "photo.jpg"),
                          "--box", "5", "5", "40", "50"]) == 0  # fmt: skip
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == [
        "dagnet_predictions", "dagnet_predictions/photo_dagnet.png"]
