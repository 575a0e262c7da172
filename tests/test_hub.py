"""Our registry, saved models, and the Hugging Face Hub with no network.

The Hub round trip runs huggingface_hub's own client against a Hub served on
127.0.0.1 (tests/_local_hub.py), then its own cache with ``HF_HUB_OFFLINE=1``:
no function of huggingface_hub is replaced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dagnet_layers import DAGNet, build_dagnet, create_model, list_models, register_model
from dagnet_layers.errors import CorruptFileError, MissingFileError
from dagnet_layers.models import registry

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kwargs) -> DAGNet:
    torch.manual_seed(0)
    return build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                        patch_channels=(4, 4), fusion_hidden=8, **kwargs)  # fmt: skip


@pytest.fixture()
def clean_registry():
    saved = set(registry._REGISTRY)
    yield
    for name in set(registry._REGISTRY) - saved:  # here and in timm's registry
        registry._unregister(name)


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
    with pytest.raises(TypeError, match="options of hf-hub: names"):
        create_model("local-dir:/tmp/x", revision="main")
    with pytest.raises(ValueError, match="no pretrained tags"):
        create_model("test_dagnet.in1k")


def test_local_dir_names_follow_timm(tmp_path: Path) -> None:
    """As in timm: the saved config always, the weights only with pretrained=True."""
    saved = tiny(num_classes=5).eval()
    saved.save_pretrained(tmp_path / "m")
    body, context = _inputs()
    loaded = create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    assert isinstance(loaded, DAGNet) and not loaded.training
    assert torch.equal(loaded.forward_logits(body, context), saved.forward_logits(body, context))
    fresh = create_model(f"local-dir:{tmp_path / 'm'}")
    assert fresh.training and fresh.config == saved.config
    assert not torch.equal(fresh.classifier.weight, saved.classifier.weight)


# ------------------------------------------------------------------ Hub
# huggingface_hub reads HF_ENDPOINT and HF_HUB_OFFLINE when it is imported, so each
# phase runs in a fresh interpreter; tests/_local_hub.py serves the repositories.
_PUSH_AND_FETCH = """
import os, sys
sys.path.insert(0, {tests!r})
from _local_hub import LocalHub
hub = LocalHub().__enter__()
os.environ["HF_ENDPOINT"] = hub.url
import timm, torch
from huggingface_hub import ModelCard
from dagnet_layers import DAGNet, build_dagnet, create_model
from dagnet_layers.errors import MissingFileError

torch.manual_seed(0)
model = build_dagnet("test_resnet", "test_resnet", partition=2, gcn_hidden=(8,),
                     patch_channels=(4, 4), fusion_hidden=8).eval()
card = {{"dataset": "demo", "synthetic": True, "metrics": {{"val mAP": 0.25}}, "epoch": 2}}
model.save_pretrained({tmp!r} + "/saved", card=card, push_to_hub=True,
                      repo_id="someone/dagnet-tiny", token="t")
open({tmp!r} + "/inference.json", "w").write('{{"image_size": 32}}')
assert set(hub.tokens) == {{"t"}}, hub.tokens  # every request carried the token given
url = model.push_to_hub("someone/dagnet-extra", token="t2",
                        extra_files={{"inference.json": {tmp!r} + "/inference.json"}})
assert "/someone/dagnet-extra/commit/" in url, url
assert sorted(hub.head("someone/dagnet-extra")) == [
    "README.md", "config.json", "inference.json", "model.safetensors"]
assert b"hf-hub:someone/dagnet-extra" in hub.head("someone/dagnet-extra")["README.md"]
main_before = hub.heads["someone/dagnet-extra", "main"]
model.push_to_hub("someone/dagnet-extra", token="t2", revision="dev")  # a new branch
assert hub.heads["someone/dagnet-extra", "main"] == main_before
assert sorted(hub.head("someone/dagnet-extra", "dev")) == [
    "README.md", "config.json", "inference.json", "model.safetensors"]
assert any("SYNTHETIC" in text for text in hub.cards)  # the card the client validated
head = hub.heads["someone/dagnet-tiny", "main"]
body, context = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
want = model.forward_logits(body, context)
torch.save((body, context, want), {tmp!r} + "/want.pt")
cache = {tmp!r} + "/cache"
n = len(hub.tokens)
DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir={tmp!r} + "/c2", token="dl")
assert set(hub.tokens[n:]) == {{"dl"}}, hub.tokens[n:]  # the token reaches the Hub
loaded = [DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir=cache, token=False),
          DAGNet.from_pretrained("hf-hub:someone/dagnet-tiny@" + head, cache_dir=cache),
          create_model("hf-hub:someone/dagnet-tiny", pretrained=True, cache_dir=cache),
          timm.create_model("hf-hub:someone/dagnet-tiny", pretrained=True, cache_dir=cache)]
for m in loaded:
    assert torch.equal(m.forward_logits(body, context), want)
gets = sum(r.startswith("GET /someone/dagnet-tiny/resolve/") for r in hub.requests)
DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir=cache)  # cached: no download
again = sum(r.startswith("GET /someone/dagnet-tiny/resolve/") for r in hub.requests)
DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir=cache, force_download=True)
forced = sum(r.startswith("GET /someone/dagnet-tiny/resolve/") for r in hub.requests)
assert gets == again < forced, (gets, again, forced)
hub.__exit__()  # the Hub is gone: the cache alone
m = DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir=cache, local_files_only=True)
assert torch.equal(m.forward_logits(body, context), want)
try:
    DAGNet.from_pretrained("someone/not-cached", cache_dir=cache, local_files_only=True)
except MissingFileError as err:
    assert "hf-hub:someone/not-cached" in str(err), err
else:
    raise AssertionError("an uncached repository loaded without the network")
card = ModelCard.load(cache + "/models--someone--dagnet-tiny/snapshots/" + head + "/README.md")
assert card.data.library_name == "dagnet-layers" and "SYNTHETIC" in card.text
assert card.data.eval_results[0].metric_value == 0.25
assert not hub.unknown, hub.unknown
print("ok")
"""

_OFFLINE = """
import torch, timm
from dagnet_layers import DAGNet, create_model
body, context, want = torch.load({tmp!r} + "/want.pt")
cache = {tmp!r} + "/cache"
for m in (DAGNet.from_pretrained("someone/dagnet-tiny", cache_dir=cache),
          create_model("hf-hub:someone/dagnet-tiny", pretrained=True, cache_dir=cache),
          timm.create_model("hf-hub:someone/dagnet-tiny", pretrained=True, cache_dir=cache)):
    assert not m.training
    torch.testing.assert_close(m.forward_logits(body, context), want, rtol=1e-5, atol=1e-6)
print("ok")
"""


@pytest.mark.slow
def test_hub_round_trip_through_a_local_hub_then_offline(tmp_path: Path) -> None:
    """save_pretrained(push_to_hub=True) and push_to_hub, then every loader, through
    huggingface_hub's own client and cache; then the cache alone with HF_HUB_OFFLINE=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["HF_HOME"] = str(tmp_path / "hf_home")  # no token or cache of the user's
    for code, extra in ((_PUSH_AND_FETCH, {}), (_OFFLINE, {"HF_HUB_OFFLINE": "1"})):
        result = subprocess.run(
            [sys.executable, "-c", code.format(tests=str(ROOT / "tests"), tmp=str(tmp_path))],
            capture_output=True, text=True, env={**env, **extra}, cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
            result.stdout[-2000:] + result.stderr[-4000:])


def test_config_and_model_args_must_agree(tmp_path: Path) -> None:
    import json

    tiny().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["model_args"] == meta["config"] and meta["architecture"] == "dagnet"
    meta["config"]["partition"] = 3  # edited in one place only
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="model_args"):
        DAGNet.from_pretrained(tmp_path)


def test_save_pretrained_writes_a_card_and_checks_its_arguments(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    model = tiny()
    model.save_pretrained(tmp_path / "real", card={"dataset": "EMOTIC", "metrics": {"mAP": 0.3}},
                          label_names=[f"c{i}" for i in range(26)])  # fmt: skip
    card = ModelCard.load(tmp_path / "real" / "README.md")
    assert card.data.library_name == "dagnet-layers" and "SYNTHETIC" not in card.content
    model.save_pretrained(tmp_path / "demo", card={"dataset": "demo", "synthetic": True})
    assert "SYNTHETIC" in ModelCard.load(tmp_path / "demo" / "README.md").data.model_name
    with pytest.raises(ValueError, match="26 names"):
        model.save_pretrained(tmp_path / "x", label_names=["a"])
    with pytest.raises(ValueError, match="repo_id"):
        model.save_pretrained(tmp_path / "x", push_to_hub=True)
    with pytest.raises(TypeError, match="push_to_hub options"):
        model.save_pretrained(tmp_path / "x", token="t")


def test_a_missing_local_folder_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"config\.json"):
        DAGNet.from_pretrained(tmp_path / "no" / "such" / "folder")
