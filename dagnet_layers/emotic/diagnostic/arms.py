"""The arms of the diagnostic benchmark, declared before any run: what is trained, what it
is compared with, and which number decides.

For each module (:data:`ARMS`), the arms span the module's effect:

- the **floor**: the model without the module (for LSAM, the paper's own "without
  GCN" arm, a per-patch layer summed);
- the **paper's module**, at the small widths of the benchmark's model, and for
  LSAM also at the paper's widths (1024, 1024, 512);
- the **ceiling**: the module replaced by an oracle that knows the ground truth
  (BAM: the weight 1 for a reliable body and 0 otherwise; GSAM: a map that is 1 on
  the target's cell and 0 elsewhere, applied as eq. 3, :math:`M \\cdot g`; LSAM: a
  fixed adjacency that weighs the same row 0.5 and the same column 0.25 against the
  patch itself, row-normalised);
- **controls and ablations** that keep everything but the part under question (a
  constant gate or map, GSAM without its auxiliary loss, eq. 3 instead of ABN's
  residual form, a fixed grid or identity adjacency, one GCN layer);
- the **options beyond the paper** (:class:`~dagnet_layers.models.DAGNetConfig`).

:data:`PRIMARY_METRIC` is the one number per module that decides (an accuracy or
an mAP of the set's task on its test split); :data:`PRIMARY_CONTRASTS` are the
comparisons whose p-values are corrected together (Holm), and
:data:`SMALLEST_EFFECT` the effect below which a module is "not supported". Every
setting says where it comes from (:attr:`Arm.source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dagnet_layers.models import (
    DAGNetConfig,
    DAGNetOutput,
    build_dagnet,
    build_local_graph,
    build_patch_encoder,
    component_stream,
)

__all__ = [
    "ARMS",
    "BASE_MODEL",
    "PRIMARY_CONTRASTS",
    "PRIMARY_METRIC",
    "SMALLEST_EFFECT",
    "Arm",
    "LocalStreamProbe",
    "arm",
    "build_arm_model",
    "describe_arm",
    "oracle_adjacency",
    "primary_value",
]

Role = Literal["floor", "paper", "oracle", "control", "ablation", "variant"]

#: The one number that decides, per module: ``(split, key, what it is)``, a key of
#: that split's metrics in :func:`~dagnet_layers.emotic.diagnostic.run_arm`'s result,
#: fixed before the committed run. BAM: the top-1 accuracy on the test persons whose
#: body and flag disagree (a misleading body, or a reliable one beside a decoy flag),
#: where trusting the right stream is the whole task (chance 1/6). GSAM: the top-1
#: accuracy on the test split (chance 1/6). LSAM: the mAP over the three relation
#: categories (official ``eval.m`` AP; chance: each relation's share, about 1/3); AP
#: ranks each relation's scores on its own, whereas the three share one softmax with
#: the marker label, so an argmax across them would also score calibration.
PRIMARY_METRIC: dict[str, tuple[str, str, str]] = {
    "bam": ("test", "accuracy_contested", "top-1 accuracy on contested persons (body and "
            "flag disagree), held-out misleading colours"),
    "gsam": ("test", "accuracy", "top-1 accuracy"),
    "lsam": ("test", "map", "mAP over the three relation categories"),
}
#: The smallest effect on the primary metric worth having (2 accuracy points): a
#: contrast whose 95% CI lies below it is "not supported".
SMALLEST_EFFECT = 0.02

#: The benchmark's model, shared by every arm (ours, sized for a 2-core CPU): timm's
#: ``test_resnet`` for both backbones, a fusion layer of 32, BAM at the presets'
#: width (16), the local stream at ``test_dagnet``'s widths.
BASE_MODEL: dict[str, Any] = dict(
    body_backbone="test_resnet", context_backbone="test_resnet", fusion_hidden=32,
    bam_hidden=16, patch_channels=(8, 8), patch_pool=2, gcn_hidden=(32, 32, 16),
)  # fmt: skip


@dataclass(frozen=True)
class Arm:
    """One arm of a module's comparison.

    Attributes:
        name: Short name (unique within its module).
        module: ``"bam"``, ``"gsam"`` or ``"lsam"``.
        role: ``"floor"``, ``"paper"``, ``"oracle"``, ``"control"``, ``"ablation"`` or
            ``"variant"``.
        description: What it is, in a few words.
        source: Where the setting comes from (the paper, ABN, another paper, or ours).
        config: :class:`~dagnet_layers.models.DAGNetConfig` fields over
            :data:`BASE_MODEL` and the module's streams.
        oracle: ``"gate"``, ``"map"`` or ``"adjacency"``: the module's output replaced
            by the ground truth's.
        constant: A constant gate or map in place of the computed one.
        aux_weight: Weight of ABN's auxiliary loss (1, as ABN).
    """

    name: str
    module: str
    role: Role
    description: str
    source: str
    config: Mapping[str, Any] = field(default_factory=dict)
    oracle: Literal["gate", "map", "adjacency"] | None = None
    constant: float | None = None
    aux_weight: float = 1.0


_SUM = {"gcn_readout": "sum"}  # every LSAM arm reads its nodes out alike (ours: matched)

#: Every arm, per module, in report order.
ARMS: dict[str, tuple[Arm, ...]] = {
    "bam": (
        Arm("none", "bam", "floor", "no gate: the two-stream baseline", "paper (Table 2)",
            {"use_bam": False}),
        Arm("bam", "bam", "paper", "BAM, trained by the main loss", "paper (eq. 1-2); width "
            "16 ours, as the presets"),
        Arm("constant", "bam", "control", "a constant gate of 0.5 (BAM's value at its start)",
            "ours", constant=0.5),
        Arm("oracle", "bam", "oracle", "the gate 1 for a reliable body, 0 otherwise",
            "ours (ground truth)", oracle="gate"),
        Arm("confidnet", "bam", "variant", "BAM regressing a body-only classifier's "
            "true-class probability", "ConfidNet (Corbière et al., NeurIPS 2019)",
            {"bam_target": "confidnet"}),
    ),
    "gsam": (
        Arm("none", "gsam", "floor", "no attention branch", "paper (Table 2)",
            {"use_gsam": False}),
        Arm("gsam", "gsam", "paper", "ABN's branch: (1 + M) g, sigmoid map, auxiliary loss",
            "paper (Sec. 3.3) and ABN (Fukui et al., CVPR 2019)"),
        Arm("constant", "gsam", "control", "the branch and its auxiliary loss, the map "
            "fixed at 0.5", "ours", constant=0.5),
        Arm("no_aux", "gsam", "ablation", "the branch without its auxiliary head and loss",
            "ours", {"gsam_aux": False}),
        Arm("multiply", "gsam", "ablation", "M g instead of (1 + M) g", "paper (eq. 3)",
            {"gsam_mode": "multiply"}),
        Arm("oracle", "gsam", "oracle", "M = 1 on the target's cell, 0 elsewhere, as M g",
            "ours (ground truth)", {"gsam_mode": "multiply"}, oracle="map"),
        Arm("oracle_residual", "gsam", "control", "the same oracle map as ABN's (1 + M) g: "
            "what a perfect map gives the paper's form", "ours (ground truth)", oracle="map"),
        Arm("softmax", "gsam", "variant", "a spatial-softmax map (positions compete), "
            "trained by the main loss alone", "ours, after attention pooling",
            {"gsam_map": "softmax", "gsam_aux": False}),
    ),
    "lsam": (
        Arm("patch_sum", "lsam", "floor", "one FC layer per patch, summed (no GCN)",
            "paper (Sec. 4.3.2)", {"lsam_gcn": False, **_SUM}),
        Arm("identity", "lsam", "control", "the GCN on a fixed identity adjacency (blind to "
            "positions)", "ours", {"gcn_adjacency_init": "identity",
                                   "gcn_learn_adjacency": False, **_SUM}),
        Arm("grid_fixed", "lsam", "ablation", "the GCN on the fixed 8-neighbour grid",
            "ours", {"gcn_learn_adjacency": False, **_SUM}),
        Arm("gcn", "lsam", "paper", "3 GCN layers, learned adjacency (32-32-16)",
            "paper (eq. 4); grid start and widths ours", dict(_SUM)),
        Arm("gcn1", "lsam", "ablation", "1 GCN layer, learned adjacency", "ours",
            {"gcn_hidden": (16,), **_SUM}),
        Arm("oracle", "lsam", "oracle", "3 GCN layers on a fixed adjacency that tells rows "
            "from columns", "ours (ground truth)", {"gcn_learn_adjacency": False, **_SUM},
            oracle="adjacency"),
        Arm("gcn_paper_widths", "lsam", "paper", "3 GCN layers, learned adjacency, "
            "1024-1024-512", "paper (eq. 4, widths)", {"gcn_hidden": (1024, 1024, 512), **_SUM}),
        Arm("residual_gcn", "lsam", "variant", "residual GCN: position embeddings, update "
            "starting at zero", "ours, after ReZero / Fixup", {"lsam_graph": "residual_gcn",
                                                              **_SUM}),
        Arm("attention", "lsam", "variant", "patch self-attention, relative-position bias",
            "ours, after Swin (Liu et al., ICCV 2021)", {"lsam_graph": "attention", **_SUM}),
    ),
}

#: The comparisons corrected together (Holm), per module: the paper's module against
#: the floor (does it help?), the oracle against the floor (can a perfect module
#: help on this set?) and each option beyond the paper against the paper's module.
PRIMARY_CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("bam", "bam", "none"), ("bam", "oracle", "none"), ("bam", "confidnet", "bam"),
    ("gsam", "gsam", "none"), ("gsam", "oracle", "none"), ("gsam", "softmax", "gsam"),
    ("lsam", "gcn", "patch_sum"), ("lsam", "oracle", "patch_sum"),
    ("lsam", "residual_gcn", "gcn"), ("lsam", "attention", "gcn"),
)  # fmt: skip


def primary_value(result: Mapping[str, Any]) -> float | None:
    """The primary metric of one run's result (:data:`PRIMARY_METRIC`), or ``None``.

    Example:
        >>> primary_value({"module": "gsam", "splits": {"test": {"accuracy": 0.5}}})
        0.5
    """
    split, key, _ = PRIMARY_METRIC[result["module"]]
    value = result.get("splits", {}).get(split, {}).get(key)
    return None if value is None else float(value)


def arm(module: str, name: str) -> Arm:
    """The arm ``name`` of ``module``.

    Example:
        >>> arm("bam", "oracle").role
        'oracle'
    """
    for a in ARMS.get(module, ()):
        if a.name == name:
            return a
    known = ", ".join(a.name for a in ARMS.get(module, ())) or "none"
    raise ValueError(f"no arm {name!r} for module {module!r}; its arms: {known}")


def oracle_adjacency(n: int = 4) -> Tensor:
    """The LSAM oracle's fixed adjacency: self 1, same row 0.5, same column 0.25, row-normalised.

    After one graph layer a patch holding a disk sees ``1 + 0.5``, ``1 + 0.25`` or
    ``1`` times the disk's features, whether the other disk shares its row, its
    column or neither: three levels a ReLU can tell apart.

    Example:
        >>> a = oracle_adjacency(2) * 1.75  # each row: 1 + 0.5 + 0.25
        >>> a.tolist()
        [[1.0, 0.5, 0.25, 0.0], [0.5, 1.0, 0.0, 0.25], [0.25, 0.0, 1.0, 0.5], [0.0, 0.25, 0.5, 1.0]]
    """
    rows = torch.div(torch.arange(n * n), n, rounding_mode="floor")
    cols = torch.arange(n * n) % n
    same_row = (rows[:, None] == rows[None, :]).float()
    same_col = (cols[:, None] == cols[None, :]).float()
    eye = torch.eye(n * n)
    a = eye + 0.5 * (same_row - eye) + 0.25 * (same_col - eye)
    return a / a.sum(dim=1, keepdim=True)


class LocalStreamProbe(nn.Module):
    """DAG-Net's local stream alone, with DAG-Net's fusion layer and classifier.

    The LSAM set's label is a relation between patches; a context CNN beside the local
    stream could learn it too and hide what the graph does. This probe is the local
    stream of a :class:`~dagnet_layers.models.DAGNet` built from the same config
    (:func:`~dagnet_layers.models.build_patch_encoder` and
    :func:`~dagnet_layers.models.build_local_graph`), then the same fusion
    layer (linear, BatchNorm, ReLU), dropout and classifier, each part initialised
    from its own stream as in DAG-Net (:func:`~dagnet_layers.models.component_stream`).

    ``forward(body, context)`` ignores ``body`` and returns a
    :class:`~dagnet_layers.models.DAGNetOutput` with the logits and the adjacency.

    Example:
        >>> from dagnet_layers.models import DAGNetConfig
        >>> probe = LocalStreamProbe(DAGNetConfig(num_classes=4, patch_channels=(8, 8),
        ...                                       patch_pool=2, gcn_hidden=(32, 16)))
        >>> probe(None, torch.randn(2, 3, 64, 64)).logits.shape
        torch.Size([2, 4])
    """

    def __init__(self, config: DAGNetConfig) -> None:
        super().__init__()
        self.config = config
        self.init_seed = int(torch.randint(0, 2**62, (), device="cpu"))
        with component_stream(self.init_seed, "patch_encoder"):
            self.patch_encoder = build_patch_encoder(config)
        with component_stream(self.init_seed, "local_graph"):
            self.local_graph = build_local_graph(config, self.patch_encoder.out_features,
                                                 config.partition)  # fmt: skip
        width = self.local_graph.out_features
        with component_stream(self.init_seed, "fusion"):
            hidden = config.fusion_hidden
            self.fusion = nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden),
                                        nn.ReLU())
        self.head_drop = nn.Dropout(config.dropout)
        with component_stream(self.init_seed, "classifier"):
            self.classifier = nn.Linear(config.fusion_hidden, config.num_classes)

    def forward(self, body: Tensor | None, context: Tensor) -> DAGNetOutput:
        """Logits of the local stream (B, K), with the graph's adjacency where it has one."""
        z = self.local_graph(self.patch_encoder(context))
        logits = self.classifier(self.head_drop(self.fusion(z)))
        propagation = getattr(self.local_graph, "propagation_matrix", None)
        return DAGNetOutput(logits=logits,
                            adjacency=propagation() if callable(propagation) else None)


_STREAMS: dict[str, dict[str, Any]] = {
    "bam": {"use_bam": True, "use_gsam": False, "use_lsam": False},
    "gsam": {"use_bam": False, "use_gsam": True, "use_lsam": False},
    "lsam": {"use_bam": False, "use_gsam": False, "use_lsam": True, "lsam_gcn": True},
}


def build_arm_model(a: Arm, num_classes: int) -> nn.Module:
    """The untrained model of one arm (the global generator decides its weights, as usual).

    BAM and GSAM arms are :class:`~dagnet_layers.models.DAGNet` models with the body
    and context streams and the module under test; LSAM arms are a
    :class:`LocalStreamProbe`. The oracle LSAM arm's fixed adjacency is set here; the
    gate and map oracles and constants are set per batch by the benchmark
    (:mod:`~dagnet_layers.emotic.diagnostic.bench`).

    Example:
        >>> m = build_arm_model(arm("gsam", "no_aux"), 6)
        >>> m.context_attention.aux_head, m.body_attention is None
        (False, True)
    """
    options = {**BASE_MODEL, **_STREAMS[a.module], **dict(a.config)}
    if a.module != "lsam":
        return build_dagnet(num_classes=num_classes, **options)
    config = DAGNetConfig(num_classes=num_classes, **options)
    model = LocalStreamProbe(config)
    if a.oracle == "adjacency":
        with torch.no_grad():
            model.local_graph.adjacency.copy_(oracle_adjacency(config.partition))
    return model


def describe_arm(a: Arm) -> dict[str, Any]:
    """A JSON-ready record of an arm (for the report)."""
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(a.config).items()}
    return {"name": a.name, "role": a.role, "description": a.description, "source": a.source,
            "config": config, "oracle": a.oracle, "constant": a.constant,
            "aux_weight": a.aux_weight}  # fmt: skip


def _check_declarations() -> None:
    """Every contrast names declared arms; every module has one floor and one oracle."""
    for module, arms in ARMS.items():
        names = [a.name for a in arms]
        assert len(set(names)) == len(names), module
        assert [a.role for a in arms].count("floor") == 1, module
        assert [a.role for a in arms].count("oracle") == 1, module
    for module, a, b in PRIMARY_CONTRASTS:
        arm(module, a), arm(module, b)


_check_declarations()
