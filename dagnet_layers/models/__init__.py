"""DAG-Net models: backbones, the config, the model, saved models, the variant registry."""

from dagnet_layers.models.backbones import (
    PretrainedWeightsUnavailableError,
    SplitBackbone,
    check_pretrained_weights,
    create_body_backbone,
    pooled_width,
)
from dagnet_layers.models.config import ABLATIONS, DAGNetConfig
from dagnet_layers.models.dagnet import (
    COMPONENTS,
    DAGNet,
    DAGNetOutput,
    build_dagnet,
    build_local_graph,
    build_patch_encoder,
    component_seed,
    component_stream,
    preprocessing_cfg,
    resolve_config,
)
from dagnet_layers.models.export import export_onnx
from dagnet_layers.models.hub import (
    load_pretrained_weights,
    read_pretrained_config,
    resolve_pretrained_source,
    was_moved,
)
from dagnet_layers.models.registry import create_model, list_models, model_config, register_model

__all__ = [
    "ABLATIONS",
    "COMPONENTS",
    "DAGNet",
    "DAGNetConfig",
    "DAGNetOutput",
    "PretrainedWeightsUnavailableError",
    "SplitBackbone",
    "build_dagnet",
    "build_local_graph",
    "build_patch_encoder",
    "check_pretrained_weights",
    "component_seed",
    "component_stream",
    "create_body_backbone",
    "create_model",
    "export_onnx",
    "list_models",
    "load_pretrained_weights",
    "model_config",
    "pooled_width",
    "preprocessing_cfg",
    "read_pretrained_config",
    "register_model",
    "resolve_config",
    "resolve_pretrained_source",
    "was_moved",
]
