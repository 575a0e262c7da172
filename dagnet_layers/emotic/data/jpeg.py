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
    path: str | os.PathLike[str], *, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> tuple[Tensor, tuple[int, int]]:
    """An image file as the device decoder wants it, and its ``(width, height)``.

    Only the header is parsed (no pixel is decoded) for an RGB or grayscale JPEG:
    the file's bytes come back as a 1-D ``uint8`` tensor. Any other file is decoded
    here by :func:`~dagnet_layers.emotic.data.load_image_rgb` and comes back as a
    ``(3, H, W)`` ``uint8`` tensor.

    Args:
        path: Image file.
        max_pixels: Largest accepted ``width * height``, as in ``load_image_rgb``.

    Returns:
        ``(image, (width, height))``.

    Raises:
        MissingFileError: If the file does not exist.
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
        return _host_pixels(path, max_pixels)  # raises MissingFileError, naming the file
    with open(path, "rb") as f:
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


def _host_pixels(path: str, max_pixels: int | None) -> tuple[Tensor, tuple[int, int]]:
    image = load_image_rgb(path, max_pixels=max_pixels)
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


# Pillow's fixed-point arithmetic for 8-bit images (Resample.c): coefficients scaled by
# 2**22 and rounded, sums rounded half up, a uint8 image between the two passes.
_PRECISION_BITS = 32 - 8 - 2


class _Coefficients(NamedTuple):
    """One pass's coefficients (:func:`_pillow_coefficients`): output pixel ``i`` is
    ``sum_k weights[i, k] * input[start + index[i, k]]``."""

    weights: Tensor
    index: Tensor
    start: int
    stop: int


def _pillow_coefficients(in_size: np.ndarray, in0: np.ndarray, in1: np.ndarray,
                         out_size: int) -> list[_Coefficients]:
    """Pillow's integer bilinear coefficients, as its ``precompute_coeffs`` lays them out,
    for every region ``[in0[p], in1[p])`` of an axis of length ``in_size[p]`` at once.

    Returns one :class:`_Coefficients` per region: ``weights`` and ``index`` are
    ``(out_size, taps)`` (float64, integer-valued; unused taps weigh 0) and no tap
    reaches outside ``input[start:stop]``.

    Built on the CPU from the sizes alone, whatever device resizes, every region of a
    batch in one NumPy computation over ``(regions, out_size, most taps)``: one by one,
    some twenty tiny operations per region would cost the training process more than
    the resizes' kernel launches do. The sums run left to right, as Pillow's do; the
    taps a region has fewer than the most weigh 0 and fall outside its slice.
    """
    in_size, in0, in1 = (np.asarray(a, dtype=np.float64) for a in (in_size, in0, in1))
    scale = (in1 - in0) / out_size
    filterscale = np.maximum(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    taps = np.ceil(support).astype(np.int64) * 2 + 1
    k = np.arange(int(taps.max(initial=1)), dtype=np.float64)
    centre = in0[:, None] + (np.arange(out_size, dtype=np.float64) + 0.5) * scale[:, None]
    # the taps Pillow visits: [trunc(centre - support + 0.5), trunc(centre + support + 0.5))
    lo = np.maximum(np.trunc(centre - support[:, None] + 0.5), 0.0)
    hi = np.minimum(np.trunc(centre + support[:, None] + 0.5), in_size[:, None])
    x = lo[..., None] + k
    arg = ((x - centre[..., None]) + 0.5) * (1.0 / filterscale)[:, None, None]
    weights = np.maximum(1.0 - np.abs(arg), 0.0) * ((x < hi[..., None]) & (k < taps[:, None, None]))
    total = np.cumsum(weights, axis=2)[..., -1:]  # summed left to right, as Pillow sums them
    weights = np.where(total != 0, weights / np.maximum(total, 1e-300), weights)
    fixed = np.trunc(weights * (1 << _PRECISION_BITS) + 0.5)
    # the pixels any tap reaches (truncated toward zero, as C's cast does)
    start = np.maximum(np.trunc(in0 + 0.5 * scale - support + 0.5), 0.0).astype(np.int64)
    stop = np.minimum(np.trunc(in0 + (out_size - 0.5) * scale + support + 0.5),
                      in_size).astype(np.int64)  # fmt: skip
    index = np.clip(x, start[:, None, None], (stop - 1)[:, None, None]).astype(np.int64)
    index -= start[:, None, None]
    return [_Coefficients(torch.from_numpy(np.ascontiguousarray(fixed[p, :, :n])),
                          torch.from_numpy(np.ascontiguousarray(index[p, :, :n])),
                          int(start[p]), int(stop[p]))
            for p, n in enumerate(taps.tolist())]  # fmt: skip


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
    _, h, w = image.shape
    (plan,) = _plans_on(_resize_plans([(w, h, box)], size), image.device)
    return _resize_planned(image, plan)


class _ResizePlan(NamedTuple):
    """What one resize needs besides the pixels: each pass's coefficients and the
    region their taps reach (``_pillow_coefficients``), and the pass order."""

    cols: Tensor
    col_index: Tensor
    c0: int
    c1: int
    rows: Tensor
    row_index: Tensor
    r0: int
    r1: int
    rows_first: bool


def _resize_plans(regions: Sequence[tuple[int, int, Sequence[int] | None]],
                  size: int) -> list[_ResizePlan]:
    """The plans of resizing each ``(w, h, box)`` (``box`` of a ``w x h`` image, or
    all of it) to ``size``, on the CPU, every coefficient of them computed at once."""
    bounds = []
    for w, h, box in regions:
        x1, y1, x2, y2 = (0, 0, w, h) if box is None else (int(v) for v in box)
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise ValueError(f"box {tuple(box or ())} is not a non-empty region of a "
                             f"{w}x{h} image")  # fmt: skip
        bounds.append((w, h, x1, y1, x2, y2))
    if not bounds:
        return []
    w, h, x1, y1, x2, y2 = np.array(bounds, dtype=np.float64).T
    # each output pixel gathers its few taps: the cost of the filter, not of the image
    cols = _pillow_coefficients(w, x1, x2, size)
    rows = _pillow_coefficients(h, y1, y2, size)
    return [_ResizePlan(*c, *r, _vertical_first(b[0], b[1], size, size, _PILLOW))
            for c, r, b in zip(cols, rows, bounds, strict=True)]  # fmt: skip


def _plans_on(plans: Sequence[_ResizePlan], device: torch.device) -> list[_ResizePlan]:
    """``plans`` with their coefficients on ``device``: as they are on the CPU, else
    :func:`_pack_plans`: one copy for them all."""
    return list(plans) if device.type == "cpu" else _pack_plans(plans, device)


def _pack_plans(plans: Sequence[_ResizePlan], device: torch.device) -> list[_ResizePlan]:
    """``plans`` with every coefficient tensor moved to ``device`` in one copy.

    Four small copies per resize from pageable memory would each be a transfer the
    CUDA driver may stage synchronously with the stream; here the float64 weights
    (viewed as their int64 bits, the same size) and the int64 indices of all plans go
    into one buffer, pinned on CUDA, copied once without blocking; the plans get views
    of it back.
    """
    parts = [t for p in plans for t in (p.cols.view(torch.int64), p.col_index,
                                        p.rows.view(torch.int64), p.row_index)]  # fmt: skip
    flat = torch.cat([t.reshape(-1) for t in parts])
    if device.type == "cuda":
        flat = flat.pin_memory()
    moved = flat.to(device, non_blocking=True).split([t.numel() for t in parts])
    views = [m.view(t.shape) for m, t in zip(moved, parts, strict=True)]
    out = []
    for k, p in enumerate(plans):
        cols, col_index, rows, row_index = views[4 * k : 4 * k + 4]
        out.append(p._replace(cols=cols.view(torch.float64), col_index=col_index,
                              rows=rows.view(torch.float64), row_index=row_index))  # fmt: skip
    return out


def _resize_planned(image: Tensor, plan: _ResizePlan) -> Tensor:
    """``(..., C, H, W)`` uint8 resized by ``plan`` (its coefficients on ``image``'s
    device): any leading dimensions are images of one size, resized alike."""
    region = image[..., plan.r0 : plan.r1, plan.c0 : plan.c1]
    # two passes in the installed Pillow's order, an 8-bit image between them; each
    # gathers along its axis laid out first in memory (whole rows of memory at a time):
    # the float64 copy, and the copy between the passes, put it there
    first, coefficients = (-2, (plan.rows, plan.row_index, plan.cols, plan.col_index))
    if not plan.rows_first:
        first, coefficients = (-1, (plan.cols, plan.col_index, plan.rows, plan.row_index))
    x = region.movedim(first, 0).to(torch.float64, memory_format=torch.contiguous_format)
    x = _pillow_pass(x, *coefficients[:2])  # (first out, ..., C, other axis)
    x = _pillow_pass(x.movedim(-1, 0).contiguous(), *coefficients[2:])  # (other, first, ..., C)
    out = x.movedim((0, 1), (-1, -2) if plan.rows_first else (-2, -1))
    return out.to(torch.uint8, memory_format=torch.contiguous_format)


def _pillow_pass(pixels: Tensor, weights: Tensor, index: Tensor) -> Tensor:
    """One of Pillow's passes along the first axis of a contiguous float64 tensor, rounded."""
    flat = pixels.view(pixels.shape[0], -1)
    taps = flat.index_select(0, index.flatten()).view(*index.shape, flat.shape[1])
    # one batched product per output pixel: exact, the integer sums stay under 2**53
    out = _pillow_round(torch.bmm(weights[:, None, :], taps).squeeze(1), index.shape[1])
    return out.view(index.shape[0], *pixels.shape[1:])


# Off the CPU, jobs of one plan are resized together in stacks whose first pass
# gathers at most this many bytes of taps (a stack of whole 640 x 480 images resized
# to 224: 14 of them). On the CPU each job goes alone: there the large fresh buffers a
# stack needs are page-faulted in, and a batch of 16 persons whose 640 x 480 contexts
# went as one stack took 2.3x as long.
_STACK_BYTES = 256 << 20


def _resize_all(images: Sequence[Tensor], jobs: Sequence[tuple[int, Sequence[int] | None]],
                size: int, device: torch.device, stack_bytes: int | None = None) -> Tensor:
    """``(len(jobs), C, size, size)`` uint8: for each ``(i, box)``, ``box`` of
    ``images[i]`` (all of it for ``None``) resized as :func:`pillow_bilinear_resize`
    does.

    Every plan is computed at once and moved in one copy. Jobs of one image size and
    box share a plan, and off the CPU (or with ``stack_bytes``) one resize of their
    images stacked, up to ``stack_bytes`` of taps a stack: the contexts (whole images,
    no box) of many images of a size then cost a few kernel launches, not eleven each.
    """
    if stack_bytes is None:
        stack_bytes = 0 if device.type == "cpu" else _STACK_BYTES
    groups: dict[tuple[int, int, tuple[int, ...] | None], list[int]] = {}
    for j, (i, box) in enumerate(jobs):
        _, h, w = images[i].shape
        key = (w, h, None if box is None else tuple(int(v) for v in box))
        groups.setdefault(key, []).append(j)
    plans = _plans_on(_resize_plans(list(groups), size), device)
    resized: dict[int, Tensor] = {}
    for plan, members in zip(plans, groups.values(), strict=True):
        channels = images[jobs[members[0]][0]].shape[0]
        other = plan.c1 - plan.c0 if plan.rows_first else plan.r1 - plan.r0
        first = plan.row_index if plan.rows_first else plan.col_index
        per_job = first.numel() * channels * other * 8  # the first pass's float64 taps
        step = max(1, stack_bytes // per_job)
        for k in range(0, len(members), step):
            chunk = members[k : k + step]
            if len(chunk) == 1:
                stack = images[jobs[chunk[0]][0]][None]  # a view: no copy for a lone job
            else:
                stack = torch.stack([images[jobs[j][0]] for j in chunk])
            resized.update(zip(chunk, _resize_planned(stack, plan), strict=True))
    return torch.stack([resized[j] for j in range(len(jobs))])


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
        image, (w, h) = read_encoded_image(rec.image_path, max_pixels=self.max_pixels)
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
    then per person: the body crop and the whole image resized to ``size x size``
    (bilinear, antialiased, as Pillow does on the host path), rounded to ``uint8``;
    the context's body box filled with ``mask_fill`` when ``mask_body``. The resize
    coefficients of the whole batch are computed at once on the CPU and moved in one
    copy; off the CPU, whole images of one size (and crops of one box) are resized
    together, a few stacks instead of one resize (eleven kernels) each. Images
    that arrived decoded are only moved. Then ``transform`` (e.g. the batched
    augmentation) runs on the result.

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

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, device={self.device}, "
                f"mask_body={self.mask_body}, transform={self.transform!r})")  # fmt: skip

    def decode(self, images: Sequence[Tensor], paths: Sequence[str],
               device: torch.device) -> list[Tensor]:
        """Every image as ``(3, H, W)`` uint8 on ``device``: encoded ones decoded in one call."""
        from torchvision.io import ImageReadMode, decode_jpeg

        out: list[Tensor | None] = [None] * len(images)
        encoded = [i for i, t in enumerate(images) if t.dim() == 1]
        for i, t in enumerate(images):
            if t.dim() != 1:
                out[i] = t.to(device, non_blocking=True)
        if encoded:
            chunk = [images[i] for i in encoded]
            try:
                with _quiet_torchvision():
                    decoded = decode_jpeg(chunk, mode=ImageReadMode.RGB, device=device)
            except RuntimeError:
                decoded = [self._decode_one(images[i], paths[i], device) for i in encoded]
            for i, img in zip(encoded, decoded, strict=True):
                out[i] = img
        return out  # type: ignore[return-value]

    @staticmethod
    def _decode_one(data: Tensor, path: str, device: torch.device) -> Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            with _quiet_torchvision():
                return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            pass
        # what the device decoder refused, Pillow may still read, as the host path would
        # (the pixel bound was checked on the header in the worker)
        image = _decode_rgb(io.BytesIO(data.numpy().tobytes()), path, max_pixels=None)
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
