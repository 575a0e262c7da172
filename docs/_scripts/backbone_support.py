"""The timm families DAG-Net is checked on, and the support table the docs render.

``FAMILIES`` is the one list: ``tests/test_backbones.py`` builds a DAG-Net with each
model as both the body and the context backbone (``pretrained=False``, a small
input) and runs a training step; this script does the same and writes what it
saw to ``docs/results/backbone_support.json``, which ``gen_pages.py`` renders.
The test compares its observations with that file, so the table cannot rot::

    python docs/_scripts/backbone_support.py      # after changing FAMILIES or the model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "results" / "backbone_support.json"

#: (family, timm model, timm keyword arguments, input side): the smallest model of
#: each family; transformers get ``img_size`` so that they run at a small size.
FAMILIES: list[tuple[str, str, dict[str, Any], int]] = [
    ("ResNet", "resnet18", {}, 64),
    ("ResNet-D", "resnet18d", {}, 64),
    ("ResNeXt", "resnext26ts", {}, 64),
    ("RegNet", "regnetx_002", {}, 64),
    ("EfficientNet", "efficientnet_b0", {}, 64),
    ("EfficientNetV2", "tf_efficientnetv2_b0", {}, 64),
    ("MobileNetV3", "mobilenetv3_small_050", {}, 64),
    ("MobileNetV4", "mobilenetv4_conv_small", {}, 64),
    ("GhostNet", "ghostnet_100", {}, 64),
    ("ConvNeXt", "convnext_atto", {}, 64),
    ("ConvNeXt-V2", "convnextv2_atto", {}, 64),
    ("DenseNet", "densenet121", {}, 64),
    ("DLA", "dla46_c", {}, 64),
    ("RepVGG", "repvgg_a0", {}, 64),
    ("FastViT", "fastvit_t8", {}, 64),
    ("EfficientViT (MIT)", "efficientvit_b0", {}, 64),
    ("Inception", "inception_v3", {}, 96),
    ("Xception", "xception41", {}, 64),
    ("HRNet", "hrnet_w18_small", {}, 64),
    ("Swin", "swin_tiny_patch4_window7_224", {"img_size": 64, "window_size": 2}, 64),
    ("ViT", "vit_tiny_patch16_224", {"img_size": 64}, 64),
    ("DeiT", "deit_tiny_patch16_224", {"img_size": 64}, 64),
    ("LeViT", "levit_128s", {"img_size": 64}, 64),
    ("MaxViT", "maxvit_nano_rw_256", {"img_size": 64}, 64),
    ("CoAtNet", "coatnet_nano_rw_224", {"img_size": 64}, 64),
    ("NF-ResNet", "nf_resnet26", {}, 64),
    ("CSPNet", "cspresnet50", {}, 64),
    ("DPN", "dpn68", {}, 64),
    ("TResNet", "tresnet_m", {}, 64),
    ("ReXNet", "rexnet_100", {}, 64),
    ("MixNet", "mixnet_s", {}, 64),
    ("HGNetV2", "hgnetv2_b0", {}, 64),
    ("EdgeNeXt", "edgenext_xx_small", {}, 64),
    ("ResNeSt", "resnest14d", {}, 64),
    ("Res2Net", "res2net50_14w_8s", {}, 64),
    ("VoVNet", "ese_vovnet19b_dw", {}, 64),
    ("MobileViT", "mobilevit_xxs", {}, 64),
    ("LCNet", "lcnet_050", {}, 64),
]


def check(model_name: str, kwargs: dict[str, Any], size: int) -> dict[str, Any]:
    """Build DAG-Net with ``model_name`` as both backbones, run a training step, describe it."""
    import torch

    from dagnet_layers import build_dagnet
    from dagnet_layers.models import pooled_width

    torch.manual_seed(0)
    model = build_dagnet(model_name, model_name, partition=2, gcn_hidden=(8,),
                         patch_channels=(4, 4), fusion_hidden=8,
                         body_backbone_kwargs=dict(kwargs),
                         context_backbone_kwargs=dict(kwargs))  # fmt: skip
    x = torch.rand(2, 3, size, size)
    out = model(x, x)
    (out.logits.sum() + out.aux_logits.sum()).backward()
    assert all(p.grad is not None for p in model.classifier.parameters())
    return {
        "body_width": int(pooled_width(model.body_backbone)),
        "gsam_stage": model.context_backbone.split,
        "gsam_block": model.config.gsam_block,
        "attention_channels": int(model.context_backbone.attention_channels),
        "logits": list(out.logits.shape),
    }


def main() -> int:
    rows = []
    for family, name, kwargs, size in FAMILIES:
        print(f"{family}: {name}", flush=True)
        rows.append({"family": family, "model": name, "kwargs": kwargs, "size": size,
                     **check(name, kwargs, size)})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
