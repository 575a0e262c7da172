"""Attention branch (ABN, Fukui et al., CVPR 2019): DAG-Net's global spatial attention.

DAG-Net's GSAM (Sec. 3.3, eq. 3) inserts an Attention Branch Network into the
context stream. From a feature map :math:`g` the branch predicts class logits
of its own (trained with an auxiliary loss, which is what shapes the map) and
a spatial attention map :math:`M \\in (0, 1)^{H \\times W}` that re-weights
:math:`g` before the rest of the network (the perception branch) sees it.

In ABN as its authors published it (``models/imagenet/resnet.py`` of their
code), the branch's first block is a second, independent copy of the
backbone's last stage (ResNet's ``layer4``) built at stride 1, so it keeps the
resolution of :math:`g` and widens it to the last stage's width;
:func:`stride_one_copy` builds that copy from any stage module and
:func:`abn_init_` gives it ABN's initialisation. :class:`ResidualConvBlock`
is a lighter, width-preserving stand-in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from dagnet_layers.layers._checks import check_positive_ints

__all__ = [
    "AttentionBranch",
    "AttentionBranchOutput",
    "ResidualConvBlock",
    "abn_init_",
    "stride_one_copy",
]


@torch.no_grad()
def abn_init_(module: nn.Module) -> nn.Module:
    """Initialise ``module`` in place as ABN does, and return it.

    ABN's published code initialises every convolution Kaiming-normal (mode
    ``fan_out``, ReLU gain) and every BatchNorm with weight 1 and bias 0. The
    same is done here, BatchNorm running statistics are reset too, and any
    other submodule that owns parameters and has ``reset_parameters`` (a
    ``Linear``, a ``LayerNorm``) gets its own default initialisation.
    Parameters held directly by a module without ``reset_parameters`` (e.g. a
    layer-scale vector) are left as they are.

    Args:
        module: Any module; changed in place.

    Returns:
        ``module``.

    Example:
        >>> conv = abn_init_(nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64)))
        >>> round(conv[0].weight.std().item(), 2)  # sqrt(2 / (64 * 3 * 3))
        0.06
        >>> conv[1].weight.unique().tolist(), conv[1].bias.unique().tolist()
        ([1.0], [0.0])
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            if m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif callable(reset := getattr(m, "reset_parameters", None)) and any(
            True for _ in m.parameters(recurse=False)
        ):
            reset()
    return module


def _same_padding(conv: nn.Conv2d) -> tuple[int, int] | str:
    """Padding that keeps the spatial size of ``conv`` at stride 1."""
    kernel, dilation = conv.kernel_size, conv.dilation
    if all(k % 2 == 1 for k in kernel):
        return (dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2)
    return "same"  # even kernels pad one side more; torch does that at stride 1


def stride_one_copy(stage: nn.Module) -> nn.Module:
    """A deep copy of ``stage`` that keeps the spatial size: every stride becomes 1.

    ABN's attention branch starts with a copy of the backbone's last stage
    built at stride 1 (for ResNet: ``layer4`` with its first block's 3x3 and
    its projection shortcut at stride 1). This builds such a copy from the
    stage module itself, so that any CNN stage can host it:

    - every ``Conv2d`` with a stride gets stride 1 and the padding that keeps
      the size (symmetric for odd kernels, ``"same"`` for even ones such as a
      ConvNeXt 2x2 downsampling conv; timm's dynamically padded
      ``Conv2dSame`` only needs the stride changed);
    - every strided average/max pooling (the ResNet-D shortcut's 2x2 average)
      becomes the identity.

    Weights are copied as they are; call :func:`abn_init_` for ABN's
    initialisation. Receptive fields are not widened (no dilation), as in ABN.
    Whether a stage really keeps the size (it can hold other strided
    operations) is for the caller to check with a forward pass.

    Args:
        stage: The stage module (e.g. ``resnet.layer4``); left unchanged.

    Returns:
        The stride-1 copy.

    Example:
        >>> stage = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        >>> stride_one_copy(stage)(torch.randn(1, 8, 14, 14)).shape
        torch.Size([1, 16, 14, 14])
    """
    out = copy.deepcopy(stage)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d) and any(st > 1 for st in child.stride):
                child.stride = (1, 1)
                if type(child).__name__ != "Conv2dSame":  # timm's pads for its stride at run time
                    child.padding = _same_padding(child)
            elif isinstance(child, nn.AvgPool2d | nn.MaxPool2d):
                stride = child.stride if child.stride is not None else child.kernel_size
                strides = stride if isinstance(stride, tuple) else (stride,)
                if any(st > 1 for st in strides):
                    setattr(parent, name, nn.Identity())
    return out


class AttentionBranchOutput(NamedTuple):
    """What :class:`AttentionBranch` returns.

    Attributes:
        features: Attended features, shape (B, C, H, W).
        attention_map: Spatial attention :math:`M`, shape (B, 1, H, W), in (0, 1)
            (with ``map_activation="softmax"``, each map sums to 1).
        logits: Attention-branch class logits for the auxiliary loss, shape (B, K),
            or ``None`` without the auxiliary head (``aux_head=False``).
    """

    features: Tensor
    attention_map: Tensor
    logits: Tensor | None


class ResidualConvBlock(nn.Module):
    """A basic residual block (two 3x3 conv-BN, identity shortcut), width-preserving.

    The light attention block of :class:`AttentionBranch` (``attention_block=None``),
    a stand-in for ABN's stride-1 copy of the backbone's last stage (see
    :func:`stride_one_copy`) at a fraction of its cost.

    Args:
        channels: Input and output channels.
        norm_layer: Normalisation class.
        act_layer: Activation class.

    Shape:
        - Input: :math:`(B, C, H, W)`; Output: same.

    Example:
        >>> ResidualConvBlock(8)(torch.randn(2, 8, 7, 7)).shape
        torch.Size([2, 8, 7, 7])
    """

    def __init__(
        self,
        channels: int,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = norm_layer(channels)
        self.act1 = act_layer()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = norm_layer(channels)
        self.act2 = act_layer()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + x)


class AttentionBranch(nn.Module):
    r"""Attention Branch Network head: attention map, auxiliary logits and attended features.

    Structure (as in ABN): an attention block on :math:`g`, BN, 1x1 conv
    :math:`C \to K`, BN, ReLU, giving a K-channel map :math:`a`. Then

    .. math::

        \text{logits} = \operatorname{GAP}(\operatorname{conv}_{1\times1}(a)) \in \mathbb{R}^{K},
        \qquad
        M = \sigma(\operatorname{BN}(\operatorname{conv}_{3\times3}(a)))
            \in (0,1)^{1\times H\times W}

    and the attended features are :math:`(1 + M) \odot g` (ABN's residual
    form, ``mode="residual"``, the default) or the paper's literal
    :math:`M \odot g` (``mode="multiply"``, DAG-Net eq. 3).

    Two options go beyond ABN (both off by default):

    - ``map_activation="softmax"``: a spatial softmax instead of the sigmoid, so
      each map is a distribution over the :math:`H W` positions (it sums to 1) and
      the positions compete for the weight, as in attention pooling. The features
      are re-weighted by :math:`H W \cdot M`, whose mean over the positions is 1:
      :math:`(1 + HW M) \odot g` or :math:`HW M \odot g`;
    - ``aux_head=False``: no auxiliary logits (ABN's attention loss then has
      nothing to train), so the map learns from the main loss alone.

    **Interventions.** :attr:`map_override`, when set, is called as
    ``map_override(x, attention_map)`` with the computed map (B, 1, H, W) and returns
    the map used to re-weight the features and returned instead: an oracle map, a
    constant map, or a test-time swap (a flat or shuffled map) that measures whether
    the model *uses* the map. ``None`` (the default) restores the module; it is not
    saved with the weights.

    Args:
        in_channels: Channels :math:`C` of the feature map.
        num_classes: Classes :math:`K` of the auxiliary logits (26 for EMOTIC).
        attention_block: Module applied to :math:`g` first (keeps C channels).
            ``None`` builds a :class:`ResidualConvBlock`; pass ``nn.Identity()``
            to skip it.
        mode: ``"residual"`` for :math:`(1+M) g`, ``"multiply"`` for :math:`M g`.
        norm_layer: Normalisation class for the branch.
        act_layer: Activation class for the branch.
        block_channels: Output width of ``attention_block`` (default ``in_channels``;
            ABN's stride-1 copy of a ResNet's last stage widens it).
        map_activation: ``"sigmoid"`` (ABN) or ``"softmax"`` (a spatial softmax).
        aux_head: Build the auxiliary logits (ABN). ``False`` leaves them out.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: features :math:`(B, C, H, W)`, attention map :math:`(B, 1, H, W)`,
          logits :math:`(B, K)` (or ``None``)

    Example:
        >>> abn = AttentionBranch(32, num_classes=26)
        >>> out = abn(torch.randn(2, 32, 14, 14))
        >>> out.features.shape, out.attention_map.shape, out.logits.shape
        (torch.Size([2, 32, 14, 14]), torch.Size([2, 1, 14, 14]), torch.Size([2, 26]))
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int = 26,
        attention_block: nn.Module | None = None,
        mode: Literal["residual", "multiply"] = "residual",
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
        block_channels: int | None = None,
        map_activation: Literal["sigmoid", "softmax"] = "sigmoid",
        aux_head: bool = True,
    ) -> None:
        super().__init__()
        if map_activation not in ("sigmoid", "softmax"):
            raise ValueError("AttentionBranch(map_activation=...) must be 'sigmoid' or "
                             f"'softmax', got {map_activation!r}")
        if not isinstance(aux_head, bool):
            raise ValueError(f"AttentionBranch(aux_head=...) must be True or False, got "
                             f"{aux_head!r}")
        if block_channels is None:
            block_channels = in_channels
        check_positive_ints("AttentionBranch", in_channels=in_channels, num_classes=num_classes,
                            block_channels=block_channels)
        if attention_block is None and block_channels != in_channels:
            raise ValueError(
                f"AttentionBranch(block_channels={block_channels}) needs an attention_block "
                f"that outputs that width; the light block keeps in_channels={in_channels}"
            )
        if mode not in ("residual", "multiply"):
            raise ValueError(
                f"AttentionBranch(mode=...) must be 'residual' or 'multiply', got {mode!r}"
            )
        self.in_channels = in_channels
        self.block_channels = block_channels
        self.mode = mode
        self.map_activation = map_activation
        self.aux_head = aux_head
        #: ``(x, attention_map) -> attention_map`` used instead of the computed map, or ``None``.
        self.map_override: Callable[[Tensor, Tensor], Tensor] | None = None
        self._norm_layer = norm_layer
        self._act_layer = act_layer
        if attention_block is None:
            attention_block = abn_init_(ResidualConvBlock(in_channels, norm_layer, act_layer))
        self.attention_block = attention_block
        self.norm = abn_init_(norm_layer(block_channels))
        self._build_class_layers(num_classes)

    def _build_class_layers(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.class_conv = nn.Conv2d(self.block_channels, num_classes, 1, bias=False)
        self.class_norm = self._norm_layer(num_classes)
        self.class_act = self._act_layer()
        self.map_conv = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.map_norm = self._norm_layer(1)
        for layer in (self.class_conv, self.class_norm, self.map_conv, self.map_norm):
            abn_init_(layer)
        # the optional head last, so that a branch with and one without it draw the
        # same initial weights for every layer they share
        self.logit_conv = None
        if self.aux_head:
            self.logit_conv = abn_init_(nn.Conv2d(num_classes, num_classes, 1, bias=False))

    def reset_classifier(self, num_classes: int) -> None:
        """Rebuild the K-dependent layers for ``num_classes`` classes (fresh weights)."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"reset_classifier(num_classes=...) must be >= 1, got {num_classes!r}")
        weight = getattr(self.norm, "weight", None)
        device = weight.device if isinstance(weight, Tensor) else None
        self._build_class_layers(num_classes)
        if device is not None:
            self.to(device)

    def forward(self, x: Tensor) -> AttentionBranchOutput:
        """Attend to ``x`` (B, C, H, W); see the class docstring for the outputs."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"AttentionBranch expects features of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        a = self.class_act(self.class_norm(self.class_conv(self.norm(self.attention_block(x)))))
        logits = self.logit_conv(a).mean(dim=(2, 3)) if self.logit_conv is not None else None
        score = self.map_norm(self.map_conv(a))
        if self.map_activation == "sigmoid":
            attention_map = score.sigmoid()
        else:
            attention_map = score.flatten(1).softmax(dim=1).view_as(score)
        if self.map_override is not None:
            attention_map = self.map_override(x, attention_map)
            if attention_map.shape != score.shape:
                raise ValueError(f"AttentionBranch.map_override must return a map of shape "
                                 f"{tuple(score.shape)}, got {tuple(attention_map.shape)}")
        weight = attention_map
        if self.map_activation == "softmax":  # mean weight 1, as the positions compete
            weight = attention_map * (attention_map.shape[-2] * attention_map.shape[-1])
        if self.mode == "residual":
            features = x * (1.0 + weight)  # (1 + M) is (B, 1, H, W): one full-size product
        else:
            features = x * weight
        return AttentionBranchOutput(features, attention_map, logits)

    def extra_repr(self) -> str:
        width = (f", block_channels={self.block_channels}"
                 if self.block_channels != self.in_channels else "")
        options = "".join(
            [f", map_activation={self.map_activation!r}" if self.map_activation != "sigmoid"
             else "", ", aux_head=False" if not self.aux_head else ""])  # fmt: skip
        return (f"in_channels={self.in_channels}{width}, num_classes={self.num_classes}, "
                f"mode={self.mode!r}{options}")
