"""One training epoch: AMP, channels-last, device-side augmentation, a safe stop on a bad loss."""

from __future__ import annotations

import copy
import numbers
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from dagnet_layers.emotic.engine.runtime import (
    BatchTransform,
    _amp_dtype,
    _forward,
    _is_main_process,
    move_batch,
)
from dagnet_layers.emotic.losses import (
    check_loss_targets,
    needs_a_label,
)
from dagnet_layers.errors import DAGNetError

__all__ = ["EpochStats", "NonFiniteLossError", "train_one_epoch"]

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
            :class:`~dagnet_layers.emotic.losses.DAGNetCriterion`.
        optimizer: The optimiser.
        epoch: Epoch number, for messages and the progress bar.
        device: Where to train.
        batch_transform: Applied to each batch after it is moved to ``device``
            (e.g. :class:`~dagnet_layers.emotic.data.EmoticBatchTransform` for GPU augmentation).
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
    sync_every = _check_epoch_options(device, sync_every, max_steps)
    model.train()
    start = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    bar = tqdm(loader, total=total, desc=f"epoch {epoch} train", leave=False,
               disable=not (progress and _is_main_process()), dynamic_ncols=True)
    guard = _LossGuard(_TrainingSnapshot(model, optimizer, scheduler, scaler,
                                         full=sync_every > 1), sync_every, epoch, bar, start)
    require_label = needs_a_label(criterion)
    step = samples = 0
    for step, batch in enumerate(bar, start=1):
        guard.before(step)
        cats = batch.get("categories") if isinstance(batch, Mapping) else None
        if isinstance(cats, Tensor) and cats.device.type == "cpu" and device.type != "cpu":
            # checked on the host, where it costs no device synchronisation
            check_loss_targets(cats, batch.get("vad"), where=f"epoch {epoch}, step {step}",
                               require_label=require_label)
        batch = move_batch(batch, device, channels_last)
        if batch_transform is not None:
            batch = batch_transform(batch)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            output = _forward(model, batch)
            loss, components = criterion(output, batch)
        # before the optimiser step: a bad loss never reaches the weights
        guard.after(step, loss, components, samples)
        _optimizer_step(model, loss, optimizer, scheduler, scaler, grad_clip)
        samples += int(batch["body"].shape[0])
        if max_steps is not None and step >= max_steps:
            break
    guard.check(len(guard.losses), samples)
    bar.close()
    return guard.stats(step, samples)


def _check_epoch_options(device: torch.device, sync_every: int | None,
                         max_steps: int | None) -> int:  # fmt: skip
    """``sync_every`` resolved for ``device`` (every step on CPU, every 25 on CUDA),
    ``max_steps`` checked."""
    if sync_every is None:
        sync_every = 1 if device.type == "cpu" else 25
    if sync_every < 1:
        raise ValueError(f"sync_every must be >= 1, got {sync_every}")
    if max_steps is not None and (not isinstance(max_steps, numbers.Integral)
                                  or isinstance(max_steps, bool) or max_steps < 1):
        raise ValueError(f"train_one_epoch(max_steps=...) must be an int >= 1 or None, "
                         f"got {max_steps!r}")
    return sync_every


def _optimizer_step(model: nn.Module, loss: Tensor, optimizer: torch.optim.Optimizer,
                    scheduler: Any | None, scaler: torch.amp.GradScaler | None,
                    grad_clip: float | None) -> None:  # fmt: skip
    """Backward, the optional clip of the gradient norm, the step (through the scaler
    for fp16) and the scheduler's step."""
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


class _LossGuard:
    """The non-finite guard and the progress: step losses stay on the device and are
    read back every ``sync_every`` steps; a non-finite one puts the training state back
    as it was before that step (:class:`_TrainingSnapshot`) and raises
    :class:`NonFiniteLossError`, otherwise the bar shows the latest loss."""

    def __init__(self, snapshot: _TrainingSnapshot, sync_every: int, epoch: int, bar: Any,
                 start: float) -> None:  # fmt: skip
        self.snapshot, self.sync_every, self.epoch, self.bar = snapshot, sync_every, epoch, bar
        self.start = start
        self.losses: list[Tensor] = []
        self.components: list[dict[str, Tensor]] = []
        self.checked = 0

    def before(self, step: int) -> None:
        """Remember the state before ``step`` when every earlier step is verified finite."""
        if self.checked == step - 1:
            self.snapshot.take()

    def after(self, step: int, loss: Tensor, components: dict[str, Tensor],
              samples: int) -> None:  # fmt: skip
        """Keep ``step``'s loss; read the unchecked ones back when it is time."""
        self.losses.append(loss.detach().float())
        self.components.append(components)
        if step % self.sync_every == 0:
            self.check(step, samples)

    def check(self, upto: int, samples: int) -> None:
        """Read back the losses of the steps up to ``upto`` not checked yet."""
        if upto <= self.checked:
            return
        recent = torch.stack(self.losses[self.checked:upto])
        finite = torch.isfinite(recent).cpu()
        if not bool(finite.all()):
            bad = self.checked + int((~finite).nonzero()[0])
            parts = {k: float(v) for k, v in self.components[bad].items()}
            self.snapshot.restore()
            self.bar.close()
            raise NonFiniteLossError(self.epoch, bad + 1, parts)
        self.checked = upto
        elapsed = time.perf_counter() - self.start
        self.bar.set_postfix(loss=f"{float(recent[-1]):.4f}",
                             samples_s=f"{samples / max(elapsed, 1e-9):.1f}")

    def stats(self, step: int, samples: int) -> EpochStats:
        """The epoch's :class:`EpochStats` from the checked losses."""
        steps = max(step, 1)
        losses = torch.stack(self.losses).cpu().tolist() if self.losses else []
        components_mean = {
            k: float(torch.stack([c[k] for c in self.components if k in c]).float().sum().cpu())
            / steps
            for k in (self.components[0] if self.components else {})
        }
        mean_loss = sum(losses) / steps if losses else float("nan")
        return EpochStats(mean_loss, components_mean, step, samples,
                          time.perf_counter() - self.start, losses)
