"""The DAG-Net variants as timm model entrypoints.

timm files each entrypoint under the last part of its module's name, so every
DAG-Net variant is listed by ``timm.list_models(module="dagnet")``. timm also
appends each name to this module's ``__all__`` and reads its pretrained config
from :data:`default_cfgs`; both live here, away from the public modules.

:func:`expose` is called by :mod:`dagnet_layers.models.registry` for every
variant it registers, built-in or the user's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__: list[str] = []

#: timm's module name for our variants (``timm.list_models(module=TIMM_MODULE)``).
TIMM_MODULE = __name__.rsplit(".", 1)[-1]

#: timm's per-variant pretrained config (read by :func:`timm.models.register_model`).
default_cfgs: dict[str, dict[str, Any]] = {}


def expose(name: str, create: Callable[..., Any], pretrained_cfg: dict[str, Any],
           doc: str) -> None:  # fmt: skip
    """Register ``name`` in timm's registry, built by ``create(name, pretrained, **kwargs)``."""
    import dataclasses

    from timm.models import PretrainedCfg, register_model

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> Any:
        return create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = doc
    known = {f.name for f in dataclasses.fields(PretrainedCfg)}  # e.g. not our per-stream stats
    default_cfgs[name] = {k: v for k, v in pretrained_cfg.items() if k in known}
    register_model(entrypoint)


def withdraw(name: str) -> None:
    """Remove ``name`` from timm's registry (for tests that register throw-away variants)."""
    from timm.models import _registry

    default_cfgs.pop(name, None)
    if name in __all__:
        __all__.remove(name)
    if name in _registry._model_entrypoints:
        _registry._clear_model_entries(name)
        _registry._model_entrypoints.pop(name, None)
