"""Photos and videos in, frames out: files, folders and globs; videos through PyAV.

:func:`expand_inputs` turns what a user types (a file, a folder, a glob) into a
sorted list of files; :func:`iter_frames` yields a
:class:`~dagnet_layers.inference.Frame` per photo and per kept video frame, and a
:class:`Skipped` (counted by reason, never silent) for what cannot be read.
Video needs the ``video`` extra (PyAV, whose wheels carry FFmpeg).
"""

from __future__ import annotations

import errno
import glob
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from dagnet_layers._deps import require
from dagnet_layers.emotic.data import MAX_IMAGE_PIXELS, load_image_rgb
from dagnet_layers.errors import ImageTooLargeError, MissingFileError, StorageError
from dagnet_layers.inference.detect import boxes_for
from dagnet_layers.inference.predictor import Frame
from dagnet_layers.storage import replace_durably

__all__ = [
    "IMAGE_SUFFIXES",
    "SKIP_REASONS",
    "VIDEO_SUFFIXES",
    "Skipped",
    "VideoWriter",
    "expand_inputs",
    "is_video",
    "iter_frames",
    "video_fps",
]

#: File name endings read as photos.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
#: File name endings read as videos.
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
#: Why an input gave no prediction (every skip is counted under one of these).
SKIP_REASONS = ("unreadable_image", "image_too_large", "unreadable_video", "no_person",
                "empty_box")  # fmt: skip


@dataclass(frozen=True)
class Skipped:
    """An input (or part of one) that gave no prediction, and why (one of :data:`SKIP_REASONS`)."""

    source: str
    reason: str
    detail: str = ""


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether the file name ends like a video."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]], recursive: bool = False,
    skipped: Counter[str] | None = None,
) -> list[Path]:  # fmt: skip
    """Files from files, folders and glob patterns: their photos and videos, sorted.

    A folder and a glob follow one rule, each left-out entry counted by reason in
    ``skipped``: a file whose name does not end like a photo or a video
    (:data:`IMAGE_SUFFIXES`, :data:`VIDEO_SUFFIXES`) as ``"not_a_photo_or_video"``; a
    folder (one a glob matches, or a subfolder of a folder read without ``recursive``)
    as ``"folder"``; anything else that is not a regular file (a dangling link, a FIFO)
    as ``"not_a_regular_file"``. A file named on its own is kept whatever its name
    (reading it says what it is).

    Args:
        inputs: Files, folders and glob patterns, as a user types them.
        recursive: Search folders' subfolders too.
        skipped: Where to count what was left out, by reason.

    Raises:
        MissingFileError: An input that is neither a file, a folder nor a glob that
            matches a photo or a video (names it).
    """
    counts: Counter[str] = Counter()
    out: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            out.append(path)
            continue
        if path.is_dir():
            entries = list(path.glob("**/*" if recursive else "*"))
        elif glob.has_magic(str(item)):
            entries = [Path(p) for p in glob.glob(os.path.expanduser(str(item)),
                                                  recursive=True)]  # fmt: skip
        else:
            raise MissingFileError(path, "no such file or folder")
        folders = [p for p in entries if p.is_dir()]
        if not (path.is_dir() and recursive):  # a recursive walk goes into its folders
            counts["folder"] += len(folders)
        found = [p for p in entries if p.is_file()]
        counts["not_a_regular_file"] += len(entries) - len(folders) - len(found)
        media = sorted(p for p in found
                       if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)  # fmt: skip
        counts["not_a_photo_or_video"] += len(found) - len(media)
        if not media and not path.is_dir():
            raise MissingFileError(item, f"the pattern matches no photo or video "
                                   f"({len(found)} other file(s))")
        out += media
    if skipped is not None:
        skipped.update(+counts)
    return out


def iter_frames(
    paths: Sequence[Path], *, every: int = 1, max_pixels: int | None = MAX_IMAGE_PIXELS,
    boxes: dict[str, list[list[float]]] | None = None,
) -> Iterator[Frame | Skipped]:  # fmt: skip
    """A :class:`Frame` per photo and per ``every``-th video frame; a :class:`Skipped` otherwise.

    Args:
        paths: Files (see :func:`expand_inputs`).
        every: Keep one video frame in ``every``.
        max_pixels: Larger photos are skipped (``image_too_large``) before decoding.
        boxes: Person boxes per photo (by path as given or by file name); photos
            not in it go to the detector.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    for path in paths:
        source = str(path)
        if is_video(path):
            yield from _video_frames(path, every)
            continue
        try:
            image = load_image_rgb(path, max_pixels=max_pixels)
        except ImageTooLargeError as err:
            yield Skipped(source, "image_too_large", str(err))
            continue
        except (OSError, ValueError) as err:
            yield Skipped(source, "unreadable_image", str(err))
            continue
        yield Frame(source, image, boxes=None if boxes is None else boxes_for(boxes, path))


def _video_frames(path: Path, every: int) -> Iterator[Frame | Skipped]:
    av = require("av", "reading videos")
    source = str(path)
    try:
        container = av.open(source)
    except (OSError, av.error.FFmpegError) as err:  # type: ignore[attr-defined]
        yield Skipped(source, "unreadable_video", str(err))
        return
    with container:
        if not container.streams.video:
            yield Skipped(source, "unreadable_video", "no video stream")
            return
        stream = container.streams.video[0]
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % every:
                    continue
                time = float(frame.time) if frame.time is not None else None
                yield Frame(source, frame.to_image().convert("RGB"), index=index, time=time)
        except av.error.FFmpegError as err:  # type: ignore[attr-defined]
            yield Skipped(source, "unreadable_video", f"decoding stopped: {err}")


def video_fps(path: str | os.PathLike[str]) -> float:
    """Frames per second of a video's first stream (25 when the file does not say)."""
    av = require("av", "reading videos")
    with av.open(os.fspath(path)) as container:
        rate = container.streams.video[0].average_rate
    return float(rate) if rate else 25.0


def _remove_stale(path: Path) -> None:
    """Delete the temporary files a killed writer of ``path`` left (their PID is gone)."""
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return
    prefix = f".{path.stem}.tmp-"
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = stale.name[len(prefix):len(stale.name) - len(path.suffix)]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's) or unknowable: left alone


class VideoWriter:
    """Write RGB frames to a video file (H.264 when FFmpeg has it, else MPEG-4 Part 2).

    Frames are padded to even sizes (the codecs' 4:2:0 chroma needs them). The
    frames stream into a temporary file beside ``path`` (``.<stem>.tmp-<pid><suffix>``)
    that :meth:`close` finishes and renames into place, so ``path`` is a complete video
    or absent, never half of one; :meth:`abort` removes it instead, and the temporary
    files of killed writers of ``path`` are removed when the next one starts. A write that fails
    (a full disk) raises :class:`~dagnet_layers.errors.StorageError` naming ``path``
    and leaves nothing. Use as a context manager: it closes on success and on
    ``KeyboardInterrupt`` (the frames so far make a shorter, playable video) and
    aborts on any other error.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self._av = require("av", "writing videos")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        _remove_stale(self.path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self._container: Any = None
        self._stream: Any = None

    def _failed(self, err: BaseException) -> StorageError:
        self.abort()
        code = err.errno if isinstance(err, OSError) and err.errno else errno.EIO
        why = getattr(err, "strerror", None) or str(err)
        return StorageError(code, f"cannot write the video {self.path}: {why}")

    def write(self, image: Any) -> None:
        """Append one frame (PIL RGB)."""
        arr = np.asarray(image.convert("RGB"))
        h, w = arr.shape[:2]
        if h % 2 or w % 2:
            arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)))
        try:
            if self._container is None:
                self._container = self._av.open(str(self._tmp), mode="w")
                codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
                self._stream = self._container.add_stream(codec, rate=self.fps)
                self._stream.width, self._stream.height = arr.shape[1], arr.shape[0]
                self._stream.pix_fmt = "yuv420p"
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, self._av.error.FFmpegError) as err:
            raise self._failed(err) from err

    def close(self) -> None:
        """Flush the encoder, close the file and move it to ``path``."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            replace_durably(self._tmp, self.path)
        except (OSError, self._av.error.FFmpegError) as err:
            raise self._failed(err) from err

    def abort(self) -> None:
        """Stop without a video: the temporary file is removed, ``path`` untouched."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except (OSError, self._av.error.FFmpegError):
                pass  # the file goes anyway
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.close()
        else:
            self.abort()
