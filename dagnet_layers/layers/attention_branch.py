"""Attention branch (ABN, Fukui et al., CVPR 2019): DAG-Net's global spatial attention.

DAG-Net's GSAM (Sec. 3.3, eq. 3) inserts an Attention Branch Network into the
context stream. From a feature map :math:`g` the branch predicts class logits
of its own (trained with an auxiliary loss, which is what shapes the map) and
a spatial attention map :math:`M \\in (0, 1)^{H \\times W}` that re-weights
:math:`g` before the rest of the network (the perception branch) sees it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from torch import Tensor, nn

__all__ = ["AttentionBranch", "AttentionBranchOutput", "ResidualConvBlock"]


class AttentionBranchOutput(NamedTuple):
    """What :class:`AttentionBranch` returns.

    Attributes:
        features: Attended features, shape (B, C, H, W).
        attention_map: Spatial attention :math:`M`, shape (B, 1, H, W), in (0, 1).
        logits: Attention-branch class logits for the auxiliary loss, shape (B, K).
    """

    features: Tensor
    attention_map: Tensor
    logits: Tensor


class ResidualConvBlock(nn.Module):
    """A basic residual block (two 3x3 conv-BN, identity shortcut), width-preserving.

    The default attention block of :class:`AttentionBranch`, playing the role
    of ABN's extra ResNet stage in the attention branch.

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

    Args:
        in_channels: Channels :math:`C` of the feature map.
        num_classes: Classes :math:`K` of the auxiliary logits (26 for EMOTIC).
        attention_block: Module applied to :math:`g` first (keeps C channels).
            ``None`` builds a :class:`ResidualConvBlock`; pass ``nn.Identity()``
            to skip it.
        mode: ``"residual"`` for :math:`(1+M) g`, ``"multiply"`` for :math:`M g`.
        norm_layer: Normalisation class for the branch.
        act_layer: Activation class for the branch.

    Shape:
        - Input: :math:`(B, C, H, W)`
        - Output: features :math:`(B, C, H, W)`, attention map :math:`(B, 1, H, W)`,
          logits :math:`(B, K)`

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
    ) -> None:
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"AttentionBranch({arg}=...) must be a positive int, got {value!r}"
                )
        if mode not in ("residual", "multiply"):
            raise ValueError(
                f"AttentionBranch(mode=...) must be 'residual' or 'multiply', got {mode!r}"
            )
        self.in_channels = in_channels
        self.mode = mode
        self._norm_layer = norm_layer
        self._act_layer = act_layer
        self.attention_block = (
            ResidualConvBlock(in_channels, norm_layer, act_layer)
            if attention_block is None
            else attention_block
        )
        self.norm = norm_layer(in_channels)
        self._build_class_layers(num_classes)

    def _build_class_layers(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.class_conv = nn.Conv2d(self.in_channels, num_classes, 1, bias=False)
        self.class_norm = self._norm_layer(num_classes)
        self.class_act = self._act_layer()
        self.logit_conv = nn.Conv2d(num_classes, num_classes, 1, bias=False)
        self.map_conv = nn.Conv2d(num_classes, 1, 3, padding=1, bias=False)
        self.map_norm = self._norm_layer(1)

    def reset_classifier(self, num_classes: int) -> None:
        """Rebuild the K-dependent layers for ``num_classes`` classes (fresh weights)."""
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"reset_classifier(num_classes=...) must be >= 1, got {num_classes!r}")
        device = self.norm.weight.device if hasattr(self.norm, "weight") else None
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
        logits = self.logit_conv(a).mean(dim=(2, 3))
        attention_map = self.map_norm(self.map_conv(a)).sigmoid()
        if self.mode == "residual":
            features = x * (1.0 + attention_map)  # one fused product, no extra temporary
        else:
            features = x * attention_map
        return AttentionBranchOutput(features, attention_map, logits)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, mode={self.mode!r}"
