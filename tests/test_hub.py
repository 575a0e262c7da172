"""timm's registry contract and the Hugging Face Hub, offline.

The Hub round trip goes through the real ``huggingface_hub`` code path
(``snapshot_download`` with ``HF_HUB_OFFLINE=1``) on a cache laid out as
huggingface_hub lays it out: ``models--org--name/refs/main`` naming a commit and
``snapshots/<commit>/`` holding the files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dagnet_layers import DAGNet, build_dagnet, create_model, list_models, register_model
from dagnet_layers.errors import CorruptFileError, MissingFileError
from dagnet_layers.models import registry

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny(**kwargs) -> DAGNet:
    torch.manual_seed(0)
    return build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                        patch_channels=(4, 4), fusion_hidden=8, **kwargs)  # fmt: skip


@pytest.fixture()
def clean_registry():
    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)


# ------------------------------------------------------------------ registry
def test_register_model_as_a_decorator(clean_registry) -> None:
    @register_model
    def hub_test_variant(pretrained: bool = False, **kwargs):
        assert pretrained is False
        return tiny(**kwargs)

    assert hub_test_variant.__name__ == "hub_test_variant"  # returned unchanged
    assert list_models("hub_test_*") == ["hub_test_variant"]
    assert list_models() == sorted(list_models())  # still sortable: keys are names
    model = create_model("hub_test_variant", num_classes=5)
    assert model.num_classes == 5

    @register_model(pretrained_cfg={"file": "/nowhere"})
    def hub_test_with_checkpoint(pretrained: bool = False, **kwargs):
        return tiny(**kwargs)

    assert list_models("hub_test_*", pretrained=True) == ["hub_test_with_checkpoint"]
    with pytest.raises(ValueError, match="already registered"):
        register_model("hub_test_variant")


def test_list_models_filters_like_timm() -> None:
    assert list_models(["dagnet_r18*", "two_stream*"]) == ["dagnet_r18_r18", "two_stream_r18_r18"]
    everything = list_models()
    assert list_models(exclude_filters="test_*") == [n for n in everything
                                                     if not n.startswith("test_")]  # fmt: skip
    assert list_models(pretrained=True) == []  # no trained checkpoint is registered here


def test_create_model_checkpoint_path_loads_dagnet_weights(tmp_path: Path,
                                                           clean_registry) -> None:  # fmt: skip
    trained = tiny()
    with torch.no_grad():
        trained.classifier.bias.add_(1.0)
    trained.save_pretrained(tmp_path / "ckpt")
    register_model("hub_test_tiny", body_backbone="test_resnet", context_backbone="test_resnet",
                   partition=2, gcn_hidden=(8,), patch_channels=(4, 4), fusion_hidden=8)
    body, context = _inputs()
    want = trained.eval().forward_logits(body, context)
    for source in (tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors"):
        model = create_model("hub_test_tiny", checkpoint_path=source)
        assert not model.training
        assert torch.equal(model.forward_logits(body, context), want)
    with pytest.raises(CorruptFileError, match="does not match its config"):
        create_model("hub_test_tiny", checkpoint_path=tmp_path / "ckpt", partition=4)
    # a registered checkpoint is what pretrained=True loads, with an overlay for a local copy
    register_model("hub_test_tiny_trained", pretrained_cfg={"hf_hub_id": "someone/unreachable"},
                   **registry.model_config("hub_test_tiny"))
    model = create_model("hub_test_tiny_trained", pretrained=True,
                         pretrained_cfg_overlay={"file": str(tmp_path / "ckpt")})  # fmt: skip
    assert torch.equal(model.forward_logits(body, context), want)


def test_unknown_names_and_options_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'dagnet_r50_r81'.*did you mean"):
        create_model("dagnet_r50_r81")
    with pytest.raises(TypeError, match="takes only"):
        create_model("local-dir:/tmp/x", num_classes=3)


def test_local_dir_names(tmp_path: Path) -> None:
    tiny().save_pretrained(tmp_path / "m")
    model = create_model(f"local-dir:{tmp_path / 'm'}")
    assert isinstance(model, DAGNet) and not model.training


# ------------------------------------------------------------------ Hub
def _hub_cache(tmp_path: Path, model: DAGNet) -> Path:
    cache = tmp_path / "hub"
    repo = cache / "models--someone--dagnet-tiny"
    model.save_pretrained(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.mark.slow
def test_hub_round_trip_offline(tmp_path: Path) -> None:
    model = tiny().eval()
    cache = _hub_cache(tmp_path, model)
    body, context = _inputs()
    torch.save((body, context, model.forward_logits(body, context)), tmp_path / "want.pt")
    code = textwrap.dedent(f"""
        import torch
        from dagnet_layers import DAGNet, create_model
        from dagnet_layers.errors import MissingFileError
        body, context, want = torch.load({str(tmp_path / "want.pt")!r})
        for m in (DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir={str(cache)!r}),
                  create_model("hf-hub:someone/dagnet-tiny", cache_dir={str(cache)!r}),
                  DAGNet.from_pretrained("hf-hub:someone/dagnet-tiny@{COMMIT}",
                                         cache_dir={str(cache)!r})):
            assert not m.training
            # equal up to summation order (this process may use other thread counts)
            torch.testing.assert_close(m.forward_logits(body, context), want,
                                       rtol=1e-5, atol=1e-6)
        try:
            DAGNet.from_pretrained("someone/not-cached", cache_dir={str(cache)!r})
        except MissingFileError as err:
            assert "hf-hub:someone/not-cached" in str(err) and "Hub" in str(err), err
        else:
            raise AssertionError("an uncached repository loaded offline")
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def test_push_to_hub_uploads_what_from_pretrained_reads(tmp_path: Path, monkeypatch) -> None:
    """No network: HfApi's two calls are replaced by ones that record what they get."""
    import huggingface_hub

    calls: dict = {}

    class RecordingApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, **kwargs):
            calls["create"] = (repo_id, kwargs)

        def upload_folder(self, *, repo_id, folder_path, **kwargs):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            Path(tmp_path / "uploaded").mkdir()
            for p in Path(folder_path).iterdir():
                (tmp_path / "uploaded" / p.name).write_bytes(p.read_bytes())
            return "https://huggingface.co/someone/dagnet-tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    model = tiny().eval()
    (tmp_path / "inference.json").write_text('{"image_size": 32}')
    url = model.push_to_hub("someone/dagnet-tiny", token="t",
                            extra_files={"inference.json": tmp_path / "inference.json"})
    assert url.endswith("/commit/abc")
    assert calls["create"][0] == "someone/dagnet-tiny" and calls["create"][1]["exist_ok"]
    assert calls["files"] == ["config.json", "inference.json", "model.safetensors"]
    loaded = DAGNet.from_pretrained(tmp_path / "uploaded")
    body, context = _inputs()
    assert torch.equal(loaded.forward_logits(body, context), model.forward_logits(body, context))


def test_a_missing_local_folder_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"config\.json"):
        DAGNet.from_pretrained(tmp_path / "no" / "such" / "folder")
