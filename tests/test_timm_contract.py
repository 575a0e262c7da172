"""DAG-Net against timm's own contracts: data config, parameter groups, checkpointing."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from timm.models import group_parameters

from dagnet_layers import build_dagnet
from dagnet_layers.emotic.data import emotic_eval_transform, normalization_of


def tiny(**kwargs):
    torch.manual_seed(0)
    return build_dagnet(partition=2, gcn_hidden=(8,), patch_channels=(4, 4), fusion_hidden=8,
                        **kwargs)  # fmt: skip


def test_resolve_data_config_reads_what_our_transforms_do() -> None:
    model = tiny(body_backbone="test_resnet", context_backbone="resnet18", image_size=32)
    cfg = resolve_data_config(model=model)
    assert cfg["input_size"] == (3, 32, 32)
    assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    # timm's own configs of the two backbones, read independently
    body_cfg = timm.create_model("test_resnet").pretrained_cfg
    ctx_cfg = timm.create_model("resnet18").pretrained_cfg
    assert tuple(cfg["mean"]) == tuple(body_cfg["mean"]) and tuple(cfg["std"]) == body_cfg["std"]
    norm = normalization_of(model)
    assert norm["context_mean"] == tuple(ctx_cfg["mean"])
    assert norm["context_std"] == tuple(ctx_cfg["std"])
    assert model.default_cfg == model.pretrained_cfg


def test_eval_transform_equals_timms_transform_from_the_config() -> None:
    """At the model's size (no resize), timm's eval pipeline built from our
    pretrained_cfg and our transform give the same tensors, for each stream."""
    model = tiny(body_backbone="test_resnet", context_backbone="resnet18", image_size=32)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ours = emotic_eval_transform(32, **normalization_of(model))({
        "body": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
        "context": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
        "bbox": torch.tensor([0.0, 0.0, 1.0, 1.0]),
    })  # fmt: skip
    cfg = model.pretrained_cfg
    for stream in ("body", "context"):
        timm_tf = create_transform(input_size=cfg["input_size"], interpolation=cfg["interpolation"],
                                   crop_pct=cfg["crop_pct"], mean=cfg[stream]["mean"],
                                   std=cfg[stream]["std"])  # fmt: skip
        want = timm_tf(Image.fromarray(pixels))
        torch.testing.assert_close(ours[stream], want, rtol=0, atol=2e-6)


@pytest.mark.parametrize(("body_hw", "context_hw"), [((50, 30), (40, 64)), ((30, 80), (64, 40))])
def test_timms_recipe_from_the_model_feeds_it_what_our_eval_transform_does(body_hw, context_hw):
    """On non-square images, ``create_transform(**resolve_data_config({}, model=m))``, timm's
    own recipe, gives each stream what ``emotic_eval_transform`` gives it, to within the
    difference between PIL's and torch's antialiased bilinear resize (at most 0.008
    normalised units here). With timm's default ``crop_mode="center"`` it crops the long
    side instead of squashing the whole image, and differed by 1.5 to 1.6 here."""
    model = tiny(body_backbone="test_resnet", context_backbone="resnet18", image_size=32)
    rng = np.random.default_rng(1)
    images = {"body": rng.integers(0, 256, (*body_hw, 3), dtype=np.uint8),
              "context": rng.integers(0, 256, (*context_hw, 3), dtype=np.uint8)}
    ours = emotic_eval_transform(32, **normalization_of(model))({
        **{k: torch.from_numpy(v).permute(2, 0, 1).contiguous() for k, v in images.items()},
        "bbox": torch.tensor([0.0, 0.0, 1.0, 1.0]),
    })  # fmt: skip
    config = resolve_data_config({}, model=model)
    for stream in ("body", "context"):
        stream_norm = model.pretrained_cfg[stream]
        timm_tf = create_transform(**{**config, "mean": stream_norm["mean"],
                                      "std": stream_norm["std"]})  # fmt: skip
        want = timm_tf(Image.fromarray(images[stream]))
        assert want.shape == ours[stream].shape == (3, 32, 32)
        torch.testing.assert_close(ours[stream], want, rtol=0, atol=0.02)  # measured: 0.008


def test_group_matcher_orders_every_parameter_once() -> None:
    model = tiny(body_backbone="test_resnet", context_backbone="test_resnet")
    names = [n for n, _ in model.named_parameters()]
    groups = group_parameters(model, model.group_matcher())
    flat = [n for g in groups.values() for n in g]
    assert sorted(flat) == sorted(names)  # each exactly once
    depth = {n: lid for lid, members in groups.items() for n in members}
    first = "conv1.0.weight"  # test_resnet's deep stem
    assert depth[f"body_backbone.{first}"] == depth[f"context_backbone.stem.{first}"] == 0
    assert depth["context_backbone.last_stage.layer4.0.conv1.weight"] == 1
    assert (depth[f"body_backbone.{first}"] < depth["local_graph.adjacency"]
            < depth["fusion.0.weight"] < depth["classifier.weight"])  # fmt: skip
    coarse = group_parameters(model, model.group_matcher(coarse=True))
    assert len(coarse) == 3


def test_grad_checkpointing_recomputes_and_keeps_gradients() -> None:
    model = tiny(body_backbone="test_resnet", context_backbone="test_resnet").double()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        model.forward_logits(x, x).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    torch.manual_seed(1)
    plain = grads()
    calls = {"n": 0}
    forward = model.patch_encoder.forward

    def counting_forward(*args):  # (forward hooks do not fire on recomputation)
        calls["n"] += 1
        return forward(*args)

    model.patch_encoder.forward = counting_forward
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    checkpointed = grads()
    assert calls["n"] == 2  # forward, then recomputed in the backward pass
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-10, atol=1e-12)
    model.set_grad_checkpointing(False)
    calls["n"] = 0
    grads()
    assert calls["n"] == 1


@pytest.mark.parametrize("bad", [dict(mean=(0.5, 0.5)), dict(std=(0.0, 1.0, 1.0)),
                                 dict(colour=1)])  # fmt: skip
def test_transform_normalization_is_checked(bad: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        emotic_eval_transform(8, **bad)
