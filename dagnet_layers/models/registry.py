"""Named DAG-Net variants: ``list_models()`` / ``create_model(name)``, as in timm.

Every variant is a name bound to :class:`~dagnet_layers.models.DAGNetConfig`
overrides. ``dagnet_r50_r18`` is the paper's configuration; the
``dagnet_r50_r18_<preset>`` names are the rows of the paper's Table 2
(:data:`~dagnet_layers.models.ABLATIONS`); ``two_stream_r18_r18`` is the
standard EMOTIC two-stream baseline; ``test_*`` variants use timm's tiny test
backbones and small widths, for unit tests and CPU demos.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagnet_layers._timm.dagnet import TIMM_MODULE, default_cfgs, expose, withdraw
from dagnet_layers.models.config import ABLATIONS, DAGNetConfig
from dagnet_layers.models.dagnet import DAGNet, build_dagnet, preprocessing_cfg, resolve_config
from dagnet_layers.models.hub import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_pretrained_weights,
    read_pretrained_config,
    resolve_pretrained_source,
)

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
    if not name.isidentifier():
        raise ValueError(f"model name {name!r} must be a Python identifier (letters, digits, "
                         "'_'): timm reads '.' as a pretrained tag and ':' as a source such "
                         "as hf-hub:")
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    import timm

    if name in timm.list_models(name, include_tags=False) and name not in default_cfgs:
        raise ValueError(f"model name {name!r} is one of timm's own; DAG-Net variants live in "
                         "timm's registry too, so pick another name")
    _REGISTRY[name] = entry
    _expose(name, entry)


def _unregister(name: str) -> None:
    """Forget ``name`` here and in timm's registry (tests' throw-away variants)."""
    _REGISTRY.pop(name, None)
    withdraw(name)


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
    module: str | Iterable[str] = "",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """Names of the registered variants: :func:`timm.list_models` restricted to ours.

    The arguments are timm's, in timm's order, and the answer is timm's own
    (``timm.list_models(filter, module="dagnet", ...)``): every variant lives in
    timm's registry under the module name ``"dagnet"``.

    Args:
        filter: A glob pattern or a list of them (a name matching any is kept).
        module: timm module name(s); ours are all ``"dagnet"``, so any other gives ``[]``.
        pretrained: Only variants with a registered DAG-Net checkpoint.
        exclude_filters: Patterns of names to leave out.
        name_matches_cfg: Only names with a pretrained config (all of ours have one).
        include_tags: Include pretrained tags (DAG-Net variants have none).

    Example:
        >>> list_models("dagnet_r50_r18*", exclude_filters=["*_gsam*", "*_lsam*", "*_bam*"])
        ['dagnet_r50_r18', 'dagnet_r50_r18_baseline', 'dagnet_r50_r18_body_only']
    """
    import timm

    modules = _patterns(module)
    if modules and TIMM_MODULE not in modules:
        return []
    return timm.list_models(filter, module=TIMM_MODULE, pretrained=pretrained,
                            exclude_filters=exclude_filters, name_matches_cfg=name_matches_cfg,
                            include_tags=include_tags)  # fmt: skip


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


#: Hub options of :func:`create_model` for ``hf-hub:`` names.
_HUB_OPTIONS = ("revision", "token", "local_files_only", "force_download")


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    pretrained_cfg: dict[str, Any] | str | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> DAGNet:
    """Build a variant: what :func:`timm.create_model` does with our names, plus Hub options.

    After ``import dagnet_layers``, ``timm.create_model(name, ...)`` builds through the
    same code for every name of :func:`list_models` and for ``local-dir:`` /
    ``hf-hub:`` names of saved DAG-Nets, with timm's meaning of each argument (one
    difference: timm loads its own ``checkpoint_path`` itself, after building: the
    ``model.safetensors`` file only, strictly, without our checksum check, with the
    checkpoint's ``num_classes``, and the model stays in training mode):

    * ``pretrained=False`` builds the architecture (backbones from scratch);
    * ``pretrained=True`` loads the DAG-Net checkpoint that the variant's
      ``pretrained_cfg`` (with ``pretrained_cfg_overlay`` over it) names, or, for a
      variant without one, the backbones' ImageNet weights through timm;
    * ``local-dir:FOLDER`` / ``hf-hub:org/name[@revision]`` read the saved model's
      ``config.json`` for the architecture; with ``pretrained=True`` its weights
      too (checked against their recorded SHA-256);
    * ``num_classes`` different from a loaded checkpoint's gives a new, freshly
      initialised classifier (timm's convention), after the checkpoint loads;
    * ``checkpoint_path`` loads DAG-Net weights strictly after building (timm's
      ``checkpoint_path`` takes the ``model.safetensors`` file; ours also takes
      the folder).

    Args:
        name: A name from :func:`list_models`, ``"local-dir:/path"`` (a folder
            written by :meth:`DAGNet.save_pretrained`) or ``"hf-hub:org/name"``.
        pretrained: Load the weights described above.
        checkpoint_path: A DAG-Net checkpoint (a ``save_pretrained`` folder or its
            ``model.safetensors``).
        pretrained_cfg: The variant's checkpoint source, replacing the registered one
            (``{"file": FOLDER}`` or ``{"hf_hub_id": "org/name"}``).
        pretrained_cfg_overlay: Entries laid over the registered ``pretrained_cfg``
            (e.g. ``{"file": "/local/copy"}``). Here and in :func:`timm.create_model`,
            as in timm, this names the checkpoint of the model created, DAG-Net's;
            a backbone's local weight file goes in ``backbone_weights={"body": FILE,
            "context": FILE}`` (inside ``body_backbone_kwargs`` the name keeps its
            meaning for that backbone's own ``timm.create_model`` call).
        cache_dir: Hub cache folder (checkpoints and timm's backbone weights).
        **kwargs: Overrides for :func:`build_dagnet` (e.g. ``num_classes``,
            ``backbone_weights``); for ``hf-hub:`` names also ``revision``,
            ``token``, ``local_files_only`` and ``force_download``
            (:func:`huggingface_hub.snapshot_download`'s).

    Returns:
        The model: in training mode when built, in eval mode when a DAG-Net
        checkpoint was loaded (as ``from_pretrained`` returns it).

    Example:
        >>> m = create_model("test_dagnet")
        >>> m.num_classes, m.partition
        (26, 4)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"create_model(name=...) needs a model name from list_models() or a "
                        f"'local-dir:'/'hf-hub:' source, got {name!r}")
    hub = {k: kwargs.pop(k) for k in _HUB_OPTIONS if k in kwargs}
    if name.startswith(("hf-hub:", "local-dir:")):
        if pretrained_cfg is not None:
            raise TypeError(f"create_model({name!r}): a saved model is its own pretrained_cfg")
        if name.startswith("local-dir:") and hub:
            raise TypeError(f"create_model({name!r}) reads a local folder; {sorted(hub)} are "
                            "options of hf-hub: names")
        if name.startswith("local-dir:"):  # a folder, never a Hub name (as in timm)
            folder = Path(name[len("local-dir:"):]).expanduser()
        else:
            folder = resolve_pretrained_source(name, cache_dir=cache_dir, **hub)
        saved = read_pretrained_config(folder).to_dict()
        return _create(GENERIC, pretrained, pretrained_cfg={"file": str(folder)},
                       pretrained_cfg_overlay=pretrained_cfg_overlay,
                       checkpoint_path=checkpoint_path, pretrained_model_args=saved,
                       **{**saved, **kwargs})  # fmt: skip
    base, _, tag = name.partition(".")
    if tag and base in _REGISTRY:  # timm's "name.tag"; a given pretrained_cfg wins, as in timm
        name = base
        if pretrained_cfg is None:
            pretrained_cfg = tag
    if hub:
        raise TypeError(f"create_model({name!r}): {sorted(hub)} are options of hf-hub: names "
                        "(a registered variant's Hub checkpoint uses its pretrained_cfg)")
    return _create(name, pretrained, checkpoint_path=checkpoint_path,
                   pretrained_cfg=pretrained_cfg, pretrained_cfg_overlay=pretrained_cfg_overlay,
                   cache_dir=cache_dir, **kwargs)  # fmt: skip


def _create(
    name: str,
    pretrained: bool = False,
    *,
    pretrained_cfg: Any = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    pretrained_model_args: dict[str, Any] | None = None,
    **kwargs: Any,
) -> DAGNet:
    """Build ``name`` as :func:`create_model` describes; timm's entrypoints call this too.

    timm passes ``pretrained_cfg`` (``None``, a tag, or the dict it read from a
    ``local-dir:``/``hf-hub:`` config), ``cache_dir``, and, for saved models,
    ``pretrained_model_args`` (the saved config, already merged into ``kwargs``).
    """
    entry = _entry(name)
    if isinstance(pretrained_cfg, str):
        raise ValueError(f"model {name!r}: DAG-Net variants have no pretrained tags, got "
                         f"{name}.{pretrained_cfg}; register a checkpoint with "
                         "register_model(pretrained_cfg=...) or pass pretrained_cfg=dict(...)")
    if pretrained_cfg is not None and not isinstance(pretrained_cfg, dict):
        pretrained_cfg = pretrained_cfg.to_dict()  # timm's PretrainedCfg
    base = entry.pretrained_cfg if pretrained_cfg is None else pretrained_cfg  # replaces
    cfg = {**(base or {}), **(pretrained_cfg_overlay or {})}
    source: Path | None = None
    if checkpoint_path is not None:
        source = Path(checkpoint_path).expanduser()
    elif pretrained and (cfg.get("file") or cfg.get("hf_hub_id")):
        source = _checkpoint_folder(name, cfg, cache_dir)
    wanted_classes = kwargs.get("num_classes")
    if source is not None:
        saved = _saved_config(source)
        if saved is not None:  # build what the checkpoint holds; a new head comes after
            kwargs["num_classes"] = saved.num_classes
        elif pretrained_model_args and "num_classes" in pretrained_model_args:
            kwargs["num_classes"] = pretrained_model_args["num_classes"]
    elif cache_dir is not None:
        kwargs["cache_dir"] = cache_dir  # timm's cache for the backbones' weights
    backbones_pretrained = pretrained and source is None
    if entry.builder is not None:
        model = entry.builder(pretrained=backbones_pretrained, **kwargs)
    else:
        model = build_dagnet(**{**entry.config, **kwargs}, pretrained=backbones_pretrained)
    if source is None:
        return model
    load_pretrained_weights(model, source)
    if wanted_classes is not None and wanted_classes != model.num_classes:
        model.reset_classifier(wanted_classes)
    return model.eval()


def _checkpoint_folder(name: str, cfg: dict[str, Any],
                       cache_dir: str | os.PathLike[str] | None) -> Path:  # fmt: skip
    if cfg.get("file"):
        return Path(cfg["file"]).expanduser()
    return resolve_pretrained_source(f"hf-hub:{cfg['hf_hub_id']}", revision=cfg.get("revision"),
                                     cache_dir=cache_dir)  # fmt: skip


def _saved_config(source: Path) -> DAGNetConfig | None:
    """The config saved beside a checkpoint (its folder, or the folder of its weights file)."""
    folder = source if source.is_dir() else source.parent
    if not (folder / CONFIG_NAME).is_file() or (not source.is_dir()
                                                and source.name != WEIGHTS_NAME):
        return None
    return read_pretrained_config(folder)


def _timm_cfg(entry: _Entry) -> dict[str, Any]:
    """timm's pretrained config of a variant: its preprocessing and its checkpoint."""
    try:
        if entry.builder is None:
            cfg = preprocessing_cfg(resolve_config(**entry.config)[0])
        else:  # only the function knows its model: build one without memory to ask it
            import torch

            with torch.device("meta"):
                cfg = dict(entry.builder(pretrained=False).pretrained_cfg)
    except Exception as err:  # registered now, refused when built: building names it
        import warnings

        warnings.warn(f"could not read the preprocessing of the variant being registered "
                      f"({type(err).__name__}: {err}); timm lists it with the paper's",
                      RuntimeWarning, stacklevel=3)
        cfg = preprocessing_cfg(DAGNetConfig())
    cfg.update({k: v for k, v in (entry.pretrained_cfg or {}).items()
                if k in ("hf_hub_id", "file", "url")})  # fmt: skip
    return cfg


def _expose(name: str, entry: _Entry) -> None:
    what = "a function's" if entry.builder is not None else repr(entry.config or "the paper's")
    expose(name, _create, _timm_cfg(entry),
           f"DAG-Net variant {name!r} from dagnet-layers ({what} configuration); "
           "see dagnet_layers.models.create_model.")


#: The variant that ``local-dir:``/``hf-hub:`` saved models name: the architecture
#: built from explicit :class:`DAGNetConfig` fields (the paper's by default).
GENERIC = "dagnet"


_TEST_WIDTHS: dict[str, Any] = dict(
    body_backbone="test_resnet",
    context_backbone="test_resnet",
    bam_hidden=4,
    patch_channels=(8, 8),
    patch_pool=2,
    gcn_hidden=(32, 32, 16),
    fusion_hidden=32,
)

register_model(GENERIC)
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
