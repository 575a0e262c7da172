"""dagnet-layers: DAG-Net's attention and graph layers, model zoo and EMOTIC recipe.

>>> from dagnet_layers import build_dagnet
>>> model = build_dagnet()            # the paper's configuration  # doctest: +SKIP
"""

from dagnet_layers._version import __version__
from dagnet_layers.data.categories import EMOTIC_CATEGORIES, NUM_CATEGORIES
from dagnet_layers.layers import (
    AttentionBranch,
    AttentionBranchOutput,
    BodyAttention,
    BodyAttentionOutput,
    LearnedAdjacencyGCN,
    PatchEncoder,
    PatchPartition,
    PatchSumReadout,
    ResidualConvBlock,
    adjacency_to_edge_index,
    grid_adjacency,
    normalize_adjacency,
)
from dagnet_layers.models import (
    ABLATIONS,
    DAGNet,
    DAGNetConfig,
    DAGNetOutput,
    SplitBackbone,
    build_dagnet,
    create_model,
    list_models,
    model_config,
    register_model,
)

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
