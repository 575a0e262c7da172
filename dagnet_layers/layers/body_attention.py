"""Body attention module (BAM) of DAG-Net: one credibility weight per person.

DAG-Net (Sec. 3.2, eq. 1-2) scores how far each body image can be trusted for
emotion recognition with two 1x1 convolutions applied to the body *image*
(not to a feature map, unlike squeeze-and-excitation), a global mean pooling
and a sigmoid, and scales the body stream's features by that weight:

.. math::

    \\lambda_i = \\sigma(W_a^\\top x_i), \\qquad
    \\vartheta_B = \\lambda \\cdot \\mathcal{F}(W_B^\\top; I_B)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from dagnet_layers.layers._checks import check_positive_ints

__all__ = ["BodyAttention", "BodyAttentionOutput"]


class BodyAttentionOutput(NamedTuple):
    """What :class:`BodyAttention` returns.

    Attributes:
        features: The weighted features :math:`\\lambda \\cdot \\mathcal{F}(I_B)`, or
            ``None`` when neither a feature extractor nor features were given.
        weights: The credibility weights :math:`\\lambda`, shape (B,), in (0, 1).
    """

    features: Tensor | None
    weights: Tensor


class BodyAttention(nn.Module):
    r"""Body attention module: a credibility weight per body image (DAG-Net eq. 1-2).

    .. math::

        \lambda = \sigma\Big(\frac{1}{HW}\sum_{h,w}
            \big[W_2 * \phi(W_1 * x)\big]_{h,w}\Big) \in (0, 1)

    where :math:`W_1, W_2` are 1x1 convolutions (``in_channels -> hidden_channels
    -> 1``) and :math:`\phi` is ``act_layer``. The weight scales the body
    features: either those of the wrapped ``feature_extractor`` or those passed
    to :meth:`forward`. The weights are always returned, for inspection.

    Args:
        in_channels: Channels of the body image (3 for RGB).
        hidden_channels: Width of the first 1x1 convolution.
        feature_extractor: Optional module mapping the body image to features
            (any shape with the batch first, e.g. a timm backbone with
            ``num_classes=0``). Its output is scaled by the weights.
        act_layer: Activation class between the two convolutions.

    Shape:
        - Input ``image``: :math:`(B, C_{in}, H, W)`
        - Input ``features`` (optional): :math:`(B, *)`
        - Output ``weights``: :math:`(B,)`; ``features``: same shape as the features

    Example:
        >>> bam = BodyAttention(3, feature_extractor=nn.Sequential(
        ...     nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        >>> out = bam(torch.randn(4, 3, 64, 64))
        >>> out.features.shape, out.weights.shape
        (torch.Size([4, 8]), torch.Size([4]))
        >>> bool(((out.weights > 0) & (out.weights < 1)).all())
        True
    """

    def __init__(
        self,
        in_channels: int = 3,
        hidden_channels: int = 16,
        feature_extractor: nn.Module | None = None,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        check_positive_ints("BodyAttention", in_channels=in_channels,
                            hidden_channels=hidden_channels)
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, hidden_channels, kernel_size=1)
        self.act = act_layer()
        self.conv2 = nn.Conv2d(hidden_channels, 1, kernel_size=1)
        self.feature_extractor = feature_extractor
        #: ``(image, weights) -> weights`` used instead of the computed ones, or ``None``.
        self.weight_override: Callable[[Tensor, Tensor], Tensor] | None = None

    def credibility(self, image: Tensor) -> Tensor:
        """Credibility weights :math:`\\lambda` (B,) of a batch of body images."""
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError(
                f"BodyAttention expects body images of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(image.shape)}"
            )
        score = self.conv2(self.act(self.conv1(image))).mean(dim=(1, 2, 3))
        return score.sigmoid()

    def forward(self, image: Tensor, features: Tensor | None = None) -> BodyAttentionOutput:
        """Weigh the body features by the credibility of ``image``.

        Args:
            image: Body images (B, C, H, W).
            features: Body features (B, ...) to weigh. When ``None`` and a
                ``feature_extractor`` was given, it computes them from ``image``.

        Returns:
            :class:`BodyAttentionOutput` with the weighted features (or ``None``)
            and the weights.
        """
        weights = self.credibility(image)
        if self.weight_override is not None:
            weights = self.weight_override(image, weights)
            if weights.shape != (image.shape[0],):
                raise ValueError(f"BodyAttention.weight_override must return weights of shape "
                                 f"({image.shape[0]},), got {tuple(weights.shape)}")
        if features is None and self.feature_extractor is not None:
            features = self.feature_extractor(image)
        if features is None:
            return BodyAttentionOutput(None, weights)
        if features.shape[0] != weights.shape[0]:
            raise ValueError(
                f"BodyAttention got {weights.shape[0]} images but features for "
                f"{features.shape[0]} samples (features shape {tuple(features.shape)})"
            )
        scale = weights.reshape((-1,) + (1,) * (features.dim() - 1)).to(features.dtype)
        return BodyAttentionOutput(features * scale, weights)
