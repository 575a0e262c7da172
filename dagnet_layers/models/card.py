"""The model card (``README.md``) that :meth:`DAGNet.save_pretrained` writes.

The card is built with huggingface_hub's :class:`~huggingface_hub.ModelCard` and
:class:`~huggingface_hub.ModelCardData`, so the Hub reads its metadata
(``library_name``, tags, the ``model-index`` of results) as it reads any other.
What the weights were trained on and how they scored comes from the caller (the
trainer passes its data record and validation mAP); a model trained on the
synthetic demo data says SYNTHETIC in its title, its dataset name and its text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagnet_layers._version import __version__
from dagnet_layers.models.config import DAGNetConfig

__all__ = ["CARD_NAME", "model_card"]

#: File name of the model card in a saved folder and on the Hub.
CARD_NAME = "README.md"

_PAPER = '"DAG-Net: Dual Attention Graph Network for Emotion Recognition in the Wild"'


def model_card(config: DAGNetConfig, card: Mapping[str, Any] | None = None,
               repo_id: str | None = None) -> str:
    """The text of a model card for a DAG-Net of ``config``.

    Args:
        config: The architecture.
        card: What is known about the weights, all optional: ``dataset`` (name),
            ``synthetic`` (bool: trained on generated data), ``metrics`` (name ->
            value), ``split`` (where the metrics were measured), ``epoch``,
            ``notes`` (free text).
        repo_id: The Hub repository, for the loading example (else ``ORG/NAME``).

    Returns:
        ``README.md`` text: YAML metadata, then a description.

    Example:
        >>> text = model_card(DAGNetConfig(), {"dataset": "demo", "synthetic": True,
        ...                                    "metrics": {"val mAP": 0.31}})
        >>> text.startswith("---") and "SYNTHETIC" in text and "library_name: dagnet-layers" in text
        True
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    info = dict(card or {})
    repo = repo_id or "ORG/NAME"
    synthetic = bool(info.get("synthetic"))
    dataset = str(info.get("dataset") or "not recorded")
    if synthetic and "SYNTHETIC" not in dataset:
        dataset = f"{dataset} (SYNTHETIC)"
    metrics = {str(k): float(v) for k, v in dict(info.get("metrics") or {}).items()}
    split = str(info.get("split") or "validation")
    tags = ["dagnet-layers", "pytorch", "emotion-recognition", "multi-label-classification",
            "EMOTIC-format"]  # fmt: skip
    if synthetic:
        tags.append("synthetic-data")
    name = "DAG-Net" + (" (SYNTHETIC demo data)" if synthetic else "")
    results = [
        EvalResult(task_type="image-classification", task_name="multi-label emotion recognition",
                   dataset_type="synthetic" if synthetic else "emotic", dataset_name=dataset,
                   dataset_split=split, metric_type=key.lower().replace(" ", "_"),
                   metric_name=key, metric_value=value)
        for key, value in metrics.items()
    ]  # fmt: skip
    data = ModelCardData(library_name="dagnet-layers", tags=tags, model_name=name,
                         eval_results=results or None)  # fmt: skip
    lines = [f"# {name}", ""]
    if synthetic:
        lines += ["**SYNTHETIC**: these weights were trained on generated EMOTIC-format demo "
                  "data, not on EMOTIC. Their scores say nothing about emotion recognition "
                  "and are not comparable with any paper's EMOTIC numbers.", ""]
    lines += [
        f"The model of {_PAPER}, saved by dagnet-layers {__version__}.",
        "",
        "```python",
        "import dagnet_layers, timm",
        f'model = timm.create_model("hf-hub:{repo}", pretrained=True)  # or local-dir:FOLDER',
        f'# or: dagnet_layers.DAGNet.from_pretrained("{repo}")',
        "```",
        "",
        "## Training data",
        "",
        f"{dataset}" + (f", {_epochs(int(info['epoch']))}" if info.get("epoch") is not None
                        else ""),
        "",
        "## Results",
        "",
    ]
    if metrics:
        lines += ["| metric | split | value |", "|---|---|---|"]
        lines += [f"| {k} | {split} | {v:.4f} |" for k, v in metrics.items()]
    else:
        lines.append("Not recorded.")
    if info.get("notes"):
        lines += ["", str(info["notes"])]
    lines += ["", "## Architecture", "", "```json",
              json.dumps(config.to_dict(), indent=2), "```", ""]  # fmt: skip
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")
