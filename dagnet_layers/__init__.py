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

Importing the package also makes every DAG-Net variant a timm model: as soon as
timm is imported too (before or after), ``timm.create_model("dagnet_r50_r18")``,
``timm.list_models("dagnet*")`` and ``timm.create_model("local-dir:<saved
DAG-Net>")`` work, without ``import dagnet_layers`` itself importing timm or torch.

>>> from dagnet_layers import build_dagnet
>>> model = build_dagnet()            # the paper's configuration  # doctest: +SKIP
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, eagerly
    from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES, NUM_CATEGORIES
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


def _register_with_timm() -> None:
    """Put our variants into timm's registry (timm is imported by now)."""
    if "dagnet_layers.models" in sys.modules:
        return  # being imported or imported: its registry registers every variant
    try:
        importlib.import_module("dagnet_layers.models")
    except Exception as err:  # never break ``import timm`` for the user
        warnings.warn(f"dagnet-layers could not register its models with timm: "
                      f"{type(err).__name__}: {err}", RuntimeWarning, stacklevel=2)


class _AfterTimm(importlib.abc.MetaPathFinder):
    """Runs :func:`_register_with_timm` once ``import timm`` has finished executing."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # once, and so that the search below skips us
        spec = importlib.util.find_spec("timm")
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register_with_timm()

        loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    _register_with_timm()
elif not any(isinstance(f, _AfterTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterTimm())


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
