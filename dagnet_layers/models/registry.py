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
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagnet_layers.models.config import ABLATIONS
from dagnet_layers.models.dagnet import DAGNet, build_dagnet
from dagnet_layers.models.hub import load_pretrained_weights, resolve_pretrained_source

__all__ = ["create_model", "list_models", "model_config", "register_model"]


@dataclass
class _Entry:
    """A registered variant: :func:`build_dagnet` arguments, or a builder function."""

    config: dict[str, Any] = field(default_factory=dict)
    builder: Callable[..., DAGNet] | None = None
    #: Where a trained DAG-Net checkpoint of the variant lives: ``{"hf_hub_id": ...}``
    #: and/or ``{"file": folder}``; ``None`` when only the backbones are pretrained.
    pretrained_cfg: dict[str, Any] | None = None


_REGISTRY: dict[str, _Entry] = {}


def _add(name: str, entry: _Entry) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    _REGISTRY[name] = entry


def register_model(
    fn_or_name: Callable[..., DAGNet] | str | None = None,
    /,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """Register a variant, as timm's ``@register_model`` does or by its arguments.

    Three forms:

    * ``register_model("name", **config)``: ``name`` builds
      ``build_dagnet(**config)``;
    * ``@register_model`` on a function ``fn(pretrained=False, **kwargs) -> DAGNet``:
      registered under the function's name, returned unchanged (timm's and
      torchvision's convention);
    * ``@register_model(pretrained_cfg={...})``: the same, with a checkpoint.

    ``pretrained_cfg`` says where a trained DAG-Net checkpoint of the variant is
    (``{"hf_hub_id": "org/name"}`` and/or ``{"file": "/path/to/folder"}``); such a
    variant is listed by ``list_models(pretrained=True)`` and ``create_model(name,
    pretrained=True)`` loads it.

    Args:
        fn_or_name: The variant's name, or the builder function (decorator form).
        pretrained_cfg: Where the variant's trained checkpoint lives.
        **config: Keyword arguments for :func:`build_dagnet` (name form only).

    Returns:
        The function (decorator forms), else ``None``.

    Raises:
        ValueError: For a name that is already registered.

    Example:
        >>> register_model("my_dagnet", body_backbone="resnet18", partition=3)
        >>> @register_model
        ... def my_tiny_dagnet(pretrained=False, **kwargs):
        ...     return build_dagnet("test_resnet", "test_resnet", partition=2, **kwargs)
        >>> list_models("my_*")
        ['my_dagnet', 'my_tiny_dagnet']
    """
    if callable(fn_or_name):
        if config:
            raise TypeError("register_model(fn) takes no build arguments; pass them to fn")
        _add(fn_or_name.__name__, _Entry(builder=fn_or_name, pretrained_cfg=pretrained_cfg))
        return fn_or_name
    if fn_or_name is None:
        if config:
            raise TypeError("register_model(**config) needs the variant's name first")

        def decorate(fn: Callable[..., DAGNet]) -> Callable[..., DAGNet]:
            _add(fn.__name__, _Entry(builder=fn, pretrained_cfg=pretrained_cfg))
            return fn

        return decorate
    _add(fn_or_name, _Entry(config=dict(config), pretrained_cfg=pretrained_cfg))
    return None


def _patterns(value: str | Iterable[str] | None) -> list[str]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)


def list_models(
    filter: str | Iterable[str] = "",
    *,
    exclude_filters: str | Iterable[str] = "",
    pretrained: bool = False,
) -> list[str]:
    """Sorted names of the registered variants, as :func:`timm.list_models` filters them.

    Args:
        filter: A glob pattern or a list of them (a name matching any is kept).
        exclude_filters: Patterns of names to leave out.
        pretrained: Only variants with a registered DAG-Net checkpoint.

    Example:
        >>> list_models("dagnet_r50_r18*", exclude_filters=["*_gsam*", "*_lsam*", "*_bam*"])
        ['dagnet_r50_r18', 'dagnet_r50_r18_baseline', 'dagnet_r50_r18_body_only']
    """
    include, exclude = _patterns(filter), _patterns(exclude_filters)
    names = []
    for name in sorted(_REGISTRY):
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        if pretrained and _REGISTRY[name].pretrained_cfg is None:
            continue
        names.append(name)
    return names


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; list_models() shows the "
                         f"{len(_REGISTRY)} registered names")
    return _REGISTRY[name]


def model_config(name: str) -> dict[str, Any]:
    """A copy of the :func:`build_dagnet` arguments registered under ``name``.

    A variant registered as a function has none (``{}``).
    """
    return dict(_entry(name).config)


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> DAGNet:
    """Build a variant, as :func:`timm.create_model` does.

    Args:
        name: A name from :func:`list_models`; or ``"hf-hub:org/name"`` (a Hub
            repository written by :meth:`DAGNet.push_to_hub`) or
            ``"local-dir:/path"`` (a folder written by :meth:`DAGNet.save_pretrained`),
            loaded with :meth:`DAGNet.from_pretrained`.
        pretrained: Load the variant's registered DAG-Net checkpoint when it has one
            (see :func:`register_model`), else the backbones' ImageNet weights
            through timm.
        checkpoint_path: A DAG-Net checkpoint (a ``save_pretrained`` folder or its
            ``model.safetensors``) loaded strictly after building; overrides
            ``pretrained``.
        pretrained_cfg_overlay: Entries that override the registered
            ``pretrained_cfg`` (e.g. ``{"file": "/local/copy"}``).
        **kwargs: Overrides for :func:`build_dagnet` (e.g. ``num_classes``); for
            ``hf-hub:`` names, ``revision``, ``cache_dir`` and ``map_location``.

    Returns:
        The model: in training mode when built, in eval mode when loaded from a
        checkpoint (as ``from_pretrained`` returns it).

    Example:
        >>> m = create_model("test_dagnet")
        >>> m.num_classes, m.partition
        (26, 4)
    """
    if name.startswith(("hf-hub:", "local-dir:")):
        source = name[len("local-dir:"):] if name.startswith("local-dir:") else name
        allowed = {"revision", "cache_dir", "map_location"}
        extra = sorted(set(kwargs) - allowed)
        if extra or checkpoint_path is not None:
            raise TypeError(f"create_model({name!r}) loads a saved model as it is; it takes "
                            f"only {sorted(allowed)}, got {extra or ['checkpoint_path']}")
        return DAGNet.from_pretrained(source, **kwargs)
    entry = _entry(name)
    cfg = {**(entry.pretrained_cfg or {}), **(pretrained_cfg_overlay or {})}
    load_checkpoint = checkpoint_path is not None or (pretrained and bool(cfg))
    backbones_pretrained = pretrained and not load_checkpoint
    if entry.builder is not None:
        model = entry.builder(pretrained=backbones_pretrained, **kwargs)
    else:
        model = build_dagnet(**{**entry.config, **kwargs}, pretrained=backbones_pretrained)
    if checkpoint_path is not None:
        load_pretrained_weights(model, checkpoint_path)
        return model.eval()
    if load_checkpoint:
        if cfg.get("file"):
            source: str | Path = Path(cfg["file"]).expanduser()
        elif cfg.get("hf_hub_id"):
            source = resolve_pretrained_source(f"hf-hub:{cfg['hf_hub_id']}",
                                               revision=cfg.get("revision"))
        else:
            raise ValueError(f"model {name!r}: pretrained_cfg {cfg} has neither 'file' nor "
                             "'hf_hub_id'")
        load_pretrained_weights(model, source)
        return model.eval()
    return model


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
