"""What a DAG-Net is: its configuration (every switch and size, checked) and the Table 2 presets.

:class:`DAGNetConfig` is what ``config.json`` of a saved model holds and what
:func:`~dagnet_layers.models.build_dagnet` and the registry build from;
:data:`ABLATIONS` turns each row of the paper's Table 2 on or off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from dagnet_layers.errors import (
    ConfigError,
    UnknownOptionError,
    check_keywords,
)

__all__ = ["ABLATIONS", "DAGNetConfig"]


#: Switches for each row of the paper's Table 2 (plus the plain two-stream
#: baseline and a body-only model). Keys are preset names; values override
#: :class:`DAGNetConfig` fields.
ABLATIONS: dict[str, dict[str, bool]] = {
    "body_only": dict(use_context=False, use_bam=False, use_gsam=False, use_lsam=False),
    "baseline": dict(use_bam=False, use_gsam=False, use_lsam=False),
    "bam": dict(use_bam=True, use_gsam=False, use_lsam=False),
    "gsam": dict(use_bam=False, use_gsam=True, use_lsam=False),
    "lsam": dict(use_bam=False, use_gsam=False, use_lsam=True, lsam_gcn=True),
    "bam_gsam": dict(use_bam=True, use_gsam=True, use_lsam=False),
    "bam_gsam_lsam_nogcn": dict(use_bam=True, use_gsam=True, use_lsam=True, lsam_gcn=False),
    "full": dict(use_bam=True, use_gsam=True, use_lsam=True, lsam_gcn=True),
}


@dataclass
class DAGNetConfig:
    """Everything that defines a DAG-Net architecture; defaults are the paper's.

    Saved as JSON next to the weights by :meth:`DAGNet.save_pretrained`. Every field
    is checked on construction, before anything is allocated: a wrong type, an
    unknown choice or a size beyond what the model can use (``partition`` <= 32,
    widths <= 16,384, ``num_classes`` <= 100,000, ``in_chans`` <= 64; see
    ``_SIZE_BOUNDS``) raises :class:`~dagnet_layers.errors.ConfigError` naming the
    field.

    Args:
        body_backbone: timm model for the body stream (paper: ResNet-50).
        context_backbone: timm model for the context stream (paper: ResNet-18).
        num_classes: Category logits (26 EMOTIC categories).
        partition: Patches per side :math:`N` of the local stream (paper: 4).
        use_bam: Body attention module on the body stream.
        use_gsam: Attention branch (ABN) in the context stream.
        use_lsam: Local patch stream.
        lsam_gcn: Local stream with the GCN (True) or per-patch FC summed (False).
        use_context: Context stream at all (False gives a body-only model;
            the local stream also reads the context image, so it needs this).
        bam_hidden: Width of BAM's first 1x1 convolution (the paper does not give
            it; 16 is ours).
        bam_target: What trains BAM's weight. ``"none"`` (the paper): the main
            loss alone, through the weighted features. ``"confidnet"`` (beyond the
            paper, after Corbière et al., NeurIPS 2019): a body-only classifier on
            the unweighted body features (``DAGNetOutput.body_logits``; it reads them
            detached, so it does not change what the body stream learns) learns the
            categories, and the weight regresses the probability that classifier
            gives the true categories (its true-class probability, detached): a
            reliability target, which :class:`~dagnet_layers.emotic.losses.DAGNetCriterion`
            adds when the output has ``body_logits``.
        gsam_mode: ``"residual"`` ((1 + M) g, ABN) or ``"multiply"`` (M g, eq. 3).
        gsam_stage: Where the attention branch goes: ``"auto"``,
            ``"penultimate"`` or ``"last"`` (see :class:`SplitBackbone`).
        gsam_block: The attention branch's first block. ``"abn"`` (the
            paper's ABN): a copy of the context backbone's last stage at stride
            1, widening to its width (:meth:`SplitBackbone.attention_stage_copy`;
            for ResNet-18 about as many FLOPs as the rest of the context
            stream). ``"light"``: one width-preserving residual block
            (:class:`~dagnet_layers.layers.ResidualConvBlock`). A backbone
            that cannot be cut before its last stage, or whose last stage cannot
            run at stride 1, gets the light block, with a warning, and the
            model's ``config.gsam_block`` then says ``"light"``.
        gsam_block_init: Initialisation of the ``"abn"`` block: ``"abn"``
            (ABN's: Kaiming-normal fan-out, BatchNorm 1/0) or ``"copy"`` (the
            last stage's own weights, e.g. pretrained ones).
        gsam_map: The map's activation: ``"sigmoid"`` (ABN, the paper) or
            ``"softmax"`` (beyond the paper: a spatial softmax, positions compete;
            see :class:`~dagnet_layers.layers.AttentionBranch`).
        gsam_aux: The attention branch's auxiliary logits and loss (ABN: on).
            ``False`` trains the map from the main loss alone.
        patch_channels: Widths of the patch encoder's two 3x3 convolutions.
        patch_pool: Side of the patch encoder's mean-pooled grid (4 -> 64*16 = 1024).
        patch_stride: Stride of the patch encoder's first convolution. At 1 (the
            paper's description) the encoder's second 64 -> 64 convolution runs at
            full resolution and costs about as much as the ResNet-18 context
            backbone; 2 cuts the encoder's cost about 4x.
        patch_size_policy: What the partition does with a context size not
            divisible by N: ``"error"``, ``"resize"`` (to the nearest smaller
            multiple) or ``"pad"`` (see :class:`~dagnet_layers.layers.PatchPartition`).
        gcn_hidden: Output widths of the GCN layers (paper: 1024, 1024, 512). The
            other ``lsam_graph`` choices use ``gcn_hidden[0]`` as their width,
            ``gcn_hidden[-1]`` as their output and ``len(gcn_hidden) - 1`` blocks
            (at least 1).
        gcn_adjacency_init: ``"grid"``, ``"identity"`` or ``"uniform"`` (the paper
            does not say; the grid is ours).
        gcn_normalization: ``"none"`` (paper), ``"symmetric"`` or ``"softmax"``.
        gcn_readout: Node pooling of the local stream (``"mean"``, ``"sum"``,
            ``"max"``; the paper does not say, the mean is ours).
        gcn_learn_adjacency: Learn the adjacency (the paper) or keep its
            initialisation fixed.
        lsam_graph: What runs over the patches when ``lsam_gcn`` is on: ``"gcn"``
            (the paper's :class:`~dagnet_layers.layers.LearnedAdjacencyGCN`), or, beyond
            the paper, ``"residual_gcn"``
            (:class:`~dagnet_layers.layers.ResidualPatchGCN`: 2-D position embeddings,
            a zero-initialised residual update) or ``"attention"``
            (:class:`~dagnet_layers.layers.PatchSelfAttention`: a relative-position
            bias; 4 heads where the width allows).
        fusion_hidden: Width of the fusion MLP's hidden layer.
        dropout: Dropout before the classifier.
        vad_head: Also predict valence, arousal and dominance.
        in_chans: Image channels.
        image_size: Side of the body and context images the model is trained and
            evaluated at (paper: 224). Preprocessing metadata, reported by
            :attr:`DAGNet.pretrained_cfg`; the model itself accepts other sizes.
    """

    body_backbone: str = "resnet50"
    context_backbone: str = "resnet18"
    num_classes: int = 26
    partition: int = 4
    use_bam: bool = True
    use_gsam: bool = True
    use_lsam: bool = True
    lsam_gcn: bool = True
    use_context: bool = True
    bam_hidden: int = 16
    bam_target: Literal["none", "confidnet"] = "none"
    gsam_mode: Literal["residual", "multiply"] = "residual"
    gsam_stage: Literal["auto", "penultimate", "last"] = "auto"
    gsam_block: Literal["abn", "light"] = "abn"
    gsam_block_init: Literal["abn", "copy"] = "abn"
    gsam_map: Literal["sigmoid", "softmax"] = "sigmoid"
    gsam_aux: bool = True
    patch_channels: tuple[int, int] = (64, 64)
    patch_pool: int = 4
    patch_stride: int = 1
    patch_size_policy: Literal["error", "resize", "pad"] = "error"
    gcn_hidden: tuple[int, ...] = (1024, 1024, 512)
    gcn_adjacency_init: Literal["grid", "identity", "uniform"] = "grid"
    gcn_normalization: Literal["none", "symmetric", "softmax"] = "none"
    gcn_readout: Literal["mean", "sum", "max"] = "mean"
    gcn_learn_adjacency: bool = True
    lsam_graph: Literal["gcn", "residual_gcn", "attention"] = "gcn"
    fusion_hidden: int = 256
    dropout: float = 0.5
    vad_head: bool = False
    in_chans: int = 3
    image_size: int = 224

    def __post_init__(self) -> None:
        # Each check names the field and what it must be; in this order, so that a wrong
        # type is said before a range, and a range before a combination of fields.
        self._check_types()
        self._check_sizes()
        self._check_choices()
        self._check_combinations()

    def _check_types(self) -> None:
        for name in ("patch_channels", "gcn_hidden"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                raise ConfigError(f"DAGNetConfig({name}=...) must be a sequence of ints, "
                                  f"got {value!r}")
            setattr(self, name, tuple(value))
        for name in ("body_backbone", "context_backbone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"DAGNetConfig({name}=...) must be a timm model name, "
                                  f"got {getattr(self, name)!r}")
        for name in ("use_bam", "use_gsam", "use_lsam", "lsam_gcn", "use_context", "vad_head",
                     "gsam_aux", "gcn_learn_adjacency"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"DAGNetConfig({name}=...) must be True or False, "
                                  f"got {getattr(self, name)!r}")
        if isinstance(self.num_classes, int) and not isinstance(self.num_classes, bool) \
                and self.num_classes < 1:
            raise ConfigError(f"DAGNetConfig(num_classes=...) must be an int >= 1, got "
                              f"{self.num_classes}: DAG-Net always keeps a head (its outputs "
                              "and GSAM's attention map are made from class maps); for "
                              "features use forward_features() or forward_head(x, "
                              "pre_logits=True)")

    def _check_sizes(self) -> None:
        for name, bound in _SIZE_BOUNDS.items():
            values = getattr(self, name)
            for value in values if isinstance(values, tuple) else (values,):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"DAGNetConfig({name}=...) must be an int >= 1, "
                                      f"got {values!r}")
                if value > bound:
                    raise ConfigError(
                        f"DAGNetConfig({name}=...) must be at most {bound:,} (what the model "
                        f"can use; see DAGNetConfig's docs), got {values!r}"
                    )
        if len(self.patch_channels) != 2:
            raise ConfigError("DAGNetConfig(patch_channels=...) must hold two widths, got "
                              f"{self.patch_channels!r}")
        if not 1 <= len(self.gcn_hidden) <= 16:
            raise ConfigError("DAGNetConfig(gcn_hidden=...) must hold 1 to 16 widths, got "
                              f"{len(self.gcn_hidden)}")
        dropout = self.dropout
        if (not isinstance(dropout, int | float) or isinstance(dropout, bool)
                or not 0.0 <= dropout < 1.0):
            raise ConfigError(f"DAGNetConfig(dropout=...) must be a number in [0, 1), "
                              f"got {dropout!r}")

    def _check_choices(self) -> None:
        if self.use_lsam and not self.use_context:
            raise ConfigError(
                "DAGNetConfig(use_lsam=True) needs use_context=True: the local stream reads "
                "the context image"
            )
        if self.use_gsam and not self.use_context:
            raise ConfigError("DAGNetConfig(use_gsam=True) needs use_context=True")
        for name, allowed in (("gsam_block", ("abn", "light")),
                              ("gsam_block_init", ("abn", "copy")),
                              ("gsam_mode", ("residual", "multiply")),
                              ("gsam_stage", ("auto", "penultimate", "last")),
                              ("patch_size_policy", ("error", "resize", "pad")),
                              ("gcn_adjacency_init", ("grid", "identity", "uniform")),
                              ("gcn_normalization", ("none", "symmetric", "softmax")),
                              ("gcn_readout", ("mean", "sum", "max")),
                              ("bam_target", ("none", "confidnet")),
                              ("gsam_map", ("sigmoid", "softmax")),
                              ("lsam_graph", ("gcn", "residual_gcn", "attention"))):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"DAGNetConfig({name}=...) must be one of {allowed}, "
                                  f"got {value!r}")

    def _check_combinations(self) -> None:
        if self.bam_target != "none" and not self.use_bam:
            raise ConfigError(f"DAGNetConfig(bam_target={self.bam_target!r}) needs use_bam=True: "
                              "it trains BAM's weight")
        if self.lsam_graph != "gcn" and not self.lsam_gcn:
            raise ConfigError(f"DAGNetConfig(lsam_graph={self.lsam_graph!r}) needs lsam_gcn=True: "
                              "lsam_gcn=False is the paper's per-patch sum, which has no graph")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every field."""
        out = dataclasses.asdict(self)
        out["patch_channels"] = list(self.patch_channels)
        out["gcn_hidden"] = list(self.gcn_hidden)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DAGNetConfig:
        """Build a config from :meth:`to_dict` output.

        Raises:
            ConfigError: For an unknown key (naming the closest field) or a field of
                the wrong type or beyond its bound.
        """
        data = dict(data)
        data.pop("extra", None)  # a field of pre-release configs that nothing ever read
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            check_keywords(data, known, "DAGNetConfig")
        except UnknownOptionError as err:
            raise ConfigError(str(err)) from None
        return cls(**data)


#: Upper bound of each size field of :class:`DAGNetConfig`: what the model can use,
#: with room to spare, so that a hostile or mistyped config fails before allocating
#: (``partition=1000`` would ask for a 10^6 x 10^6 adjacency).
_SIZE_BOUNDS: dict[str, int] = {
    "num_classes": 100_000,
    "partition": 32,  # 1,024 patches; the paper's Fig. 3 stops at 9
    "bam_hidden": 4096,
    "patch_channels": 4096,
    "patch_pool": 16,
    "patch_stride": 16,
    "gcn_hidden": 16_384,
    "fusion_hidden": 16_384,
    "in_chans": 64,
    "image_size": 4096,
}
