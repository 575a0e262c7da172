"""Pixels: decoding an image file of any mode, and cutting a person's body and context out of it.

The step between the records (where a person is) and the datasets and cache (what
a sample holds): :func:`load_image_rgb` decodes any image to 8-bit RGB with a
bounded pixel count, and :func:`crop_body_and_context` makes the body crop, the
whole-image context and the box in context pixels, exactly as the dataset and
the cache both need them.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from dagnet_layers.emotic.data.records import clamp_bbox
from dagnet_layers.errors import ImageDecodeError, ImageTooLargeError, MissingFileError
from dagnet_layers.storage import open_in_root

__all__ = ["MAX_IMAGE_PIXELS", "crop_body_and_context", "load_image_rgb"]


#: Default bound on an image's pixel count (width x height) for :func:`load_image_rgb`:
#: 64 megapixels (EMOTIC's largest images have a few); raise it with ``max_pixels``.
MAX_IMAGE_PIXELS = 64_000_000


def load_image_rgb(
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_IMAGE_PIXELS,
    root: str | os.PathLike[str] | None = None,
) -> Image.Image:
    """Decode an image file to an 8-bit RGB :class:`PIL.Image.Image`, whatever its mode.

    Grayscale, palette, CMYK, YCbCr and alpha images are converted to RGB (alpha is
    dropped: the stored colour is kept). 16-bit and 32-bit integer images (``I;16``,
    ``I``) are scaled from 0-65535 to 0-255, floating-point images (``F``) from 0-1
    when all values lie in it (else clipped to 0-255), 1-bit images to 0 / 255;
    Pillow's own ``convert("RGB")`` would clip a 16-bit image to white. EXIF
    orientation is deliberately ignored: EMOTIC boxes refer to the stored pixels.

    Args:
        path: Image file.
        max_pixels: Largest accepted ``width * height``, checked from the header
            before anything is decoded; ``None`` for no bound.
        root: A folder the opened file must lie in, checked on the open file
            (:func:`~dagnet_layers.storage.open_in_root`): a symbolic link swapped in
            after the path was checked cannot lead the read out of it.

    Returns:
        The decoded image in mode ``"RGB"``.

    Raises:
        MissingFileError: If ``path`` does not exist or is not a file.
        UnsafePathError: With ``root``, if what was opened lies outside it.
        ImageTooLargeError: If the image has more than ``max_pixels`` pixels.
        ImageDecodeError: If the file cannot be decoded (names the file and why).

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = os.path.join(d, "g.png")
        ...     Image.new("I;16", (5, 4), 65535).save(p)
        ...     img = load_image_rgb(p)
        ...     img.mode, img.size, img.getpixel((0, 0))
        ('RGB', (5, 4), (255, 255, 255))
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(path, "image not found")
    if root is not None:
        with open_in_root(path, root) as f:
            return _decode_rgb(f, path, max_pixels)
    return _decode_rgb(path, path, max_pixels)


def _decode_rgb(
    source: str | BinaryIO, path: str, max_pixels: int | None
) -> Image.Image:
    """:func:`load_image_rgb`'s decoding of ``source`` (a file name or an open binary
    file, e.g. bytes already read), every failure an error naming ``path``."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images; our own bound below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                w, h = img.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageTooLargeError(
                        path, f"{w} x {h} = {w * h:,} pixels, more than max_pixels="
                        f"{max_pixels:,}; raise the bound if the image is genuine"
                    )
                if w < 1 or h < 1:
                    raise ImageDecodeError(path, f"the image is {w} x {h} pixels")
                img.load()
                return _to_rgb(img)
    except (ImageTooLargeError, ImageDecodeError):
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            path, f"Pillow refused it as a decompression bomb ({exc})"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            struct.error, MemoryError) as exc:  # fmt: skip
        raise ImageDecodeError(
            path, f"cannot decode the image ({type(exc).__name__}: {exc})"
        ) from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping wide integer modes."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            finite = arr[np.isfinite(arr)]
            if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
                arr = arr * 255.0
        else:
            arr = arr / 257.0  # 65535 -> 255
        gray = np.clip(np.nan_to_num(arr, nan=0.0), 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        # drop alpha, keeping the stored colour (no compositing onto a background)
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def crop_body_and_context(
    image: Image.Image, bbox: tuple[int, int, int, int], size: int = 224
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop and resize the body, resize the whole image, rescale the box.

    The body is ``image[y1:y2, x1:x2]`` resized to ``size x size``; the context is
    the whole image resized to ``size x size`` (plain resize, aspect ratio not kept,
    as the community baseline); both bilinear with Pillow's antialiasing. The box
    is clamped again to the decoded size in case it differs from the annotation.

    Args:
        image: RGB image.
        bbox: ``(x1, y1, x2, y2)`` ints in ``image`` pixels.
        size: Output side length.

    Returns:
        ``(body, context, bbox)``: ``uint8`` ``(3, size, size)`` arrays and the box
        as float32 ``(4,)`` in context pixels. The context is *not* masked.

    Raises:
        ValueError: If the box is empty inside this image.

    Example:
        >>> img = Image.new("RGB", (40, 20), (255, 0, 0))
        >>> body, ctx, box = crop_body_and_context(img, (10, 0, 20, 20), size=8)
        >>> body.shape, box.tolist()
        ((3, 8, 8), [2.0, 0.0, 4.0, 8.0])
    """
    w, h = image.size
    (x1, y1, x2, y2), _ = clamp_bbox(bbox, w, h)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"bbox {tuple(bbox)} is empty inside a {w}x{h} image")
    body = image.resize((size, size), Image.Resampling.BILINEAR, box=(x1, y1, x2, y2))
    context = image.resize((size, size), Image.Resampling.BILINEAR)
    return _chw(body), _chw(context), _context_box((x1, y1, x2, y2), w, h, size)


def _context_box(box: tuple[int, int, int, int], w: int, h: int, size: int) -> np.ndarray:
    """A box in ``w x h`` image pixels, in the pixels of the image resized to ``size x size``.

    Float32 ``(4,)``, computed in float64 first.
    """
    scale = np.array([size / w, size / h, size / w, size / h], dtype=np.float64)
    return (np.array(box, dtype=np.float64) * scale).astype(np.float32)


def _chw(img: Image.Image | np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
