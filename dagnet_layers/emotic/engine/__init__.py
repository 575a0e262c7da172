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

The modules: :mod:`~dagnet_layers.emotic.engine.runtime` (seeds, samplers,
batches on the device), :mod:`~dagnet_layers.emotic.engine.training`,
:mod:`~dagnet_layers.emotic.engine.evaluation` and
:mod:`~dagnet_layers.emotic.engine.checkpoints` (the checkpoint protocol: one
commit point per checkpoint, recovery after a kill). Every name is importable
from here.
"""

from dagnet_layers.emotic.engine.checkpoints import (
    KILL_AT_ENV,
    MANIFEST_NAME,
    TRAINING_STATE_NAME,
    RunCheckpoints,
    crash_point,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
    verify_checkpoint_files,
    weights_loadable,
)
from dagnet_layers.emotic.engine.evaluation import EvalResult, evaluate
from dagnet_layers.emotic.engine.runtime import (
    EpochSampler,
    epoch_generator,
    move_batch,
    process_seed,
    seed_everything,
    unwrap_model,
)
from dagnet_layers.emotic.engine.training import EpochStats, NonFiniteLossError, train_one_epoch

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
    "verify_checkpoint_files",
    "weights_loadable",
]
