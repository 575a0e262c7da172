"""DAG-Net's reusable layers: each usable on its own, none importing the rest of the package."""

from dagnet_layers.layers.attention_branch import (
    AttentionBranch,
    AttentionBranchOutput,
    ResidualConvBlock,
    abn_init_,
    stride_one_copy,
)
from dagnet_layers.layers.body_attention import BodyAttention, BodyAttentionOutput
from dagnet_layers.layers.graph import (
    LearnedAdjacencyGCN,
    PatchSumReadout,
    adjacency_to_edge_index,
    grid_adjacency,
    initial_adjacency_of,
    normalize_adjacency,
)
from dagnet_layers.layers.patch_partition import PatchEncoder, PatchPartition
from dagnet_layers.layers.relational import PatchSelfAttention, ResidualPatchGCN

__all__ = [
    "AttentionBranch",
    "AttentionBranchOutput",
    "BodyAttention",
    "BodyAttentionOutput",
    "LearnedAdjacencyGCN",
    "PatchEncoder",
    "PatchPartition",
    "PatchSelfAttention",
    "PatchSumReadout",
    "ResidualConvBlock",
    "ResidualPatchGCN",
    "abn_init_",
    "adjacency_to_edge_index",
    "grid_adjacency",
    "initial_adjacency_of",
    "normalize_adjacency",
    "stride_one_copy",
]
