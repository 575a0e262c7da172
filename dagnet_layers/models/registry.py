"""Named DAG-Net variants: ``list_models()`` / ``create_model(name)``, as in timm.

Every variant is a name bound to :class:`~dagnet_layers.models.DAGNetConfig`
overrides. ``dagnet_r50_r18`` is the paper's configuration; the
``dagnet_r50_r18_<preset>`` names are the rows of the paper's Table 2
(:data:`~dagnet_layers.models.ABLATIONS`); ``two_stream_r18_r18`` is the
standard EMOTIC two-stream baseline; ``test_*`` variants use timm's tiny test
backbones and small widths, for unit tests and CPU demos.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from dagnet_layers.models.dagnet import ABLATIONS, DAGNet, build_dagnet

__all__ = ["create_model", "list_models", "model_config", "register_model"]

_REGISTRY: dict[str, dict[str, Any]] = {}


def register_model(name: str, **config: Any) -> None:
    """Register ``name`` as :func:`build_dagnet` keyword arguments ``config``.

    Args:
        name: The variant name; must not be registered yet.
        **config: Keyword arguments for :func:`build_dagnet`.

    Example:
        >>> register_model("my_dagnet", body_backbone="resnet18", partition=3)
        >>> "my_dagnet" in list_models("my_*")
        True
    """
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    _REGISTRY[name] = dict(config)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered variants, optionally filtered by a glob ``pattern``.

    Example:
        >>> list_models("dagnet_r50_r18")
        ['dagnet_r50_r18']
    """
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def model_config(name: str) -> dict[str, Any]:
    """A copy of the :func:`build_dagnet` arguments registered under ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return dict(_REGISTRY[name])


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> DAGNet:
    """Build the variant ``name``; ``kwargs`` override its registered arguments.

    Args:
        name: A name from :func:`list_models`.
        pretrained: Load pretrained backbone weights through timm.
        **kwargs: Overrides for :func:`build_dagnet` (e.g. ``num_classes``).

    Example:
        >>> m = create_model("test_dagnet")
        >>> m.num_classes, m.partition
        (26, 4)
    """
    return build_dagnet(**{**model_config(name), **kwargs}, pretrained=pretrained)


_TEST_WIDTHS: dict[str, Any] = dict(
    body_backbone="test_resnet",
    context_backbone="test_resnet",
    bam_hidden=4,
    patch_channels=(8, 8),
    patch_pool=2,
    gcn_hidden=(32, 32, 16),
    fusion_hidden=32,
)

register_model("dagnet_r50_r18")
for _preset in ABLATIONS:
    if _preset != "full":
        register_model(f"dagnet_r50_r18_{_preset}", ablation=_preset)
register_model("dagnet_r18_r18", body_backbone="resnet18")
register_model(
    "two_stream_r18_r18", body_backbone="resnet18", ablation="baseline"
)
register_model("test_dagnet", **_TEST_WIDTHS)
register_model("test_dagnet_body_only", ablation="body_only", **_TEST_WIDTHS)
