"""What both loops rely on: reproducible randomness and batches on the right device.

``(seed, epoch, rank)`` decides every random draw of an epoch
(:func:`process_seed`, :func:`epoch_generator`, :class:`EpochSampler`), so a
resumed run repeats an uninterrupted one and no two DDP ranks draw the same
augmentations or dropout masks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["EpochSampler", "epoch_generator", "move_batch", "process_seed",
           "seed_everything", "unwrap_model"]

BatchTransform = Callable[[dict[str, Any]], dict[str, Any]]

_AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp16": torch.float16, "float16": torch.float16}


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
