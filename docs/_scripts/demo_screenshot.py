"""Screenshot of ``dagnet-demo`` for the docs, taken in headless chromium as the browser test does.

The page serves a tiny random model (timm's ``test_resnet`` backbones, labelled as
trained on synthetic data) and a stub detector that returns the annotated boxes of an
image of the synthetic EMOTIC writer, so the picture shows the page's layout, not a
prediction. Needs the ``demo`` extra, selenium and ``apt-get install chromium
chromium-driver``::

    python docs/_scripts/demo_screenshot.py            # writes docs/results/demo/dagnet_demo.png
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from dagnet_layers import EMOTIC_CATEGORIES, create_model
from dagnet_layers.commands.demo import build_demo
from dagnet_layers.emotic.data import make_synthetic_emotic
from dagnet_layers.inference import Predictor

OUT = Path(__file__).resolve().parents[1] / "results" / "demo" / "dagnet_demo.png"


def main() -> int:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        info = make_synthetic_emotic(tmp_path / "syn", n_images=12, seed=1,
                                     image_size=(480, 360))  # fmt: skip
        by_file: dict[str, list] = {}
        for person in info.persons:
            by_file.setdefault(person.filename, []).append(person.bbox)
        name, boxes = max(by_file.items(), key=lambda kv: len(kv[1]))
        photo = next((tmp_path / "syn").rglob(name))
        Image.open(photo).convert("RGB").save(tmp_path / "photo.png")
        torch.manual_seed(0)
        ckpt = tmp_path / "ckpt"
        create_model("test_dagnet").eval().save_pretrained(ckpt)
        (ckpt / "inference.json").write_text(json.dumps({
            "image_size": 64, "score": "softmax", "data": {"synthetic": True},
            "thresholds": {c: 0.045 for c in EMOTIC_CATEGORIES}}))  # fmt: skip
        scores = [0.97 - 0.05 * k for k in range(len(boxes))]
        predictor = Predictor.from_checkpoint(
            ckpt, detector=lambda images: [(boxes, scores) for _ in images])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo = build_demo(predictor)
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                    quiet=True)  # fmt: skip
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1500"):  # fmt: skip
            options.add_argument(flag)
        browser = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"),
                                   options=options)  # fmt: skip
        try:
            browser.get(f"http://127.0.0.1:{port}/")
            wait = WebDriverWait(browser, 120)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
            browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(
                str(tmp_path / "photo.png"))
            time.sleep(1.0)
            browser.find_element(By.CSS_SELECTOR, "#predict").click()
            wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#summary"),
                                                        "found"))  # fmt: skip
            time.sleep(2.0)  # the images finish loading
            OUT.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(OUT))
        finally:
            browser.quit()
            demo.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
