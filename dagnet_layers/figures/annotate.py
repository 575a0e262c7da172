"""Predictions drawn onto the picture itself: a box and the top emotions per person.

Drawn with Pillow alone (no matplotlib), fast enough for every frame of a video.
Each person's box and label share a colour from the Okabe-Ito palette (by track
number in a video, so a person keeps its colour); the label also carries the
number, so colour is never the only cue.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagnet_layers.figures._style import OKABE_ITO

__all__ = ["annotate_image"]

_COLOURS = [OKABE_ITO[k] for k in ("orange", "sky_blue", "bluish_green", "yellow", "blue",
                                   "vermillion", "reddish_purple")]  # fmt: skip


def annotate_image(
    image: Any, persons: Sequence[Any], *, labels: int = 3, note: str | None = None,
) -> Any:  # fmt: skip
    """A copy of ``image`` (PIL RGB) with each person's box, number and top emotions.

    Args:
        image: The picture the persons were found in.
        persons: :class:`~dagnet_layers.inference.PersonPrediction` objects (``box``,
            ``person``, ``track``, ``predicted``, ``scores``).
        labels: Emotions written per person (its predicted ones first, then the
            best scores).
        note: A line written across the top (e.g. that the checkpoint is synthetic).

    Returns:
        The annotated copy.

    Example:
        >>> from PIL import Image
        >>> from types import SimpleNamespace
        >>> p = SimpleNamespace(box=(2, 2, 30, 40), person=0, track=None, predicted=["Peace"],
        ...                     scores={"Peace": 0.9, "Pain": 0.1})
        >>> annotate_image(Image.new("RGB", (64, 48)), [p]).size
        (64, 48)
    """
    from PIL import ImageDraw, ImageFont

    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    size = max(10, min(w, h) // 40)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    top_margin = note_top = 0
    if note:  # a band across the top; the labels stay below it
        _, note_top, _, note_bottom = draw.textbbox((0, 0), note, font=font)
        top_margin = note_bottom - note_top + 6
    for p in persons:
        colour = _COLOURS[(p.track if p.track is not None else p.person) % len(_COLOURS)]
        x1, y1, x2, y2 = p.box
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=colour, width=max(2, size // 5))
        names = list(p.predicted)[:labels]
        names += [n for n, _ in sorted(p.scores.items(), key=lambda kv: -kv[1])
                  if n not in names][: labels - len(names)]  # fmt: skip
        who = f"#{p.track}" if p.track is not None else f"{p.person + 1}"
        text = f"{who}: " + ", ".join(f"{n} {p.scores[n]:.2f}" for n in names)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 4, bottom - top + 4
        # above the box when there is room, else inside it; never past the right edge
        ty = y1 - th if y1 - th >= top_margin else max(y1, top_margin)
        tx = max(0, min(x1, w - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour)
        draw.text((tx + 2, ty + 2 - top), text, fill="black", font=font)
    if note:
        draw.rectangle((0, 0, w, top_margin), fill="firebrick")
        draw.text((3, 3 - note_top), note, fill="white", font=font)
    return out
