"""Paired body/context transforms for EMOTIC samples, per sample or batched on any device.

DAG-Net (Sec. 4.1) resizes the body crop ``I_B`` and the context image ``I_C`` to
224 x 224 and trains with colour jitter 0.4 and random horizontal flips. Here the two
images of a person are transformed *together*: one flip decision per person flips
the body, the context and the body box inside the context (so the masked region
keeps matching the box), and one set of jitter factors recolours both.

Everything works on ``uint8`` tensors (or floats in ``[0, 1]``) and is written as
batched tensor ops, so the same code runs

* per sample in DataLoader workers: :func:`emotic_train_transform`,
  :func:`emotic_eval_transform` (an :class:`EmoticPairedTransform`, passed as
  ``EmoticDataset(..., transform=...)``), or
* on a collated ``uint8`` batch on the GPU: :func:`emotic_batch_transform` (an
  :class:`EmoticBatchTransform` ``nn.Module``), with a dataset built without a
  transform. This is the fast path with the cache: workers only slice memory-mapped
  arrays, and the augmentation runs batched on the accelerator.

Colour jitter follows :class:`torchvision.transforms.ColorJitter` semantics
(factors uniform in ``[1 - j, 1 + j]``, operations in random order) with per-person
factors and order. ``jitter=0.4`` sets brightness, contrast and saturation to 0.4
and leaves hue at 0 (timm's reading of "colour jitter 0.4"); a non-zero ``hue``
rotates chroma in YIQ space, a cheap batched stand-in for torchvision's HSV shift.
Each of these operations is affine in a pixel's RGB vector (contrast through the
image's mean gray level), so the randomly ordered chain is composed into one
``3 x 3`` matrix plus offset per image and applied in a single pass, clamped to
``[0, 1]`` once at the end. torchvision clamps after every operation; the two agree
exactly whenever no intermediate value leaves ``[0, 1]``, and the composed map is
several times faster, which is what makes augmentation cheap next to the cache.
The masked body box of the context (filled with 0 by the dataset) goes through the
same colour map, so after contrast jitter it is a uniform gray level rather than
black: it still carries no body information.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EmoticBatchTransform",
    "EmoticPairedTransform",
    "denormalize",
    "emotic_batch_transform",
    "emotic_eval_transform",
    "emotic_train_transform",
    "hflip_pair",
    "mask_bbox",
    "normalization_of",
]

#: ImageNet channel means used for normalisation (RGB, 0-1 scale).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: ImageNet channel standard deviations (RGB, 0-1 scale).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def mask_bbox(
    image: Tensor, bbox: Tensor, fill: float | int = 0, *, inplace: bool = False
) -> Tensor:
    """Fill the body box of a context image (the GSAM input of DAG-Net).

    The masked pixels are columns ``floor(x1) .. ceil(x2) - 1`` and rows
    ``floor(y1) .. ceil(y2) - 1``: every pixel the box touches. That set is mirrored
    exactly by a horizontal flip of image and box together.

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)`` tensor, any dtype.
        bbox: ``(4,)`` or ``(B, 4)`` boxes ``x1, y1, x2, y2`` in pixels of ``image``.
        fill: Value written inside the box.
        inplace: Fill ``image`` itself (one unbatched image only) instead of a
            copy: for callers that own a freshly decoded image.

    Returns:
        A tensor like ``image`` with the box filled (``image`` itself when
        ``inplace`` applies).

    Shape:
        - image: :math:`(C, H, W)` or :math:`(B, C, H, W)`
        - bbox: :math:`(4,)` or :math:`(B, 4)`

    Example:
        >>> img = torch.ones(3, 4, 6, dtype=torch.uint8)
        >>> mask_bbox(img, torch.tensor([1.0, 1.0, 2.5, 3.0]))[0].tolist()
        [[1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 1], [1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    """
    batched = image.dim() == 4
    if image.dim() == 3 and bbox.shape == (4,):  # one image: plain slicing is cheapest
        h, w = image.shape[-2:]
        x1, y1 = (max(0, math.floor(float(v))) for v in bbox[:2])
        x2, y2 = (math.ceil(float(v)) for v in bbox[2:])
        out = image if inplace else image.clone()
        out[:, y1 : min(y2, h), x1 : min(x2, w)] = fill
        return out
    if image.dim() not in (3, 4) or bbox.shape[-1] != 4 or bbox.dim() != image.dim() - 2:
        raise ValueError(
            "mask_bbox needs image (C, H, W) with bbox (4,) or image (B, C, H, W) with "
            f"bbox (B, 4), got image {tuple(image.shape)} and bbox {tuple(bbox.shape)}"
        )
    img = image if batched else image.unsqueeze(0)
    box = (bbox if batched else bbox.unsqueeze(0)).to(device=img.device, dtype=torch.float32)
    h, w = img.shape[-2:]
    cols = torch.arange(w, device=img.device, dtype=torch.float32)
    rows = torch.arange(h, device=img.device, dtype=torch.float32)
    x1, y1 = box[:, 0].floor(), box[:, 1].floor()
    x2, y2 = box[:, 2].ceil(), box[:, 3].ceil()
    in_x = (cols[None] >= x1[:, None]) & (cols[None] < x2[:, None])  # (B, W)
    in_y = (rows[None] >= y1[:, None]) & (rows[None] < y2[:, None])  # (B, H)
    inside = (in_y[:, :, None] & in_x[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    out = img.masked_fill(inside, fill)
    return out if batched else out.squeeze(0)


def hflip_pair(
    body: Tensor, context: Tensor, bbox: Tensor, flip: Tensor | bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Horizontally flip body, context and the box in the context, together.

    Args:
        body: ``(B, C, Hb, Wb)`` body crops.
        context: ``(B, C, H, W)`` context images.
        bbox: ``(B, 4)`` boxes ``x1, y1, x2, y2`` in context pixels.
        flip: Bool per sample ``(B,)`` (or one bool for all): which samples to flip.

    Returns:
        ``(body, context, bbox)``; a flipped box is ``(W - x2, y1, W - x1, y2)``.

    Example:
        >>> b, c = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 10)
        >>> hflip_pair(b, c, torch.tensor([[1.0, 0.0, 4.0, 3.0]]))[2].tolist()
        [[6.0, 0.0, 9.0, 3.0]]
    """
    n = context.shape[0]
    flip_in = torch.as_tensor(flip, dtype=torch.bool)
    if flip_in.device.type == "cpu" and (flip_in.all() or not flip_in.any()):
        # all or nothing (always so for one sample): no per-sample select needed, and
        # deciding on a CPU mask costs no device synchronisation
        if flip_in.all():
            body, context = body.flip(-1), context.flip(-1)
    else:
        sel = flip_in.to(context.device).expand(n).view(n, 1, 1, 1)
        body = torch.where(sel, body.flip(-1), body)
        context = torch.where(sel, context.flip(-1), context)
    flip_t = flip_in.to(context.device).expand(n)
    w = float(context.shape[-1])
    bbox = bbox.to(torch.float32)
    flipped = torch.stack((w - bbox[:, 2], bbox[:, 1], w - bbox[:, 0], bbox[:, 3]), dim=1)
    bbox = torch.where(flip_t.view(n, 1), flipped, bbox)
    return body, context, bbox


def denormalize(
    x: Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Undo the normalisation of the transforms: back to ``uint8`` RGB, e.g. to plot.

    Args:
        x: ``(..., 3, H, W)`` float tensor normalised with ``mean``/``std``.
        mean: Channel means used to normalise.
        std: Channel standard deviations used to normalise.

    Returns:
        ``uint8`` tensor of the same shape.

    Example:
        >>> denormalize(torch.zeros(3, 1, 1)).flatten().tolist()
        [124, 116, 104]
    """
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return ((x * s + m) * 255.0).round().clamp(0, 255).to(torch.uint8)


# RGB <-> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def _jitter_affine(
    factors: Tensor, order: Tensor, channel_mean: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """Compose randomly ordered colour operations into one affine map per image.

    Every operation of :class:`torchvision.transforms.ColorJitter` is affine in the
    RGB vector of a pixel (contrast through the image's mean gray level, itself
    affine in the channel means), so the whole jitter is ``A @ rgb + c`` per image.

    Args:
        factors: ``(B, n_ops)`` brightness, contrast, saturation (, hue) factors.
        order: ``(B, n_ops)`` permutation of the operations per image.
        channel_mean: ``(B, 3)`` channel means of the input images.
        scale: Input scale folded into the map (1/255 for uint8 inputs).

    Returns:
        ``(A, c)`` of shapes ``(B, 3, 3)`` and ``(B, 3)``.
    """
    n, n_ops = factors.shape
    dev, dt = factors.device, factors.dtype
    eye = torch.eye(3, device=dev, dtype=dt).expand(n, 3, 3)
    ones = torch.ones(3, device=dev, dtype=dt)
    gray = torch.tensor(_GRAY, device=dev, dtype=dt)
    a = eye * scale
    c = torch.zeros(n, 3, device=dev, dtype=dt)
    f = factors.view(n, n_ops, 1, 1)
    mats = [
        f[:, 0] * eye,  # brightness
        f[:, 1] * eye,  # contrast (its shift towards the mean gray is added below)
        f[:, 2] * eye + (1.0 - f[:, 2]) * torch.outer(ones, gray),  # saturation
    ]
    if n_ops == 4:
        to_yiq = torch.tensor(_RGB2YIQ, device=dev, dtype=torch.float64)
        to_rgb = torch.linalg.inv(to_yiq).to(dt)
        theta = factors[:, 3] * 2.0 * torch.pi  # factor in [-0.5, 0.5] turns, as torchvision
        cos, sin = theta.cos(), theta.sin()
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rot = torch.stack((one, zero, zero, zero, cos, -sin, zero, sin, cos), 1).view(n, 3, 3)
        mats.append(to_rgb @ rot @ to_yiq.to(dt))  # hue
    stacked = torch.stack(mats, dim=1)  # (n, n_ops, 3, 3)
    rows = torch.arange(n, device=dev)
    for stage in range(n_ops):
        op = order[:, stage]
        m = stacked[rows, op]
        # contrast blends towards the current mean gray level: an affine offset
        cur_mean = (a @ channel_mean.unsqueeze(-1)).squeeze(-1) + c  # (n, 3)
        gray_mean = (cur_mean * gray).sum(-1, keepdim=True)  # (n, 1)
        offset = (op == 1).unsqueeze(1) * (1.0 - factors[:, 1:2]) * gray_mean
        a = m @ a
        c = (m @ c.unsqueeze(-1)).squeeze(-1) + offset
    return a, c


class EmoticBatchTransform(nn.Module):
    """Batched paired transform: uint8 body/context batch -> normalised float batch.

    Steps: to float in ``[0, 1]``; resize to ``size`` (bilinear, antialiased; the
    box is rescaled with the context); in training, a random horizontal flip per
    person applied to body, context and box together, then colour jitter with one
    set of factors per person shared by its body and context; finally the
    normalisation (ImageNet's statistics unless given, e.g. the backbones' own
    from :func:`normalization_of`). Runs on whatever device the batch lives on.

    Args:
        size: Output side length of body and context.
        train: Whether to apply the random flip and colour jitter: the module's
            training mode, so ``.eval()`` / ``.train()`` switch it like any module's.
        jitter: Brightness, contrast and saturation strength (paper: 0.4).
        hue: Hue strength in ``[0, 0.5]`` (0 keeps hue; see module docstring).
        flip_p: Probability of flipping a person horizontally.
        mean: Normalisation means (of the body stream; of both unless
            ``context_mean`` is given).
        std: Normalisation standard deviations (likewise).
        context_mean: The context stream's means, when its backbone was trained
            with others (``model.pretrained_cfg["context"]["mean"]``).
        context_std: The context stream's standard deviations.
        generator: Optional CPU :class:`torch.Generator` for reproducible draws
            (leave ``None`` inside DataLoader workers: each worker is seeded).

    Returns (forward):
        A new dict with ``body`` and ``context`` float32 ``(B, 3, size, size)``,
        ``bbox`` float32 ``(B, 4)`` in the output context's pixels, and every other
        key of the input unchanged.

    Shape:
        - body: :math:`(B, 3, H_b, W_b)` uint8 (or float in [0, 1])
        - context: :math:`(B, 3, H, W)` uint8 (or float in [0, 1])
        - bbox: :math:`(B, 4)`

    Example:
        >>> t = EmoticBatchTransform(size=32, train=True)
        >>> batch = {"body": torch.zeros(2, 3, 48, 48, dtype=torch.uint8),
        ...          "context": torch.zeros(2, 3, 48, 48, dtype=torch.uint8),
        ...          "bbox": torch.tensor([[0.0, 0, 24, 48], [6, 6, 12, 12]])}
        >>> out = t(batch)
        >>> out["context"].shape, out["bbox"].dtype
        (torch.Size([2, 3, 32, 32]), torch.float32)
    """

    def __init__(
        self,
        size: int = 224,
        *,
        train: bool = False,
        jitter: float = 0.4,
        hue: float = 0.0,
        flip_p: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        context_mean: Sequence[float] | None = None,
        context_std: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if int(size) <= 0:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue!r}")
        if not 0.0 <= flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p!r}")
        self.size = int(size)
        self.train(bool(train))  # train_mode is nn.Module's own training flag
        self.jitter = float(jitter)
        self.hue = float(hue)
        self.flip_p = float(flip_p)
        self.generator = generator
        context_mean = mean if context_mean is None else context_mean
        context_std = std if context_std is None else context_std
        for name, values in (("mean", mean), ("std", std), ("context_mean", context_mean),
                             ("context_std", context_std)):
            if len(values) != 3 or not all(math.isfinite(float(v)) for v in values):
                raise ValueError(f"{name} must be three finite numbers, got {values!r}")
        for name, values in (("std", std), ("context_std", context_std)):
            if not all(float(v) > 0 for v in values):
                raise ValueError(f"{name} must be positive, got {values!r}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer(
            "context_mean", torch.tensor(context_mean, dtype=torch.float32).view(1, 3, 1, 1)
        )
        self.register_buffer(
            "context_std", torch.tensor(context_std, dtype=torch.float32).view(1, 3, 1, 1)
        )
        # [0, 1] in normalised units, per channel (Python floats: a clamp with tensor
        # bounds is ~10x slower on CPU than one with scalar bounds)
        self._bounds = [(-m / s, (1.0 - m) / s) for m, s in zip(mean, std, strict=True)]
        self._context_bounds = [
            (-m / s, (1.0 - m) / s) for m, s in zip(context_mean, context_std, strict=True)
        ]

    @property
    def train_mode(self) -> bool:
        """Whether the random flip and jitter run (the module's ``training`` flag)."""
        return self.training

    @train_mode.setter
    def train_mode(self, value: bool) -> None:
        self.train(bool(value))

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, train={self.train_mode}, jitter={self.jitter}, "
            f"hue={self.hue}, flip_p={self.flip_p}"
        )

    def _rand(self, *shape: int, device: torch.device) -> Tensor:
        return torch.rand(*shape, generator=self.generator).to(device)

    def _prepare(self, x: Tensor, key: str) -> tuple[Tensor, float]:
        """Pixels at ``size`` (uint8 kept as is when no resize is needed: the colour
        map reads it directly) and the scale that maps them to [0, 1]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"batch[{key!r}] must be (B, 3, H, W), got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            scale = 1.0 / 255.0
        elif x.is_floating_point():
            scale = 1.0
            x = x.float()
        else:
            raise TypeError(f"batch[{key!r}] must be uint8 or float, got {x.dtype}")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                antialias=True,
            )  # fmt: skip
        return x, scale

    def _finish(
        self, x: Tensor, a: Tensor, c: Tensor, mean: Tensor, std: Tensor,
        bounds: list[tuple[float, float]],
    ) -> Tensor:  # fmt: skip
        """Apply the per-image affine colour map, clamp to [0, 1] and normalise, in one pass.

        The normalisation is folded into the map (``(A x + c - mean) / std``) and the
        clamp to ``[0, 1]`` becomes a per-channel clamp of the normalised values. The
        map is written as three multiply-adds per output channel: with an inner
        dimension of 3, a batched matmul is several times slower on CPU.
        """
        n = x.shape[0]
        std = std.view(1, 3, 1)
        a = (a / std).view(n, 3, 3, 1, 1)
        c = ((c.view(n, 3, 1) - mean.view(1, 3, 1)) / std).view(n, 3, 1, 1)
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        for i in range(3):
            o = out[:, i]
            torch.mul(x[:, 0], a[:, i, 0], out=o)
            o.addcmul_(x[:, 1], a[:, i, 1]).addcmul_(x[:, 2], a[:, i, 2]).add_(c[:, i])
            o.clamp_(*bounds[i])
        return out

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Transform a collated batch dict; see the class docstring for the keys."""
        for key in ("body", "context", "bbox"):
            if key not in batch:
                raise KeyError(f"EmoticBatchTransform needs key {key!r}, got {sorted(batch)}")
        body_in, ctx_in = batch["body"], batch["context"]
        n = ctx_in.shape[0]
        bbox = batch["bbox"].to(device=ctx_in.device, dtype=torch.float32)
        if bbox.shape != (n, 4) or body_in.shape[0] != n:
            raise ValueError(
                f"batch['bbox'] must be (B, 4) and body/context share B, got bbox "
                f"{tuple(bbox.shape)}, body {tuple(body_in.shape)}, context {tuple(ctx_in.shape)}"
            )
        h_in, w_in = ctx_in.shape[-2:]
        if self.train_mode and self.flip_p > 0:
            # Flip before the float conversion: fewer bytes to move.
            flip = self._rand(n, device=torch.device("cpu")) < self.flip_p
            body_in, ctx_in, bbox = hflip_pair(body_in, ctx_in, bbox, flip)
        body, scale_b = self._prepare(body_in, "body")
        context, scale_c = self._prepare(ctx_in, "context")
        if (h_in, w_in) != (self.size, self.size):
            bbox = bbox * torch.tensor([self.size / w_in, self.size / h_in] * 2, device=bbox.device)
        dev = context.device
        if self.train_mode and (self.jitter > 0 or self.hue > 0):
            n_ops = 4 if self.hue > 0 else 3
            lo, hi = 1.0 - self.jitter, 1.0 + self.jitter
            factors = lo + (hi - lo) * self._rand(n, n_ops, device=dev)
            if n_ops == 4:
                factors[:, 3] = (self._rand(n, device=dev) * 2.0 - 1.0) * self.hue
            order = self._rand(n, n_ops, device=dev).argsort(dim=1)
            # One set of factors and order per person, shared by body and context;
            # both maps are composed in one call (only the image means differ).
            means = torch.cat([
                torch.mean(body, dim=(-2, -1), dtype=torch.float32) * scale_b,
                torch.mean(context, dim=(-2, -1), dtype=torch.float32) * scale_c,
            ])  # fmt: skip
            a, c = _jitter_affine(factors.repeat(2, 1), order.repeat(2, 1), means, 1.0)
            a_b, a_c = (a[:n] * scale_b, a[n:] * scale_c)
            c_b, c_c = c[:n], c[n:]
        else:
            eye = torch.eye(3, device=dev).expand(n, 3, 3)
            a_b, a_c = eye * scale_b, eye * scale_c
            c_b = c_c = torch.zeros(n, 3, device=dev)
        out = dict(batch)
        out["body"] = self._finish(body, a_b, c_b, self.mean, self.std, self._bounds)
        out["context"] = self._finish(context, a_c, c_c, self.context_mean, self.context_std,
                                      self._context_bounds)  # fmt: skip
        out["bbox"] = bbox
        return out


class EmoticPairedTransform:
    """Per-sample wrapper of :class:`EmoticBatchTransform` for ``EmoticDataset(transform=...)``.

    Takes one sample dict (``body``/``context`` ``(3, H, W)``, ``bbox`` ``(4,)``) and
    returns it transformed, with the same keys and unbatched shapes.

    Args:
        batch_transform: The batched transform to apply to a batch of one.

    Example:
        >>> t = emotic_eval_transform(size=16)
        >>> s = {"body": torch.zeros(3, 8, 8, dtype=torch.uint8),
        ...      "context": torch.zeros(3, 8, 8, dtype=torch.uint8),
        ...      "bbox": torch.tensor([0.0, 0.0, 4.0, 8.0])}
        >>> t(s)["bbox"].tolist()
        [0.0, 0.0, 8.0, 16.0]
    """

    def __init__(self, batch_transform: EmoticBatchTransform) -> None:
        self.batch_transform = batch_transform

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        batch = dict(sample)
        for key in ("body", "context", "bbox"):
            batch[key] = sample[key].unsqueeze(0)
        out = self.batch_transform(batch)
        for key in ("body", "context", "bbox"):
            out[key] = out[key].squeeze(0)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.batch_transform.extra_repr()})"


def emotic_train_transform(
    size: int = 224,
    jitter: float = 0.4,
    flip_p: float = 0.5,
    *,
    hue: float = 0.0,
    generator: torch.Generator | None = None,
    **normalization: Any,
) -> EmoticPairedTransform:
    """The paper's training augmentation for one sample (resize, flip, jitter, normalise).

    Args:
        size: Output side of body and context (paper: 224).
        jitter: Colour jitter strength (paper: 0.4).
        flip_p: Horizontal flip probability (paper: random flip, 0.5).
        hue: Optional hue jitter (0 by default).
        generator: Optional CPU generator for reproducible draws.
        **normalization: ``mean``, ``std``, ``context_mean``, ``context_std`` (default:
            ImageNet's), e.g. ``**normalization_of(model)``.

    Returns:
        An :class:`EmoticPairedTransform` for ``EmoticDataset(transform=...)``.

    Example:
        >>> t = emotic_train_transform(size=8)
        >>> s = {"body": torch.zeros(3, 8, 8, dtype=torch.uint8),
        ...      "context": torch.zeros(3, 8, 8, dtype=torch.uint8),
        ...      "bbox": torch.tensor([0.0, 0.0, 4.0, 8.0])}
        >>> t(s)["body"].dtype
        torch.float32
    """
    return EmoticPairedTransform(
        EmoticBatchTransform(
            size, train=True, jitter=jitter, hue=hue, flip_p=flip_p, generator=generator,
            **_normalization(normalization),
        )
    )


def emotic_eval_transform(size: int = 224, **normalization: Any) -> EmoticPairedTransform:
    """Evaluation transform for one sample: resize and normalise, nothing random.

    Args:
        size: Output side of body and context.
        **normalization: ``mean``, ``std``, ``context_mean``, ``context_std`` (default:
            ImageNet's), e.g. ``**normalization_of(model)``.

    Returns:
        An :class:`EmoticPairedTransform`.

    Example:
        >>> emotic_eval_transform(32)
        EmoticPairedTransform(size=32, train=False, jitter=0.4, hue=0.0, flip_p=0.5)
    """
    return EmoticPairedTransform(
        EmoticBatchTransform(size, train=False, **_normalization(normalization))
    )


def emotic_batch_transform(
    train: bool,
    size: int = 224,
    jitter: float = 0.4,
    flip_p: float = 0.5,
    *,
    hue: float = 0.0,
    generator: torch.Generator | None = None,
    **normalization: Any,
) -> EmoticBatchTransform:
    """The train or eval transform as an ``nn.Module`` over collated batches (GPU path).

    Build the dataset without a transform (``uint8`` samples), move the collated
    batch to the device, then call this module on it.

    Args:
        train: Training augmentation (flip + jitter) or plain eval transform.
        size: Output side of body and context.
        jitter: Colour jitter strength.
        flip_p: Horizontal flip probability.
        hue: Optional hue jitter.
        generator: Optional CPU generator for reproducible draws.
        **normalization: ``mean``, ``std``, ``context_mean``, ``context_std`` (default:
            ImageNet's), e.g. ``**normalization_of(model)``.

    Returns:
        An :class:`EmoticBatchTransform` (move it with ``.to(device)``).

    Example:
        >>> t = emotic_batch_transform(train=False, size=16)
        >>> b = {"body": torch.zeros(4, 3, 16, 16, dtype=torch.uint8),
        ...      "context": torch.zeros(4, 3, 16, 16, dtype=torch.uint8),
        ...      "bbox": torch.zeros(4, 4)}
        >>> t(b)["body"].shape
        torch.Size([4, 3, 16, 16])
    """
    return EmoticBatchTransform(
        size, train=train, jitter=jitter, hue=hue, flip_p=flip_p, generator=generator,
        **_normalization(normalization),
    )


_NORMALIZATION_KEYS = ("mean", "std", "context_mean", "context_std")


def _normalization(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(_NORMALIZATION_KEYS))
    if unknown:
        raise TypeError(f"unknown transform option(s) {unknown}; the normalisation options "
                        f"are {list(_NORMALIZATION_KEYS)}")
    return {k: v for k, v in kwargs.items() if v is not None}


def normalization_of(model: Any) -> dict[str, tuple[float, ...]]:
    """The ``mean``/``std`` (and the context stream's) a model's inputs are normalised with.

    Reads ``model.pretrained_cfg`` as timm defines it (a :class:`~dagnet_layers.DAGNet`
    gives each stream its backbone's values); ImageNet's for a model without one.

    Args:
        model: A :class:`~dagnet_layers.DAGNet`, a timm model or anything with a
            ``pretrained_cfg`` mapping.

    Returns:
        Keyword arguments for the transform factories of this module.

    Example:
        >>> from dagnet_layers import build_dagnet
        >>> normalization_of(build_dagnet("test_resnet", "test_resnet"))["mean"]
        (0.5, 0.5, 0.5)
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    body = cfg.get("body", cfg)
    context = cfg.get("context", body)
    return {
        "mean": tuple(body.get("mean", IMAGENET_MEAN)),
        "std": tuple(body.get("std", IMAGENET_STD)),
        "context_mean": tuple(context.get("mean", IMAGENET_MEAN)),
        "context_std": tuple(context.get("std", IMAGENET_STD)),
    }
