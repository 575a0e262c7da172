"""DAGNet, its backbones, presets, registry, persistence and compilation."""

from __future__ import annotations

import dataclasses
import json
import time
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
    ResidualConvBlock,
    SplitBackbone,
    build_dagnet,
    create_model,
    list_models,
    model_config,
)
from dagnet_layers.models import PretrainedWeightsUnavailableError, check_pretrained_weights
from dagnet_layers.storage import IntegrityError

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
    with pytest.warns(UserWarning, match="cannot be cut between its last two stages"), \
            pytest.warns(UserWarning, match="light block is used instead"):
        model = tiny("test_resnet", "test_vit")
    assert model.context_backbone.split == "last"
    assert isinstance(model.context_attention.attention_block, ResidualConvBlock)
    assert model.config.gsam_block == "light"  # the config says what was built
    assert model(*images()).logits.shape == (2, 26)
    with pytest.raises(ValueError, match=r"cannot be cut.*attention_stage='auto' or 'last'"):
        tiny("test_resnet", "test_vit", gsam_stage="penultimate")


def test_a_model_that_fell_back_to_the_light_block_reloads_as_one(tmp_path: Path) -> None:
    config = DAGNetConfig(body_backbone="test_resnet", context_backbone="test_vit", **TINY)
    with pytest.warns(UserWarning, match="cannot be cut"), \
            pytest.warns(UserWarning, match="light block is used instead"):
        model = DAGNet(config).eval()
    assert config.gsam_block == "abn"  # the caller's object is left as it was given
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="cannot be cut") as seen:  # gsam_stage="auto"
        loaded = DAGNet.from_pretrained(tmp_path).eval()
    assert not [w for w in seen if "light block" in str(w.message)]
    assert loaded.config.gsam_block == "light"
    body, context = images()
    torch.testing.assert_close(loaded(body, context).logits, model(body, context).logits)


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
        low_logits = model.forward_logits(body, context)
    assert low.attention_map.dtype == torch.bfloat16  # the streams do run in bf16
    # The classifier does not: bf16 logits (8 significant bits) would tie across
    # thousands of test persons, and ties change the official AP.
    assert low.logits.dtype == low_logits.dtype == torch.float32
    assert torch.isfinite(low.logits).all()
    torch.testing.assert_close(low.logits, ref, rtol=0.1, atol=0.1)


def test_reset_classifier() -> None:
    model = tiny()
    model.reset_classifier(7)
    out = model(*images())
    assert model.num_classes == 7 and model.config.num_classes == 7
    assert out.logits.shape == (2, 7) and out.aux_logits.shape == (2, 7)
    with pytest.raises(ValueError, match=r"num_classes.*forward_head\(x, pre_logits=True\)"):
        model.reset_classifier(0)  # timm's way to drop a head; GSAM needs its classes
    model.reset_classifier(3, None)  # timm's signature, as its fine-tuning scripts call it
    assert model(*images()).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="global_pool='avg'"):
        model.reset_classifier(3, "avg")
    feats = model.forward_features(*images())  # what the message points to
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.head_hidden_size)


def test_models_built_from_one_config_do_not_share_it(tmp_path: Path) -> None:
    config = DAGNetConfig(body_backbone="test_resnet", context_backbone="test_resnet", **TINY)
    a, b = DAGNet(config), DAGNet(config)
    a.reset_classifier(5)
    assert (config.num_classes, b.config.num_classes, a.config.num_classes) == (26, 26, 5)
    b.save_pretrained(tmp_path)  # used to record a's 5 classes beside b's 26 weights
    assert DAGNet.from_pretrained(tmp_path).num_classes == 26


def test_save_and_load_pretrained_round_trip(tmp_path: Path) -> None:
    model = tiny(partition=2, gcn_normalization="symmetric").eval()
    with torch.no_grad():
        model.local_graph.adjacency.add_(torch.rand_like(model.local_graph.adjacency))
    model.save_pretrained(tmp_path / "ckpt")
    written = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert written == ["README.md", "config.json", "model.safetensors"]
    loaded = DAGNet.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    body, context = images()
    assert torch.equal(loaded.forward_logits(body, context), model.forward_logits(body, context))


def test_from_pretrained_refuses_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        DAGNet.from_pretrained(tmp_path)
    tiny().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(ValueError, match="has 17 bytes"):  # caught by the recorded size first
        DAGNet.from_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["weights"]  # as pre-release builds wrote it: no checksum, safetensors' own check
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        DAGNet.from_pretrained(tmp_path)
    for bad in ({"format": "other"}, {"format": "dagnet-layers"}, ["format"]):
        (tmp_path / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=r"not a dagnet-layers model config|JSON object"):
            DAGNet.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"DAGNetConfig.*unknown option 'bogus'"):
        DAGNetConfig.from_dict({"body_backbone": "resnet18", "bogus": 1})


def test_from_pretrained_detects_a_flipped_byte_in_the_weights(tmp_path: Path) -> None:
    tiny().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data: safetensors alone would load it
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.safetensors: does not match the SHA-256"):
        DAGNet.from_pretrained(tmp_path)


def test_from_pretrained_refuses_mismatched_weights(tmp_path: Path) -> None:
    tiny(partition=2).save_pretrained(tmp_path / "a")
    tiny(partition=3).save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises((ValueError, RuntimeError), match=r"size mismatch|does not match|bytes"):
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


# The paper's model in the quick run; every other variant (a ResNet-50 build each) with --full.
QUICK_VARIANTS = ("dagnet_r50_r18", "test_dagnet")


@pytest.mark.parametrize("name", [
    name if name in QUICK_VARIANTS else pytest.param(name, marks=pytest.mark.slow)
    for name in list_models()
])
def test_every_registered_variant_builds_and_runs(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no registered variant should need a fallback
        model = create_model(name).eval()
    with torch.no_grad():
        out = model(*images(1, 64))
    assert out.logits.shape == (1, 26)
    cfg = dataclasses.asdict(model.config)
    assert cfg["num_classes"] == 26


@pytest.mark.parametrize("name", list_models())
def test_every_registered_variant_builds_on_the_meta_device(name: str) -> None:
    """``with torch.device("meta")`` builds a model without memory (large-model loading,
    FSDP, and the training command's check of its flags). LSAM's grid adjacency used
    boolean indexing, which has no meta kernel, and failed there."""
    rng = torch.random.get_rng_state()
    with torch.device("meta"):
        model = create_model(name)
    assert all(t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert torch.equal(torch.random.get_rng_state(), rng)  # and it draws nothing


def test_a_model_built_on_meta_then_loaded_predicts_as_the_original() -> None:
    torch.manual_seed(0)
    reference = create_model("test_dagnet").eval()
    with torch.device("meta"):
        model = create_model("test_dagnet")
    model = model.to_empty(device="cpu")
    model.load_state_dict(reference.state_dict(), strict=True)
    body, context = images(2, 64)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_logits(body, context),
                           reference.forward_logits(body, context))


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    model = create_model("test_dagnet").eval()
    body, context = images()
    compiled = torch.compile(model.forward_logits)
    torch.testing.assert_close(compiled(body, context), model.forward_logits(body, context),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
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


# ----------------------------------------------------------- GSAM as ABN published it
def _bn(x: torch.Tensor, p: dict, name: str) -> torch.Tensor:
    return torch.nn.functional.batch_norm(
        x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"],
        p[f"{name}.bias"], training=False, eps=1e-5)


def _conv(x: torch.Tensor, p: dict, name: str, stride: int = 1, padding: int = 0) -> torch.Tensor:
    return torch.nn.functional.conv2d(x, p[f"{name}.weight"], stride=stride, padding=padding)


def _abn_basic_block(x, p, name, stride):
    relu = torch.nn.functional.relu
    out = relu(_bn(_conv(x, p, f"{name}.conv1", stride, 1), p, f"{name}.bn1"))
    out = _bn(_conv(out, p, f"{name}.conv2", 1, 1), p, f"{name}.bn2")
    residual = x
    if f"{name}.downsample.0.weight" in p:
        residual = _bn(_conv(x, p, f"{name}.downsample.0", stride), p, f"{name}.downsample.1")
    return relu(out + residual)


def _abn_resnet18_reference(x: torch.Tensor, p: dict):
    """ABN's ImageNet ResNet-18 forward, transcribed from its published description.

    Names are the authors' (``att_layer4``, ``bn_att``, ``att_conv``, ``bn_att2``,
    ``att_conv2``, ``att_conv3``, ``bn_att3``). Returns the attention-branch
    logits, the attention map and the perception branch's pooled features.
    """
    relu = torch.nn.functional.relu
    x = relu(_bn(_conv(x, p, "conv1", 2, 3), p, "bn1"))
    x = torch.nn.functional.max_pool2d(x, 3, 2, 1)
    for layer, stride in (("layer1", 1), ("layer2", 2), ("layer3", 2)):
        x = _abn_basic_block(x, p, f"{layer}.0", stride)
        x = _abn_basic_block(x, p, f"{layer}.1", 1)
    ax = _abn_basic_block(x, p, "att_layer4.0", 1)  # stride 1: stays at 14 x 14
    ax = _bn(_abn_basic_block(ax, p, "att_layer4.1", 1), p, "bn_att")
    ax = relu(_bn(_conv(ax, p, "att_conv"), p, "bn_att2"))
    att = torch.sigmoid(_bn(_conv(ax, p, "att_conv3", 1, 1), p, "bn_att3"))
    ax = torch.nn.functional.avg_pool2d(_conv(ax, p, "att_conv2"), 14).flatten(1)
    rx = x * att
    rx = rx + x
    rx = _abn_basic_block(rx, p, "layer4.0", 2)
    rx = _abn_basic_block(rx, p, "layer4.1", 1)
    return ax, att, torch.nn.functional.avg_pool2d(rx, 7).flatten(1)


_OUR_TO_ABN = [  # prefix of our context stream -> ABN's name
    ("context_backbone.stem.", ""),
    ("context_backbone.last_stage.", ""),
    ("context_attention.attention_block.layer4.", "att_layer4."),
    ("context_attention.norm.", "bn_att."),
    ("context_attention.class_conv.", "att_conv."),
    ("context_attention.class_norm.", "bn_att2."),
    ("context_attention.logit_conv.", "att_conv2."),
    ("context_attention.map_conv.", "att_conv3."),
    ("context_attention.map_norm.", "bn_att3."),
]


@pytest.mark.slow
def test_context_stream_equals_published_abn_resnet18() -> None:
    # The paper preset's context stream (ResNet-18 + GSAM) against ABN's own
    # ResNet forward, weights copied over by name, in float64.
    torch.manual_seed(0)
    model = create_model("dagnet_r50_r18_gsam", use_lsam=False).double().eval()
    for module in model.modules():  # non-trivial BatchNorm statistics everywhere
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    abn = {}
    for key, value in model.state_dict().items():
        for ours, theirs in _OUR_TO_ABN:
            if key.startswith(ours):
                abn[theirs + key[len(ours):]] = value
    assert "att_layer4.0.downsample.0.weight" in abn  # the 256 -> 512 projection shortcut
    assert abn["att_layer4.0.conv1.weight"].shape == (512, 256, 3, 3)
    context = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    aux, att, pooled = _abn_resnet18_reference(context, abn)
    with torch.no_grad():
        g = model.context_backbone.stem(context)
        features, attention_map, aux_logits = model.context_attention(g)
        ours = model.context_backbone.last_stage(features).mean(dim=(2, 3))
    assert attention_map.shape == (2, 1, 14, 14)
    torch.testing.assert_close(attention_map, att, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(aux_logits, aux, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, pooled, rtol=1e-10, atol=1e-10)


def test_paper_preset_attention_block_is_a_stride_one_layer4_with_abn_init() -> None:
    model = create_model("dagnet_r50_r18")
    assert model.config.gsam_block == "abn"
    block = model.context_attention.attention_block
    first = block.layer4[0]
    assert first.conv1.stride == (1, 1) and first.downsample[0].stride == (1, 1)
    assert model.context_backbone.last_stage.layer4[0].conv1.stride == (2, 2)  # untouched
    assert model.context_attention.block_channels == 512
    assert model.context_attention.class_conv.in_channels == 512
    # ABN's initialisation: BatchNorm 1 / 0 (timm's own init zeroes each block's
    # last BN weight), convolutions Kaiming-normal with fan-out.
    bns = [m for m in model.context_attention.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    conv = first.conv2.weight
    expected_std = (2.0 / (conv.shape[0] * 3 * 3)) ** 0.5
    assert conv.std().item() == pytest.approx(expected_std, rel=0.02)
    with torch.no_grad():
        out = model.eval()(*images(1, 224))
    assert out.attention_map.shape == (1, 1, 14, 14)


def test_light_block_and_copied_init_are_options() -> None:
    light = tiny(gsam_block="light")
    assert isinstance(light.context_attention.attention_block, ResidualConvBlock)
    copied = tiny(gsam_block_init="copy")
    block = copied.context_attention.attention_block
    stage = copied.context_backbone.last_stage
    for (name, a), (_, b) in zip(block.state_dict().items(), stage.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="gsam_block"):
        tiny(gsam_block="full")


def test_checkpoint_without_gsam_block_loads_as_the_light_block(tmp_path: Path) -> None:
    # Written by a pre-release build, before ABN's block: its config has no gsam_block field.
    old = tiny(gsam_block="light").eval()
    old.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    del meta["config"]["gsam_block"], meta["config"]["gsam_block_init"]
    del meta["model_args"]  # those files had no timm fields
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = DAGNet.from_pretrained(tmp_path).eval()
    assert loaded.config.gsam_block == "light"
    body, context = images()
    torch.testing.assert_close(loaded(body, context).logits, old(body, context).logits)


# ------------------------------------------------------------ pretrained weights offline
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # refused at once
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_offline_pretrained_fails_in_seconds_and_names_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        build_dagnet("resnet18", "resnet18", pretrained=True)
    assert time.perf_counter() - start < 15  # timm alone retries the Hub for ~50 s
    message = str(info.value)
    assert "\n" not in message
    for hint in ("body_backbone='resnet18'", "127.0.0.1", "--body-weights",
                 "pretrained_cfg_overlay=dict(file=FILE)", "--no-pretrained"):
        assert hint in message
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsUnavailableError, match="HF_HUB_OFFLINE is set"):
        SplitBackbone("resnet18", pretrained=True)


def test_pretrained_check_accepts_cached_and_local_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _offline(monkeypatch, tmp_path)
    # Hugging Face's cache layout for timm/resnet18.a1_in1k.
    repo = tmp_path / "hf" / "models--timm--resnet18.a1_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(b"")
    assert check_pretrained_weights("resnet18").startswith("cache ")
    weights = tmp_path / "r50.safetensors"
    save_file({}, str(weights))
    overlay = dict(pretrained_cfg_overlay=dict(file=str(weights)))
    assert check_pretrained_weights("resnet50", **overlay) == f"file {weights}"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_pretrained_weights("resnet50", pretrained_cfg_overlay=dict(file="/no/such.pth"))


# --------------------------------------------------------- timm backbones, odd shapes
@pytest.mark.parametrize("body", ["mobilenetv3_small_050", "mobilenetv4_conv_small",
                                  "ghostnet_100", "efficientvit_b0"])
def test_body_backbones_whose_head_widens_after_pooling(body: str) -> None:
    # Their pooled output is head_hidden_size wide, not num_features.
    model = tiny(body, "test_resnet", ablation="bam").eval()
    with torch.no_grad():
        out = model(*images(2, 64))
    assert out.logits.shape == (2, 26)
    assert model.feature_dims[0] == timm.create_model(body, num_classes=0).head_hidden_size


def test_nhwc_context_backbone_is_seen_as_nchw() -> None:
    # Swin's feature maps are NHWC; the attention branch and the pooling need NCHW.
    with pytest.warns(UserWarning, match="light block is used instead"):
        model = tiny("test_resnet", "swin_tiny_patch4_window7_224", ablation="gsam").eval()
    assert model.context_backbone.split == "penultimate"
    with torch.no_grad():
        out = model(*images(1, 224))
    assert out.attention_map.shape == (1, 1, 14, 14) and out.logits.shape == (1, 26)


def test_local_dir_backbone_names_go_to_timm(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(
        {"architecture": "test_resnet", "num_classes": 10, "pretrained_cfg": {}}))
    name = f"local-dir:{tmp_path}"
    model = tiny(name, name).eval()
    with torch.no_grad():
        assert model(*images()).logits.shape == (2, 26)


def test_from_pretrained_is_ready_to_predict(tmp_path: Path) -> None:
    tiny().save_pretrained(tmp_path)
    loaded = DAGNet.from_pretrained(tmp_path)
    assert not loaded.training
    with torch.no_grad():  # batch 1 works at once: BatchNorm1d uses its running statistics
        assert loaded(*images(1)).logits.shape == (1, 26)


def test_no_weight_decay_names_the_learned_adjacency() -> None:
    from timm.optim import create_optimizer_v2

    model = tiny()
    assert model.no_weight_decay() == {"local_graph.adjacency"}
    assert tiny(ablation="bam_gsam").no_weight_decay() == set()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0
               for p in g["params"]}
    assert id(model.local_graph.adjacency) not in decayed


def test_configs_written_with_the_old_extra_field_still_load(tmp_path: Path) -> None:
    tiny().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert "extra" not in meta["config"]  # no longer written
    meta["config"]["extra"] = {}  # as pre-release builds wrote it
    del meta["model_args"]  # ... without timm's fields
    (tmp_path / "config.json").write_text(json.dumps(meta))
    assert isinstance(DAGNet.from_pretrained(tmp_path), DAGNet)


# ------------------------------------------------------------ initialisation paired by part
def _context_values(model):
    return [p.detach().clone() for p in model.context_backbone.parameters()]


def test_switching_a_module_leaves_every_other_part_initialised_as_it_was() -> None:
    """Each part draws from its own stream: under one seed, every preset's body backbone,
    context backbone, attention branch, patch encoder, graph, classifier are the same
    tensors whatever else is switched on (the fusion layer only where its width agrees)."""
    from dagnet_layers import ABLATIONS, build_dagnet

    def build(preset):
        torch.manual_seed(3)
        return build_dagnet("test_resnet", "test_resnet", ablation=preset, bam_hidden=4,
                            patch_channels=(8, 8), patch_pool=2, gcn_hidden=(32, 16),
                            fusion_hidden=32)  # fmt: skip

    models = {p: build(p) for p in ABLATIONS}
    full = models["full"]
    for preset, m in models.items():
        assert m.init_seed == full.init_seed, preset
        pairs = {"body_backbone": m.body_backbone, "body_attention": m.body_attention,
                 "context_attention": m.context_attention, "patch_encoder": m.patch_encoder,
                 "local_graph": m.local_graph if m.config.lsam_gcn else None,
                 "classifier": m.classifier}  # fmt: skip
        for name, part in pairs.items():
            if part is None:
                continue
            mine, theirs = part.state_dict(), getattr(full, name).state_dict()
            assert mine.keys() == theirs.keys(), (preset, name)
            for key in mine:
                assert torch.equal(mine[key], theirs[key]), (preset, name, key)
        if m.context_backbone is not None:  # the split differs with GSAM: same tensors in order
            for a, b in zip(_context_values(m), _context_values(full), strict=True):
                assert torch.equal(a, b), preset
        if m.num_features == full.num_features:
            assert torch.equal(m.fusion[0].weight, full.fusion[0].weight), preset
    # the streams are the model's own: another seed, other weights
    torch.manual_seed(4)
    other = build_dagnet("test_resnet", "test_resnet", bam_hidden=4, patch_channels=(8, 8),
                         patch_pool=2, gcn_hidden=(32, 16), fusion_hidden=32)  # fmt: skip
    assert not torch.equal(other.classifier.weight, full.classifier.weight)


def test_building_a_model_draws_once_from_the_global_generator() -> None:
    """The caller's random stream moves by one draw, whatever the model's size."""
    from dagnet_layers import build_dagnet

    torch.manual_seed(0)
    build_dagnet("test_resnet", "test_resnet", ablation="full")
    after_full = torch.rand(1)
    torch.manual_seed(0)
    build_dagnet("test_resnet", "test_resnet", ablation="body_only")
    after_small = torch.rand(1)
    torch.manual_seed(0)
    torch.randint(0, 2**62, ())
    assert torch.equal(after_full, after_small) and torch.equal(after_full, torch.rand(1))


# ------------------------------------------------------------- the options beyond the paper
_SMALL = dict(bam_hidden=4, patch_channels=(8, 8), patch_pool=2, gcn_hidden=(32, 32, 16),
              fusion_hidden=32)


@pytest.mark.parametrize(("options", "check"), [
    (dict(bam_target="confidnet"), "body_logits"),
    (dict(gsam_aux=False), "no_aux"),
    (dict(gsam_map="softmax"), "softmax"),
    (dict(lsam_graph="residual_gcn"), "residual"),
    (dict(lsam_graph="attention"), "attention"),
    (dict(gcn_learn_adjacency=False), "fixed"),
])
def test_options_beyond_the_paper_build_run_and_reload(options, check, tmp_path) -> None:
    from dagnet_layers import build_dagnet
    from dagnet_layers.layers import PatchSelfAttention, ResidualPatchGCN
    from dagnet_layers.models import DAGNet

    model = build_dagnet("test_resnet", "test_resnet", **_SMALL, **options)
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64))
    assert out.logits.shape == (2, 26)
    if check == "body_logits":
        assert out.body_logits.shape == (2, 26) and out.body_weights.shape == (2,)
        model.reset_classifier(7)
        assert model.body_head.out_features == 7
    else:
        assert out.body_logits is None
    if check == "no_aux":
        assert out.aux_logits is None and out.attention_map is not None
    if check == "softmax":
        assert torch.allclose(out.attention_map.sum(dim=(1, 2, 3)), torch.ones(2))
    if check == "residual":
        assert isinstance(model.local_graph, ResidualPatchGCN) and out.adjacency.shape == (16, 16)
        assert "local_graph.positions.row" in model.no_weight_decay()
    if check == "attention":
        assert isinstance(model.local_graph, PatchSelfAttention) and out.adjacency is None
        assert model.no_weight_decay() == {"local_graph.relative_bias"}
    if check == "fixed":
        assert "local_graph.adjacency" in dict(model.named_buffers())
        assert model.no_weight_decay() == set()
    model.eval().save_pretrained(tmp_path / "m")
    again = DAGNet.from_pretrained(tmp_path / "m")
    assert again.config == model.config
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(again.forward_logits(x, x), model.forward_logits(x, x))


def test_options_beyond_the_paper_refuse_what_they_cannot_do() -> None:
    from dagnet_layers.errors import ConfigError
    from dagnet_layers.models import DAGNetConfig

    with pytest.raises(ConfigError, match=r"bam_target=.confidnet.\) needs use_bam=True"):
        DAGNetConfig(use_bam=False, bam_target="confidnet")
    with pytest.raises(ConfigError, match=r"lsam_graph=.attention.\) needs lsam_gcn=True"):
        DAGNetConfig(lsam_gcn=False, lsam_graph="attention")
    with pytest.raises(ConfigError, match="gsam_map"):
        DAGNetConfig(gsam_map="tanh")
    with pytest.raises(ConfigError, match="gsam_aux"):
        DAGNetConfig(gsam_aux="no")


def test_create_model_names_the_options_beyond_the_paper() -> None:
    from dagnet_layers import create_model
    from dagnet_layers.layers import PatchSelfAttention

    model = create_model("test_dagnet", lsam_graph="attention", bam_target="confidnet",
                         gsam_map="softmax", gsam_aux=False)  # fmt: skip
    assert isinstance(model.local_graph, PatchSelfAttention) and model.body_head is not None
    assert model.context_attention.map_activation == "softmax"
    assert model.context_attention.logit_conv is None
