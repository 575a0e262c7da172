"""Optional dependencies, imported on first use with an error that says what to install.

The core install is the model zoo (torch, timm, einops, numpy and what they bring,
huggingface_hub among them). The EMOTIC toolkit needs the ``emotic`` extra (scipy to
read ``Annotations.mat``, scikit-learn for the precision-recall thresholds), the
figures the ``viz`` extra (matplotlib), ONNX export the ``onnx`` extra, video files
the ``video`` extra (PyAV), the web demo the ``demo`` extra (Gradio), PyTorch
Geometric the ``pyg`` extra; ``all`` is all six.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dagnet_layers.errors import MissingDependencyError

__all__ = ["EXTRAS", "require"]

#: Which extra brings which optional module.
EXTRAS: dict[str, str] = {
    "scipy": "emotic",
    "sklearn": "emotic",
    "matplotlib": "viz",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "av": "video",
    "gradio": "demo",
    "torch_geometric": "pyg",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise a :class:`MissingDependencyError` naming the extra.

    Args:
        module: Importable name, e.g. ``"scipy.io"``.
        purpose: What it is needed for, e.g. ``"reading Annotations.mat"``.

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: The module (or the package it belongs to) is not
            installed; the message gives the ``pip install`` line.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "all")
        raise MissingDependencyError(
            f"{purpose} needs {top}, which is not installed: pip install "
            f"'dagnet-layers[{extra}]' (from a clone: pip install -e '.[{extra}]') ({err})"
        ) from err
