"""timm backbones for DAG-Net's streams: pooled body features and a context backbone split in two.

The body stream needs a pooled feature vector, which every timm model gives
with ``num_classes=0``. The context stream needs to run *part* of a CNN,
apply the attention branch, and run the rest, as ABN does on ResNet (between
the last two stages). :class:`SplitBackbone` builds the backbone with timm's
``features_only=True`` and cuts its ordered module list after the
penultimate feature stage. Backbones whose feature extractor cannot be cut
that way (hook- or getter-based extractors such as ViTs) are, under
``attention_stage="auto"``, run whole, and the attention branch goes on their
last feature map instead; ``attention_stage="penultimate"`` makes that an error.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from typing import Any, Literal

import timm
from torch import Tensor, nn

__all__ = ["SplitBackbone", "create_body_backbone"]

AttentionStage = Literal["auto", "penultimate", "last"]


def _create(name: str, role: str, **kwargs: Any) -> nn.Module:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{role}=... must be a timm model name, got {name!r}")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"{role}={name!r} is not a timm model name{hint}")
    return timm.create_model(name, **kwargs)


def create_body_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Create a timm model that maps an image to a pooled feature vector.

    Args:
        name: Any timm model name (e.g. ``"resnet50"``).
        pretrained: Load pretrained weights through timm (``pretrained_cfg_overlay=
            dict(file="/path/weights.safetensors")`` in ``kwargs`` loads a local file).
        **kwargs: Passed to :func:`timm.create_model`.

    Returns:
        The model, with ``num_classes=0`` so its output is (B, ``num_features``).

    Example:
        >>> m = create_body_backbone("test_resnet")
        >>> m(torch.randn(1, 3, 64, 64)).shape == (1, m.num_features)
        True
    """
    return _create(name, "body_backbone", pretrained=pretrained, num_classes=0, **kwargs)


def _ordered_ops(net: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The modules a timm feature extractor runs in sequence, or None if it is not sequential."""
    if isinstance(net, timm.models.FeatureDictNet):  # FeatureListNet too
        return list(net.items())
    blocks = getattr(net, "blocks", None)
    if (
        getattr(net, "feature_hooks", "absent") is None
        and isinstance(blocks, nn.Sequential)
        and hasattr(net, "conv_stem")
        and hasattr(net, "bn1")
    ):  # EfficientNetFeatures / MobileNetV3Features: conv_stem, bn1, then blocks
        ops = [("conv_stem", net.conv_stem), ("bn1", net.bn1)]
        return ops + [(f"blocks_{i}", block) for i, block in enumerate(blocks)]
    return None


def _op_index(ops: list[tuple[str, nn.Module]], module_name: str) -> int | None:
    wanted = {module_name, module_name.replace(".", "_")}
    for i, (name, _) in enumerate(ops):
        if name in wanted:
            return i
    return None


class _LastFeature(nn.Module):
    """Run a whole timm feature extractor and return its last feature map."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[-1]


class SplitBackbone(nn.Module):
    """A timm CNN cut after its penultimate stage: ``stem`` then ``last_stage``.

    ``stem`` runs the network up to and including the penultimate feature
    stage (e.g. ``layer3`` of a ResNet, stride 16); ``last_stage`` runs the
    final stage (``layer4``, stride 32). The attention branch goes in between.
    When the extractor cannot be cut (see the module docstring) and
    ``attention_stage`` allows it, ``stem`` is the whole network and
    ``last_stage`` is the identity: the attention then acts on the last map.

    Args:
        name: timm model name with ``features_only`` support.
        pretrained: Load pretrained weights through timm.
        attention_stage: ``"penultimate"`` (cut, error if impossible),
            ``"last"`` (never cut) or ``"auto"`` (cut when possible, else last
            with a :class:`UserWarning`).
        **kwargs: Passed to :func:`timm.create_model`.

    Attributes:
        attention_channels: Channels of the map between ``stem`` and ``last_stage``.
        num_features: Channels of the final map.
        split: ``"penultimate"`` or ``"last"``: where the cut actually is.

    Shape:
        - Input: :math:`(B, 3, H, W)`; output of :meth:`forward`: :math:`(B, C, H/32, W/32)`
          (the backbone's final reduction)

    Example:
        >>> bb = SplitBackbone("test_resnet")
        >>> bb.split, bb.attention_channels, bb.num_features
        ('penultimate', 192, 96)
        >>> bb(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 96, 2, 2])
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        attention_stage: AttentionStage = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if attention_stage not in ("auto", "penultimate", "last"):
            raise ValueError(
                "attention_stage must be 'auto', 'penultimate' or 'last', "
                f"got {attention_stage!r}"
            )
        if not isinstance(name, str) or not timm.is_model(name):
            _create(name, "context_backbone")  # raises the unknown-name error
        try:
            net = timm.create_model(name, pretrained=pretrained, features_only=True, **kwargs)
        except Exception as err:  # timm raises RuntimeError/AssertionError/TypeError here
            raise ValueError(
                f"context_backbone={name!r} cannot be used: timm.create_model(..., "
                f"features_only=True, pretrained={pretrained}) failed ({type(err).__name__}: "
                f"{err}). The context stream needs a CNN with feature extraction support, "
                "e.g. resnet18, convnext_tiny, efficientnet_b0, regnety_008; with "
                "pretrained=True, also check that the weights are in timm's cache or given "
                "as a local file (pretrained_cfg_overlay=dict(file=...))"
            ) from err
        self.name = name
        info = net.feature_info
        channels = info.channels()
        modules = [re.sub(r"^model\.", "", m) for m in info.module_name()]
        ops = _ordered_ops(net) if attention_stage != "last" and len(channels) >= 2 else None
        cut = end = None
        if ops is not None:
            cut, end = _op_index(ops, modules[-2]), _op_index(ops, modules[-1])
        if ops is not None and cut is not None and end is not None and cut < end:
            self.stem = nn.Sequential(OrderedDict(ops[: cut + 1]))
            self.last_stage = nn.Sequential(OrderedDict(ops[cut + 1 : end + 1]))
            self.split = "penultimate"
            self.attention_channels = channels[-2]
        else:
            if attention_stage == "penultimate":
                raise ValueError(
                    f"context_backbone={name!r} cannot be cut between its last two stages "
                    f"(timm feature extractor {type(net).__name__} is not a sequential module "
                    "list); use attention_stage='auto' or 'last' to attend to its last feature map"
                )
            if attention_stage == "auto":
                warnings.warn(
                    f"context_backbone={name!r} cannot be cut between its last two stages; "
                    "the attention branch acts on its last feature map instead",
                    UserWarning,
                    stacklevel=2,
                )
            self.stem = _LastFeature(net)
            self.last_stage = nn.Identity()
            self.split = "last"
            self.attention_channels = channels[-1]
        self.num_features = channels[-1]
        self.reduction = info.reduction()[-1]

    def forward(self, x: Tensor) -> Tensor:
        """Run both parts: (B, 3, H, W) -> final feature map."""
        return self.last_stage(self.stem(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, split={self.split!r}"
