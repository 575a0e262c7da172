"""ONNX export of a DAG-Net's category logits (the ``onnx`` extra).

Only :meth:`~dagnet_layers.models.DAGNet.forward_logits` is exported: one graph
from ``(body, context)`` images to ``(B, num_classes)`` logits, with a dynamic
batch dimension, through PyTorch's ``torch.export``-based exporter
(``torch.onnx.export(..., dynamo=True)``). The attention maps, body weights and
adjacency that :meth:`~dagnet_layers.models.DAGNet.forward` also returns are for
inspection and stay in PyTorch. Apply the score function of the checkpoint
(softmax for the paper's KL loss) to the logits, as ``dagnet-predict`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dagnet_layers._deps import require
from dagnet_layers.errors import StorageError

__all__ = ["export_onnx"]


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a DAGNet (typed loosely: export imports no model code)

    def forward(self, body: Tensor, context: Tensor) -> Tensor:
        return self.model.forward_logits(body, context)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    batch_size: int = 2,
    opset_version: int | None = None,
) -> Path:
    """Write ``model.forward_logits`` as an ONNX graph with inputs ``body`` and ``context``.

    Args:
        model: A :class:`~dagnet_layers.models.DAGNet` (put in eval mode here).
        path: The ``.onnx`` file to write.
        image_size: Side of the example images traced (default: the model's
            ``pretrained_cfg`` input size). The exported graph has this image size
            and a dynamic batch dimension.
        batch_size: Batch of the example inputs (at least 2, so that no dimension
            is specialised to 1).
        opset_version: ONNX opset (default: the exporter's).

    Returns:
        The path written.

    Raises:
        MissingDependencyError: ``onnx``/``onnxscript`` are not installed
            (``pip install 'dagnet-layers[onnx]'``).
        StorageError: The file could not be written.

    Example:
        >>> import onnxruntime  # doctest: +SKIP
        >>> path = export_onnx(model, "dagnet.onnx")  # doctest: +SKIP
        >>> session = onnxruntime.InferenceSession(str(path))  # doctest: +SKIP
        >>> logits, = session.run(None, {"body": body, "context": context})  # doctest: +SKIP
    """
    require("onnx", "exporting to ONNX")
    require("onnxscript", "exporting to ONNX")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a batch of 1 would be specialised), "
                         f"got {batch_size}")
    model = model.eval()
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = int(image_size or cfg.get("input_size", (3, 224, 224))[-1])
    chans = int(cfg.get("input_size", (3,))[0])
    param = next(model.parameters())
    example = torch.rand(batch_size, chans, size, size, device=param.device, dtype=param.dtype)
    batch = torch.export.Dim("batch")
    path = Path(path)
    try:
        torch.onnx.export(
            _Logits(model), (example, example.clone()), str(path), dynamo=True,
            input_names=["body", "context"], output_names=["logits"],
            dynamic_shapes={"body": {0: batch}, "context": {0: batch}},
            opset_version=opset_version, verbose=False,
        )  # fmt: skip
    except OSError as err:
        raise StorageError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    return path
