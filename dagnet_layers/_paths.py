"""Where the library keeps what it makes for the user (standard library only).

Shared by the argument parsers, which must answer ``--help`` without torch, and by the
data wing, which puts the demo set and the decoded-image caches there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home"]


def cache_home() -> Path:
    """Where the demo data and the decoded-image caches go: ``$DAGNET_CACHE``, by default
    ``~/.cache/dagnet_layers``."""
    return Path(os.environ.get("DAGNET_CACHE", "~/.cache/dagnet_layers")).expanduser()
