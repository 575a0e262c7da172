"""DAG-Net: body stream with BAM, context stream with GSAM, local graph stream with LSAM.

The model of "DAG-Net: Dual Attention Graph Network for Emotion Recognition
in the Wild" (Fig. 1 of the paper):

- **body stream**: a timm backbone (ResNet-50) on the body crop, its pooled
  features scaled by the :class:`~dagnet_layers.layers.BodyAttention` weight;
- **context stream**: a timm backbone (ResNet-18) on the context image with
  the body masked, an :class:`~dagnet_layers.layers.AttentionBranch` between
  its last two stages (GSAM), whose attention block is, as in ABN, a stride-1
  copy of the backbone's last stage;
- **local stream**: the context image cut into N x N patches
  (:class:`~dagnet_layers.layers.PatchEncoder`) and a
  :class:`~dagnet_layers.layers.LearnedAdjacencyGCN` over them (LSAM);
- a fusion MLP over the concatenated stream features to 26 category logits
  (and optionally valence/arousal/dominance).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor, nn

from dagnet_layers._version import __version__
from dagnet_layers.errors import (
    UnknownOptionError,
)
from dagnet_layers.layers import (
    AttentionBranch,
    BodyAttention,
    LearnedAdjacencyGCN,
    PatchEncoder,
    PatchSelfAttention,
    PatchSumReadout,
    ResidualPatchGCN,
)
from dagnet_layers.models.backbones import SplitBackbone, create_body_backbone, pooled_width
from dagnet_layers.models.config import ABLATIONS, DAGNetConfig
from dagnet_layers.models.hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    _config_from_meta,
    _fill,
    _read_meta,
    read_weights,
    resolve_pretrained_source,
    was_moved,
)
from dagnet_layers.storage import (
    StorageError,
    write_bytes_atomic,
)

__all__ = ["COMPONENTS", "DAGNet", "DAGNetOutput", "build_dagnet", "build_local_graph",
           "build_patch_encoder", "component_seed", "component_stream", "preprocessing_cfg",
           "resolve_config"]


logger = logging.getLogger(__name__)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        if device_type == "cuda":
            return torch.is_autocast_enabled()
        return device_type == "cpu" and torch.is_autocast_cpu_enabled()


def _output_layer(layer: nn.Linear, x: Tensor) -> Tensor:
    """Run an output layer in its weights' precision even under autocast.

    bf16 logits carry 8 significant bits: over thousands of test persons they
    would tie, and ties change the official AP. The layer is a few thousand
    multiply-adds per sample, so full precision costs nothing measurable.
    """
    if not _autocast_enabled(x.device.type):
        return layer(x)
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.to(layer.weight.dtype))

#: The parts of a DAG-Net that draw their initial weights from a stream of their own.
COMPONENTS: tuple[str, ...] = (
    "body_backbone", "body_attention", "body_head", "context_backbone", "context_attention",
    "patch_encoder", "local_graph", "fusion", "classifier", "vad_head",
)  # fmt: skip


def component_seed(base: int, name: str) -> int:
    """The seed of one component's initialisation stream: a hash of the model's base seed
    and the component's name, so that each part's initial weights depend on nothing else.

    Example:
        >>> a, b = component_seed(0, "fusion"), component_seed(1, "fusion")
        >>> a == component_seed(0, "fusion") != b
        True
    """
    digest = hashlib.sha256(f"dagnet-init:{base}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # below 2**63: any generator takes it


@contextlib.contextmanager
def component_stream(base: int, name: str) -> Iterator[None]:
    """Build one component from its own seeded stream of the CPU generator, then restore it.

    Inside the block the CPU generator is seeded with :func:`component_seed` of
    ``base`` and ``name``; after it, the caller's stream continues where it was.

    Example:
        >>> with component_stream(0, "fusion"):
        ...     a = torch.rand(1)
        >>> with component_stream(0, "fusion"):
        ...     b = torch.rand(1)
        >>> bool(a == b)
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(component_seed(base, name))
        yield


def build_patch_encoder(config: DAGNetConfig) -> PatchEncoder:
    """The local stream's patch encoder, as ``config`` says (:class:`DAGNet` builds its own
    with it).

    Example:
        >>> from dagnet_layers.models import DAGNetConfig
        >>> build_patch_encoder(DAGNetConfig(patch_channels=(8, 8), patch_pool=2)).out_features
        32
    """
    return PatchEncoder(
        config.in_chans,
        n=config.partition,
        hidden_channels=config.patch_channels[0],
        out_channels=config.patch_channels[1],
        pool_size=config.patch_pool,
        stride=config.patch_stride,
        size_policy=config.patch_size_policy,
    )


def build_local_graph(config: DAGNetConfig, node_features: int, n: int) -> nn.Module:
    """The module that reads the patch features of the local stream, as ``config`` says.

    The paper's per-patch sum (``lsam_gcn=False``), its learned-adjacency GCN
    (``lsam_graph="gcn"``) or one of the position-aware variants beyond the paper
    (``"residual_gcn"``, ``"attention"``), each taking (B, n*n, node_features) and
    returning (B, ``out_features``). :class:`DAGNet` builds its local stream with it.

    Example:
        >>> from dagnet_layers.models import DAGNetConfig
        >>> cfg = DAGNetConfig(gcn_hidden=(32, 16), lsam_graph="attention")
        >>> build_local_graph(cfg, 64, 4)(torch.randn(2, 16, 64)).shape
        torch.Size([2, 16])
    """
    nodes = n * n
    if not config.lsam_gcn:
        return PatchSumReadout(node_features, config.gcn_hidden[-1], nodes)
    dim, out = config.gcn_hidden[0], config.gcn_hidden[-1]
    depth = max(1, len(config.gcn_hidden) - 1)
    if config.lsam_graph == "residual_gcn":
        return ResidualPatchGCN(node_features, dim, out, n=n, depth=depth,
                                adjacency_init=config.gcn_adjacency_init,
                                normalization=config.gcn_normalization,
                                learn_adjacency=config.gcn_learn_adjacency,
                                readout=config.gcn_readout)  # fmt: skip
    if config.lsam_graph == "attention":
        heads = next(h for h in (4, 2, 1) if dim % h == 0)
        return PatchSelfAttention(node_features, dim, out, n=n, depth=depth, heads=heads,
                                  readout=config.gcn_readout)  # fmt: skip
    return LearnedAdjacencyGCN(
        node_features,
        config.gcn_hidden,
        num_nodes=nodes,
        adjacency_init=config.gcn_adjacency_init,
        normalization=config.gcn_normalization,
        learn_adjacency=config.gcn_learn_adjacency,
        readout=config.gcn_readout,
    )


class DAGNetOutput(NamedTuple):
    """Everything one DAG-Net forward pass produces.

    Attributes:
        logits: Category logits (B, num_classes).
        aux_logits: Attention-branch logits (B, num_classes) for ABN's
            auxiliary loss, or ``None`` without GSAM.
        attention_map: GSAM attention map (B, 1, h, w) in (0, 1), or ``None``.
        body_weights: BAM credibility weights (B,) in (0, 1), or ``None``.
        adjacency: LSAM propagation matrix (N*N, N*N), or ``None`` (no graph, or
            a graph without one: ``lsam_graph="attention"``).
        vad: Valence/arousal/dominance predictions (B, 3), or ``None``.
        body_logits: The body-only classifier's logits (B, num_classes) that
            ``bam_target="confidnet"`` trains BAM's weight against, or ``None``.
    """

    logits: Tensor
    aux_logits: Tensor | None = None
    attention_map: Tensor | None = None
    body_weights: Tensor | None = None
    adjacency: Tensor | None = None
    vad: Tensor | None = None
    body_logits: Tensor | None = None


class DAGNet(nn.Module):
    """Dual Attention Graph Network for emotion recognition in context.

    Build it with :func:`build_dagnet` or
    :func:`~dagnet_layers.models.create_model`; the constructor takes a
    :class:`DAGNetConfig` and extra keyword arguments for
    :func:`timm.create_model` per backbone (``body_backbone_kwargs``,
    ``context_backbone_kwargs``: e.g. ``pretrained_cfg_overlay`` for that backbone's
    weights, the one place where the name means a backbone's and not DAG-Net's).

    The API follows timm: :meth:`forward_features` returns the concatenated
    stream features (B, :attr:`num_features`), :meth:`forward_head` maps them
    to logits, :meth:`reset_classifier` swaps the classifier. :meth:`forward`
    returns a :class:`DAGNetOutput` with the attention maps for inspection and
    the auxiliary logits for training; :meth:`forward_logits` returns logits
    only (the path to give ``torch.compile`` or ``torch.export``).

    Initialisation is paired across ablations: the model takes one draw from the
    global CPU generator (:attr:`init_seed`, so ``torch.manual_seed`` still fixes
    everything), and each part of :data:`COMPONENTS` draws its initial weights
    from a stream of its own, seeded by :func:`component_seed`. Switching BAM,
    GSAM or LSAM on or off therefore leaves every other part's initial weights as
    they were; only the fusion layer's change when its input width does (a local
    stream adds features).

    Args:
        config: The architecture.
        pretrained: Load pretrained weights through timm for both backbones.
        body_backbone_kwargs: Extra :func:`timm.create_model` options for the body
            backbone; a ``pretrained`` key here overrides the shared switch.
        context_backbone_kwargs: The same for the context backbone.

    Shape:
        - ``body``: :math:`(B, 3, H_b, W_b)` body crops (224 x 224 in the paper)
        - ``context``: :math:`(B, 3, H_c, W_c)` context images, H and W divisible by N
        - ``logits``: :math:`(B, K)`

    Example:
        >>> model = build_dagnet("test_resnet", "test_resnet", gcn_hidden=(64, 32),
        ...                      patch_channels=(8, 8), patch_pool=2).eval()
        >>> out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
        >>> out.logits.shape, out.attention_map.shape, out.body_weights.shape
        (torch.Size([2, 26]), torch.Size([2, 1, 4, 4]), torch.Size([2]))
    """

    def __init__(
        self,
        config: DAGNetConfig | None = None,
        pretrained: bool = False,
        body_backbone_kwargs: dict[str, Any] | None = None,
        context_backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self._body_checkpointed_by_timm = False  # timm's own checkpointing covers the body
        # a copy: reset_classifier and the light-block fallback change the model's config,
        # never the caller's object (two models built from one config stay apart)
        config = DAGNetConfig() if config is None else dataclasses.replace(config)
        self.config = config
        # Per-backbone options win over the shared ``pretrained`` switch, so one
        # stream can load a local weight file while the other starts from scratch.
        body_kwargs = {"pretrained": pretrained, **(body_backbone_kwargs or {})}
        context_kwargs = {"pretrained": pretrained, **(context_backbone_kwargs or {})}

        # One draw from the global generator; every component then initialises from its
        # own stream (component_seed), so switching a module on or off leaves the others'
        # initial weights as they were: ablations are paired at initialisation.
        # (Built on the meta device, nothing is initialised: no draw, as before.)
        meta = torch.empty(0).device.type == "meta"
        self.init_seed = 0 if meta else int(torch.randint(0, 2**62, (), device="cpu"))
        base = self.init_seed

        with component_stream(base, "body_backbone"):
            self.body_backbone = create_body_backbone(
                config.body_backbone, in_chans=config.in_chans, **body_kwargs
            )
        feature_dims = [pooled_width(self.body_backbone)]
        self.body_attention = None
        self.body_head: nn.Linear | None = None
        if config.use_bam:
            with component_stream(base, "body_attention"):
                self.body_attention = BodyAttention(config.in_chans, config.bam_hidden)
            if config.bam_target == "confidnet":
                with component_stream(base, "body_head"):
                    self.body_head = nn.Linear(feature_dims[0], config.num_classes)

        self.context_backbone: SplitBackbone | None = None
        self.context_attention: AttentionBranch | None = None
        if config.use_context:
            with component_stream(base, "context_backbone"):
                self.context_backbone = SplitBackbone(
                    config.context_backbone,
                    attention_stage=config.gsam_stage if config.use_gsam else "last",
                    in_chans=config.in_chans,
                    **context_kwargs,
                )
            feature_dims.append(self.context_backbone.num_features)
            if config.use_gsam:
                with component_stream(base, "context_attention"):
                    self.context_attention = self._build_attention(config)

        self.patch_encoder: PatchEncoder | None = None
        self.local_graph: nn.Module | None = None
        if config.use_lsam:
            with component_stream(base, "patch_encoder"):
                self.patch_encoder = build_patch_encoder(config)
            node_dim = self.patch_encoder.out_features
            with component_stream(base, "local_graph"):
                self.local_graph = build_local_graph(config, node_dim, self.patch_encoder.n)
            feature_dims.append(int(getattr(self.local_graph, "out_features")))  # noqa: B009

        self.feature_dims = tuple(feature_dims)
        self.num_features = sum(feature_dims)
        self.head_hidden_size = config.fusion_hidden
        with component_stream(base, "fusion"):
            self.fusion = nn.Sequential(
                nn.Linear(self.num_features, config.fusion_hidden),
                nn.BatchNorm1d(config.fusion_hidden),
                nn.ReLU(inplace=True),
            )
        self.head_drop = nn.Dropout(config.dropout)
        with component_stream(base, "classifier"):
            self.classifier = nn.Linear(config.fusion_hidden, config.num_classes)
        self.vad_head = None
        if config.vad_head:
            with component_stream(base, "vad_head"):
                self.vad_head = nn.Linear(config.fusion_hidden, 3)

    def _build_attention(self, config: DAGNetConfig) -> AttentionBranch:
        backbone = self.context_backbone
        assert backbone is not None
        block, width = None, backbone.attention_channels
        if config.gsam_block == "abn":
            try:
                block = backbone.attention_stage_copy(init=config.gsam_block_init)
                width = backbone.num_features
            except ValueError as err:  # no last stage, or one that cannot run at stride 1
                warnings.warn(
                    f"{err}; the light block is used instead of ABN's attention block",
                    UserWarning,
                    stacklevel=3,
                )
                # the config says what was built: a saved model reloads as the light
                # block without the detour
                self.config.gsam_block = "light"
        return AttentionBranch(
            backbone.attention_channels,
            config.num_classes,
            attention_block=block,
            mode=config.gsam_mode,
            block_channels=width,
            map_activation=config.gsam_map,
            aux_head=config.gsam_aux,
        )

    # ------------------------------------------------------------------ info
    @property
    def num_classes(self) -> int:
        """Number of category logits."""
        return self.classifier.out_features

    @property
    def partition(self) -> int | None:
        """Patches per side of the local stream, or ``None`` without LSAM."""
        return self.patch_encoder.n if self.patch_encoder is not None else None

    def no_weight_decay(self) -> set[str]:
        """Parameters that weight decay must not shrink, by name (timm's optimizer contract).

        The learned patch adjacency is a graph, not a filter: decaying it pulls
        the learned edges towards an empty graph. timm's
        :func:`~timm.optim.create_optimizer_v2` already skips 1-D parameters
        (biases, norms); this names the 2-D ones it would otherwise decay (the
        adjacency, and the position embeddings and relative-position bias of the
        variants beyond the paper).

        Example:
            >>> build_dagnet("test_resnet", "test_resnet").no_weight_decay()
            {'local_graph.adjacency'}
        """
        graph = self.local_graph
        names = set()
        if isinstance(graph, LearnedAdjacencyGCN | ResidualPatchGCN) and graph.learn_adjacency:
            names.add("local_graph.adjacency")
        if isinstance(graph, ResidualPatchGCN):
            names |= {"local_graph.positions.row", "local_graph.positions.col"}
        if isinstance(graph, PatchSelfAttention):
            names.add("local_graph.relative_bias")
        return names

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """Preprocessing config as timm defines it, read by :func:`timm.data.resolve_data_config`.

        ``input_size`` is ``(in_chans, image_size, image_size)``; resizing is
        antialiased bilinear of the whole image to a square, whatever its aspect
        ratio, with no crop (``crop_mode="squash"``, ``crop_pct=1.0``), which is what
        :func:`~dagnet_layers.emotic.data.emotic_eval_transform` does, so that
        ``timm.data.create_transform(**timm.data.resolve_data_config({}, model=m))``
        feeds the model what our pipeline does (timm's default ``"center"`` would crop
        a non-square image);
        ``mean``/``std`` are the body backbone's (timm's single-input view), and
        ``"body"``/``"context"`` hold each stream's own, which
        :func:`~dagnet_layers.emotic.data.normalization_of` passes to the transforms.

        Example:
            >>> m = build_dagnet("resnet18", "resnet18")
            >>> cfg = m.pretrained_cfg
            >>> cfg["input_size"], cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"]
            ((3, 224, 224), 'bilinear', 1.0, 'squash')
        """
        body = getattr(self.body_backbone, "pretrained_cfg", None)
        context = None if self.context_backbone is None else self.context_backbone.pretrained_cfg
        return preprocessing_cfg(self.config, body, context)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """Alias of :attr:`pretrained_cfg` (timm's older name)."""
        return self.pretrained_cfg

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups from input to output, as timm's layer-wise LR decay reads them.

        Groups, in depth order: the body backbone and the context stem (``stem``),
        then the context backbone's last stage, the attention and graph modules, and
        the fusion layer (``blocks``); the classifier and VAD head, matched by none,
        form the last group. With ``coarse=True`` the blocks are one group.

        Example:
            >>> from timm.optim import create_optimizer_v2
            >>> m = build_dagnet("test_resnet", "test_resnet")
            >>> opt = create_optimizer_v2(m, "sgd", lr=0.1, layer_decay=0.5)
            >>> sorted({g["lr_scale"] for g in opt.param_groups})
            [0.0625, 0.125, 0.25, 0.5, 1.0]
        """
        # Non-capturing groups: timm reads a captured group as a block number.
        stem = r"^(?:body_backbone|context_backbone\.stem)\."
        blocks = [
            r"^context_backbone\.last_stage\.",
            r"^(?:body_attention|body_head|context_attention|patch_encoder|local_graph)\.",
            r"^fusion\.",
        ]
        if coarse:
            return {"stem": stem, "blocks": "|".join(f"(?:{b})" for b in blocks)}
        # (regex, suffix): the suffix orders the blocks by depth within the group
        return {"stem": stem, "blocks": [(b, (k,)) for k, b in enumerate(blocks)]}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the backbones' and the patch encoder's activations in the backward pass.

        Trades about one extra forward pass for the activation memory of the
        streams (timm's API; gradients are unchanged). The body backbone uses
        timm's own checkpointing where it has one; the context stem, its last
        stage and the patch encoder are wrapped in
        :func:`torch.utils.checkpoint.checkpoint` (``use_reentrant=False``).
        """
        self.grad_checkpointing = bool(enable)
        setter = getattr(self.body_backbone, "set_grad_checkpointing", None)
        self._body_checkpointed_by_timm = False
        if callable(setter):
            try:
                setter(self.grad_checkpointing)
                self._body_checkpointed_by_timm = True
            except (AssertionError, NotImplementedError):
                pass

    def _maybe_checkpoint(self, module: nn.Module, x: Tensor) -> Tensor:
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm API)."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (and the attention branch's class layers) for ``num_classes``.

        The new layers are freshly initialised; the backbones, BAM, LSAM and
        the fusion layer keep their weights. Unlike a timm model, DAG-Net cannot drop
        its head with ``num_classes=0``: its outputs, and GSAM's attention map, are
        made from class maps. For features, use :meth:`forward_features` or
        ``forward_head(x, pre_logits=True)``.

        Args:
            num_classes: Categories of the new head (>= 1).
            global_pool: timm's argument, accepted for its callers; each stream's
                pooling is the paper's, so only ``None`` is taken.
        """
        if global_pool is not None:
            raise ValueError(f"reset_classifier(global_pool={global_pool!r}): DAG-Net's pooling "
                             "is fixed by the paper; pass None")  # fmt: skip
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"reset_classifier(num_classes=...) must be >= 1, got "
                             f"{num_classes!r}: DAG-Net always keeps a head (its outputs and "
                             "GSAM's attention map are made from class maps); for features "
                             "use forward_features() or forward_head(x, pre_logits=True)")
        device = self.classifier.weight.device
        self.classifier = nn.Linear(self.head_hidden_size, num_classes).to(device)
        if self.body_head is not None:
            self.body_head = nn.Linear(self.body_head.in_features, num_classes).to(device)
        if self.context_attention is not None:
            self.context_attention.reset_classifier(num_classes)
        self.config.num_classes = num_classes

    # --------------------------------------------------------------- forward
    def _check_inputs(
        self, body: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        """Shapes, dtypes and batch size, checked with messages that say what to do.

        Floating-point inputs of another precision than the parameters (float64,
        float16, bfloat16 into a float32 model) are cast to the parameters' dtype;
        autocast still lowers the precision inside where it is enabled.
        """
        c = self.config.in_chans
        dtype, device = self.classifier.weight.dtype, self.classifier.weight.device
        for name, x in (("body", body), ("context", context)):
            if x is None:
                continue
            if not isinstance(x, Tensor):
                raise TypeError(f"DAGNet {name} must be a torch.Tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(
                    f"DAGNet {name} must be a floating-point tensor of normalised images, got "
                    f"{x.dtype}; convert uint8 images with emotic_batch_transform (or "
                    "x.float() / 255 and the backbone's mean and std)"
                )
            # Meta against real tensors fails deep in a backbone with an error naming neither
            # the input nor a fix. Other device pairs are left to PyTorch's own clear error,
            # and to setups that move inputs themselves (device maps, offloading hooks).
            if (x.device.type == "meta") != (device.type == "meta"):
                raise ValueError(
                    f"DAGNet {name} is on the {x.device} device, the model's parameters on "
                    f"{device}; move one to the other (model.to({name}.device) or "
                    f"{name}.to({str(device)!r}))"
                )
        if body.dim() != 4 or body.shape[1] != c:
            raise ValueError(f"DAGNet body must have shape (B, {c}, H, W), got {tuple(body.shape)}")
        if self.training and body.shape[0] < 2:
            raise ValueError(
                "DAGNet in training mode needs a batch of at least 2 (its fusion layer's "
                "BatchNorm1d normalises over the batch); call model.eval() to predict one "
                "sample, or pass drop_last=True to the training DataLoader"
            )
        body = body if body.dtype == dtype else body.to(dtype)
        if self.context_backbone is None:
            return body, context
        if context is None:
            raise ValueError("DAGNet with a context stream needs a context image, got None")
        if context.dim() != 4 or context.shape[1] != c:
            raise ValueError(
                f"DAGNet context must have shape (B, {c}, H, W), got {tuple(context.shape)}"
            )
        if context.shape[0] != body.shape[0]:
            raise ValueError(
                f"DAGNet got {body.shape[0]} body images but {context.shape[0]} context images"
            )
        return body, context if context.dtype == dtype else context.to(dtype)

    def _forward_streams(
        self, body: Tensor, context: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
        body, context = self._check_inputs(body, context)
        if self._body_checkpointed_by_timm:
            body_features = self.body_backbone(body)
        else:
            body_features = self._maybe_checkpoint(self.body_backbone, body)
        body_weights = body_logits = None
        if self.body_head is not None:  # a probe of the body features: it does not train them
            body_logits = _output_layer(self.body_head, body_features.detach())
        if self.body_attention is not None:
            body_features, body_weights = self.body_attention(body, body_features)
        if context is None:  # a body-only model (_check_inputs refuses None otherwise)
            return body_features, None, None, body_weights, body_logits
        parts = [body_features]
        aux_logits = attention_map = None
        if self.context_backbone is not None:
            g = self._maybe_checkpoint(self.context_backbone.stem, context)
            if self.context_attention is not None:
                g, attention_map, aux_logits = self.context_attention(g)
            g = self._maybe_checkpoint(self.context_backbone.last_stage, g)
            parts.append(g.mean(dim=(2, 3)))
        if self.patch_encoder is not None and self.local_graph is not None:
            parts.append(self.local_graph(self._maybe_checkpoint(self.patch_encoder, context)))
        return torch.cat(parts, dim=1), aux_logits, attention_map, body_weights, body_logits

    def forward_features(self, body: Tensor, context: Tensor | None = None) -> Tensor:
        """Concatenated body, context and local stream features (B, :attr:`num_features`)."""
        return self._forward_streams(body, context)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Fusion MLP and classifier on :meth:`forward_features` output.

        Args:
            x: Stream features (B, :attr:`num_features`).
            pre_logits: Return the fused hidden features (B, ``fusion_hidden``)
                instead of the logits.
        """
        x = self.head_drop(self.fusion(x))
        return x if pre_logits else _output_layer(self.classifier, x)

    def forward(self, body: Tensor, context: Tensor | None = None) -> DAGNetOutput:
        """Run all streams: logits plus every attention output (a :class:`DAGNetOutput`)."""
        features, aux_logits, attention_map, body_weights, body_logits = self._forward_streams(
            body, context)
        hidden = self.forward_head(features, pre_logits=True)
        adjacency = None
        if isinstance(self.local_graph, LearnedAdjacencyGCN | ResidualPatchGCN):
            adjacency = self.local_graph.propagation_matrix()
        return DAGNetOutput(
            logits=_output_layer(self.classifier, hidden),
            aux_logits=aux_logits,
            attention_map=attention_map,
            body_weights=body_weights,
            adjacency=adjacency,
            vad=_output_layer(self.vad_head, hidden) if self.vad_head is not None else None,
            body_logits=body_logits,
        )

    def forward_logits(self, body: Tensor, context: Tensor | None = None) -> Tensor:
        """Category logits only: a single-tensor path for ``torch.compile`` / ``torch.export``."""
        return self.forward_head(self.forward_features(body, context))

    # --------------------------------------------------------- persistence
    def save_pretrained(
        self,
        directory: str | os.PathLike[str],
        *,
        card: Mapping[str, Any] | None = None,
        label_names: Sequence[str] | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        **hub_kwargs: Any,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a model card into ``directory``.

        Tensors go to safetensors and the architecture to JSON, so loading
        never unpickles anything. Each file is written atomically and durably
        (:func:`~dagnet_layers.storage.write_bytes_atomic`), and
        ``config.json`` records the size and SHA-256 of the weights, which
        :meth:`from_pretrained` checks. ``config.json`` also holds timm's fields
        (``architecture``, ``num_classes``, ``pretrained_cfg``, ``model_args``), so
        ``timm.create_model("local-dir:<directory>", pretrained=True)`` and
        ``"hf-hub:<repo>"`` load the folder once ``dagnet_layers`` is imported.

        Args:
            directory: The folder (created if needed).
            card: What the model card says about the weights (see
                :func:`~dagnet_layers.models.card.model_card`: ``dataset``,
                ``synthetic``, ``metrics``, ``split``, ``epoch``, ``notes``).
            label_names: One name per class (timm's ``label_names``).
            push_to_hub: Upload the folder afterwards with :meth:`push_to_hub`.
            repo_id: The Hub repository (``"org/name"``), with ``push_to_hub``.
            **hub_kwargs: :meth:`push_to_hub` options (``token``, ``private``,
                ``revision``, ``commit_message``).

        Returns:
            The directory.

        Raises:
            StorageError: a file could not be written (full disk...); the
                message names it. Files already in ``directory`` are untouched.
            ValueError: ``label_names`` of another length than ``num_classes``,
                or ``push_to_hub`` without ``repo_id``.
        """
        from safetensors.torch import save

        from dagnet_layers.models.card import CARD_NAME, model_card

        if push_to_hub and not repo_id:
            raise ValueError("save_pretrained(push_to_hub=True) needs repo_id='org/name'")
        if hub_kwargs and not push_to_hub:
            raise TypeError(f"save_pretrained(): {sorted(hub_kwargs)} are push_to_hub options")
        if label_names is not None and len(label_names) != self.num_classes:
            raise ValueError(f"save_pretrained(label_names=...) needs {self.num_classes} names, "
                             f"got {len(label_names)}")
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(err.errno, f"cannot create {directory}: {err.strerror}") from err
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        weights = save(state, metadata={"format": "pt"})
        digest = write_bytes_atomic(directory / WEIGHTS_NAME, weights)
        config = self.config.to_dict()
        meta: dict[str, Any] = {
            "format": "dagnet-layers", "version": __version__, "config": config,
            "weights": {"size": len(weights), "sha256": digest},
            # timm's fields (timm.create_model("local-dir:..." / "hf-hub:...")): the
            # architecture is our generic variant, built from model_args (= config)
            "architecture": "dagnet", "num_classes": self.num_classes,
            "num_features": self.num_features, "model_args": config,
            "pretrained_cfg": {k: v for k, v in self.pretrained_cfg.items()
                               if k != "architecture"},
        }  # fmt: skip
        if label_names is not None:
            meta["label_names"] = [str(name) for name in label_names]
        write_bytes_atomic(directory / CONFIG_NAME, (json.dumps(meta, indent=2) + "\n").encode())
        write_bytes_atomic(directory / CARD_NAME,
                           model_card(self.config, card, repo_id=repo_id).encode())
        if push_to_hub:
            assert repo_id is not None
            self._upload(directory, repo_id, **hub_kwargs)
        return directory

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str],
        map_location: str | torch.device = "cpu",
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> DAGNet:
        """Rebuild a model saved by :meth:`save_pretrained` (no pickle), in eval mode.

        ``source`` is a local folder, or a Hugging Face Hub repository id
        (``"org/name"``, optionally ``"hf-hub:org/name"``) fetched through
        :func:`huggingface_hub.snapshot_download`: its cache, ``revision``,
        ``token``, ``local_files_only``, ``force_download``, ``HF_HUB_OFFLINE=1``
        and the logged-in token all work as in transformers and timm. The weights
        are checked against the size and SHA-256 that ``config.json`` records
        (folders written by pre-release builds, before the checksum, have none and are
        loaded unchecked).

        Args:
            source: Folder or Hub repository id.
            map_location: Device the weights are loaded to.
            revision: Hub branch, tag or commit (Hub sources only).
            cache_dir: Hub cache folder (default: huggingface_hub's).
            token: Hub token (``None``: the logged-in one; ``False``: none).
            local_files_only: Use the Hub cache only, never the network.
            force_download: Download again even when cached.

        Raises:
            MissingFileError: ``source`` lacks ``config.json`` or
                ``model.safetensors``, or the Hub could not provide them (a
                ``FileNotFoundError``).
            CorruptFileError: a file is not what ``save_pretrained`` writes: not
                JSON, not a dagnet-layers config, a config field of the wrong type or
                beyond its bound (checked before anything is allocated), not a
                safetensors file, or weights that do not fit the config; names the
                file (a ``ValueError``).
            IntegrityError: the weights differ from what was saved (names the file).
        """
        for attempt in range(3):
            directory = resolve_pretrained_source(
                source, revision=revision, cache_dir=cache_dir, token=token,
                local_files_only=local_files_only, force_download=force_download,
            )  # fmt: skip
            try:
                # Both files read first, back to back (the window in which a trainer can
                # collect the folder is the read itself), and only then the model built.
                meta = _read_meta(directory / CONFIG_NAME)  # read once: config and checksum
                config = _config_from_meta(meta, directory / CONFIG_NAME)
                state = read_weights(directory / WEIGHTS_NAME, meta, map_location)
            except FileNotFoundError:  # MissingFileError, or a raw one mid-read
                # a training run re-pointed its ``last`` link and collected the folder
                # while we read (epoch folders never change: only vanish): read the
                # checkpoint it points to now; any other error is the file's own
                if attempt < 2 and was_moved(source, directory):
                    logger.info("%s was re-pointed while being read; reading it again", source)
                    continue
                raise
            model = cls(config)
            _fill(model, state, directory / WEIGHTS_NAME)
            # Ready to predict, as timm and transformers return loaded models;
            # call .train() to fine-tune.
            return model.to(map_location).eval()
        raise AssertionError("unreachable")  # pragma: no cover

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload DAG-Net",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        extra_files: dict[str, str | os.PathLike[str]] | None = None,
        card: Mapping[str, Any] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> str:
        """Upload what :meth:`save_pretrained` writes to a Hub model repository.

        The repository is created if needed; :meth:`from_pretrained`,
        :func:`~dagnet_layers.models.create_model` and :func:`timm.create_model`
        with ``"hf-hub:<repo_id>"`` read it back.

        Args:
            repo_id: ``"org/name"``.
            commit_message: The commit message.
            private: Create the repository private (``None``: the Hub's default).
            token: Hub token (default: the logged-in one).
            revision: Branch to commit to.
            extra_files: Repository path -> local file, uploaded alongside (e.g.
                ``{"inference.json": run / "checkpoints/best/inference.json"}``, which
                records the training data's local path under ``data.path``: remove it
                first if that path should stay private).
            card: What the model card says (as :meth:`save_pretrained`).
            label_names: One name per class (as :meth:`save_pretrained`).

        Returns:
            The URL of the commit.
        """
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(tmp, card=card, label_names=label_names,
                                          repo_id=repo_id)
            for name, path in (extra_files or {}).items():
                shutil.copyfile(path, folder / name)
            return self._upload(folder, repo_id, commit_message=commit_message,
                                private=private, token=token, revision=revision)  # fmt: skip

    @staticmethod
    def _upload(folder: Path, repo_id: str, *, commit_message: str = "Upload DAG-Net",
                private: bool | None = None, token: str | None = None,
                revision: str | None = None) -> str:  # fmt: skip
        """Create ``repo_id`` if needed and commit ``folder``'s files to it."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None:  # the Hub commits only to a branch that exists
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 commit_message=commit_message, repo_type="model")
        return str(getattr(info, "commit_url", info))


def preprocessing_cfg(
    config: DAGNetConfig,
    body_cfg: Any = None,
    context_cfg: Any = None,
) -> dict[str, Any]:
    """The :attr:`DAGNet.pretrained_cfg` of a model of ``config``, without building it.

    ``body_cfg`` and ``context_cfg`` are the backbones' own timm configs (their
    ``mean`` and ``std`` are used); by default timm's registered config of each
    backbone name, or ImageNet's statistics where timm has none.

    Example:
        >>> preprocessing_cfg(DAGNetConfig(image_size=256))["input_size"]
        (3, 256, 256)
    """

    def norm(cfg: Any, name: str) -> dict[str, Any]:
        if cfg is None:
            try:
                cfg = timm.models.get_pretrained_cfg(name)
            except Exception:  # an hf-hub: or unregistered name
                cfg = None
        if cfg is not None and not isinstance(cfg, dict):
            cfg = cfg.to_dict()
        cfg = cfg or {}
        return {"mean": tuple(cfg.get("mean") or IMAGENET_DEFAULT_MEAN),
                "std": tuple(cfg.get("std") or IMAGENET_DEFAULT_STD)}

    body = norm(body_cfg, config.body_backbone)
    context = norm(context_cfg, config.context_backbone) if config.use_context else dict(body)
    size = config.image_size
    return {
        "architecture": "dagnet",
        "input_size": (config.in_chans, size, size),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "squash",
        "mean": body["mean"],
        "std": body["std"],
        "num_classes": config.num_classes,
        "classifier": "classifier",
        "body": {**body, "backbone": config.body_backbone},
        "context": {**context, "backbone": config.context_backbone},
    }


#: Options of :func:`timm.create_model` that are close to a config field's name but
#: meant for timm (never reported as a misspelling).
_TIMM_OPTIONS = frozenset({
    "cache_dir", "drop_rate",
    "drop_path_rate", "drop_block_rate", "global_pool", "in_chans", "num_classes",
    "scriptable", "exportable", "no_jit", "output_stride", "img_size", "act_layer",
    "norm_layer", "bn_momentum", "bn_eps",
})  # fmt: skip


def build_dagnet(
    body_backbone: str = "resnet50",
    context_backbone: str = "resnet18",
    num_classes: int = 26,
    partition: int = 4,
    pretrained: bool = False,
    ablation: str | None = None,
    body_backbone_kwargs: dict[str, Any] | None = None,
    context_backbone_kwargs: dict[str, Any] | None = None,
    backbone_weights: dict[str, str | os.PathLike[str]] | None = None,
    **kwargs: Any,
) -> DAGNet:
    """Build a DAG-Net; the defaults give the paper's configuration.

    Args:
        body_backbone: Any timm model name for the body stream.
        context_backbone: A timm CNN with ``features_only`` support for the context stream.
        num_classes: Number of category logits.
        partition: Patches per side :math:`N` of the local stream.
        pretrained: Load pretrained backbone weights through timm (from timm's
            cache, or the Hub through timm's own mechanism).
        ablation: A preset name of :data:`ABLATIONS` (a Table 2 row), applied
            before ``kwargs``.
        body_backbone_kwargs: Extra :func:`timm.create_model` options for the body backbone.
        context_backbone_kwargs: Extra options for the context backbone.
        backbone_weights: Local weight files for the backbones, ``{"body": path,
            "context": path}`` (either key alone is fine): that backbone loads the
            file through timm (``pretrained=True`` with timm's
            ``pretrained_cfg_overlay=dict(file=path)``), whatever ``pretrained`` says.
        **kwargs: Any other :class:`DAGNetConfig` field; anything else (e.g.
            ``drop_path_rate``) is forwarded to *both* backbones' :func:`timm.create_model`.

    Returns:
        The model, in training mode.

    Raises:
        UnknownOptionError: A misspelt field, an option the backbones refuse, or one
            with a DAG-Net meaning that ``build_dagnet`` does not take:
            ``pretrained_cfg_overlay`` and ``pretrained_cfg`` describe a *DAG-Net*
            checkpoint everywhere in this package (give them to
            :func:`~dagnet_layers.models.create_model` or :func:`timm.create_model`);
            the backbones' files go in ``backbone_weights``. ``features_only`` has
            no DAG-Net meaning (two inputs, one fused output).

    Example:
        >>> m = build_dagnet("test_resnet", "test_resnet", ablation="bam_gsam")
        >>> m.patch_encoder is None, m.body_attention is not None
        (True, True)
    """
    config, timm_kwargs = resolve_config(
        body_backbone, context_backbone, num_classes, partition, ablation, **kwargs
    )
    body_kwargs = {**timm_kwargs, **(body_backbone_kwargs or {})}
    context_kwargs = {**timm_kwargs, **(context_backbone_kwargs or {})}
    unknown_streams = sorted(set(backbone_weights or {}) - {"body", "context"})
    if unknown_streams:
        raise UnknownOptionError(f"build_dagnet(backbone_weights=...): keys are 'body' and "
                                 f"'context', got {unknown_streams}")
    for stream, stream_kwargs in (("body", body_kwargs), ("context", context_kwargs)):
        path = (backbone_weights or {}).get(stream)
        if path is not None:
            stream_kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=os.fspath(path)))
    try:
        return DAGNet(config, pretrained=pretrained, body_backbone_kwargs=body_kwargs,
                      context_backbone_kwargs=context_kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        given = {"options": sorted(timm_kwargs),
                 "body_backbone_kwargs": sorted(body_backbone_kwargs or {}),
                 "context_backbone_kwargs": sorted(context_backbone_kwargs or {})}
        named = ", ".join(f"{k} {v}" for k, v in given.items() if v)
        if not named:
            raise
        raise UnknownOptionError(
            f"build_dagnet(): a timm backbone refused an option ({err}); the options passed "
            f"to the backbones were: {named}"
        ) from err


#: Options with a DAG-Net meaning that build_dagnet refuses rather than pass to timm.
_DAGNET_LEVEL = {
    "pretrained_cfg_overlay": "it names a DAG-Net checkpoint (create_model(name, "
                              "pretrained=True, pretrained_cfg_overlay=dict(file=FOLDER))); "
                              "local backbone weights go in backbone_weights={'body': FILE}",
    "pretrained_cfg": "it names a DAG-Net checkpoint (create_model / timm.create_model take it)",
    "features_only": "DAG-Net takes two images and fuses them into one output; for its "
                     "features use forward_features() or forward_head(x, pre_logits=True), "
                     "for its attention maps forward()",
    "checkpoint_path": "create_model(name, checkpoint_path=...) loads a DAG-Net checkpoint",
}  # fmt: skip


def resolve_config(
    body_backbone: str = "resnet50",
    context_backbone: str = "resnet18",
    num_classes: int = 26,
    partition: int = 4,
    ablation: str | None = None,
    **kwargs: Any,
) -> tuple[DAGNetConfig, dict[str, Any]]:
    """The :class:`DAGNetConfig` that :func:`build_dagnet` builds, and the options it
    passes on to both timm backbones.

    Raises:
        UnknownOptionError: As :func:`build_dagnet`.

    Example:
        >>> config, timm_kwargs = resolve_config(ablation="baseline", drop_path_rate=0.1)
        >>> config.use_bam, timm_kwargs
        (False, {'drop_path_rate': 0.1})
    """
    fields = {f.name for f in dataclasses.fields(DAGNetConfig)}
    overrides: dict[str, Any] = {}
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise ValueError(
                f"ablation={ablation!r} is not a preset; choose one of {', '.join(ABLATIONS)}"
            )
        overrides.update(ABLATIONS[ablation])
    timm_kwargs = {k: v for k, v in kwargs.items() if k not in fields}
    for name in timm_kwargs:
        if name in _DAGNET_LEVEL:
            raise UnknownOptionError(f"build_dagnet() does not take {name}=...: "
                                     f"{_DAGNET_LEVEL[name]}")
        # A misspelt config field would otherwise reach timm and come back as
        # "ResNet.__init__() got an unexpected keyword argument"; say what was meant.
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.8)
        if close and name not in _TIMM_OPTIONS:
            raise UnknownOptionError(
                f"build_dagnet(): unknown option {name!r} (did you mean {close[0]!r}?)"
            )
    overrides.update({k: v for k, v in kwargs.items() if k in fields})
    config = DAGNetConfig(
        body_backbone=body_backbone,
        context_backbone=context_backbone,
        num_classes=num_classes,
        partition=partition,
        **overrides,
    )
    return config, timm_kwargs
