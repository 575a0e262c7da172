"""Argument checks shared by the layers (one wording for every layer)."""

from __future__ import annotations

from typing import Any

from dagnet_layers.errors import ConfigError


def check_positive_ints(owner: str, **values: Any) -> None:
    """Raise :class:`~dagnet_layers.errors.ConfigError` (a ``ValueError``) for any value
    that is not an ``int >= 1`` (``bool`` excluded), naming ``owner(arg=...)``."""
    for arg, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}({arg}=...) must be a positive int, got {value!r}")
