"""The web demo: what it shows for a photo, and the page in a real headless browser.

The browser test drives Debian's chromium through its chromedriver (``apt-get install
chromium chromium-driver``; ``.ci/run`` installs them where it can): the page loads,
a photo is uploaded and submitted, and the page reports the persons the stub detector
put in it. Without a browser, gradio or selenium it is skipped, saying which is missing.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dagnet_layers import EMOTIC_CATEGORIES, create_model
from dagnet_layers.inference import Predictor

BOXES = [(10, 10, 40, 70), (60, 8, 90, 75)]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "best"
    create_model("test_dagnet").eval().save_pretrained(folder)
    (folder / "inference.json").write_text(json.dumps({
        "image_size": 64, "score": "softmax", "data": {"synthetic": True},
        "thresholds": {c: 0.04 for c in EMOTIC_CATEGORIES}}))  # fmt: skip
    return Predictor.from_checkpoint(folder, detector=lambda images: [
        (BOXES, [0.9, 0.8]) for _ in images])  # fmt: skip


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "people.png"
    img = Image.new("RGB", (100, 80), (90, 140, 200))
    for box in BOXES:
        img.paste((200, 60, 60), box)
    img.save(path)
    return path


def test_demo_outputs_show_every_person(predictor: Predictor, photo: Path) -> None:
    pytest.importorskip("matplotlib")
    from dagnet_layers.commands.demo import TABLE_HEADERS, demo_outputs

    annotated, summary, rows, figure = demo_outputs(predictor, Image.open(photo), top_k=3)
    assert annotated.size == (100, 80) and figure is not None
    assert "**2 persons found.**" in summary and "SYNTHETIC" in summary
    assert len(rows) == 2 and all(len(r) == len(TABLE_HEADERS) for r in rows)
    persons = predictor.predict(Image.open(photo).convert("RGB"))
    for row, p in zip(rows, persons, strict=True):
        assert row[1] == "(" + ", ".join(str(v) for v in p.box) + ")"
        assert row[4].count(",") == 2  # the top 3
    assert demo_outputs(predictor, None)[1] == "Upload a photo first."


def test_a_photo_that_cannot_be_used_gets_our_one_line_reason(
    predictor: Predictor, photo: Path, tmp_path: Path, monkeypatch
) -> None:
    """Not Gradio's "the upstream app has raised an exception"; no temporary path."""
    pytest.importorskip("matplotlib")
    from dagnet_layers.commands import demo

    broken = tmp_path / "upload_123.png"
    broken.write_bytes(photo.read_bytes()[:60])  # a truncated PNG
    annotated, summary, rows, figure = demo.demo_outputs(predictor, str(broken))
    assert annotated is None and rows == [] and figure is None
    assert summary.startswith("⚠️ This photo cannot be used: ") and str(tmp_path) not in summary
    assert "2 persons found" in demo.demo_outputs(predictor, str(photo))[1]  # a path works
    monkeypatch.setattr(demo, "MAX_IMAGE_PIXELS", 1_000)  # the bound, before decoding
    summary = demo.demo_outputs(predictor, str(photo))[1]
    assert "cannot be used" in summary and "8,000" in summary, summary


def test_the_page_says_how_many_persons_the_detector_left_out(predictor: Predictor,
                                                              photo: Path) -> None:  # fmt: skip
    from collections import Counter

    from dagnet_layers.commands.demo import demo_outputs

    class Crowded:  # finds the two persons, and says it left out three more
        def __init__(self) -> None:
            self.skipped: Counter[str] = Counter()

        def __call__(self, images):
            self.skipped.update(person_over_max_persons=2, person_too_small=1)
            return [(BOXES, [0.9, 0.8]) for _ in images]

    before = predictor.detector
    predictor.detector = Crowded()
    try:
        for _ in range(2):  # each photo's own counts, not a running total
            _, summary, rows, _ = demo_outputs(predictor, Image.open(photo))
            assert len(rows) == 2 and "**2 persons found.** 2 more left out" in summary
            assert "1 too small to read left out" in summary
    finally:
        predictor.detector = before


@pytest.mark.parametrize(("extra", "flag"), [
    (["--det-threshold", "1.5"], "--det-threshold"),
    (["--top-k", "0"], "--top-k"),
    (["--port", "70000"], "--port"),
    (["--example", "nowhere.jpg"], "--example"),
    (["--device", "gpu"], "--device"),
])
def test_demo_arguments_are_checked_before_anything_loads(
    tmp_path: Path, capsys, extra: list[str], flag: str
) -> None:
    from dagnet_layers.commands.demo import main

    with pytest.raises(SystemExit) as info:
        main(["--checkpoint", str(tmp_path), *extra])
    assert info.value.code == 2 and f"argument {flag}" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if Path("/usr/lib/chromium/chromedriver").exists()
        else None)  # fmt: skip
    if not (chromium and driver):
        pytest.skip("no chromium with chromedriver (apt-get install chromium chromium-driver)")
    return chromium, driver


@pytest.mark.slow
# gradio's queue calls pandas options that pandas 3 deprecates: its code, not ours
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
def test_the_page_in_a_headless_browser(predictor: Predictor, photo: Path,
                                        tmp_path: Path) -> None:  # fmt: skip
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from dagnet_layers.commands.demo import build_demo

    chromium, driver_path = _browser()
    port = _free_port()
    demo = build_demo(predictor)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                share=False, inbrowser=False, quiet=True)  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1280,1600"):  # fmt: skip
        options.add_argument(flag)
    browser = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 120)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
        assert "DAG-Net: emotions in the wild" in browser.page_source
        browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(photo))
        time.sleep(1.0)  # the upload lands before the click
        wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#predict"))).click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#summary"),
                                                    "persons found"))  # fmt: skip
        assert "2 persons found" in browser.find_element(By.CSS_SELECTOR, "#summary").text
        grid = browser.find_element(By.CSS_SELECTOR, "#persons [role=grid]")
        assert int(grid.get_attribute("aria-rowcount")) == 1 + 2  # the header and 2 persons
        assert "(60, 8, 90, 75)" in browser.find_element(By.CSS_SELECTOR, "#persons").text
        browser.save_screenshot(str(tmp_path / "demo.png"))
        # uploads Gradio's image component would have decoded itself, failing with its
        # generic error: our one-line reason on the page for each
        rgba, grey = tmp_path / "rgba.png", tmp_path / "grey.jpg"
        Image.new("RGBA", (100, 80), (1, 2, 3, 4)).save(rgba)
        Image.new("L", (100, 80), 7).save(grey)
        bad = {"text.png": b"not an image at all",
               "rgba_truncated.png": rgba.read_bytes()[:80],
               "grey_truncated.jpg": grey.read_bytes()[:120]}
        for name, data in bad.items():
            (tmp_path / name).write_bytes(data)
            browser.get(f"http://127.0.0.1:{port}/")
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                                       "#photo input[type=file]")))
            browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(
                str(tmp_path / name))
            time.sleep(1.0)
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#predict"))).click()
            wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#summary"),
                                                        "cannot be used"))  # fmt: skip
            assert "upstream" not in browser.page_source, name
    finally:
        browser.quit()
        demo.close()
