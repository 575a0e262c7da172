"""Figures of dagnet_layers.figures: they render, save at the asked size and reject bad input."""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from dagnet_layers import EMOTIC_CATEGORIES, create_model
from dagnet_layers.emotic.metrics import EmoticReport
from dagnet_layers.figures import (
    attention_overlay,
    plot_ap_comparison,
    plot_prediction,
    plot_training_curves,
)


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def fake_ap(seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {c: float(rng.uniform(0.02, 0.9)) for c in EMOTIC_CATEGORIES}


@pytest.fixture(scope="module")
def model_outputs() -> tuple[dict, int]:
    torch.manual_seed(0)
    model = create_model("test_dagnet").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    outputs = dict(
        attention_maps=out.attention_map,
        body_weights=out.body_weights,
        adjacency=out.adjacency,
    )
    return outputs, model.partition


# --------------------------------------------------------------------------- module hygiene
def test_module_imports_neither_matplotlib_nor_models_at_import_time() -> None:
    package = Path(__import__("dagnet_layers.figures").figures.__file__).parent
    for path in sorted(package.glob("*.py")):
        top_level = []
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                top_level += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                top_level.append(node.module or "")
        bad = [m for m in top_level if m.startswith(("matplotlib", "dagnet_layers.models"))]
        assert not bad, f"{path.name} imports {bad} at import time"


# --------------------------------------------------------------------------- AP comparison
def test_ap_comparison_saves_png_of_configured_size(tmp_path: Path) -> None:
    ap = fake_ap()
    ap["Embarrassment"] = math.nan  # no positives: drawn as missing
    fig = plot_ap_comparison(ap, path=tmp_path / "sub" / "ap.png", figsize=(6, 8), dpi=50)
    assert isinstance(fig, Figure)
    assert png_size(tmp_path / "sub" / "ap.png") == (300, 400)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0].startswith("ours (mAP ")
    assert any("DAG-Net (mAP 29.96%)" in t for t in labels)
    assert labels[-1].startswith("n/a")


def test_ap_comparison_accepts_a_report_and_no_reference(tmp_path: Path) -> None:
    ap = fake_ap(1)
    report = EmoticReport("sklearn", ap, float(np.mean(list(ap.values()))))
    fig = plot_ap_comparison(report, reference=None, ours_label="run 7", path=tmp_path / "a.png")
    assert "sklearn" in fig._suptitle.get_text() and "run 7" in fig._suptitle.get_text()
    assert len(fig.legends[0].get_texts()) == 1
    w, h = png_size(tmp_path / "a.png")
    assert (w, h) == tuple(round(v * 100) for v in fig.get_size_inches())


def test_ap_comparison_rejects_unknown_categories_and_percentages() -> None:
    with pytest.raises(ValueError, match=r"unknown category name\(s\) \['Joy'\]"):
        plot_ap_comparison({"Joy": 0.5})
    with pytest.raises(ValueError, match=r"reference\['mine'\].*'Hapiness'"):
        plot_ap_comparison(fake_ap(), reference={"mine": {"Hapiness": 50.0}})
    with pytest.raises(ValueError, match="fractions in \\[0, 1\\]"):
        plot_ap_comparison({"Anger": 15.55})
    with pytest.raises(TypeError, match="per_category_ap"):
        plot_ap_comparison([0.1, 0.2])


# --------------------------------------------------------------------------- training curves
def write_log(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_training_curves_reads_known_columns_and_ignores_the_rest(tmp_path: Path) -> None:
    rows = [
        [e, 2.0 / e, "" if e == 2 else 0.2 + 0.01 * e, 1e-4 / e, 300.0, "note", 7]
        for e in range(1, 6)
    ]
    log = write_log(
        tmp_path / "log.csv",
        ["epoch", "train_loss", "val_map", "lr", "samples_per_s", "phase", "x"],
        rows,
    )
    fig = plot_training_curves(log, tmp_path / "curves.png", figsize=(9, 3), dpi=40)
    assert isinstance(fig, Figure)
    assert png_size(tmp_path / "curves.png") == (360, 120)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Loss", "Validation mAP", "Learning rate"]
    assert "samples/s" in fig._suptitle.get_text()
    best = fig.axes[1].get_legend().get_texts()[1].get_text()
    assert best == "best 25.00% (epoch 5)"  # fractions shown in percent, the gap skipped


def test_training_curves_tolerates_missing_columns(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.csv", ["train_loss", "val_loss"], [[1.0, 1.2], [0.8, 1.0]])
    fig = plot_training_curves(log)
    assert [ax.get_title() for ax in fig.axes] == ["Loss"]


def test_training_curves_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="log_csv"):
        plot_training_curves(tmp_path / "missing.csv")
    empty = write_log(tmp_path / "empty.csv", ["epoch", "train_loss"], [])
    with pytest.raises(ValueError, match="no data rows"):
        plot_training_curves(empty)
    other = write_log(tmp_path / "other.csv", ["epoch", "acc"], [[1, 0.5]])
    with pytest.raises(ValueError, match="none of the columns train_loss"):
        plot_training_curves(other)


# --------------------------------------------------------------------------- predictions
def test_attention_overlay_upsamples_and_masks_the_body() -> None:
    img = np.full((30, 40, 3), 200, dtype=np.uint8)
    out = attention_overlay(img, torch.rand(1, 3, 4), box=(5.5, 2, 20, 12))
    assert out.shape == (30, 40, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    inside, outside = out[2:12, 5:20], out[15:, 25:]
    assert inside.max() < outside.min()  # the masked body is darkened, never heat-mapped
    with pytest.raises(ValueError, match="undo the normalisation"):
        attention_overlay(np.full((4, 4, 3), -1.0), torch.rand(2, 2))
    with pytest.raises(ValueError, match="alpha"):
        attention_overlay(img, torch.rand(2, 2), alpha=2.0)


def test_prediction_figure_has_all_panels(tmp_path: Path, model_outputs) -> None:
    outputs, n = model_outputs
    img = Image.new("RGB", (96, 64), (90, 140, 200))
    fig = plot_prediction(
        img,
        [(5, 5, 40, 60), (50, 10, 90, 62)],
        [{"Happiness": 0.9, "Engagement": 0.7}, {}],
        partition=n,
        true_labels=[["Happiness"], None],
        path=tmp_path / "pred.png",
        figsize=(10, 4),
        dpi=60,
        **outputs,
    )
    assert isinstance(fig, Figure)
    assert png_size(tmp_path / "pred.png") == (600, 240)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("Predicted (blue) and true (green)")
    assert sum(t.startswith("Person ") for t in titles) == 2
    assert any(t.startswith("LSAM learned graph, 4x4") for t in titles)


def test_prediction_figure_without_model_extras(tmp_path: Path) -> None:
    img = np.zeros((3, 32, 48), dtype=np.uint8)  # CHW also accepted
    fig = plot_prediction(img, [10, 4, 30, 30], [{"Peace": 0.4}], path=tmp_path / "p.png")
    w, h = png_size(tmp_path / "p.png")
    assert (w, h) == tuple(round(v * 100) for v in fig.get_size_inches())


def test_prediction_rejects_bad_inputs(model_outputs) -> None:
    outputs, _ = model_outputs
    img = np.zeros((32, 32, 3), dtype=np.uint8)
    box, pred = [(1, 1, 20, 20)], [{"Happiness": 0.9}]
    with pytest.raises(ValueError, match=r"predictions\[0\].*'Joy'"):
        plot_prediction(img, box, [{"Joy": 0.9}])
    with pytest.raises(ValueError, match=r"true_labels\[0\].*'joy'"):
        plot_prediction(img, box, pred, true_labels=[["joy"]])
    with pytest.raises(ValueError, match=r"adjacency.*\(16, 16\) but partition=3 needs \(9, 9\)"):
        plot_prediction(img, box, pred, adjacency=outputs["adjacency"], partition=3)
    with pytest.raises(ValueError, match="not a square number"):
        plot_prediction(img, box, pred, adjacency=torch.eye(10))
    with pytest.raises(ValueError, match="square"):
        plot_prediction(img, box, pred, adjacency=torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"predictions=.*one entry per box \(1\), got 2"):
        plot_prediction(img, box, pred * 2)
    with pytest.raises(ValueError, match=r"attention_maps=.*one entry per box \(1\), got 2"):
        plot_prediction(img, box, pred, attention_maps=outputs["attention_maps"])
    with pytest.raises(ValueError, match=r"boxes\[0\].*x2 > x1"):
        plot_prediction(img, [(20, 1, 10, 20)], pred)
    # categories=None lifts the name check (models with another label set).
    assert isinstance(plot_prediction(img, box, [{"Joy": 0.9}], categories=None), Figure)


def test_prediction_figure_promises_no_true_labels_it_was_not_given(model_outputs) -> None:
    outputs, n = model_outputs
    fig = plot_prediction(Image.new("RGB", (96, 64)), [(5, 5, 40, 60), (50, 10, 90, 62)],
                          [{"Happiness": 0.9}, {}], partition=n, figsize=(10, 4), dpi=60,
                          **outputs)  # fmt: skip
    assert fig.axes[0].get_title() == "Predicted labels (blue)"
