"""Training and evaluation loops, reproducibility, and safe checkpoints.

The pieces every EMOTIC run needs, shared by ``examples/train_emotic.py`` and
the tests:

- :func:`train_one_epoch` / :func:`evaluate`: AMP (bf16/fp16) and
  ``channels_last`` on CUDA, optional batched augmentation on the device,
  gradient clipping, a stop naming the epoch and step on a non-finite loss,
  tqdm progress bars with loss and samples/s;
- :func:`seed_everything`, :func:`process_seed` and :func:`epoch_generator`:
  ``(seed, epoch, rank)`` decides every random draw of an epoch, so a resumed
  run repeats an uninterrupted one and no two DDP ranks draw the same
  augmentations or dropout masks;
- :func:`save_checkpoint` / :func:`load_checkpoint`: model weights in
  safetensors (via :meth:`~dagnet_layers.models.DAGNet.save_pretrained`),
  optimiser, scheduler, epoch and RNG state in a tensors-only file read with
  ``torch.load(weights_only=True)``, every file's SHA-256 in ``MANIFEST.json``;
- :class:`RunCheckpoints`: a training run's checkpoints, one immutable
  folder per epoch that carries the run's progress record and log.

The checkpoint protocol, which a kill at any instant, a full disk or a
corrupted file cannot defeat:

1. A checkpoint is written, file by file (each ``fsync``-ed), into a
   temporary folder next to its final name.
2. Writing ``MANIFEST.json`` (sizes and SHA-256 of every file) into it,
   atomically, is the **commit point**. Before it, the checkpoint does not
   exist and the previous one is untouched; after it, the checkpoint exists
   even if the process dies at once, because recovery rolls it forward.
3. The folder is renamed to its final name (``epoch-0007``); then the
   ``last``/``best`` links are re-pointed and folders that are neither are
   deleted (renamed to ``.trash-*`` first).

The progress record (best score and its epoch, every ``log.csv`` row) is a
file of the checkpoint, so it commits with the weights; ``log.csv`` is
rewritten from it after each commit. :meth:`RunCheckpoints.recover` turns any
state a kill can leave into the newest committed checkpoint: it rolls
forward complete temporary folders, deletes incomplete ones, half-deleted
trash and checkpoints whose checksums fail, and re-points the links.
Loading verifies every checksum and names the file that fails. Writes that
fail (``ENOSPC``...) raise :class:`~dagnet_layers.storage.StorageError` in
one line, leave no partial file and keep the earlier checkpoints. One
process writes: ``examples/train_emotic.py`` holds the run folder's
:class:`~dagnet_layers.storage.FolderLock` (rank 0 under DDP; the other ranks
wait for each commit at a barrier) and refuses to reuse a folder that holds
a run unless told ``--resume`` or ``--overwrite``. :func:`crash_point` lets
tests kill the process at each step.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import random
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from dagnet_layers.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.errors import CorruptFileError, DAGNetError, MissingFileError
from dagnet_layers.losses import (
    SCORE_KINDS,
    check_loss_targets,
    loss_score,
    scores_from_logits,
)
from dagnet_layers.metrics import EmoticEvaluator, EmoticReport
from dagnet_layers.storage import (
    IntegrityError,
    StorageError,
    fsync_dir,
    sha256_file,
    verify_files,
    write_bytes_atomic,
)

__all__ = [
    "KILL_AT_ENV",
    "MANIFEST_NAME",
    "TRAINING_STATE_NAME",
    "EpochSampler",
    "EpochStats",
    "EvalResult",
    "NonFiniteLossError",
    "RunCheckpoints",
    "crash_point",
    "epoch_generator",
    "evaluate",
    "load_checkpoint",
    "move_batch",
    "process_seed",
    "recover_checkpoint",
    "save_checkpoint",
    "seed_everything",
    "train_one_epoch",
    "unwrap_model",
]

logger = logging.getLogger(__name__)

#: File name of the tensors-only training state inside a checkpoint folder.
TRAINING_STATE_NAME = "training_state.pt"
#: File name of a checkpoint's checksums; writing it is the checkpoint's commit point.
MANIFEST_NAME = "MANIFEST.json"
#: Environment variable of the crash tests' fault injection (``<point>:<epoch>``).
KILL_AT_ENV = "DAGNET_KILL_AT"
_CHECKPOINT_FORMAT = "dagnet-checkpoint"
BatchTransform = Callable[[dict[str, Any]], dict[str, Any]]

_AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp16": torch.float16, "float16": torch.float16}


class NonFiniteLossError(DAGNetError, FloatingPointError):
    """Raised when a training loss is NaN or infinite; names the epoch and step."""

    def __init__(self, epoch: int, step: int, components: Mapping[str, float]) -> None:
        self.epoch, self.step, self.components = epoch, step, dict(components)
        parts = ", ".join(f"{k}={v:.4g}" for k, v in components.items())
        super().__init__(
            f"non-finite loss at epoch {epoch}, step {step} ({parts}); lower the learning "
            "rate, enable gradient clipping, or check the inputs of that batch"
        )


@dataclass
class EpochStats:
    """What :func:`train_one_epoch` measured.

    Attributes:
        loss: Mean total loss over the steps.
        components: Mean of each loss component (``category``, ``aux``, ...).
        steps: Optimiser steps taken.
        samples: Samples seen.
        seconds: Wall time of the epoch.
    """

    loss: float
    components: dict[str, float]
    steps: int
    samples: int
    seconds: float
    step_losses: list[float] = field(default_factory=list)

    @property
    def samples_per_second(self) -> float:
        """Throughput, data pipeline included."""
        return self.samples / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class EvalResult:
    """What :func:`evaluate` returns.

    Attributes:
        report: The :class:`~dagnet_layers.metrics.EmoticReport` (per-category AP, mAP, VAD MAE).
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


# ---------------------------------------------------------------- reproducibility
def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask for deterministic kernels.

    Example:
        >>> seed_everything(0); a = torch.rand(1)
        >>> seed_everything(0); bool(torch.equal(a, torch.rand(1)))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - third-party code draws from the global RNG
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def process_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one process for one epoch: a pure function of ``(seed, epoch, rank)``.

    Give it to :func:`seed_everything` at the start of each epoch. The batched
    augmentation, dropout and the DataLoader workers' seeds all draw from the
    global generators, so seeding every process with the same number would
    give every DDP rank the same flips, jitters and dropout masks;
    ``rank`` keeps them apart. The mixing is NumPy's :class:`~numpy.random.SeedSequence`,
    so nearby inputs give unrelated seeds.

    Example:
        >>> process_seed(0, 3, rank=0) == process_seed(0, 3, rank=0)
        True
        >>> len({process_seed(0, 3, rank=r) for r in range(8)})
        8
    """
    for name, value in (("epoch", epoch), ("rank", rank)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"process_seed: {name} must be an int >= 0, got {value!r}")
    words = np.random.SeedSequence([int(seed) % 2**64, epoch, rank]).generate_state(2)
    return int(words[0]) << 32 | int(words[1])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator for epoch ``epoch``'s shuffling, a pure function of ``(seed, epoch)``.

    Give it to the training sampler each epoch so a run resumed at epoch k
    sees the same order as an uninterrupted one.
    """
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class EpochSampler(torch.utils.data.Sampler[int]):
    """Shuffles ``range(n)`` with :func:`epoch_generator` ``(seed, epoch)``; call :meth:`set_epoch`.

    The single-process twin of :class:`torch.utils.data.DistributedSampler`:
    the order of epoch k depends on nothing but ``seed`` and k.

    Example:
        >>> s = EpochSampler(5, seed=1); s.set_epoch(3); a = list(s)
        >>> s.set_epoch(3); a == list(s), sorted(a)
        (True, [0, 1, 2, 3, 4])
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = int(n), int(seed), shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.n


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def move_batch(
    batch: Mapping[str, Any], device: torch.device | str, channels_last: bool = False
) -> dict[str, Any]:
    """Move every tensor of a batch dict to ``device`` (images optionally channels-last)."""
    device = torch.device(device)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            value = value.to(device, non_blocking=device.type == "cuda")
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def _amp_dtype(amp: str | torch.dtype | None) -> torch.dtype | None:
    if amp is None or isinstance(amp, torch.dtype):
        return amp
    if amp in ("none", "fp32", "float32", ""):
        return None
    if amp not in _AMP_DTYPES:
        raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {amp!r}")
    return _AMP_DTYPES[amp]


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _forward(model: nn.Module, batch: Mapping[str, Any]) -> Any:
    return model(batch["body"], batch["context"])


class _TrainingSnapshot:
    """The training state at the last verified step, to put back after a non-finite loss.

    With the loss checked before each optimiser step (``sync_every == 1``) only
    the forward pass can have changed the model: its buffers (BatchNorm running
    statistics, which one NaN input turns to NaN for good). With a deferred
    check, optimiser steps ran since the last verified one, so parameters,
    optimiser, scheduler and scaler state are kept too: one copy of each,
    refreshed every ``sync_every`` steps (on CUDA a device-side copy, a fraction
    of a millisecond for the paper model).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                 scaler: Any, *, full: bool) -> None:
        self.model, self.optimizer = model, optimizer
        self.scheduler, self.scaler = scheduler, scaler
        self.full = full
        self._tensors: list[tuple[Tensor, Tensor]] = []
        self._states: dict[str, Any] = {}

    def take(self) -> None:
        with torch.no_grad():
            targets = list(self.model.buffers())
            if self.full:
                targets += list(self.model.parameters())
            if self._tensors and [t for t, _ in self._tensors] == targets:
                for target, saved in self._tensors:
                    saved.copy_(target)
            else:
                self._tensors = [(t, t.detach().clone()) for t in targets]
        if self.full:
            self._states = {
                name: copy.deepcopy(obj.state_dict())
                for name, obj in (("optimizer", self.optimizer), ("scheduler", self.scheduler),
                                  ("scaler", self.scaler))
                if obj is not None
            }

    def restore(self) -> None:
        with torch.no_grad():
            for target, saved in self._tensors:
                target.copy_(saved)
        objects = {"optimizer": self.optimizer, "scheduler": self.scheduler,
                   "scaler": self.scaler}
        for name, state in self._states.items():
            objects[name].load_state_dict(state)
        if not self.full:  # nothing stepped; only stale gradients of the bad step remain
            self.optimizer.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------ loops
def train_one_epoch(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    epoch: int = 0,
    device: torch.device | str = "cpu",
    batch_transform: BatchTransform | None = None,
    scheduler: Any | None = None,
    amp: str | torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
    channels_last: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
    sync_every: int | None = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``loader``.

    Args:
        model: A :class:`~dagnet_layers.models.DAGNet` (or a DDP / compiled wrapper).
        loader: Yields sample dicts (``body``, ``context``, ``categories``, ``vad``...).
        criterion: ``criterion(output, batch) -> (loss, components)``, e.g.
            :class:`~dagnet_layers.losses.DAGNetCriterion`.
        optimizer: The optimiser.
        epoch: Epoch number, for messages and the progress bar.
        device: Where to train.
        batch_transform: Applied to each batch after it is moved to ``device``
            (e.g. :class:`~dagnet_layers.data.EmoticBatchTransform` for GPU augmentation).
        scheduler: Stepped once per optimiser step when given.
        amp: ``None``/``"none"``, ``"bf16"`` or ``"fp16"`` autocast.
        scaler: A :class:`torch.amp.GradScaler` for fp16.
        grad_clip: Clip the global gradient norm to this value.
        channels_last: Move images to channels-last memory format.
        max_steps: Stop after this many steps (smoke tests, quick demos).
        progress: Show a tqdm progress bar (main process only).
        sync_every: Read the losses back to the host (progress bar, non-finite
            check) every this many steps. Default: every step on CPU, every 25
            on CUDA, where a host read per step would stall the GPU's queue of
            work. A non-finite loss is then reported with its exact step, but up
            to ``sync_every - 1`` further steps may already have run.

    Returns:
        :class:`EpochStats`.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite; names epoch and step.
            The model (parameters and buffers such as BatchNorm statistics),
            the optimiser, scheduler and scaler are first put back as they were
            before that step (with ``sync_every > 1``: before the first step
            after the last check, which is at or before it), so the model in
            memory is still usable.
    """
    device = torch.device(device)
    dtype = _amp_dtype(amp)
    if sync_every is None:
        sync_every = 1 if device.type == "cpu" else 25
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    model.train()
    # Losses stay on the device and are read back every ``sync_every`` steps.
    step_losses: list[Tensor] = []
    step_components: list[dict[str, Tensor]] = []
    checked = 0
    samples = 0
    start = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    bar = tqdm(loader, total=total, desc=f"epoch {epoch} train", leave=False,
               disable=not (progress and _is_main_process()), dynamic_ncols=True)

    snapshot = _TrainingSnapshot(model, optimizer, scheduler, scaler, full=sync_every > 1)

    def check(upto: int) -> None:
        nonlocal checked
        if upto <= checked:
            return
        recent = torch.stack(step_losses[checked:upto])
        finite = torch.isfinite(recent).cpu()
        if not bool(finite.all()):
            bad = checked + int((~finite).nonzero()[0])
            parts = {k: float(v) for k, v in step_components[bad].items()}
            snapshot.restore()
            bar.close()
            raise NonFiniteLossError(epoch, bad + 1, parts)
        checked = upto
        elapsed = time.perf_counter() - start
        bar.set_postfix(loss=f"{float(recent[-1]):.4f}",
                        samples_s=f"{samples / max(elapsed, 1e-9):.1f}")

    step = 0
    for step, batch in enumerate(bar, start=1):
        if checked == step - 1:  # every earlier step verified finite: remember this state
            snapshot.take()
        cats = batch.get("categories") if isinstance(batch, Mapping) else None
        if isinstance(cats, Tensor) and cats.device.type == "cpu" and device.type != "cpu":
            # checked on the host, where it costs no device synchronisation
            check_loss_targets(cats, batch.get("vad"), where=f"epoch {epoch}, step {step}")
        batch = move_batch(batch, device, channels_last)
        if batch_transform is not None:
            batch = batch_transform(batch)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = _forward(model, batch)
            loss, components = criterion(output, batch)
        step_losses.append(loss.detach().float())
        step_components.append(components)
        if step % sync_every == 0:
            check(step)  # before the optimiser step: a bad loss never reaches the weights
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        samples += int(batch["body"].shape[0])
        if max_steps is not None and step >= max_steps:
            break
    check(len(step_losses))
    bar.close()
    steps = max(step, 1)
    losses = torch.stack(step_losses).cpu().tolist() if step_losses else []
    components_mean = {
        k: float(torch.stack([c[k] for c in step_components if k in c]).float().sum().cpu())
        / steps
        for k in (step_components[0] if step_components else {})
    }
    mean_loss = sum(losses) / steps if losses else float("nan")
    return EpochStats(mean_loss, components_mean, step, samples,
                      time.perf_counter() - start, losses)


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
    (:func:`~dagnet_layers.losses.loss_score`). They are computed from the
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
            :func:`~dagnet_layers.metrics.average_precision`).
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


# ------------------------------------------------------------------ checkpoints
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002 - the global RNG is what gets restored
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_meta": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": list(random.getstate()[1]),
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, pos, has_gauss, cached = state["numpy_meta"]
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))  # noqa: NPY002
    random.setstate((3, tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def crash_point(name: str, epoch: int | str) -> None:
    """Fault injection for crash tests: SIGKILL this process at a named step.

    With ``DAGNET_KILL_AT=<name>:<epoch>`` in the environment (e.g.
    ``checkpoint-committed:1``; ``*`` for the first epoch that reaches the
    point) the process kills itself there, as a
    preemption would; otherwise this costs one dictionary lookup. The points
    of the checkpoint protocol are ``checkpoint-written`` (files written, not
    committed), ``checkpoint-committed`` (manifest written, folder not yet
    renamed), ``checkpoint-aside`` (an older folder of the same name moved
    aside), ``checkpoint-renamed``, ``checkpoint-linked`` and
    ``checkpoint-collecting`` (an old folder half deleted);
    ``examples/train_emotic.py`` adds ``log-written`` and ``test-evaluated``
    (epoch ``final``).

    Args:
        name: The point.
        epoch: The epoch (or ``"final"``) the point belongs to.
    """
    target = os.environ.get(KILL_AT_ENV)
    if target and target in (f"{name}:{epoch}", f"{name}:*"):
        os.kill(os.getpid(), signal.SIGKILL)


def _tmp_name(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.tmp-{os.getpid()}")


def _write_failed(directory: Path, err: OSError) -> StorageError:
    # A StorageError's text already names the file and the cause.
    cause = err.strerror if isinstance(err, StorageError) else f"{err.strerror or err}"
    return StorageError(
        err.errno, f"cannot write checkpoint {directory} ({cause}); the earlier checkpoints "
        "are intact"
    )


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a resumable, checksummed checkpoint folder with one commit point.

    The folder holds ``config.json`` + ``model.safetensors`` (the model, via
    ``save_pretrained``, loadable alone with ``DAGNet.from_pretrained``),
    ``training_state.pt`` (optimiser, scheduler, scaler, epoch, RNG state:
    tensors and plain containers only), ``extra`` entries as JSON files
    (``extra={"inference": {...}}`` writes ``inference.json``) and
    ``MANIFEST.json``: the size and SHA-256 of every other file.

    The protocol:

    1. every file is written, ``fsync``-ed, into ``.<name>.tmp-<pid>`` next
       to ``directory``;
    2. ``MANIFEST.json`` is written into it atomically: **the commit point**.
       From here on the checkpoint exists, even if the process dies before
       step 3: :func:`recover_checkpoint` (called by :func:`load_checkpoint`
       and :class:`RunCheckpoints`) rolls a complete temporary folder forward;
    3. the folder is renamed to ``directory`` (an existing ``directory`` is
       first moved aside to ``.<name>.old-<pid>``, then deleted).

    A kill before step 2 leaves an incomplete temporary folder, which recovery
    deletes; the previous checkpoint is untouched.

    Returns:
        The checkpoint folder.

    Raises:
        StorageError: a write failed (full disk, quota, I/O error); the
            temporary folder is removed and the message names the folder and
            the cause; earlier checkpoints are intact.
    """
    directory = Path(directory)
    inner = unwrap_model(model)
    if not hasattr(inner, "save_pretrained"):
        raise TypeError(f"save_checkpoint needs a DAGNet-like model, got {type(inner).__name__}")
    tmp = _tmp_name(directory)
    state: dict[str, Any] = {"epoch": int(epoch), "rng": _rng_state()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        # Each file's checksum is taken from the bytes as they are written (one pass),
        # the weights' from the record save_pretrained keeps in config.json.
        inner.save_pretrained(tmp)
        files: dict[str, dict[str, Any]] = {}
        weights_record = json.loads((tmp / "config.json").read_text()).get("weights")
        if isinstance(weights_record, dict):
            files["model.safetensors"] = weights_record
        for path in sorted(tmp.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.name not in files:
                files[path.name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
        buffer = io.BytesIO()
        torch.save(state, buffer)  # in memory first: a full disk is an OSError we can name
        data = buffer.getbuffer()
        files[TRAINING_STATE_NAME] = {"size": len(data),
                                      "sha256": write_bytes_atomic(tmp / TRAINING_STATE_NAME, data)}
        for name, payload in (extra or {}).items():
            text = (json.dumps(payload, indent=2) + "\n").encode()
            files[f"{name}.json"] = {"size": len(text),
                                     "sha256": write_bytes_atomic(tmp / f"{name}.json", text)}
        crash_point("checkpoint-written", epoch)
        files = dict(sorted(files.items()))
        manifest = {"format": _CHECKPOINT_FORMAT, "version": 1, "epoch": int(epoch),
                    "files": files}
        write_bytes_atomic(tmp / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(directory, err) from err
    crash_point("checkpoint-committed", epoch)
    _roll_forward(tmp, directory, epoch)
    return directory


def _roll_forward(tmp: Path, directory: Path, epoch: int | str) -> None:
    """Step 3 of :func:`save_checkpoint`: put a committed temporary folder in place."""
    if directory.exists() or directory.is_symlink():
        aside = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if aside.exists():
            shutil.rmtree(aside)
        os.rename(directory, aside)
        crash_point("checkpoint-aside", epoch)
        os.rename(tmp, directory)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.rename(tmp, directory)
    fsync_dir(directory.parent)


def _manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's MANIFEST.json if it is present and well formed, else None."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _CHECKPOINT_FORMAT:
        return None
    return data if isinstance(data.get("files"), dict) else None


def _is_complete(folder: Path) -> bool:
    manifest = _manifest(folder)
    if manifest is None:
        return False
    try:
        verify_files(folder, manifest["files"])
    except (OSError, IntegrityError):
        return False
    return True


def recover_checkpoint(directory: str | os.PathLike[str], clean: bool = True) -> Path | None:
    """Finish or undo whatever an interrupted :func:`save_checkpoint` of ``directory`` left.

    - A complete temporary folder (its ``MANIFEST.json`` written and every
      checksum right) is a committed checkpoint: it is rolled forward into
      ``directory``, replacing an older one.
    - Without one, a folder moved aside (``.<name>.old-*``) while ``directory``
      is missing is moved back.
    - With ``clean``, incomplete temporary folders and leftover aside folders
      are deleted: only do that where no other process may be writing (the
      run folder's lock is held).

    Args:
        directory: The checkpoint folder that was being written.
        clean: Delete what cannot be recovered.

    Returns:
        ``directory`` if a checkpoint is there afterwards, else ``None``.
    """
    directory = Path(directory)
    parent = directory.parent
    if not parent.is_dir():
        return None
    temps = sorted(parent.glob(f".{directory.name}.tmp-*"), key=lambda p: p.stat().st_mtime)
    asides = sorted(parent.glob(f".{directory.name}.old-*"), key=lambda p: p.stat().st_mtime)
    complete = [t for t in temps if _is_complete(t)]
    if complete:
        newest = complete[-1]
        logger.warning("completing the interrupted checkpoint %s (from %s)", directory, newest.name)
        _roll_forward(newest, directory, "recover")
    elif not (directory.exists() or directory.is_symlink()) and asides:
        logger.warning("restoring the checkpoint %s from %s", directory, asides[-1].name)
        os.rename(asides[-1], directory)
        fsync_dir(parent)
    for leftover in [*temps, *asides] if clean else []:
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)
    return directory if directory.is_dir() else None


def load_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    map_location: str | torch.device = "cpu",
    restore_rng: bool = True,
) -> int:
    """Load a :func:`save_checkpoint` folder into existing objects; returns its epoch.

    An interrupted save of ``directory`` is first completed or undone
    (:func:`recover_checkpoint`, without deleting anything). Every file is
    checked against the sizes and SHA-256 checksums of ``MANIFEST.json``
    before anything is loaded (a
    folder written before 0.2 has none and is loaded unchecked, with a
    warning). The training state is read with
    ``torch.load(weights_only=True)``: a file that carries arbitrary pickled
    objects is refused, never executed.

    Raises:
        FileNotFoundError: the checkpoint or one of its files is missing.
        IntegrityError: a file differs from what was written (names it).
        ValueError: the training state is not a tensors-only file, or the
            weights do not match ``model``.
    """
    from dagnet_layers.models.dagnet import WEIGHTS_NAME, load_pretrained_weights

    directory = Path(directory)
    # A committed save that did not reach its rename is newer than the folder.
    recover_checkpoint(directory, clean=False)
    weights = directory / WEIGHTS_NAME
    state_file = directory / TRAINING_STATE_NAME
    for path in (weights, state_file):
        if not path.is_file():
            raise MissingFileError(path, "checkpoint file not found")
    manifest = _manifest(directory)
    if manifest is not None:
        verify_files(directory, manifest["files"])
    elif (directory / MANIFEST_NAME).exists():
        raise IntegrityError(directory / MANIFEST_NAME, "corrupted: it is not the "
                             "checksum list save_checkpoint wrote")
    else:
        logger.warning("%s has no %s (written before 0.2): loading it without checksums",
                       directory, MANIFEST_NAME)
    try:
        state = torch.load(state_file, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle.UnpicklingError and friends
        raise CorruptFileError(
            state_file, "refusing it: it is not a tensors-only training state "
            f"(torch.load(weights_only=True) failed: {type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]})"
        ) from err
    # the weights file alone: the MANIFEST above has already checked its checksum
    load_pretrained_weights(unwrap_model(model), weights, map_location=map_location)
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if restore_rng and "rng" in state:
        _set_rng_state(state["rng"])
    return int(state["epoch"])



# ------------------------------------------------------------- run checkpoints
class RunCheckpoints:
    """The checkpoints of one training run: an immutable folder per epoch, one commit each.

    Layout of ``directory`` (a run's ``checkpoints/``)::

        epoch-0003/        a complete checkpoint (save_checkpoint): weights, training
                           state, progress.json, inference.json when given, MANIFEST.json
        epoch-0004/
        last -> epoch-0004 convenience links, re-pointed after each commit
        best -> epoch-0003

    Each epoch's checkpoint carries the run's whole progress record in
    ``progress.json``: the epoch, the best validation score so far and the
    epoch it came from, and every ``log.csv`` row up to that epoch. Being
    written inside the checkpoint, it commits with it: ``best``, ``last``,
    the progress record and the log can never disagree. Saving epoch *k*
    never rewrites an older folder; once it is committed, the folders that
    are neither the newest nor the best are deleted (first renamed to
    ``.trash-*``, so that a half-deleted folder is never taken for a
    checkpoint).

    :meth:`recover` makes any state an interrupted run can leave usable: it
    rolls forward complete temporary folders, deletes incomplete ones and
    trash, and re-points the links. The newest checkpoint is then the newest
    ``epoch-*`` folder whose checksums are right.

    Only one process may write (the caller holds the run folder's
    :class:`~dagnet_layers.storage.FolderLock`; under DDP, rank 0).

    Args:
        directory: The run's checkpoint folder (created on the first save).

    Example:
        >>> import tempfile
        >>> from dagnet_layers import create_model
        >>> with tempfile.TemporaryDirectory() as d:
        ...     store = RunCheckpoints(d)
        ...     for epoch, val in enumerate([0.3, 0.5, 0.4]):
        ...         _ = store.save(create_model("test_dagnet"), epoch=epoch,
        ...                        progress={"best_epoch": 1, "best_val_map": 0.5, "log": []})
        ...     sorted(p.name for p in Path(d).iterdir())
        ['best', 'epoch-0001', 'epoch-0002', 'last']
    """

    LAST = "last"
    BEST = "best"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def folder(self, epoch: int) -> Path:
        """The checkpoint folder of ``epoch``."""
        return self.directory / f"epoch-{int(epoch):04d}"

    def _epochs(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir()
                 if p.is_dir() and not p.is_symlink() and re.fullmatch(r"epoch-\d{4,}", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def save(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        *,
        epoch: int,
        progress: Mapping[str, Any],
        scaler: torch.amp.GradScaler | None = None,
        inference: Mapping[str, Any] | None = None,
    ) -> Path:
        """Commit epoch ``epoch``'s checkpoint, then re-point the links and drop old folders.

        Args:
            model: The model (or its DDP/compiled wrapper).
            optimizer: Optimiser to save.
            scheduler: Scheduler to save.
            epoch: The epoch just finished.
            progress: The run's progress after this epoch; must name
                ``best_epoch`` (this epoch when it improved, ``None`` before any
                validation score).
            scaler: GradScaler to save.
            inference: What a predictor needs (``inference.json``).

        Returns:
            The new checkpoint folder.

        Raises:
            StorageError: the checkpoint could not be written (earlier ones are intact).
        """
        extra: dict[str, Any] = {"progress": {**progress, "epoch": int(epoch)}}
        if inference is not None:
            extra["inference"] = inference
        path = save_checkpoint(self.folder(epoch), model, optimizer, scheduler, epoch=epoch,
                               scaler=scaler, extra=extra)
        crash_point("checkpoint-renamed", epoch)
        self._link(self.LAST, path)
        best = progress.get("best_epoch")
        if best is not None:
            self._link(self.BEST, self.folder(best))
        crash_point("checkpoint-linked", epoch)
        self._collect(keep={path, self.folder(best) if best is not None else path}, epoch=epoch)
        return path

    def _link(self, name: str, target: Path) -> None:
        link = self.directory / name
        tmp = self.directory / f".{name}.link-{os.getpid()}"
        try:
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target.name, target_is_directory=True)
            if link.is_dir() and not link.is_symlink():  # a 0.1 run's real folder
                shutil.rmtree(link)
            os.replace(tmp, link)
        except (OSError, NotImplementedError) as err:
            tmp.unlink(missing_ok=True)
            logger.warning("cannot point %s at %s (%s); use the folder directly", link,
                           target.name, err)

    def _discard(self, folder: Path, epoch: int | str) -> None:
        # Renamed first, so that a half-deleted folder is never taken for a checkpoint.
        trash = self.directory / f".{folder.name}.trash-{os.getpid()}"
        os.rename(folder, trash)
        crash_point("checkpoint-collecting", epoch)
        shutil.rmtree(trash, ignore_errors=True)

    def _collect(self, keep: set[Path], epoch: int | str) -> None:
        for folder in self._epochs():
            if folder not in keep:
                self._discard(folder, epoch)
        fsync_dir(self.directory)

    def recover(self) -> Path | None:
        """Repair what an interrupted run left and return the newest checkpoint folder.

        Returns:
            The newest complete ``epoch-*`` folder, or ``None`` when the run has
            no checkpoint yet (a 0.1 run's ``last`` folder is returned as is).
        """
        if not self.directory.is_dir():
            return None
        for tmp in self.directory.glob(".epoch-*.tmp-*"):
            recover_checkpoint(self.directory / tmp.name.split(".tmp-")[0][1:])
        for leftover in self.directory.glob(".*.trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in self.directory.glob(".*.link-*"):
            leftover.unlink(missing_ok=True)
        # Newest first, stopping at the first complete folder: only the checkpoint
        # resumed from is hashed here (the best one is checked when it is loaded, and
        # older ones are collected below).
        newest = None
        for folder in reversed(self._epochs()):
            if _is_complete(folder):
                newest = folder
                break
            logger.warning("discarding %s: its checksums do not match (an interrupted write)",
                           folder)
            self._discard(folder, "recover")
        if newest is None:
            legacy = self.directory / self.LAST
            return legacy if legacy.is_dir() and not legacy.is_symlink() else None
        progress = self.progress(newest)
        self._link(self.LAST, newest)
        best = progress.get("best_epoch")
        keep = {newest}
        if best is not None and self.folder(best).is_dir():
            self._link(self.BEST, self.folder(best))
            keep.add(self.folder(best))
        self._collect(keep, epoch="recover")  # what a kill before the clean-up left
        return newest

    @staticmethod
    def progress(folder: str | os.PathLike[str]) -> dict[str, Any]:
        """The progress record committed with a checkpoint (``{}`` for a 0.1 folder)."""
        path = Path(folder) / "progress.json"
        if not path.is_file():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    def best(self) -> Path | None:
        """The best checkpoint named by the newest one's progress record, if any."""
        newest = self.recover()
        if newest is None:
            return None
        best = self.progress(newest).get("best_epoch")
        if best is None:
            legacy = self.directory / self.BEST
            return legacy if legacy.is_dir() else None
        return self.folder(best)

    def __repr__(self) -> str:
        return f"RunCheckpoints({str(self.directory)!r})"
