"""DAGNet, its backbones, presets, registry, persistence and compilation."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from dagnet_layers import (
    ABLATIONS,
    DAGNet,
    DAGNetConfig,
    LearnedAdjacencyGCN,
    PatchSumReadout,
    SplitBackbone,
    build_dagnet,
    create_model,
    list_models,
    model_config,
)

TINY = dict(bam_hidden=4, patch_channels=(4, 4), patch_pool=2, gcn_hidden=(16, 8), fusion_hidden=16)


def tiny(body: str = "test_resnet", context: str = "test_resnet", **kwargs) -> DAGNet:
    return build_dagnet(body, context, **{**TINY, **kwargs})


def images(batch: int = 2, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)


def test_paper_defaults() -> None:
    cfg = DAGNetConfig()
    assert (cfg.body_backbone, cfg.context_backbone, cfg.num_classes, cfg.partition) == (
        "resnet50", "resnet18", 26, 4)
    assert cfg.gcn_hidden == (1024, 1024, 512)
    assert cfg.patch_channels == (64, 64) and cfg.patch_pool == 4
    assert cfg.use_bam and cfg.use_gsam and cfg.use_lsam and cfg.lsam_gcn
    assert model_config("dagnet_r50_r18") == {}


@pytest.mark.parametrize("preset", list(ABLATIONS))
def test_every_table2_preset_builds_runs_and_trains(preset: str) -> None:
    model = tiny(ablation=preset)
    switches = ABLATIONS[preset]
    out = model(*images())
    assert out.logits.shape == (2, 26)
    assert (out.body_weights is not None) == switches["use_bam"]
    assert (out.aux_logits is not None) == switches["use_gsam"]
    assert (out.attention_map is not None) == switches["use_gsam"]
    has_gcn = switches["use_lsam"] and switches.get("lsam_gcn", True)
    assert (out.adjacency is not None) == has_gcn
    if switches["use_lsam"]:
        expected = LearnedAdjacencyGCN if has_gcn else PatchSumReadout
        assert isinstance(model.local_graph, expected)
    assert (model.context_backbone is None) == (not switches.get("use_context", True))
    loss = out.logits.square().mean()
    if out.aux_logits is not None:
        loss = loss + out.aux_logits.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"


def test_body_only_model_ignores_context() -> None:
    model = tiny(ablation="body_only").eval()
    body, _ = images()
    torch.testing.assert_close(model(body).logits, model(body, torch.randn(2, 3, 64, 64)).logits)
    assert model.feature_dims == (model.body_backbone.num_features,)


@pytest.mark.parametrize("n", range(2, 10))
def test_partition_sizes_of_fig3(n: int) -> None:
    model = tiny(partition=n, ablation="lsam")
    size = 16 * n if n > 3 else 48
    size = size - size % n
    out = model(*images(size=size))
    assert out.adjacency.shape == (n * n, n * n)
    assert model.partition == n


def test_partition_size_policy_for_sizes_not_divisible_by_n() -> None:
    body, context = images(size=64)
    with pytest.raises(ValueError, match=r"divisible by 3, got 64x64"):
        tiny(partition=3)(body, context)
    for policy in ("resize", "pad"):
        out = tiny(partition=3, patch_size_policy=policy)(body, context)
        assert out.adjacency.shape == (9, 9)


FAMILIES = ["test_resnet", "test_convnext", "test_efficientnet", "regnetx_002", "test_byobnet"]


@pytest.mark.parametrize("backbone", FAMILIES)
def test_timm_families_as_body_and_context(backbone: str) -> None:
    model = tiny(backbone, backbone)
    assert model.context_backbone.split == "penultimate"
    out = model(*images())
    assert out.logits.shape == (2, 26)
    assert out.attention_map.shape[-1] == 4  # stride 16 of a 64 px image
    assert model.num_features == sum(model.feature_dims)


def test_uncuttable_context_backbone_falls_back_with_warning() -> None:
    with pytest.warns(UserWarning, match="cannot be cut between its last two stages"):
        model = tiny("test_resnet", "test_vit")
    assert model.context_backbone.split == "last"
    assert model(*images()).logits.shape == (2, 26)
    with pytest.raises(ValueError, match=r"cannot be cut.*attention_stage='auto' or 'last'"):
        tiny("test_resnet", "test_vit", gsam_stage="penultimate")


def test_unsupported_backbones_raise_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"body_backbone='resnet5x' is not a timm model name"):
        tiny("resnet5x")
    with pytest.raises(ValueError, match=r"context_backbone='nope' is not a timm model name"):
        tiny("test_resnet", "nope")

    real_create = timm.create_model

    def no_features(name: str, **kwargs):
        if kwargs.get("features_only"):
            raise RuntimeError("features_only not implemented for this model")
        return real_create(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_features)
    expected = r"context_backbone='test_resnet' cannot be used.*features_only"
    with pytest.raises(ValueError, match=expected):
        SplitBackbone("test_resnet")


def test_local_weight_file_through_timm(tmp_path: Path) -> None:
    """pretrained_cfg_overlay=dict(file=...) loads a local file into either stream."""
    source = timm.create_model("test_resnet")
    weights = tmp_path / "test_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    overlay = dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
    model = tiny(body_backbone_kwargs=overlay, context_backbone_kwargs=overlay)
    expected = source.state_dict()
    body = model.body_backbone.state_dict()
    context = {**model.context_backbone.stem.state_dict(),
               **model.context_backbone.last_stage.state_dict()}
    assert set(context) == {k for k in expected if not k.startswith("fc.")}
    for loaded in (body, context):
        for key, value in loaded.items():
            torch.testing.assert_close(value, expected[key], msg=key)


def test_forward_paths_agree_and_eval_is_deterministic() -> None:
    model = tiny(vad_head=True).eval()
    body, context = images(3)
    out = model(body, context)
    torch.testing.assert_close(model.forward_logits(body, context), out.logits)
    features = model.forward_features(body, context)
    torch.testing.assert_close(model.forward_head(features), out.logits)
    assert torch.equal(model(body, context).logits, out.logits)
    assert out.vad.shape == (3, 3)
    hidden = model.forward_head(model.forward_features(body, context), pre_logits=True)
    assert hidden.shape == (3, model.head_hidden_size)


def test_channels_last_and_bf16_autocast() -> None:
    model = tiny().eval()
    body, context = images()
    ref = model.forward_logits(body, context)
    cl = model.to(memory_format=torch.channels_last)
    out = cl.forward_logits(body.to(memory_format=torch.channels_last),
                            context.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(body, context)
    assert low.logits.dtype == torch.bfloat16
    assert torch.isfinite(low.logits.float()).all()


def test_reset_classifier() -> None:
    model = tiny()
    model.reset_classifier(7)
    out = model(*images())
    assert model.num_classes == 7 and model.config.num_classes == 7
    assert out.logits.shape == (2, 7) and out.aux_logits.shape == (2, 7)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(0)


def test_save_and_load_pretrained_round_trip(tmp_path: Path) -> None:
    model = tiny(partition=2, gcn_normalization="symmetric").eval()
    with torch.no_grad():
        model.local_graph.adjacency.add_(torch.rand_like(model.local_graph.adjacency))
    model.save_pretrained(tmp_path / "ckpt")
    written = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert written == ["config.json", "model.safetensors"]
    loaded = DAGNet.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    body, context = images()
    assert torch.equal(loaded.forward_logits(body, context), model.forward_logits(body, context))


def test_from_pretrained_refuses_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        DAGNet.from_pretrained(tmp_path)
    tiny().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        DAGNet.from_pretrained(tmp_path)
    for bad in ({"format": "other"}, {"format": "dagnet-layers"}, ["format"]):
        (tmp_path / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="not a dagnet-layers model config"):
            DAGNet.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown DAGNetConfig field"):
        DAGNetConfig.from_dict({"body_backbone": "resnet18", "bogus": 1})


def test_from_pretrained_refuses_mismatched_weights(tmp_path: Path) -> None:
    tiny(partition=2).save_pretrained(tmp_path / "a")
    tiny(partition=3).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises((ValueError, RuntimeError), match=r"size mismatch|does not match"):
        DAGNet.from_pretrained(tmp_path / "a")


def test_bad_inputs_name_expected_and_actual() -> None:
    model = tiny()
    body, context = images()
    with pytest.raises(ValueError, match=r"body must have shape \(B, 3, H, W\), got \(3, 64, 64\)"):
        model(body[0], context)
    expected = r"context must have shape \(B, 3, H, W\), got \(2, 1, 64, 64\)"
    with pytest.raises(ValueError, match=expected):
        model(body, context[:, :1])
    with pytest.raises(ValueError, match="got 2 body images but 1 context images"):
        model(body, context[:1])
    with pytest.raises(ValueError, match="needs a context image"):
        model(body)
    with pytest.raises(ValueError, match=r"divisible by 4, got 66x66"):
        model(body, torch.randn(2, 3, 66, 66))
    with pytest.raises(ValueError, match=r"partition=\.\.\.\) must be an int >= 1, got 0"):
        tiny(partition=0)
    with pytest.raises(ValueError, match="ablation='everything' is not a preset"):
        tiny(ablation="everything")
    with pytest.raises(ValueError, match="use_lsam=True\\) needs use_context=True"):
        tiny(use_context=False, use_gsam=False)


def test_registry() -> None:
    names = list_models()
    assert "dagnet_r50_r18" in names and "two_stream_r18_r18" in names
    assert {f"dagnet_r50_r18_{p}" for p in ABLATIONS if p != "full"} <= set(names)
    assert list_models("test_*") == ["test_dagnet", "test_dagnet_body_only"]
    with pytest.raises(ValueError, match="unknown model 'dagnet_x'"):
        create_model("dagnet_x")
    model = create_model("test_dagnet", num_classes=5)
    assert model.num_classes == 5


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_builds_and_runs(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no registered variant should need a fallback
        model = create_model(name).eval()
    with torch.no_grad():
        out = model(*images(1, 64))
    assert out.logits.shape == (1, 26)
    cfg = dataclasses.asdict(model.config)
    assert cfg["num_classes"] == 26


def test_torch_compile_matches_eager() -> None:
    model = create_model("test_dagnet").eval()
    body, context = images()
    compiled = torch.compile(model.forward_logits)
    torch.testing.assert_close(compiled(body, context), model.forward_logits(body, context),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.trace.*` is deprecated:FutureWarning")
def test_torch_export_and_trace_work_but_script_does_not() -> None:
    class Logits(nn.Module):
        def __init__(self, model: DAGNet) -> None:
            super().__init__()
            self.model = model

        def forward(self, body: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            return self.model.forward_logits(body, context)

    model = create_model("test_dagnet").eval()
    body, context = images()
    ref = model.forward_logits(body, context)
    exported = torch.export.export(Logits(model), (body, context))
    torch.testing.assert_close(exported.module()(body, context), ref)
    traced = torch.jit.trace(Logits(model), (body, context))
    torch.testing.assert_close(traced(body, context), ref)
    with pytest.raises(Exception):  # noqa: B017 - TorchScript rejects the Optional NamedTuples
        torch.jit.script(model)
