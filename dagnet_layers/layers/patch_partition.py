"""Uniform N x N image partition and the per-patch encoder of DAG-Net's LSAM.

DAG-Net's local spatial attention module (Sec. 3.4 of the paper) cuts the
context image into :math:`N \\times N` equal patches :math:`R_{i,j}` and encodes
each patch with two 3x3 convolutions (64 and 64 channels) followed by mean
pooling to a 1024-d node feature (64 channels x a 4 x 4 pooled grid). The
node features then feed a graph convolution over the patches.

Patches are ordered row-major: node ``i * N + j`` is the patch in grid row
``i`` and column ``j``, the same order as :func:`torch_geometric.utils.grid`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from dagnet_layers.layers._checks import check_positive_ints

__all__ = ["PatchEncoder", "PatchPartition"]

SizePolicy = Literal["error", "resize", "pad"]


def _check_image(x: Tensor, name: str, channels: int | None = None) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4-D tensor (B, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} expects {channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})"
        )


def _graph_capture() -> bool:
    """Whether ``torch.compile``, ``torch.export`` or TorchScript is capturing this call."""
    compiler = getattr(torch, "compiler", None)
    for name in ("is_compiling", "is_exporting"):  # torch.compiler's, where this torch has them
        check = getattr(compiler, name, None)
        if check is not None and check():
            return True
    return bool(torch.jit.is_tracing() or torch.jit.is_scripting())


class _ReluBlockMean(torch.autograd.Function):
    """ReLU in place, then the mean over non-overlapping ``(h / p, w / p)`` blocks.

    The same function as ``adaptive_avg_pool2d(relu_(x), p)`` when ``p`` divides the
    height and the width, with a backward that writes the input gradient in one
    pass over the activations: the block-constant pooled gradient, broadcast, masked
    by the saved ReLU output. Autograd's chain instead fills a zeroed gradient,
    copies it twice (the pooling backward keeps the channels-last layout) and then
    masks it into a fourth fresh buffer: at 224 px those are 103 MB each.

    Forward returns ``(pooled, x)``: ``x`` is the input, modified in place and so
    returned as an output (``ctx.mark_dirty``); callers drop it.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, pool_size: int) -> tuple[Tensor, Tensor]:
        x.relu_()
        ctx.mark_dirty(x)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        ctx.pool_size = pool_size  # type: ignore[attr-defined]
        h, w = x.shape[-2:]
        return F.avg_pool2d(x, (h // pool_size, w // pool_size)), x

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, grad_pooled: Tensor | None, grad_x: Tensor | None
    ) -> tuple[Tensor | None, None]:
        (y,) = ctx.saved_tensors  # type: ignore[attr-defined]
        p: int = ctx.pool_size  # type: ignore[attr-defined]
        n, c, h, w = y.shape
        hb, wb = h // p, w // p
        grad: Tensor | None = None
        if grad_pooled is not None:
            # broadcast the pooled gradient over each block's rows only: spread along a
            # row first (a small copy, 1/hb of the activations), so that the one pass
            # over the activations runs along whole rows of memory (w * c values in
            # channels-last, w in NCHW), not along 64 channels at a time
            g = grad_pooled / (hb * wb)
            if y.is_contiguous():
                row = g.unsqueeze(-1).expand(n, c, p, p, wb).reshape(n, c, p, 1, w)
                blocks = y.view(n, c, p, hb, w)
                grad = torch.ops.aten.threshold_backward(row.expand_as(blocks), blocks, 0)
                grad = grad.view(n, c, h, w)
            else:  # channels-last: rows of w * c values
                g = g.permute(0, 2, 3, 1)
                row = g.unsqueeze(3).expand(n, p, p, wb, c).reshape(n, p, 1, w * c)
                blocks = y.permute(0, 2, 3, 1).view(n, p, hb, w * c)
                grad = torch.ops.aten.threshold_backward(row.expand_as(blocks), blocks, 0)
                grad = grad.view(n, h, w, c).permute(0, 3, 1, 2)
        if grad_x is not None:
            masked = torch.ops.aten.threshold_backward(grad_x, y, 0)
            grad = masked if grad is None else grad + masked
        return grad, None


class PatchPartition(nn.Module):
    r"""Split a batch of images or feature maps into a uniform :math:`N \times N` grid.

    .. math::

        (B, C, N h, N w) \;\mapsto\; (B, N^2, C, h, w),
        \qquad R_{i,j} = x[:, :, i h:(i+1) h,\; j w:(j+1) w]

    The split is a single :func:`einops.rearrange`; :meth:`merge` is its exact
    inverse. Patch ``i * N + j`` is grid row ``i``, column ``j``.

    Args:
        n: Patches per side, :math:`N \ge 1` (the paper uses 4).
        size_policy: What to do when H or W is not divisible by ``n``:
            ``"error"`` (default) raises; ``"resize"`` bilinearly resizes the
            input to the nearest smaller multiple of ``n`` (at least ``n``);
            ``"pad"`` zero-pads bottom/right up to the next multiple.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: :math:`(B, N^2, C, H/N, W/N)` (after the size policy)

    Example:
        >>> part = PatchPartition(n=4)
        >>> x = torch.randn(2, 3, 224, 224)
        >>> patches = part(x)
        >>> patches.shape
        torch.Size([2, 16, 3, 56, 56])
        >>> torch.equal(part.merge(patches), x)
        True
    """

    def __init__(self, n: int = 4, size_policy: SizePolicy = "error") -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"PatchPartition(n=...) needs an integer n >= 1, got {n!r}")
        if size_policy not in ("error", "resize", "pad"):
            raise ValueError(
                "PatchPartition(size_policy=...) must be 'error', 'resize' or 'pad', "
                f"got {size_policy!r}"
            )
        self.n = n
        self.size_policy = size_policy

    @property
    def num_patches(self) -> int:
        """Number of patches :math:`N^2`."""
        return self.n * self.n

    def _fit(self, x: Tensor) -> Tensor:
        n = self.n
        h, w = x.shape[-2:]
        if h % n == 0 and w % n == 0:
            return x
        if self.size_policy == "error":
            raise ValueError(
                f"PatchPartition(n={n}) needs H and W divisible by {n}, got {h}x{w}; "
                "resize the input or pass size_policy='resize' or 'pad'"
            )
        if self.size_policy == "resize":
            new_h, new_w = max(n, h // n * n), max(n, w // n * n)
            return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        return F.pad(x, (0, (-w) % n, 0, (-h) % n))

    def forward(self, x: Tensor) -> Tensor:
        """Split ``x`` (B, C, H, W) into patches (B, N*N, C, H/N, W/N)."""
        _check_image(x, "PatchPartition")
        x = self._fit(x)
        return rearrange(x, "b c (n1 h) (n2 w) -> b (n1 n2) c h w", n1=self.n, n2=self.n)

    def merge(self, patches: Tensor) -> Tensor:
        """Inverse of :meth:`forward`: (B, N*N, C, h, w) back to (B, C, N h, N w)."""
        if patches.dim() != 5 or patches.shape[1] != self.num_patches:
            raise ValueError(
                f"PatchPartition(n={self.n}).merge expects (B, {self.num_patches}, C, h, w), "
                f"got shape {tuple(patches.shape)}"
            )
        return rearrange(patches, "b (n1 n2) c h w -> b c (n1 h) (n2 w)", n1=self.n, n2=self.n)

    def extra_repr(self) -> str:
        return f"n={self.n}, size_policy={self.size_policy!r}"


class PatchEncoder(nn.Module):
    r"""Encode every patch of an :math:`N \times N` partition into one node feature vector.

    Following DAG-Net (Sec. 3.4), each patch goes through two 3x3 convolutions
    (64 and 64 channels by default, each followed by ``act_layer``) and a mean
    pooling to a ``pool_size x pool_size`` grid, flattened to
    ``out_channels * pool_size**2`` features (64 x 4 x 4 = 1024, the paper's
    node width). All :math:`B N^2` patches run as one batched convolution (on a CPU,
    in chunks of a few MiB of activations: see ``cpu_chunk_mib``).

    Args:
        in_channels: Channels of the image being partitioned (3 for RGB).
        n: Patches per side :math:`N`.
        hidden_channels: Width of the first convolution.
        out_channels: Width of the second convolution.
        pool_size: Side of the mean-pooled grid per patch.
        stride: Stride of the first convolution (1 in the paper's description;
            2 cuts the encoder's cost by about 4x).
        act_layer: Activation class applied after each convolution (``nn.ReLU`` runs
            in place: neither convolution's backward needs its output).
        size_policy: Passed to :class:`PatchPartition`.
        channels_last: Run the convolutions on channels-last (NHWC) activations.
            The same function (to float rounding); on a CPU it takes 0.79x the time
            of NCHW for a forward and backward pass at the paper's size (B = 8,
            224 px, N = 4: 56-pixel patches, one core; 0.75x with the in-place
            ReLU against the earlier out-of-place one) and ties at 112 px (1.02x,
            28-pixel patches); channels-last is what convolutions want under AMP
            on a GPU.
        fused_relu_pool: When training with the default ReLU and a pooled grid that
            divides the second convolution's output, run the last ReLU and the mean
            pool as one step whose backward writes that convolution's output
            gradient in one pass over the activations. The same function and
            gradients (to float rounding); 0.87x to 0.90x of the encoder's training
            step on an AVX512 CPU at the paper's size (five alternated runs). Used only
            when gradients are recorded, and never under ``torch.compile`` (which
            fuses these ops itself), export or tracing. It does not call ``act2``
            and ``pool`` as modules, so their hooks do not fire, and it cannot be
            differentiated twice: pass ``False`` for either.
        cpu_chunk_mib: On a CPU, encode the patches in chunks whose activations
            take at most this many MiB per tensor (at least one patch per chunk);
            ``None`` encodes them all at once, as on a GPU. Each patch is encoded
            alone, so chunks change nothing but the order in which the weight
            gradients are summed. Buffers of a few MiB are reused by the C
            allocator, where the 100 MB ones of a whole batch are mapped and
            page-faulted in anew on every call. On an AVX512 CPU, with 8 MiB, the
            encoder's training step takes 0.87x to 0.88x the unchunked one at B = 8,
            224 px (10 patches per chunk), 0.86x to 0.96x at B = 32, 112 px (40),
            and ties at B = 8, 112 px (1.01x; 26 MB in all, which the allocator
            already reuses). The convolutions' and activations' module
            hooks fire once per chunk. Not applied under ``torch.compile``, export
            or tracing.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)` with H and W divisible by N
        - Output: :math:`(B, N^2, D)`, :math:`D =` ``out_channels * pool_size**2``

    Example:
        >>> enc = PatchEncoder(3, n=4)
        >>> enc(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 16, 1024])
    """

    def __init__(
        self,
        in_channels: int = 3,
        n: int = 4,
        hidden_channels: int = 64,
        out_channels: int = 64,
        pool_size: int = 4,
        stride: int = 1,
        act_layer: type[nn.Module] = nn.ReLU,
        size_policy: SizePolicy = "error",
        channels_last: bool = True,
        fused_relu_pool: bool = True,
        cpu_chunk_mib: float | None = 8.0,
    ) -> None:
        super().__init__()
        check_positive_ints("PatchEncoder", in_channels=in_channels,
                            hidden_channels=hidden_channels, out_channels=out_channels,
                            pool_size=pool_size, stride=stride)
        self.in_channels = in_channels
        self.pool_size = pool_size
        self.partition = PatchPartition(n, size_policy=size_policy)
        self.channels_last = bool(channels_last)
        self.fused_relu_pool = bool(fused_relu_pool)
        if cpu_chunk_mib is not None and not cpu_chunk_mib > 0:
            raise ValueError(f"PatchEncoder: cpu_chunk_mib must be positive or None, "
                             f"got {cpu_chunk_mib!r}")
        self.cpu_chunk_mib = cpu_chunk_mib
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, 3, stride=stride, padding=1)
        self.act1 = nn.ReLU(inplace=True) if act_layer is nn.ReLU else act_layer()
        self.conv2 = nn.Conv2d(hidden_channels, out_channels, 3, padding=1)
        self.act2 = nn.ReLU(inplace=True) if act_layer is nn.ReLU else act_layer()
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.out_features = out_channels * pool_size * pool_size

    @property
    def n(self) -> int:
        """Patches per side :math:`N`."""
        return self.partition.n

    @property
    def num_patches(self) -> int:
        """Number of graph nodes :math:`N^2`."""
        return self.partition.num_patches

    def encode_patches(self, patches: Tensor) -> Tensor:
        """Encode already-partitioned patches (B, P, C, h, w) into (B, P, D)."""
        b, p = patches.shape[:2]
        x = patches.flatten(0, 1)
        step = self._patches_per_chunk(x)
        if step >= x.shape[0]:
            out = self._encode(x)
        else:
            out = torch.cat([self._encode(part) for part in x.split(step)])
        return out.reshape(b, p, self.out_features)

    def _encode(self, x: Tensor) -> Tensor:
        """Convolutions, activations and pooling of a stack of patches (P, C, h, w)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv2(self.act1(self.conv1(x)))
        if self._fuse(x):
            return _ReluBlockMean.apply(x, self.pool_size)[0]
        return self.pool(self.act2(x))

    def _patches_per_chunk(self, x: Tensor) -> int:
        """How many patches of ``x`` (P, C, h, w) one pass encodes (all but on a CPU)."""
        n = x.shape[0]
        if self.cpu_chunk_mib is None or x.device.type != "cpu" or _graph_capture():
            return n
        h, w = x.shape[-2:]
        s = self.conv1.stride[0]
        # activations of one patch, the wider of the two convolutions' outputs
        per_patch = max(self.conv1.out_channels, self.conv2.out_channels) * x.element_size()
        per_patch *= ((h - 1) // s + 1) * ((w - 1) // s + 1)
        return max(1, int(self.cpu_chunk_mib * 2**20) // per_patch)

    def _fuse(self, x: Tensor) -> bool:
        """Whether the fused ReLU + pool step applies to the second convolution's output."""
        if not (self.fused_relu_pool and x.requires_grad and torch.is_grad_enabled()):
            return False
        if type(self.act2) is not nn.ReLU or type(self.pool) is not nn.AdaptiveAvgPool2d:
            return False
        if self.pool.output_size not in (self.pool_size, (self.pool_size, self.pool_size)):
            return False
        if _graph_capture():
            return False
        h, w = x.shape[-2:]
        dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
        return dense and h % self.pool_size == 0 and w % self.pool_size == 0

    def forward(self, x: Tensor) -> Tensor:
        """Partition ``x`` (B, C, H, W) and encode each patch: (B, N*N, D)."""
        _check_image(x, "PatchEncoder", self.in_channels)
        return self.encode_patches(self.partition(x))

