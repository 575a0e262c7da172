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

import os
import re
import socket
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import timm
import torch
from torch import Tensor, nn

from dagnet_layers.errors import DAGNetError, MissingFileError
from dagnet_layers.layers import abn_init_, stride_one_copy

__all__ = [
    "PretrainedWeightsUnavailableError",
    "SplitBackbone",
    "check_pretrained_weights",
    "create_body_backbone",
    "pooled_width",
]

AttentionStage = Literal["auto", "penultimate", "last"]

#: Seconds to wait for the weight host before calling it unreachable.
_PROBE_TIMEOUT = 3.0


class PretrainedWeightsUnavailableError(DAGNetError, RuntimeError):
    """Pretrained weights are neither cached nor given as a file, and their host is unreachable."""


def _hf_cached(repo_id: str, filename: str | None) -> str | None:
    from huggingface_hub import constants, try_to_load_from_cache

    # timm asks for the safetensors file first and falls back to the pickle.
    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo_id, name, cache_dir=constants.HF_HUB_CACHE)
        if isinstance(found, str):
            return found
    return None


def _unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be reached within a few seconds, or None if it can."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=_PROBE_TIMEOUT).close()
    except OSError as err:
        return f"{type(err).__name__}: {err}"
    return None


def check_pretrained_weights(name: str, role: str = "backbone", **kwargs: Any) -> str:
    """Where timm will load ``name``'s pretrained weights from; fail fast when it cannot.

    Offline and without cached weights, :func:`timm.create_model` with
    ``pretrained=True`` retries the Hugging Face Hub for about a minute and
    ends in a traceback. This looks first: a local file given through
    ``pretrained_cfg_overlay=dict(file=...)``, then Hugging Face's cache, then
    torch.hub's cache; only when none has the weights does it try to open a
    connection to their host (a few seconds at most). A model name timm does
    not describe (``hf-hub:``, ``local-dir:`` names) is left to timm.

    Args:
        name: timm model name (``"resnet50"``, ``"resnet50.a1_in1k"``).
        role: Argument name for the message (``"body_backbone"``).
        **kwargs: The :func:`timm.create_model` options (``pretrained_cfg_overlay``).

    Returns:
        A description of the source: ``"file <path>"``, ``"cache <path>"``,
        ``"download from <host>"`` or ``"timm"`` (not checked).

    Raises:
        MissingFileError: the overlay's file does not exist (a ``FileNotFoundError``).
        PretrainedWeightsUnavailableError: the weights are in no cache and
            their host cannot be reached (or the Hub is set offline). The
            one-line message names the ways out.

    Example:
        >>> try:
        ...     check_pretrained_weights("resnet18", pretrained_cfg_overlay=dict(file="/no/w.pth"))
        ... except FileNotFoundError as err:
        ...     print(err)
        /no/w.pth: pretrained weight file for backbone='resnet18' does not exist
    """
    overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
    cfg = timm.models.get_pretrained_cfg(name) if ":" not in name else None
    merged = {**(cfg.to_dict() if cfg is not None else {}), **overlay}
    if merged.get("file"):
        path = Path(merged["file"]).expanduser()
        if not path.is_file():
            raise MissingFileError(
                path, f"pretrained weight file for {role}={name!r} does not exist"
            )
        return f"file {path}"
    if cfg is None or merged.get("state_dict") is not None:
        return "timm"
    from huggingface_hub import constants

    hub_id, url = str(merged.get("hf_hub_id") or ""), str(merged.get("url") or "")
    places = []
    if hub_id:
        found = _hf_cached(hub_id, merged.get("hf_hub_filename"))
        if found:
            return f"cache {found}"
        places.append(f"Hugging Face cache {constants.HF_HUB_CACHE} ({hub_id})")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if cached.is_file():
            return f"cache {cached}"
        places.append(f"torch.hub cache {cached.parent}")
    if not places:
        return "timm"
    source = constants.ENDPOINT if hub_id else url
    why = "HF_HUB_OFFLINE is set" if hub_id and constants.HF_HUB_OFFLINE else _unreachable(source)
    if why is None:
        return f"download from {urlparse(source).hostname}"
    raise PretrainedWeightsUnavailableError(
        f"{role}={name!r}: pretrained weights are not in the {' or the '.join(places)} and "
        f"{urlparse(source).hostname} cannot be reached ({why}); give a local weight file "
        f"(train_emotic.py --body-weights/--context-weights FILE; in Python "
        f"pretrained_cfg_overlay=dict(file=FILE) in the backbone's kwargs), fetch the weights "
        f"once on a machine that is online (timm caches them), or train from scratch "
        f"(--no-pretrained / pretrained=False)"
    )


#: Name prefixes timm resolves itself (a Hub repo, a local folder with a timm config.json).
_SCHEMES = ("hf-hub:", "hf_hub:", "local-dir:")


def _known(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith(_SCHEMES) or timm.is_model(name))


def pooled_width(model: nn.Module) -> int:
    """Width of the pooled features a timm model built with ``num_classes=0`` returns.

    timm's ``num_features`` is the width of the last feature map; models with a
    head that widens after pooling (MobileNetV3/V4, GhostNet, EfficientViT...)
    return ``head_hidden_size`` features instead, which timm records for exactly
    this purpose.

    Args:
        model: A timm model.

    Returns:
        The feature width.

    Example:
        >>> pooled_width(timm.create_model("mobilenetv3_small_050", num_classes=0))
        1024
    """
    width = getattr(model, "head_hidden_size", None) or getattr(model, "num_features")  # noqa: B009
    return int(width)


def _create(name: str, role: str, **kwargs: Any) -> nn.Module:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{role}=... must be a timm model name, got {name!r}")
    if not _known(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:5]
        hint = f"; similar names: {', '.join(close)}" if close else ""
        raise ValueError(f"{role}={name!r} is not a timm model name{hint}")
    if kwargs.get("pretrained"):
        check_pretrained_weights(name, role, **kwargs)
    return timm.create_model(name, **kwargs)


def create_body_backbone(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Create a timm model that maps an image to a pooled feature vector.

    Args:
        name: Any timm model name (e.g. ``"resnet50"``).
        pretrained: Load pretrained weights through timm (``pretrained_cfg_overlay=
            dict(file="/path/weights.safetensors")`` in ``kwargs`` loads a local file).
        **kwargs: Passed to :func:`timm.create_model`.

    Returns:
        The model, with ``num_classes=0`` so its output is (B, :func:`pooled_width`).
        ``hf-hub:`` and ``local-dir:`` names go to timm as they are.

    Example:
        >>> m = create_body_backbone("test_resnet")
        >>> m(torch.randn(1, 3, 64, 64)).shape == (1, pooled_width(m))
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
        ops: list[tuple[str, nn.Module]] = [("conv_stem", net.get_submodule("conv_stem")),
                                            ("bn1", net.get_submodule("bn1"))]
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


class _Permute(nn.Module):
    """Reorder the dimensions of a feature map (NHWC <-> NCHW)."""

    def __init__(self, *dims: int) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


def _is_nhwc(net: nn.Module) -> bool:
    fmt = getattr(net, "output_fmt", "NCHW")
    return str(getattr(fmt, "value", fmt)).upper() == "NHWC"


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
        if not _known(name):
            _create(name, "context_backbone")  # raises the unknown-name error
        if pretrained:
            check_pretrained_weights(name, "context_backbone", **kwargs)
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
        #: timm's preprocessing config of the backbone (mean, std, interpolation...).
        self.pretrained_cfg: dict[str, Any] = dict(getattr(net, "pretrained_cfg", None) or {})
        info: Any = net.feature_info  # timm's FeatureInfo
        channels = info.channels()
        modules = [re.sub(r"^model\.", "", m) for m in info.module_name()]
        ops = _ordered_ops(net) if attention_stage != "last" and len(channels) >= 2 else None
        cut = end = None
        if ops is not None:
            cut, end = _op_index(ops, modules[-2]), _op_index(ops, modules[-1])
        if ops is not None and cut is not None and end is not None and cut < end:
            self.stem: nn.Module = nn.Sequential(OrderedDict(ops[: cut + 1]))
            self.last_stage: nn.Module = nn.Sequential(OrderedDict(ops[cut + 1 : end + 1]))
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
        if _is_nhwc(net):  # Swin, MaxViT...: maps are NHWC inside; the streams see NCHW
            self.stem = nn.Sequential(self.stem, _Permute(0, 3, 1, 2))
            if self.split == "penultimate":
                self.last_stage = nn.Sequential(_Permute(0, 2, 3, 1), self.last_stage,
                                                _Permute(0, 3, 1, 2))
        self.num_features = channels[-1]
        self.reduction = info.reduction()[-1]

    def attention_stage_copy(self, init: Literal["abn", "copy"] = "abn") -> nn.Module:
        """ABN's attention block: a copy of :attr:`last_stage` at stride 1.

        In ABN's published ResNet the attention branch starts with
        ``att_layer4``, a second ``layer4`` built at stride 1: it keeps the
        penultimate stage's resolution (14 x 14 at 224 px) and widens to the
        last stage's width (ResNet-18: 256 -> 512, with a projection
        shortcut). This builds that block from this backbone's own last stage
        (:func:`~dagnet_layers.layers.stride_one_copy`), for ResNets and any
        timm CNN whose last stage can run at stride 1, and checks it with a
        forward pass.

        Args:
            init: ``"abn"``: ABN's initialisation
                (:func:`~dagnet_layers.layers.abn_init_`: Kaiming-normal
                fan-out convolutions, BatchNorm 1/0); ``"copy"``: start from
                the last stage's current weights (e.g. pretrained ones).

        Returns:
            A module mapping ``(B, attention_channels, h, w)`` to
            ``(B, num_features, h, w)``.

        Raises:
            ValueError: the backbone is not cut between its last two stages
                (``split == "last"``), or the copy does not keep the size.

        Example:
            >>> bb = SplitBackbone("test_resnet")
            >>> block = bb.attention_stage_copy()
            >>> block(torch.randn(1, bb.attention_channels, 8, 8)).shape
            torch.Size([1, 96, 8, 8])
        """
        if init not in ("abn", "copy"):
            raise ValueError(
                f"attention_stage_copy(init=...) must be 'abn' or 'copy', got {init!r}"
            )
        if self.split != "penultimate":
            raise ValueError(
                f"context_backbone={self.name!r} is not cut between its last two stages, so it "
                "has no last stage to copy for ABN's attention block; use the light block "
                "(gsam_block='light')"
            )
        block = stride_one_copy(self.last_stage)
        if init == "abn":
            abn_init_(block)
        side = 8
        probe = torch.zeros(2, self.attention_channels, side, side)
        was_training = block.training
        try:
            with torch.no_grad():
                out = block.eval()(probe.to(next(block.parameters()).device))
        except Exception as err:  # any failure means the stage cannot be rebuilt
            raise ValueError(
                f"context_backbone={self.name!r}: its last stage does not run at stride 1 "
                f"({type(err).__name__}: {err}); use the light block (gsam_block='light')"
            ) from err
        finally:
            block.train(was_training)
        expected = (2, self.num_features, side, side)
        if tuple(out.shape) != expected:
            raise ValueError(
                f"context_backbone={self.name!r}: its last stage at stride 1 maps "
                f"{tuple(probe.shape)} to {tuple(out.shape)}, not {expected}; use the light "
                "block (gsam_block='light')"
            )
        return block

    def forward(self, x: Tensor) -> Tensor:
        """Run both parts: (B, 3, H, W) -> final feature map."""
        return self.last_stage(self.stem(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, split={self.split!r}"
