"""dagnet-layers: DAG-Net's attention and graph layers, model zoo and EMOTIC recipe.

The package has three wings, and imports run one way (zoo <- toolkit <- figures):

- the model zoo: :mod:`dagnet_layers.layers` (BAM, GSAM, LSAM as reusable
  modules) and :mod:`dagnet_layers.models` (the model, its config, saved
  models, the timm-style registry);
- the EMOTIC toolkit, :mod:`dagnet_layers.emotic` (data, losses, metrics,
  engine; the ``emotic`` extra);
- :mod:`dagnet_layers.figures` (the ``viz`` extra);

then in-the-wild prediction (:mod:`dagnet_layers.inference`: a checkpoint on
photos, folders and videos), the programs (:mod:`dagnet_layers.commands`) and the shared pieces
(:mod:`dagnet_layers.errors`, :mod:`dagnet_layers.storage`). The most used names
are importable from here (each imported on first use).

>>> from dagnet_layers import build_dagnet
>>> model = build_dagnet()            # the paper's configuration  # doctest: +SKIP
"""

import importlib
from typing import Any

from dagnet_layers._version import __version__

# Names are imported on first use (PEP 562), so that ``import dagnet_layers.layers``
# costs the layers alone: no timm, no torchvision, no EMOTIC toolkit.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("EMOTIC_CATEGORIES", "NUM_CATEGORIES"),
                    "dagnet_layers.emotic.data.categories"),
    **dict.fromkeys(
        ("AttentionBranch", "AttentionBranchOutput", "BodyAttention", "BodyAttentionOutput",
         "LearnedAdjacencyGCN", "PatchEncoder", "PatchPartition", "PatchSumReadout",
         "ResidualConvBlock", "adjacency_to_edge_index", "grid_adjacency",
         "normalize_adjacency"),
        "dagnet_layers.layers",
    ),
    **dict.fromkeys(
        ("ABLATIONS", "DAGNet", "DAGNetConfig", "DAGNetOutput", "SplitBackbone",
         "build_dagnet", "create_model", "list_models", "model_config", "register_model"),
        "dagnet_layers.models",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dagnet_layers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ABLATIONS",
    "EMOTIC_CATEGORIES",
    "NUM_CATEGORIES",
    "AttentionBranch",
    "AttentionBranchOutput",
    "BodyAttention",
    "BodyAttentionOutput",
    "DAGNet",
    "DAGNetConfig",
    "DAGNetOutput",
    "LearnedAdjacencyGCN",
    "PatchEncoder",
    "PatchPartition",
    "PatchSumReadout",
    "ResidualConvBlock",
    "SplitBackbone",
    "__version__",
    "adjacency_to_edge_index",
    "build_dagnet",
    "create_model",
    "grid_adjacency",
    "list_models",
    "model_config",
    "normalize_adjacency",
    "register_model",
]
