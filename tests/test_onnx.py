"""ONNX export of forward_logits, run by onnxruntime (an outside implementation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dagnet_layers import build_dagnet
from dagnet_layers.models import export_onnx

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_onnx_logits_match_pytorch_for_any_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                         patch_channels=(4, 4), fusion_hidden=8, image_size=64)  # fmt: skip
    path = export_onnx(model, tmp_path / "dagnet.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["body", "context"]
    g = torch.Generator().manual_seed(1)
    worst = 0.0
    for batch in (1, 3, 7):  # batches other than the traced one
        body = torch.rand(batch, 3, 64, 64, generator=g)
        context = torch.rand(batch, 3, 64, 64, generator=g)
        (got,) = session.run(None, {"body": body.numpy(), "context": context.numpy()})
        with torch.no_grad():
            want = model.forward_logits(body, context).numpy()
        assert got.shape == want.shape == (batch, 26)
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"\nONNX vs PyTorch, max abs logit difference: {worst:.2e}")
    assert worst < 1e-4
