"""``dagnet-demo``: a local web page that predicts emotions for the persons in a photo.

Usage::

    dagnet-demo --checkpoint RUN_DIR/checkpoints/best            # http://127.0.0.1:7860

Upload or pick a photo: the page finds the persons (the same torchvision
detector as ``dagnet-predict``), runs the checkpoint on each through
:class:`~dagnet_layers.inference.Predictor`, and shows the labelled photo, a
table per person (box, detector score, BAM's body weight, top emotions with
scores, the predicted ones marked) and the paper's Fig. 2 with each person's
GSAM attention map and LSAM's patch graph. It serves on ``127.0.0.1`` only
unless told ``--host``. Gradio is the ``demo`` extra.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dagnet_layers._deps import require
from dagnet_layers.commands.args import build_demo_parser
from dagnet_layers.emotic.data.pixels import MAX_IMAGE_PIXELS, load_image_rgb
from dagnet_layers.errors import DAGNetError, FileError
from dagnet_layers.inference import SYNTHETIC_WARNING, PersonPrediction, Predictor

__all__ = ["TABLE_HEADERS", "build_demo", "demo_outputs", "main"]

#: Columns of the demo's person table.
TABLE_HEADERS = ["person", "box (x1, y1, x2, y2)", "detector score", "body weight",
                 "top emotions (* predicted)"]  # fmt: skip


def _rows(persons: Sequence[PersonPrediction], top_k: int) -> list[list[Any]]:
    rows = []
    for p in persons:
        top = ", ".join(f"{n} {s:.2f}{'*' if n in p.predicted else ''}" for n, s in p.top(top_k))
        rows.append([p.person + 1, "(" + ", ".join(str(v) for v in p.box) + ")",
                     "-" if p.detector_score is None else round(p.detector_score, 3),
                     "-" if p.body_weight is None else round(p.body_weight, 3), top])
    return rows


def _figure_image(predictor: Predictor, image: Any, persons: Sequence[PersonPrediction]) -> Any:
    """:meth:`Predictor.plot`'s figure as a PIL image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(predictor.plot(image, persons, dpi=80))
    canvas.draw()
    return Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba()).convert("RGB")


def demo_outputs(predictor: Predictor, image: Any, top_k: int = 3) -> tuple[Any, ...]:
    """What the page shows for one photo: labelled photo, summary, table rows, figure.

    Args:
        predictor: The model and its settings.
        image: The upload: a file path (the page's; read with the datasets' reader and
            bounds, the pixel limit checked from the header before decoding, no EXIF
            rotation) or a PIL image.
        top_k: Emotions listed per person.

    Returns:
        ``(annotated image, summary markdown, table rows, figure image or None)``. A
        photo that cannot be used gives our one-line reason in the summary, not an
        exception (which Gradio would show as "the upstream app has raised an
        exception").
    """
    from dagnet_layers.figures import annotate_image

    if image is None:
        return None, "Upload a photo first.", [], None
    try:
        if isinstance(image, str | os.PathLike):
            image = load_image_rgb(image, max_pixels=MAX_IMAGE_PIXELS)
        image = image.convert("RGB")
        persons = predictor.predict(image, source="upload")
    except (DAGNetError, OSError, ValueError) as err:
        return None, f"⚠️ This photo cannot be used: {_one_line(err)}", [], None
    note = SYNTHETIC_WARNING if predictor.synthetic else None
    annotated = annotate_image(image, persons, note="SYNTHETIC demo checkpoint" if note else None)
    found = f"**{len(persons)} person{'s' if len(persons) != 1 else ''} found.**"
    over = predictor.skipped.pop("person_over_max_persons", 0)  # the detector's, this photo's
    small = predictor.skipped.pop("person_too_small", 0)
    if over:
        found += f" {over} more left out: only the most confident are kept (--max-persons)."
    if small:
        found += f" {small} too small to read left out."
    if not persons:
        found += " Try a photo with people in it, or lower --det-threshold."
    how = (f"Scores: {predictor.score} of the logits; * marks the categories at or above "
           "their validation threshold." if predictor.thresholds else
           f"Scores: {predictor.score} of the logits; no thresholds in the checkpoint: * marks "
           f"the top {predictor.top_k}.")  # fmt: skip
    summary = "\n\n".join(s for s in (f"⚠️ {note}" if note else None, found, how) if s)
    figure = _figure_image(predictor, image, persons) if persons else None
    return annotated, summary, _rows(persons, top_k), figure


def _one_line(err: BaseException) -> str:
    """The reason, without the upload's temporary path (the user never saw it)."""
    text = err.problem if isinstance(err, FileError) else str(err)
    return " ".join(text.split())[:300]


#: Largest upload the page accepts (Gradio refuses larger files before they land).
MAX_UPLOAD = "64mb"


def build_demo(predictor: Predictor, *, top_k: int = 3,
               examples: Sequence[str | Path] = ()) -> Any:  # fmt: skip
    """The Gradio page around ``predictor`` (not launched: call ``.launch()``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home
    gr = require("gradio", "the web demo")
    with gr.Blocks(title="DAG-Net: emotions in the wild") as demo:
        gr.Markdown("# DAG-Net: emotions in the wild\nUpload a photo: every person found gets "
                    "the 26 EMOTIC categories, BAM's body weight and GSAM's attention map.")
        with gr.Row():
            # A file, not gr.Image: Gradio's image component decodes (and re-encodes) every
            # upload itself, before our reader can check its size or name what is wrong.
            # Our reader applies no EXIF rotation, as dagnet-predict (EMOTIC's boxes
            # refer to the stored pixels): rotate phone photos first.
            photo = gr.File(file_types=["image"], type="filepath", label="photo",
                            elem_id="photo")
            annotated = gr.Image(type="pil", label="persons and top emotions",
                                 elem_id="annotated")  # fmt: skip
        run = gr.Button("Predict", variant="primary", elem_id="predict")
        summary = gr.Markdown(elem_id="summary")
        table = gr.Dataframe(headers=TABLE_HEADERS, label="persons", elem_id="persons",
                             interactive=False)  # fmt: skip
        figure = gr.Image(type="pil", label="attention (GSAM), body weight (BAM), patch graph "
                          "(LSAM)", elem_id="figure")  # fmt: skip
        if examples:
            gr.Examples([[str(e)] for e in examples], inputs=[photo])
        run.click(lambda image: demo_outputs(predictor, image, top_k), inputs=[photo],
                  outputs=[annotated, summary, table, figure])  # fmt: skip
    return demo


def main(argv: Sequence[str] | None = None, prog: str = "dagnet-demo") -> int:
    """Build the predictor from the checkpoint and serve the page until Ctrl-C."""
    from dagnet_layers.commands.checks import usable_device
    from dagnet_layers.commands.predict import _check_checkpoint, _check_numbers, _detector

    parser = build_demo_parser(prog)
    args = parser.parse_args(argv)
    _check_numbers(parser, args)
    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: must be in [0, 65535], got {args.port}")
    for example in args.example:
        if not example.is_file():
            parser.error(f"argument --example: {example}: no such file")
    usable_device(parser, args.device)
    _check_checkpoint(parser, args.checkpoint)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device,
                                          detector=_detector(parser, args, "demo"),
                                          top_k=args.top_k)
    demo = build_demo(predictor, top_k=args.top_k, examples=args.example)
    if predictor.synthetic:
        print(SYNTHETIC_WARNING)
    demo.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
                max_file_size=MAX_UPLOAD)
    return 0


if __name__ == "__main__":
    from dagnet_layers import cli

    prog = "dagnet_layers.commands.demo"
    sys.exit(cli.run_cli(lambda a: main(a, prog=prog), prog=prog))
