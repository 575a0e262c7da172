"""Evaluation: scores in dataset order, EMOTIC's official AP, thresholds, gathered across ranks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.emotic.engine.runtime import (
    BatchTransform,
    _amp_dtype,
    _forward,
    _is_main_process,
    move_batch,
)
from dagnet_layers.emotic.losses import (
    SCORE_KINDS,
    loss_score,
    scores_from_logits,
)
from dagnet_layers.emotic.metrics import EmoticEvaluator, EmoticReport

__all__ = ["EvalResult", "evaluate"]

@dataclass
class EvalResult:
    """What :func:`evaluate` returns.

    Attributes:
        report: The :class:`~dagnet_layers.emotic.metrics.EmoticReport` (per-category AP,
            mAP, VAD MAE).
        scores: float64 scores (N, K) in dataset order, made from the logits by ``score``.
        labels: Multi-hot labels (N, K).
        indices: Dataset indices (N,).
        loss: Mean loss when a criterion was given, else NaN.
        thresholds: Per-category thresholds where precision equals recall, on ``scores``.
        score: How the logits became scores (``"softmax"``, ``"sigmoid"``, ``"identity"``).
    """

    report: EmoticReport
    scores: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    loss: float
    thresholds: np.ndarray
    score: str = "softmax"


def _gather(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate per-rank arrays on every rank and drop the DistributedSampler's repeats."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return arrays
    parts: list[dict[str, np.ndarray]] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(parts, arrays)
    merged = {k: np.concatenate([p[k] for p in parts]) for k in arrays}
    _, first = np.unique(merged["indices"], return_index=True)
    return {k: v[first] for k, v in merged.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    *,
    device: torch.device | str = "cpu",
    batch_transform: BatchTransform | None = None,
    criterion: nn.Module | None = None,
    amp: str | torch.dtype | None = None,
    channels_last: bool = False,
    protocol: str = "emotic",
    ties: str = "octave",
    score: str | None = None,
    category_names: tuple[str, ...] = EMOTIC_CATEGORIES,
    progress: bool = True,
    desc: str = "eval",
) -> EvalResult:
    """Score every sample of ``loader`` and compute EMOTIC metrics.

    Scores follow the loss the model was trained with: ``softmax(logits)`` for
    the KL divergence (whose logits are defined only up to a per-sample
    constant), ``sigmoid`` for BCE and focal, the raw output for weighted L2
    (:func:`~dagnet_layers.emotic.losses.loss_score`). They are computed from the
    logits in float64, so that no cast creates ties. Under
    DistributedDataParallel every rank evaluates its shard and the results are
    gathered (repeats the sampler added for even shards are dropped by dataset
    index).

    Args:
        model: The model.
        loader: Yields sample dicts with ``index``.
        device: Where to run.
        batch_transform: Applied on the device (the eval transform for uint8 batches).
        criterion: Also report the mean loss; its score function is the default ``score``.
        amp: Autocast dtype (see :func:`train_one_epoch`).
        channels_last: Channels-last images.
        protocol: AP protocol, ``"emotic"`` (official ``eval.m``) or ``"sklearn"``.
        ties: Order of tied scores under ``"emotic"``: ``"octave"`` (``eval.m``'s
            seeded random order) or ``"stable"`` (see
            :func:`~dagnet_layers.emotic.metrics.average_precision`).
        score: ``"softmax"``, ``"sigmoid"`` or ``"identity"``; default: the
            criterion's. Required when no criterion is given.
        category_names: Names of the K outputs.
        progress: Show a progress bar.
        desc: Progress-bar label.

    Returns:
        :class:`EvalResult` with the report, scores, labels, indices, loss and
        precision = recall thresholds.

    Raises:
        ValueError: neither ``score`` nor a ``criterion`` that names one was given.
    """
    if score is None:
        if criterion is None:
            raise ValueError(
                "evaluate needs score=... ('softmax' for a model trained with the KL loss, "
                "'sigmoid' for BCE/focal, 'identity' for weighted L2) or the training criterion"
            )
        score = loss_score(criterion)
    elif score not in SCORE_KINDS:
        raise ValueError(f"evaluate: score must be one of {SCORE_KINDS}, got {score!r}")
    device = torch.device(device)
    dtype = _amp_dtype(amp)
    model.eval()
    scores, labels, indices, vad_pred, vad_true = [], [], [], [], []
    loss_sum: Tensor | float = 0.0
    batches = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not (progress and _is_main_process()),
               dynamic_ncols=True)
    for batch in bar:
        batch = move_batch(batch, device, channels_last)
        if batch_transform is not None:
            batch = batch_transform(batch)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = _forward(model, batch)
            if criterion is not None:
                loss_sum = loss_sum + criterion(output, batch)[0].detach().float()
                batches += 1
        # Kept on the device and moved once at the end: no host sync per batch.
        scores.append(scores_from_logits(output.logits, score))
        labels.append(batch["categories"].float())
        indices.append(batch["index"].reshape(-1))
        if getattr(output, "vad", None) is not None:
            vad_pred.append(output.vad.detach().float())
            vad_true.append(batch["vad"].float())

    def to_numpy(parts: list[Tensor]) -> np.ndarray:
        return torch.cat(parts).cpu().numpy()

    if not scores:
        raise ValueError("evaluate(): the loader gave no batch (an empty split, or a "
                         "DataLoader with drop_last=True and fewer samples than one batch)")

    arrays = {"scores": to_numpy(scores), "labels": to_numpy(labels),
              "indices": to_numpy(indices)}
    if vad_pred:
        arrays["vad_pred"], arrays["vad_true"] = to_numpy(vad_pred), to_numpy(vad_true)
    arrays = _gather(arrays)
    order = np.argsort(arrays["indices"], kind="stable")
    arrays = {k: v[order] for k, v in arrays.items()}
    evaluator = EmoticEvaluator(category_names=category_names, protocol=protocol, ties=ties,
                                score=score)
    evaluator.update(arrays["scores"], arrays["labels"],
                     arrays.get("vad_pred"), arrays.get("vad_true"))
    return EvalResult(
        report=evaluator.compute(),
        scores=arrays["scores"],
        labels=arrays["labels"],
        indices=arrays["indices"],
        loss=float(loss_sum) / batches if batches else float("nan"),
        thresholds=evaluator.thresholds(),
        score=score,
    )
