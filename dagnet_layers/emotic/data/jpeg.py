"""JPEGs decoded on the training device: the workers read files, the device decodes them.

Without a cache, decoding JPEGs in the DataLoader workers is the slowest part of the
data path (about 8x the CPU time per sample of reading the cache). With
:class:`EmoticJpegDataset` the workers only read each file's bytes (and its header,
for the checks); :class:`JpegBatchDecoder` then decodes a whole batch with
:func:`torchvision.io.decode_jpeg` on the device (nvJPEG on CUDA, batched), cuts
the body out, resizes body and context and masks the body box there.

The result is the same sample as :class:`~dagnet_layers.emotic.data.EmoticDataset`'s
up to the JPEG decoders' rounding: the same box clamping, the same mask and Pillow's
own resize arithmetic (:func:`pillow_bilinear_resize`, equal to the installed
Pillow's to the grey level). On the CPU the two paths give the very same samples;
nvJPEG and libjpeg-turbo differ by a few grey levels in some pixels.

Files the device decoder cannot take (not a JPEG, or a CMYK / YCCK JPEG) are decoded
in the worker exactly as the host path does and travel as pixels; so does any file
nvJPEG refuses at run time (decoded on the host from its bytes, named if that fails
too).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import PIL
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import default_collate

from dagnet_layers.emotic.data.dataset import EmoticDataset, Sample
from dagnet_layers.emotic.data.pixels import (
    MAX_IMAGE_PIXELS,
    _chw,
    _context_box,
    _decode_rgb,
    load_image_rgb,
)
from dagnet_layers.emotic.data.records import (
    BadRecordPolicy,
    EmoticRecords,
    MissingImagePolicy,
    clamp_bbox,
)
from dagnet_layers.emotic.data.transforms import mask_bbox
from dagnet_layers.errors import ImageDecodeError, ImageTooLargeError
from dagnet_layers.storage import open_in_root

__all__ = [
    "JPEG_DECODE_MODES",
    "EmoticJpegDataset",
    "JpegBatchDecoder",
    "collate_encoded",
    "pillow_bilinear_resize",
    "read_encoded_image",
]

#: Where ``dagnet-train --jpeg-decode`` decodes JPEGs: ``"auto"`` (on the device when
#: training on CUDA without a cache, else in the workers), ``"workers"``, ``"device"``.
JPEG_DECODE_MODES = ("auto", "workers", "device")

# Modes nvJPEG turns into RGB itself; the rest (CMYK, YCCK...) go through Pillow.
_DEVICE_MODES = ("RGB", "L")
# Keys of an encoded sample that stay Python lists after collation.
_LIST_KEYS = ("image", "path", "crop")


def read_encoded_image(
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_IMAGE_PIXELS,
    root: str | os.PathLike[str] | None = None,
) -> tuple[Tensor, tuple[int, int]]:
    """An image file as the device decoder wants it, and its ``(width, height)``.

    Only the header is parsed (no pixel is decoded) for an RGB or grayscale JPEG:
    the file's bytes come back as a 1-D ``uint8`` tensor. Any other file is decoded
    here by :func:`~dagnet_layers.emotic.data.load_image_rgb` and comes back as a
    ``(3, H, W)`` ``uint8`` tensor.

    Args:
        path: Image file.
        max_pixels: Largest accepted ``width * height``, as in ``load_image_rgb``.
        root: A folder the opened file must lie in, as in ``load_image_rgb``.

    Returns:
        ``(image, (width, height))``.

    Raises:
        MissingFileError: If the file does not exist.
        UnsafePathError: With ``root``, if what was opened lies outside it.
        ImageTooLargeError: If the image has more than ``max_pixels`` pixels.
        ImageDecodeError: If the file is not an image Pillow can read.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     Image.new("RGB", (6, 4)).save(f"{d}/a.jpg")
        ...     Image.new("RGB", (6, 4)).save(f"{d}/a.png")
        ...     jpg, size = read_encoded_image(f"{d}/a.jpg")
        ...     png, _ = read_encoded_image(f"{d}/a.png")
        >>> jpg.dim(), size, tuple(png.shape)
        (1, (6, 4), (3, 4, 6))
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return _host_pixels(path, max_pixels, root)  # raises MissingFileError, naming it
    with open(path, "rb") if root is None else open_in_root(path, root) as f:
        data = f.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, mode, (w, h) = img.format, img.mode, img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(
            path, f"cannot read the image's header ({type(exc).__name__}: {exc})"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            path, f"Pillow refused it as a decompression bomb ({exc})"
        ) from exc
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(
            path, f"{w} x {h} = {w * h:,} pixels, more than max_pixels={max_pixels:,}; "
            "raise the bound if the image is genuine"
        )
    if fmt != "JPEG" or mode not in _DEVICE_MODES or w < 1 or h < 1:
        image = _decode_rgb(io.BytesIO(data), path, max_pixels)  # the bytes already read
        return _pil_to_chw(image), image.size
    return torch.frombuffer(bytearray(data), dtype=torch.uint8), (w, h)


def _host_pixels(path: str, max_pixels: int | None,
                 root: str | os.PathLike[str] | None = None) -> tuple[Tensor, tuple[int, int]]:
    image = load_image_rgb(path, max_pixels=max_pixels, root=root)
    return _pil_to_chw(image), image.size


def _pil_to_chw(image: Image.Image) -> Tensor:
    return torch.from_numpy(_chw(image))


@contextlib.contextmanager
def _quiet_torchvision() -> Iterator[None]:
    """torchvision 0.29 deprecates its decoders in favour of TorchCodec; while older
    torchvisions, which have no TorchCodec, are supported, that warning is ours to handle."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        yield


# Per CUDA device index, the stream nvJPEG's outputs are allocated on (_decode_jpeg).
_DECODE_STREAMS: dict[int, torch.cuda.Stream] = {}


def _decode_jpeg(data: Tensor | list[Tensor], device: torch.device) -> Tensor | list[Tensor]:
    """:func:`torchvision.io.decode_jpeg` to RGB on ``device``, never into memory that
    work already queued on the GPU has yet to read.

    On CUDA, torchvision allocates the outputs on the caller's current stream, then
    decodes on a private stream that does not wait for the caller's; and nvJPEG's
    hardware engine, on H100s at least, writes when it is called, whatever its stream
    (pytorch/vision#9606, meta-pytorch/torchcodec#1634). PyTorch's caching allocator
    gives a stream back a block as soon as that stream frees it, before the kernels
    already queued there have read it. Decoding the next batch while a training step
    is still running could so overwrite that step's own tensors, silently.

    So the outputs are allocated on a stream of ours on which no kernel is ever queued.
    The native allocator gives a stream only blocks freed on that stream, and holds back
    a block whose users on other streams were recorded (``record_stream``) until the
    host has seen their work finish; the caller's stream then waits for the decode.
    Under another allocator backend (``cudaMallocAsync`` frees in stream order, which
    the hardware engine ignores), the host waits for the caller's stream instead.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    def run() -> Tensor | list[Tensor]:
        with _quiet_torchvision():
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)

    if device.type != "cuda":
        return run()
    index = torch.cuda.current_device() if device.index is None else device.index
    with torch.cuda.device(index):
        caller = torch.cuda.current_stream()
        if torch.cuda.get_allocator_backend() != "native":
            caller.synchronize()
            return run()
        stream = _DECODE_STREAMS.get(index)
        if stream is None:
            stream = _DECODE_STREAMS[index] = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            out = run()
        caller.wait_stream(stream)
        for image in out if isinstance(out, list) else [out]:
            image.record_stream(caller)
    return out


# Pillow's fixed-point arithmetic for 8-bit images (Resample.c): coefficients scaled by
# 2**22 and rounded, sums rounded half up, a uint8 image between the two passes.
_PRECISION_BITS = 32 - 8 - 2


class _Coefficients(NamedTuple):
    """One pass's coefficients for ``P`` regions (:func:`_pillow_coefficients`): output
    pixel ``i`` of region ``p`` is ``sum_k weights[p, i, k] * input[start[p] +
    index[p, i, k]]``."""

    weights: np.ndarray  # (P, out_size, most taps) float64, integer-valued
    index: np.ndarray  # (P, out_size, most taps) int64, in [0, stop - start)
    start: np.ndarray  # (P,) int64
    stop: np.ndarray  # (P,) int64
    taps: np.ndarray  # (P,) int64: the region's own taps; the others weigh 0


def _pillow_coefficients(in_size: np.ndarray, in0: np.ndarray, in1: np.ndarray,
                         out_size: int) -> _Coefficients:
    """Pillow's integer bilinear coefficients, as its ``precompute_coeffs`` lays them out,
    for every region ``[in0[p], in1[p])`` of an axis of length ``in_size[p]`` at once.

    Built on the CPU from the sizes alone, whatever device resizes, every region of a
    batch in one NumPy computation over ``(regions, out_size, most taps)``: one by one,
    some twenty tiny operations per region would cost the training process more than
    the resizes' kernel launches do. The sums run left to right, as Pillow's do. A
    region's taps past its own weigh 0 and point inside its slice, so any first
    ``k >= taps[p]`` taps of it resize alike.
    """
    in_size, in0, in1 = (np.asarray(a, dtype=np.float64) for a in (in_size, in0, in1))
    scale = (in1 - in0) / out_size
    filterscale = np.maximum(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    taps = np.ceil(support).astype(np.int64) * 2 + 1
    centre = (np.arange(out_size, dtype=np.float64) + 0.5) * scale[:, None]
    centre += in0[:, None]
    # the taps Pillow visits: [trunc(centre - support + 0.5), trunc(centre + support + 0.5))
    lo = np.maximum(np.trunc(centre - support[:, None] + 0.5), 0.0)
    hi = np.minimum(np.trunc(centre + support[:, None] + 0.5), in_size[:, None])
    inverse = (1.0 / filterscale)[:, None]
    weights = np.empty((*centre.shape, int(taps.max(initial=1))))
    total = np.zeros(centre.shape)
    for k in range(weights.shape[2]):  # tap by tap over all regions: few, small temporaries
        x = lo + k
        w = (x - centre) + 0.5
        w *= inverse
        np.abs(w, out=w)
        np.subtract(1.0, w, out=w)
        np.maximum(w, 0.0, out=w)
        w *= (x < hi) & (k < taps)[:, None]
        weights[:, :, k] = w
        total += w  # summed left to right, as Pillow sums them
    weights /= np.where(total != 0, total, 1.0)[..., None]
    weights *= 1 << _PRECISION_BITS
    weights += 0.5
    np.trunc(weights, out=weights)
    # the pixels any tap reaches (truncated toward zero, as C's cast does)
    start = np.maximum(np.trunc(in0 + 0.5 * scale - support + 0.5), 0.0).astype(np.int64)
    stop = np.minimum(np.trunc(in0 + (out_size - 0.5) * scale + support + 0.5),
                      in_size).astype(np.int64)  # fmt: skip
    index = lo.astype(np.int64)[..., None] + np.arange(weights.shape[2])
    np.clip(index, start[:, None, None], (stop - 1)[:, None, None], out=index)
    index -= start[:, None, None]
    return _Coefficients(weights, index, start, stop, taps)


def _pillow_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a Pillow version string such as ``"12.3.0"`` or ``"13.0.0.dev0"``."""
    found = re.match(r"(\d+)(?:\.(\d+))?", version)
    if found is None:
        raise ValueError(f"not a Pillow version: {version!r}")
    return int(found[1]), int(found[2] or 0)


def _vertical_first(width: int, height: int, out_width: int, out_height: int,
                    pillow: tuple[int, int]) -> bool:
    """Whether Pillow ``pillow`` (``(major, minor)``) resizes rows before columns.

    The order matters to the result: the image between the two passes is rounded to
    8 bits. ``width`` and ``height`` are the whole image's, whatever the box:

    - before 12.2: always columns (horizontal) first;
    - 12.2 and 12.3: rows first for an image over 100 times taller than wide that
      gets fewer rows (``Image.resize`` then makes two calls);
    - from 13.0: rows first when the height shrinks by more than twice what the
      width shrinks by (``ImagingResampleInner``).
    """
    if pillow >= (13, 0):
        shrink = height - out_height
        return shrink > 0 and shrink > 2 * (width - out_width)
    if pillow >= (12, 2):
        return height > 100 * width and out_height < height
    return False


_PILLOW = _pillow_version(PIL.__version__)


# With the bilinear filter's weights (all >= 0, each rounded from a share of 2**22) a
# sum of 8-bit pixels rounds to at most 255 + (127.5 * taps + 2**21) / 2**22: under 256
# up to 16,447 taps. Only a longer filter (an axis of over 8,000 pixels shrunk to one)
# needs Pillow's clip to 255; none needs the clip at 0.
_UNCLIPPED_TAPS = 16_000


def _pillow_round(fixed: Tensor, taps: int) -> Tensor:
    """Pillow's ``(sum + 2**21) >> 22`` of the float64 integer sums ``fixed``, in place
    (two kernels where the clip cannot bind, see ``_UNCLIPPED_TAPS``)."""
    out = fixed.add_(float(1 << (_PRECISION_BITS - 1))).div_(1 << _PRECISION_BITS,
                                                              rounding_mode="floor")  # fmt: skip
    return out if taps <= _UNCLIPPED_TAPS else out.clamp_(0, 255)


def pillow_bilinear_resize(image: Tensor, size: int,
                           box: Sequence[int] | None = None) -> Tensor:
    """Resize a ``uint8`` image as Pillow's ``resize(..., BILINEAR, box)`` does, on any device.

    The same coefficients (the triangle filter widened by the downscaling factor:
    antialiasing), the same region (``box``'s filter taps reach the pixels around
    it, as Pillow's do: cropping first and resizing would differ along the crop's
    edges), the same 22-bit fixed-point rounding, and the same two passes with an
    8-bit image between them, in the order the installed Pillow takes (columns
    first, except where Pillow 12.2 and 13.0 start with the rows). Each pass gathers
    every output pixel's few taps and sums them in float64, where these integer
    sums are exact; tests hold the result to Pillow's.

    Args:
        image: ``(C, H, W)`` ``uint8`` tensor.
        size: Output side: the result is ``size x size``.
        box: ``(x1, y1, x2, y2)`` integer region of ``image`` to resize (default: all).

    Returns:
        ``(C, size, size)`` ``uint8`` on ``image``'s device.

    Example:
        >>> import numpy as np
        >>> img = torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8)
        >>> pil = Image.fromarray(img.permute(1, 2, 0).numpy())
        >>> want = np.asarray(pil.resize((16, 16), Image.Resampling.BILINEAR, box=(5, 2, 29, 27)))
        >>> got = pillow_bilinear_resize(img, 16, box=(5, 2, 29, 27)).permute(1, 2, 0).numpy()
        >>> bool((got == want).all())
        True
    """
    if image.dim() != 3 or image.dtype != torch.uint8:
        raise ValueError(f"pillow_bilinear_resize needs a (C, H, W) uint8 image, got "
                         f"{tuple(image.shape)} {image.dtype}")  # fmt: skip
    return _resize_all([image], [(0, box)], size, image.device)[0]


def _pack(tensors: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """``tensors`` (int64 and float64, on the CPU) on ``device`` in one copy.

    Small copies from pageable memory would each be a transfer the CUDA driver may
    stage synchronously with the stream; here the float64 tensors (viewed as their int64
    bits, the same size) and the int64 ones go into one buffer, pinned on CUDA, copied
    once without blocking, and come back as views of it.
    """
    parts = [t.view(torch.int64) if t.dtype == torch.float64 else t for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in parts])
    if device.type == "cuda":
        flat = flat.pin_memory()
    moved = flat.to(device, non_blocking=True).split([t.numel() for t in parts])
    return [m.view(t.shape).view(t.dtype) for m, t in zip(moved, tensors, strict=True)]


# Off the CPU, a batch's resizes run in chunks: every job of a chunk in one product per
# pass, its regions laid end to end, padded to the chunk's most taps and rows. A chunk
# holds at most this many bytes of taps (10 whole 640 x 480 images resized to 224). On
# the CPU each job goes alone: there the padding costs arithmetic and the large fresh
# buffers are page-faulted in (16 persons, 640 x 480 or mixed sizes to 224 px, took
# 2.3x to 3.2x as long in chunks).
_CHUNK_BYTES = 256 << 20


def _resize_all(images: Sequence[Tensor], jobs: Sequence[tuple[int, Sequence[int] | None]],
                size: int, device: torch.device, chunk_bytes: int | None = None) -> Tensor:
    """``(len(jobs), C, size, size)`` uint8: for each ``(i, box)``, ``box`` of
    ``images[i]`` (all of it for ``None``) resized as Pillow's bilinear resize does.

    The coefficients of every job are computed at once on the CPU and moved in one
    copy. Jobs run in chunks of up to ``chunk_bytes`` of taps (default: none on the
    CPU, ``_CHUNK_BYTES`` elsewhere), each chunk some twelve kernels plus one copy per
    job, where each job alone takes eleven.
    """
    if chunk_bytes is None:
        chunk_bytes = 0 if device.type == "cpu" else _CHUNK_BYTES
    bounds = []
    for i, box in jobs:
        _, h, w = images[i].shape
        x1, y1, x2, y2 = (0, 0, w, h) if box is None else (int(v) for v in box)
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"box {tuple(box or ())} is not a non-empty region of a "
                             f"{w}x{h} image")  # fmt: skip
        bounds.append((w, h, x1, y1, x2, y2))
    if not bounds:
        return torch.empty(0, 3, size, size, dtype=torch.uint8, device=device)
    w, h, x1, y1, x2, y2 = np.array(bounds, dtype=np.float64).T
    # each output pixel gathers its few taps: the cost of the filter, not of the image
    cols = _pillow_coefficients(w, x1, x2, size)
    rows = _pillow_coefficients(h, y1, y2, size)
    rows_first = np.array([_vertical_first(b[0], b[1], size, size, _PILLOW) for b in bounds])
    # the first pass runs along axis A of each region, the second along B
    span = [(c.stop - c.start) for c in (cols, rows)]
    along_a = np.where(rows_first, span[1], span[0])
    along_b = np.where(rows_first, span[0], span[1])
    taps_a = np.where(rows_first, rows.taps, cols.taps)
    taps_b = np.where(rows_first, cols.taps, rows.taps)
    channels = images[0].shape[0]
    chunks = _chunks(rows_first, taps_a, taps_b, along_b, size, channels, chunk_bytes)

    arrays: list[Tensor] = []  # per chunk: first pass weights, index; second pass's
    for chunk in chunks:
        n, k_a, k_b = len(chunk), int(taps_a[chunk].max()), int(taps_b[chunk].max())
        a_coef, b_coef = (rows, cols) if rows_first[chunk[0]] else (cols, rows)
        offset = np.concatenate(([0], np.cumsum(along_a[chunk])[:-1]))  # regions end to end
        rows_b = np.arange(n) * int(along_b[chunk].max())  # each region's rows, padded
        arrays += [torch.from_numpy(np.ascontiguousarray(v)) for v in (
            a_coef.weights[chunk, :, :k_a].reshape(n * size, 1, k_a),
            (a_coef.index[chunk, :, :k_a] + offset[:, None, None]).reshape(-1),
            b_coef.weights[chunk, :, :k_b].reshape(n * size, 1, k_b),
            (b_coef.index[chunk, :, :k_b] + rows_b[:, None, None]).reshape(-1))]  # fmt: skip
    order = np.concatenate(chunks)
    reordered = bool((order != np.arange(len(order))).any())
    if reordered:
        arrays.append(torch.from_numpy(np.argsort(order)))  # the jobs' order back
    if device.type != "cpu" or chunk_bytes > 0:  # chunked on the CPU too: the GPU's path
        arrays = _pack(arrays, device)

    r0, r1, c0, c1 = (v.tolist() for v in (rows.start, rows.stop, cols.start, cols.stop))
    out = []
    for k, chunk in enumerate(chunks):
        regions = []
        for j in chunk.tolist():
            region = images[jobs[j][0]][:, r0[j] : r1[j], c0[j] : c1[j]]
            regions.append(region.permute(1, 0, 2) if rows_first[j] else region.permute(2, 0, 1))
        out.append(_resize_chunk(regions, *arrays[4 * k : 4 * k + 4], size,
                                 bool(rows_first[chunk[0]])))  # fmt: skip
    resized = torch.cat(out)
    return resized.index_select(0, arrays[-1]) if reordered else resized


def _chunks(rows_first: np.ndarray, taps_a: np.ndarray, taps_b: np.ndarray,
            along_b: np.ndarray, size: int, channels: int, chunk_bytes: int) -> list[np.ndarray]:
    """The jobs in chunks of one pass order and at most ``chunk_bytes`` of float64 taps
    (a lone job always fits), sorted so that a chunk's padding stays small; with no
    bytes, every job alone, in order."""
    if chunk_bytes <= 0:
        return [np.array([j]) for j in range(len(rows_first))]
    order = np.lexsort((along_b, taps_a, rows_first))
    chunks: list[list[int]] = []
    most = (0, 0, 0)
    for j in order.tolist():
        grown = (max(most[0], taps_a[j]), max(most[1], taps_b[j]), max(most[2], along_b[j]))
        n = len(chunks[-1]) + 1 if chunks else 1
        taps = n * size * (grown[0] * channels * grown[2] + grown[1] * size * channels) * 8
        if not chunks or rows_first[chunks[-1][0]] != rows_first[j] or taps > chunk_bytes:
            chunks.append([j])
            most = (taps_a[j], taps_b[j], along_b[j])
        else:
            chunks[-1].append(j)
            most = grown
    return [np.array(c) for c in chunks]


def _resize_chunk(regions: Sequence[Tensor], weights_a: Tensor, index_a: Tensor,
                  weights_b: Tensor, index_b: Tensor, size: int, rows_first: bool) -> Tensor:
    """``(n, C, size, size)`` uint8 from ``n`` regions ``(A, C, B)`` (uint8 views; the
    first pass runs along A), with the chunk's coefficients from :func:`_resize_all`.

    The regions lie end to end along A in one float64 tensor, padded along B with
    zeros, so that each pass is one gather of whole rows and one batched product: a
    row of A or B is contiguous in memory, and the integer sums are exact in float64
    in any order (under 2**53). An 8-bit image between the passes, as Pillow has it.
    """
    n, channels = len(regions), regions[0].shape[1]
    most_b = max(r.shape[2] for r in regions)
    if n == 1:
        x = regions[0].to(torch.float64, memory_format=torch.contiguous_format)
    else:
        x = regions[0].new_zeros((sum(r.shape[0] for r in regions), channels, most_b),
                                 dtype=torch.float64)  # fmt: skip
        at = 0
        for r in regions:
            x[at : at + r.shape[0], :, : r.shape[2]].copy_(r)
            at += r.shape[0]
    k_a, k_b = weights_a.shape[2], weights_b.shape[2]
    taps = x.view(x.shape[0], -1).index_select(0, index_a).view(n * size, k_a, -1)
    y = _pillow_round(torch.bmm(weights_a, taps), k_a)  # (n * size, 1, C * most_b)
    # the second pass's axis first: row j * most_b + b is row b of region j
    y = y.view(n, size, channels, most_b).permute(0, 3, 1, 2).contiguous()
    taps = y.view(n * most_b, -1).index_select(0, index_b).view(n * size, k_b, -1)
    z = _pillow_round(torch.bmm(weights_b, taps), k_b).view(n, size, size, channels)
    # (n, second pass's output, first pass's output, C) -> (n, C, rows, columns)
    z = z.permute(0, 3, 2, 1) if rows_first else z.permute(0, 3, 1, 2)
    return z.to(torch.uint8, memory_format=torch.contiguous_format)


class EmoticJpegDataset(EmoticDataset):
    """EMOTIC persons whose images are decoded later, batched, on the device.

    The official layout only (a cache already holds decoded images). A sample holds
    what :class:`JpegBatchDecoder` needs to make the sample
    :class:`~dagnet_layers.emotic.data.EmoticDataset` would: collate samples with
    :func:`collate_encoded`, move the batch to the device, decode it there.

    Args:
        source: Official release root (or :func:`make_synthetic_emotic` output).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: Side of body and context the decoder makes (default 224).
        on_missing_image, on_bad_record, max_pixels, records: As for
            :class:`~dagnet_layers.emotic.data.EmoticDataset`.

    Sample dict (``dataset[i]``):
        - ``image``: the file's bytes, ``(L,)`` uint8, for an RGB or grayscale JPEG;
          else the decoded image, ``(3, H, W)`` uint8.
        - ``crop``: ``(x1, y1, x2, y2)`` ints, the body box clamped to the image.
        - ``bbox``: float32 ``(4,)``, the box in context pixels (as ``EmoticDataset``'s).
        - ``path``: the image file; ``categories``, ``vad``, ``index`` as ``EmoticDataset``'s.

    Raises:
        ValueError: If ``source`` is not in the official layout.

    Example:
        >>> import tempfile
        >>> from dagnet_layers.emotic.data import make_synthetic_emotic
        >>> with tempfile.TemporaryDirectory() as d:
        ...     info = make_synthetic_emotic(d, n_images=12, seed=0, image_size=(96, 72))
        ...     ds = EmoticJpegDataset(info.root, "train", size=64)
        ...     s = ds[0]
        ...     batch = JpegBatchDecoder(64)(collate_encoded([s, ds[1]]))
        >>> s["image"].dim(), tuple(batch["body"].shape), batch["body"].dtype
        (1, (2, 3, 64, 64), torch.uint8)
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        split: str,
        *,
        size: int | None = None,
        on_missing_image: MissingImagePolicy = "error",
        on_bad_record: BadRecordPolicy = "skip",
        max_pixels: int | None = MAX_IMAGE_PIXELS,
        records: EmoticRecords | None = None,
    ) -> None:
        super().__init__(source, split, size=size, on_missing_image=on_missing_image,
                         on_bad_record=on_bad_record, max_pixels=max_pixels,
                         records=records)  # fmt: skip
        if self.layout != "official":
            raise ValueError(
                f"{self.source} is in the {self.layout} layout: decoding on the device "
                "reads the official layout's JPEGs (a cache already holds decoded images)"
            )

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        index = self._position(index)
        rec = self.records[index]
        image, (w, h) = read_encoded_image(rec.image_path, max_pixels=self.max_pixels,
                                           root=getattr(self.records, "image_root", None))
        self._check_box_inside(rec, index, w, h)
        (x1, y1, x2, y2), _ = clamp_bbox(rec.bbox, w, h)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"bbox {tuple(rec.bbox)} is empty inside a {w}x{h} image")
        box = torch.from_numpy(_context_box((x1, y1, x2, y2), w, h, self.size))
        return {
            "image": image,
            "crop": (int(x1), int(y1), int(x2), int(y2)),
            "path": rec.image_path,
            "categories": self._categories[index].clone(),
            "vad": self._vad[index].clone(),
            "index": torch.tensor(index, dtype=torch.int64),
            "bbox": box,
        }


def collate_encoded(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate :class:`EmoticJpegDataset` samples: images, paths and crops stay lists.

    Every other key is stacked by :func:`torch.utils.data.default_collate`.

    Example:
        >>> s = {"image": torch.zeros(5, dtype=torch.uint8), "crop": (0, 0, 1, 1),
        ...      "path": "a.jpg", "bbox": torch.zeros(4)}
        >>> b = collate_encoded([s, s])
        >>> len(b["image"]), b["crop"], tuple(b["bbox"].shape)
        (2, [(0, 0, 1, 1), (0, 0, 1, 1)], (2, 4))
    """
    if not samples:
        raise ValueError("collate_encoded needs at least one sample")
    lists = {k: [s[k] for s in samples] for k in _LIST_KEYS if k in samples[0]}
    rest = default_collate([{k: v for k, v in s.items() if k not in lists} for s in samples])
    return {**rest, **lists}


class JpegBatchDecoder:
    """Decode a batch of :class:`EmoticJpegDataset` samples on the device.

    Decodes every encoded image of the batch in one
    :func:`torchvision.io.decode_jpeg` call on ``device`` (batched nvJPEG on CUDA),
    then, for each person, the body crop and the whole image resized to ``size x size``
    (bilinear, antialiased, as Pillow does on the host path), rounded to ``uint8``;
    the context's body box filled with ``mask_fill`` when ``mask_body``. Images that
    arrived decoded are only moved. Then ``transform`` (e.g. the batched augmentation)
    runs on the result. The resize coefficients of the whole batch are computed at once
    on the CPU and moved in one copy; off the CPU, the resizes run in a few chunks of
    many persons, each pass of a chunk one gather and one batched product, where each
    resize alone takes eleven kernels.

    On CUDA, nvJPEG writes its outputs into blocks taken on a stream of the decoder's
    own, on which no kernel is queued: torchvision's call alone may write into memory
    that kernels already queued, such as a running training step's, have yet to read
    (it decodes on a stream that does not wait for the caller's).

    It is meant for a GPU, where ``benchmarks/bench_train.py`` (``jpeg-device``) times
    it against the cache. On a CPU the batch is decoded in the training process, slower
    than the workers' Pillow (measured: 16 ms against 4.3 ms per person, 640 x 480
    JPEGs to 224 px, one thread, Intel Xeon), so ``dagnet-train`` uses it there only
    when asked.

    Args:
        size: Side of body and context.
        device: Where to decode (default: where the batch's ``bbox`` lives, i.e. the
            device :func:`~dagnet_layers.emotic.engine.move_batch` moved it to).
        mask_body: Whether to fill the body box of the context.
        mask_fill: The fill value.
        channels_last: Give body and context channels-last memory format.
        transform: Applied to the decoded batch, e.g. :func:`emotic_batch_transform`.

    Returns (call):
        The batch with ``body`` and ``context`` ``uint8 (B, 3, size, size)`` (or what
        ``transform`` makes of them) and without ``image``, ``crop`` and ``path``.

    Raises (call):
        ImageDecodeError: An image neither the device nor Pillow can decode (named).

    A batch the device decoder refuses as a whole is decoded image by image, and an
    image it refuses alone is decoded by Pillow on the host, as the workers would: the
    same pixels, more slowly. Neither is an error; :meth:`pop_fallbacks` says how often
    each happened (``dagnet-train`` logs it after every epoch).
    """

    def __init__(
        self,
        size: int = 224,
        *,
        device: torch.device | str | None = None,
        mask_body: bool = True,
        mask_fill: int = 0,
        channels_last: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if int(size) <= 0:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = int(size)
        self.device = None if device is None else torch.device(device)
        self.mask_body = bool(mask_body)
        self.mask_fill = int(mask_fill)
        self.channels_last = bool(channels_last)
        self.transform = transform
        self._refused_batches = 0
        self._host_decoded: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, device={self.device}, "
                f"mask_body={self.mask_body}, transform={self.transform!r})")  # fmt: skip

    def decode(self, images: Sequence[Tensor], paths: Sequence[str],
               device: torch.device) -> list[Tensor]:
        """Every image as ``(3, H, W)`` uint8 on ``device``: encoded ones decoded in one call."""
        out: list[Tensor | None] = [None] * len(images)
        encoded = [i for i, t in enumerate(images) if t.dim() == 1]
        for i, t in enumerate(images):
            if t.dim() != 1:
                out[i] = t.to(device, non_blocking=True)
        if encoded:
            chunk = [images[i] for i in encoded]
            try:
                decoded = _decode_jpeg(chunk, device)
            except RuntimeError:
                self._refused_batches += 1
                decoded = [self._decode_one(images[i], paths[i], device) for i in encoded]
            for i, img in zip(encoded, decoded, strict=True):
                out[i] = img
        return out  # type: ignore[return-value]

    def pop_fallbacks(self) -> tuple[int, dict[str, int]]:
        """What the device decoder refused since the last call, and start counting anew.

        Returns:
            ``(batches, files)``: how many batches it refused as a whole (each then
            decoded image by image), and each file it refused alone, with how many
            times, decoded by Pillow on the host instead.

        Example:
            >>> JpegBatchDecoder(64).pop_fallbacks()
            (0, {})
        """
        found = self._refused_batches, dict(self._host_decoded)
        self._refused_batches = 0
        self._host_decoded.clear()
        return found

    def _decode_one(self, data: Tensor, path: str, device: torch.device) -> Tensor:
        try:
            return _decode_jpeg(data, device)
        except RuntimeError:
            pass
        # what the device decoder refused, Pillow may still read, as the host path would
        # (the pixel bound was checked on the header in the worker)
        image = _decode_rgb(io.BytesIO(data.numpy().tobytes()), path, max_pixels=None)
        self._host_decoded[path] += 1
        return _pil_to_chw(image).to(device)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("image", "crop", "bbox") if k not in batch]
        if missing:
            raise KeyError(f"JpegBatchDecoder needs a batch of EmoticJpegDataset samples "
                           f"(collate_encoded); missing {missing}")  # fmt: skip
        bbox: Tensor = batch["bbox"]
        device = self.device or bbox.device
        paths = batch.get("path") or ["<image>"] * len(batch["image"])
        images = self.decode(batch["image"], paths, device)
        # the body boxes, then the whole images: planned together, moved in one copy
        n = len(images)
        jobs = [(i, crop) for i, crop in enumerate(batch["crop"])] + [(i, None) for i in range(n)]
        resized = _resize_all(images, jobs, self.size, device)
        body, context = resized[:n], resized[n:]
        bbox = bbox.to(device)
        if self.mask_body:
            context = mask_bbox(context, bbox, self.mask_fill)
        if self.channels_last:
            body = body.contiguous(memory_format=torch.channels_last)
            context = context.contiguous(memory_format=torch.channels_last)
        out = {k: v for k, v in batch.items() if k not in _LIST_KEYS}
        out.update(body=body, context=context, bbox=bbox)
        return self.transform(out) if self.transform is not None else out
