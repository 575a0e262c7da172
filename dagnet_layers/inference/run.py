"""Prediction over files: photos, folders, globs and videos to JSON Lines, CSV and pictures.

:func:`predict_files` runs a :class:`~dagnet_layers.inference.Predictor` over
inputs and writes, under ``output_dir``:

- ``predictions.jsonl``: one record per person per photo or video frame (box,
  detector score, every category's score, the predicted categories, VAD when
  the model has it, BAM's body weight, the track number in a video);
- ``predictions.csv``: the same as a table (one score column per category);
- ``annotated/``: each photo with its persons' boxes and top emotions, each
  video as an annotated video (``<name>_dagnet.mp4``) and a per-person timeline
  of the top categories (``<name>_timeline.png``, persons linked across frames
  by box overlap).

What gave no prediction is counted by reason (:data:`~dagnet_layers.inference.media.SKIP_REASONS`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from dagnet_layers.emotic.data import MAX_IMAGE_PIXELS
from dagnet_layers.errors import StorageError
from dagnet_layers.inference.media import (
    Skipped,
    VideoWriter,
    iter_frames,
    video_fps,
)
from dagnet_layers.inference.predictor import Frame, PersonPrediction, Predictor
from dagnet_layers.inference.track import IoUTracker
from dagnet_layers.storage import replace_durably, write_bytes_atomic

__all__ = ["PredictionSummary", "predict_files"]

_SYNTHETIC_NOTE = "SYNTHETIC demo checkpoint: not a prediction of real emotions"


@dataclass
class PredictionSummary:
    """What :func:`predict_files` did.

    Attributes:
        photos: Photos predicted for.
        videos: Videos opened.
        frames: Video frames predicted for.
        persons: Person records written.
        skipped: Reason -> count (an unreadable file, a frame with no person...).
        outputs: Files written.
        synthetic: The checkpoint was trained on synthetic data.
    """

    photos: int = 0
    videos: int = 0
    frames: int = 0
    persons: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    outputs: list[Path] = field(default_factory=list)
    synthetic: bool = False

    def line(self) -> str:
        """One line for a terminal."""
        skipped = ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())) or "none"
        text = (f"{self.persons} persons in {self.photos} photos and {self.frames} frames of "
                f"{self.videos} videos; skipped: {skipped}")
        return ("SYNTHETIC checkpoint: " + text) if self.synthetic else text


class _Tables:
    """The JSON Lines and CSV outputs, written as predictions arrive."""

    def __init__(self, jsonl: Path | None, csv_path: Path | None, categories: Sequence[str],
                 synthetic: bool) -> None:  # fmt: skip
        self.categories, self.synthetic = list(categories), synthetic
        self._files: list[tuple[TextIO, Path, Path]] = []  # file, temporary, final
        self._jsonl = self._open(jsonl)
        self._csv = None
        if csv_path is not None:
            try:
                self._csv = csv.writer(self._open(csv_path))
            except StorageError:
                self.abort()  # the JSON Lines file opened first goes too
                raise
            self._csv.writerow(["source", "frame", "time", "person", "track", "x1", "y1", "x2",
                                "y2", "detector_score", "body_weight", "valence", "arousal",
                                "dominance", "predicted", *self.categories, "synthetic"])

    def _open(self, path: Path | None) -> Any:
        """A temporary file beside ``path``, renamed over it by :meth:`close`: a full disk
        or a kill leaves no empty or half table under the final name."""
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            f = open(tmp, "w", encoding="utf-8", newline="")
        except OSError as err:
            raise StorageError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
        self._files.append((f, tmp, path))
        return f

    def _guard(self, action: Callable[[], None]) -> None:
        """Run a write; an OSError becomes one error naming the final files, and the
        temporary ones go."""
        try:
            action()
        except OSError as err:
            self.abort()
            names = ", ".join(str(final) for _, _, final in self._files) or "the tables"
            raise StorageError(err.errno, f"cannot write {names}: "
                               f"{err.strerror or err}") from err

    def write(self, persons: Sequence[PersonPrediction]) -> None:
        def rows() -> None:
            for p in persons:
                if self._jsonl is not None:
                    record = p.to_record()
                    record["synthetic"] = self.synthetic
                    self._jsonl.write(json.dumps(record) + "\n")
                if self._csv is not None:
                    vad = p.vad or (None, None, None)
                    self._csv.writerow([_cell(p.source), p.frame, p.time, p.person, p.track,
                                        *p.box, p.detector_score, p.body_weight, *vad,
                                        _cell(";".join(p.predicted)),
                                        *(f"{p.scores[c]:.6g}" for c in self.categories),
                                        self.synthetic])  # fmt: skip
            for f, _, _ in self._files:
                f.flush()

        self._guard(rows)

    def close(self) -> None:
        """Put each table in place under its name (after every row is written)."""

        def finish() -> None:
            for f, tmp, final in self._files:
                f.close()
                replace_durably(tmp, final)

        self._guard(finish)

    def abort(self) -> None:
        """Drop the temporary tables (a failed run leaves none behind)."""
        for f, tmp, _ in self._files:
            with contextlib.suppress(OSError):
                f.close()
            tmp.unlink(missing_ok=True)


#: Characters that start a formula in a spreadsheet (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """A CSV text cell a spreadsheet shows as text: a leading ``'`` before a formula sign
    (a file named ``=HYPERLINK(...)+x.jpg`` must not run when the CSV is opened)."""
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def _save_picture(picture: Any, path: Path) -> None:
    """An annotated photo, encoded in memory and written atomically (named on failure)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    picture.save(buffer, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
    write_bytes_atomic(path, buffer.getbuffer())


def _unique(folder: Path, name: str, used: set[Path]) -> Path:
    path = folder / name
    stem, suffix, k = path.stem, path.suffix, 1
    while path in used:
        k += 1
        path = folder / f"{stem}-{k}{suffix}"
    used.add(path)
    return path


def predict_files(
    predictor: Predictor, paths: Sequence[Path], *, output_dir: str | os.PathLike[str] | None,
    jsonl: str | os.PathLike[str] | None = None, csv_path: str | os.PathLike[str] | None = None,
    annotate: bool = True, timeline: bool = True, every: int = 1,
    boxes: dict[str, list[list[float]]] | None = None, max_pixels: int | None = MAX_IMAGE_PIXELS,
    progress: bool = True, on_frame: Callable[[Frame, list[PersonPrediction]], None] | None = None,
) -> PredictionSummary:  # fmt: skip
    """Predict for every person of photos and videos; write the tables and pictures.

    Args:
        predictor: The model with its checkpoint's settings (and a detector unless
            every photo has boxes).
        paths: Files (:func:`~dagnet_layers.inference.media.expand_inputs` makes them
            from folders and globs).
        output_dir: Where ``predictions.jsonl``, ``predictions.csv`` and
            ``annotated/`` go; ``None`` writes only what ``jsonl``/``csv_path`` name.
        jsonl: JSON Lines file (default ``output_dir/predictions.jsonl``).
        csv_path: CSV file (default ``output_dir/predictions.csv``).
        annotate: Write the annotated photos and videos.
        timeline: Write each video's per-person timeline (needs the ``viz`` extra).
        every: Keep one video frame in ``every``.
        boxes: Person boxes per photo (file path or name); the others are detected.
        max_pixels: Larger photos are skipped (``image_too_large``).
        progress: Show a progress bar.
        on_frame: Called with each frame and its persons (e.g. to print a table).

    Returns:
        The counts, the skips by reason and the files written.
    """
    out_dir = None if output_dir is None else Path(output_dir)
    if out_dir is not None:
        jsonl = jsonl if jsonl is not None else out_dir / "predictions.jsonl"
        csv_path = csv_path if csv_path is not None else out_dir / "predictions.csv"
    outputs = _Outputs(predictor, jsonl, csv_path,
                       out_dir / "annotated" if (annotate and out_dir is not None) else None,
                       timeline, every)  # fmt: skip
    summary = outputs.summary

    def frames() -> Iterator[Frame]:
        for item in iter_frames(paths, every=every, max_pixels=max_pixels, boxes=boxes):
            if isinstance(item, Skipped):
                summary.skipped[item.reason] += 1
                continue
            yield item

    bar = tqdm(desc="predicting", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for frame, persons in predictor.predict_many(frames()):
            bar.update(1)
            outputs.add(frame, persons, on_frame)
        outputs.finish_video()
    except BaseException as err:
        outputs.stopped(err)
        raise
    else:
        outputs.tables.close()  # every row written: the tables go in place
    finally:
        bar.close()
        if outputs.video.get("writer") is not None:
            outputs.video["writer"].close()
    summary.skipped.update(predictor.skipped)
    predictor.skipped.clear()
    return summary


class _Outputs:
    """What :func:`predict_files` writes, frame by frame: the tables, the counts, the
    annotated photos, and for the video being read its tracker, its annotated video and
    at its end its timeline."""

    def __init__(self, predictor: Predictor, jsonl: str | os.PathLike[str] | None,
                 csv_path: str | os.PathLike[str] | None, annotated: Path | None,
                 timeline: bool, every: int) -> None:  # fmt: skip
        self.summary = PredictionSummary(synthetic=predictor.synthetic)
        self.note = _SYNTHETIC_NOTE if predictor.synthetic else None
        self.tables = _Tables(None if jsonl is None else Path(jsonl),
                              None if csv_path is None else Path(csv_path),
                              predictor.categories, predictor.synthetic)  # fmt: skip
        self.summary.outputs += [Path(p) for p in (jsonl, csv_path) if p is not None]
        self.annotated, self.timeline, self.every = annotated, timeline, every
        if annotated is not None:
            annotated.mkdir(parents=True, exist_ok=True)
        self.used: set[Path] = set()
        # the video being written: source, tracker, writer, persons
        self.video: dict[str, Any] = {}

    def add(self, frame: Frame, persons: list[PersonPrediction],
            on_frame: Callable[[Frame, list[PersonPrediction]], None] | None) -> None:  # fmt: skip
        """Count, track, tabulate and draw one frame's persons."""
        summary = self.summary
        if frame.index is None:
            self.finish_video()
            summary.photos += 1
        else:
            self._video_frame(frame, persons)
        if not persons:
            summary.skipped["no_person"] += 1
        summary.persons += len(persons)
        self.tables.write(persons)
        if on_frame is not None:
            on_frame(frame, persons)
        if self.annotated is not None:
            picture = _annotated(frame, persons, self.note)
            if frame.index is None:
                name = f"{Path(frame.source).stem}_dagnet{Path(frame.source).suffix}"
                path = _unique(self.annotated,
                               name if _is_photo_suffix(name) else name + ".png", self.used)
                _save_picture(picture, path)
                summary.outputs.append(path)
            else:
                self.video["writer"].write(picture)

    def _video_frame(self, frame: Frame, persons: list[PersonPrediction]) -> None:
        """A video's frame: a new video starts its tracker and writer; persons get tracks."""
        video = self.video
        if video.get("source") != frame.source:
            self.finish_video()
            self.summary.videos += 1
            video.update(source=frame.source, tracker=IoUTracker(), persons=[], writer=None)
            if self.annotated is not None:
                path = _unique(self.annotated, f"{Path(frame.source).stem}_dagnet.mp4",
                               self.used)  # fmt: skip
                video["writer"] = VideoWriter(path, video_fps(frame.source) / self.every)
                self.summary.outputs.append(path)
        self.summary.frames += 1
        for p, track in zip(persons, video["tracker"].update([p.box for p in persons]),
                            strict=True):  # fmt: skip
            p.track = track
        video["persons"] += persons

    def finish_video(self) -> None:
        """Close the video being written and draw its per-person timeline."""
        video = self.video
        if not video:
            return
        if video["writer"] is not None:
            video["writer"].close()
        if self.timeline and self.annotated is not None and video["persons"]:
            from dagnet_layers.figures import plot_timeline

            path = _unique(self.annotated, f"{Path(video['source']).stem}_timeline.png",
                           self.used)  # fmt: skip
            title = f"{Path(video['source']).name}: top emotions per tracked person"
            plot_timeline(video["persons"], path,
                          title=title + (f"\n{_SYNTHETIC_NOTE}" if self.note else ""))
            self.summary.outputs.append(path)
        video.clear()

    def stopped(self, err: BaseException) -> None:
        """What is kept when the run stops early."""
        if isinstance(err, OSError):
            self.tables.abort()  # a full disk, an I/O error: no half table under its name
        else:
            self.tables.close()  # Ctrl-C or a failure elsewhere: the rows so far are kept
        if not isinstance(err, KeyboardInterrupt) and self.video.get("writer") is not None:
            self.video.pop("writer").abort()  # only a video Ctrl-C cut short is kept, shorter


def _is_photo_suffix(name: str) -> bool:
    """Whether Pillow writes this file name's format (photo outputs keep their input's)."""
    return Path(name).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _annotated(frame: Frame, persons: list[PersonPrediction], note: str | None) -> Any:
    from dagnet_layers.figures.annotate import annotate_image

    return annotate_image(frame.image, persons, note=note)

