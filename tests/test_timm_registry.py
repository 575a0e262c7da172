"""Our variants inside timm's registry, driven through timm's own public functions.

Every check calls ``timm.create_model`` / ``timm.list_models`` /
``timm.models.get_pretrained_cfg`` (not our re-statements of them) and compares
what they give with what our API gives.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from dagnet_layers import DAGNet, build_dagnet, create_model, list_models, register_model
from dagnet_layers.errors import UnknownOptionError
from dagnet_layers.models import registry

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(body_backbone="test_resnet", context_backbone="test_resnet", partition=2,
            gcn_hidden=(8,), patch_channels=(4, 4), fusion_hidden=8)  # fmt: skip


@pytest.fixture()
def tiny_variant():
    """A throw-away variant, gone from both registries afterwards."""
    register_model("timm_test_tiny", **TINY)
    yield "timm_test_tiny"
    registry._unregister("timm_test_tiny")
    assert "timm_test_tiny" not in timm.list_models("timm_test_*")


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


def _trained(tmp_path: Path, **kwargs) -> tuple[DAGNet, Path]:
    torch.manual_seed(0)
    model = build_dagnet(**{**TINY, **kwargs}).eval()
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    return model, model.save_pretrained(tmp_path / "saved")


def test_timm_lists_every_variant_as_we_do() -> None:
    ours = list_models()
    assert ours and ours == timm.list_models(module="dagnet")
    assert set(timm.list_models("dagnet*")) == {n for n in ours if n.startswith("dagnet")}
    for kwargs in ({"filter": "*_bam*"}, {"exclude_filters": ["test_*"]},
                   {"pretrained": True}, {"name_matches_cfg": True}, {"include_tags": True}):
        assert list_models(**kwargs) == timm.list_models(module="dagnet", **kwargs), kwargs
    assert list_models("*", "dagnet") == ours  # timm's positional order
    assert list_models(module="resnet") == []  # timm's own families are not ours


@pytest.mark.parametrize("name", list_models())
def test_timm_builds_every_variant_with_its_config(name: str) -> None:
    """On the meta device (no weights allocated): the architecture and the timm config."""
    with torch.device("meta"):
        via_timm = timm.create_model(name, num_classes=7)
        ours = create_model(name, num_classes=7)
    assert isinstance(via_timm, DAGNet) and via_timm.config == ours.config
    assert via_timm.num_classes == 7
    registered = timm.models.get_pretrained_cfg(name).to_dict()
    built = via_timm.pretrained_cfg
    for key in ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std"):
        assert tuple(registered[key]) == tuple(built[key]) if isinstance(built[key], tuple) \
            else registered[key] == built[key], (name, key)


def test_registration_needs_no_import_order() -> None:
    """``import dagnet_layers`` alone imports neither torch nor timm, yet registers."""
    code = textwrap.dedent("""
        import sys
        first = sys.argv[1]
        if first == "dagnet_layers":
            import dagnet_layers
            assert "torch" not in sys.modules and "timm" not in sys.modules
            import timm
        else:
            import timm
            import dagnet_layers
        assert "dagnet_r50_r18" in timm.list_models("dagnet*")
        print(type(timm.create_model("test_dagnet")).__name__)
    """)
    for first in ("dagnet_layers", "timm"):
        out = subprocess.run([sys.executable, "-c", code, first], capture_output=True,
                             text=True, cwd=ROOT, timeout=300)  # fmt: skip
        assert out.returncode == 0 and out.stdout.strip() == "DAGNet", out.stderr[-2000:]


def test_user_variants_join_timms_registry(tiny_variant: str) -> None:
    assert timm.list_models("timm_test_*") == [tiny_variant]
    assert isinstance(timm.create_model(tiny_variant), DAGNet)
    with pytest.raises(ValueError, match="one of timm's own"):
        register_model("resnet18", **TINY)


def test_local_dir_through_timm(tmp_path: Path) -> None:
    saved, folder = _trained(tmp_path, num_classes=5)
    body, context = _inputs()
    want = saved.forward_logits(body, context)
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert isinstance(loaded, DAGNet) and not loaded.training
    assert torch.equal(loaded.forward_logits(body, context), want)
    ours = create_model(f"local-dir:{folder}", pretrained=True)
    assert torch.equal(ours.forward_logits(body, context), want)
    # pretrained=False: timm's meaning, the saved architecture untrained
    fresh = timm.create_model(f"local-dir:{folder}")
    assert fresh.config == saved.config and fresh.training
    assert not torch.equal(fresh.classifier.bias, saved.classifier.bias)
    # a new head (timm's convention): the checkpoint loads, then the classifier is new
    three = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=3)
    assert three.num_classes == 3
    old, new = saved.state_dict(), three.state_dict()
    kept = [k for k in old if old[k].shape == new[k].shape]
    assert len(kept) > 0.9 * len(old)  # only the class layers (head, ABN's class maps) differ
    assert all(torch.equal(old[k], new[k]) for k in kept
               if not k.startswith(("classifier", "context_attention")))  # fmt: skip


def test_checkpoint_path_and_overlay_mean_the_dagnet_checkpoint(
    tmp_path: Path, tiny_variant: str
) -> None:
    saved, folder = _trained(tmp_path)
    body, context = _inputs()
    want = saved.forward_logits(body, context)
    via_timm = timm.create_model(tiny_variant, checkpoint_path=str(folder / "model.safetensors"))
    assert torch.equal(via_timm.eval().forward_logits(body, context), want)
    for create in (timm.create_model, create_model):
        model = create(tiny_variant, pretrained=True, pretrained_cfg_overlay=dict(file=str(folder)))
        assert torch.equal(model.forward_logits(body, context), want), create
    with pytest.raises(UnknownOptionError, match="backbone_weights"):
        build_dagnet(**TINY, pretrained_cfg_overlay=dict(file=str(folder)))


def test_backbone_weights_load_the_backbones_files(tmp_path: Path) -> None:
    torch.manual_seed(3)
    donor = timm.create_model("test_resnet", num_classes=0)
    save_file(donor.state_dict(), str(tmp_path / "body.safetensors"))
    model = build_dagnet(**TINY, backbone_weights={"body": tmp_path / "body.safetensors"})
    for key, value in donor.state_dict().items():
        assert torch.equal(model.body_backbone.state_dict()[key], value), key
    via_timm = timm.create_model("test_dagnet",
                                 backbone_weights={"body": tmp_path / "body.safetensors"})
    for key, value in donor.state_dict().items():
        assert torch.equal(via_timm.body_backbone.state_dict()[key], value), key
    with pytest.raises(UnknownOptionError, match="'body' and 'context'"):
        build_dagnet(**TINY, backbone_weights={"bdy": tmp_path / "body.safetensors"})


def test_features_only_is_refused_with_what_to_use() -> None:
    for create in (timm.create_model, create_model):
        with pytest.raises(UnknownOptionError, match="forward_features"):
            create("test_dagnet", features_only=True)


def test_pretrained_tags_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no pretrained tags"):
        timm.create_model("test_dagnet.in1k")


def test_a_missing_relative_local_dir_is_never_sent_to_the_hub(tmp_path: Path, monkeypatch) -> None:
    """``runs/best`` looks like a Hub id; as ``local-dir:`` it is a folder, as in timm."""
    from dagnet_layers.errors import MissingFileError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingFileError, match=r"runs/best/config\.json") as info:
        create_model("local-dir:runs/best")
    assert "hf-hub" not in str(info.value)


def test_function_variants_register_their_own_preprocessing() -> None:
    @register_model
    def timm_test_small_images(pretrained: bool = False, **kwargs):
        return build_dagnet(**{**TINY, "image_size": 96}, pretrained=pretrained, **kwargs)

    try:
        cfg = timm.models.get_pretrained_cfg("timm_test_small_images")
        with torch.device("meta"):
            model = timm.create_model("timm_test_small_images")
        assert cfg.input_size == model.pretrained_cfg["input_size"] == (3, 96, 96)
        assert cfg.mean == model.pretrained_cfg["mean"]
    finally:
        registry._unregister("timm_test_small_images")


def test_pretrained_cfg_replaces_and_the_overlay_overlays(tmp_path: Path) -> None:
    saved, folder = _trained(tmp_path)
    register_model("timm_test_registered", pretrained_cfg={"hf_hub_id": "someone/unreachable"},
                   **TINY)  # fmt: skip
    try:
        body, context = _inputs()
        want = saved.forward_logits(body, context)
        for create in (timm.create_model, create_model):
            model = create("timm_test_registered", pretrained=True,
                           pretrained_cfg={"file": str(folder)})  # replaces the Hub id
            assert torch.equal(model.forward_logits(body, context), want), create
        # a tag with a pretrained_cfg: the cfg wins, as in timm
        tagged = create_model("timm_test_registered.sometag", pretrained=True,
                              pretrained_cfg={"file": str(folder)})  # fmt: skip
        assert torch.equal(tagged.forward_logits(body, context), want)
    finally:
        registry._unregister("timm_test_registered")


@pytest.mark.parametrize("name", ["my.dotted", "hf-hub:x", "a/b", "has space"])
def test_names_timm_cannot_address_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        register_model(name, **TINY)
    assert name not in registry._REGISTRY


def test_num_classes_zero_says_what_to_use_instead() -> None:
    with pytest.raises(Exception, match=r"forward_features\(\)"):
        create_model("test_dagnet", num_classes=0)
