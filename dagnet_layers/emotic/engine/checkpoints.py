"""Checkpoints that a kill at any instant, a full disk or a corrupted file cannot defeat.

:func:`save_checkpoint` / :func:`load_checkpoint`: model weights in safetensors
(via :meth:`~dagnet_layers.models.DAGNet.save_pretrained`), optimiser, scheduler,
epoch and RNG state in a tensors-only file read with
``torch.load(weights_only=True)``, every file's SHA-256 in ``MANIFEST.json``;
:class:`RunCheckpoints`: a training run's checkpoints, one immutable folder per
epoch that carries the run's progress record and log. The protocol:

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
forward complete temporary folders, deletes incomplete ones and half-deleted
trash, moves committed checkpoints whose checksums fail into ``quarantine/``
(never deleting them), and re-points the links.
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

import io
import json
import logging
import os
import random
import re
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dagnet_layers.emotic.data.categories import EMOTIC_CATEGORIES
from dagnet_layers.emotic.engine.runtime import unwrap_model
from dagnet_layers.errors import CorruptFileError, MissingFileError
from dagnet_layers.storage import (
    IntegrityError,
    StorageError,
    fsync_dir,
    sha256_file,
    verify_files,
    write_bytes_atomic,
)

__all__ = ["KILL_AT_ENV", "MANIFEST_NAME", "TRAINING_STATE_NAME", "RunCheckpoints",
           "crash_point", "load_checkpoint", "recover_checkpoint", "save_checkpoint",
           "verify_checkpoint_files", "weights_loadable"]

logger = logging.getLogger(__name__)

#: File name of the tensors-only training state inside a checkpoint folder.
TRAINING_STATE_NAME = "training_state.pt"
#: File name of a checkpoint's checksums; writing it is the checkpoint's commit point.
MANIFEST_NAME = "MANIFEST.json"
#: Environment variable of the crash tests' fault injection (``<point>:<epoch>``).
KILL_AT_ENV = "DAGNET_KILL_AT"
_CHECKPOINT_FORMAT = "dagnet-checkpoint"


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
        inner.save_pretrained(tmp, **_card_arguments(inner, extra))
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


def _card_arguments(model: nn.Module, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the model card of a training checkpoint says: the data, the epoch, val mAP."""
    inference = dict((extra or {}).get("inference") or {})
    progress = dict((extra or {}).get("progress") or {})
    data = dict(inference.get("data") or {})
    card: dict[str, Any] = {}
    if data:
        source = str(data.get("source") or "")
        # the source's kind, never its local path (a card may be pushed to the Hub)
        card["dataset"] = {"emotic": "EMOTIC", "emotic-preprocessed": "EMOTIC (preprocessed)",
                           "synthetic": "generated EMOTIC-format data"}.get(source, source)
        card["synthetic"] = bool(data.get("synthetic"))
    val_map = inference.get("val_map")
    if isinstance(val_map, int | float) and val_map == val_map:  # not NaN
        card["metrics"] = {"val mAP": float(val_map)}
        card["split"] = "validation"
    if "epoch" in progress:  # 0-based: the card counts the epochs trained
        card["epoch"] = int(progress["epoch"]) + 1
    labels = None
    if getattr(model, "num_classes", None) == len(EMOTIC_CATEGORIES):
        labels = list(EMOTIC_CATEGORIES)
    return {"card": card or None, "label_names": labels}


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
    return _problem(folder) is None


#: The weights file of a checkpoint folder (what ``save_pretrained`` writes).
WEIGHTS_FILE = "model.safetensors"


def verify_checkpoint_files(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Check every file against the manifest, blaming the right file.

    The weights' checksum is recorded twice, in ``MANIFEST.json`` and in
    ``config.json``. When the weights fail the manifest's record but match
    ``config.json``'s (itself intact), the weights are fine and the manifest's record was
    changed: the error names ``MANIFEST.json``, not ``model.safetensors``.
    """
    try:
        verify_files(folder, manifest["files"])
    except IntegrityError as err:
        weights = folder / WEIGHTS_FILE
        if Path(err.path) == weights and _weights_match_config(folder):
            raise IntegrityError(
                folder / MANIFEST_NAME, f"its checksum of {WEIGHTS_FILE} differs from the "
                "file and from config.json's record, which agree: MANIFEST.json was edited or "
                "damaged (the weights are intact)"
            ) from err
        raise


def _weights_match_config(folder: Path) -> bool:
    """Whether the weights match the checksum ``config.json`` records for them."""
    try:
        record = json.loads((folder / "config.json").read_text(encoding="utf-8"))["weights"]
        verify_files(folder, {WEIGHTS_FILE: record})
    except (OSError, ValueError, KeyError, TypeError, IntegrityError):
        return False
    return True


def _problem(folder: Path) -> str | None:
    """Why ``folder`` is not a complete checkpoint (the file that fails), or ``None``."""
    manifest = _manifest(folder)
    if manifest is None:
        return f"no valid {MANIFEST_NAME}"
    try:
        verify_checkpoint_files(folder, manifest)
    except (FileNotFoundError, IntegrityError) as err:  # damage; other OSErrors propagate
        return " ".join(str(err).split())
    return None


def weights_loadable(folder: str | os.PathLike[str]) -> bool:
    """Whether ``DAGNet.from_pretrained(folder)`` can load ``folder``'s model: its
    ``config.json`` and weights both match the checksums its manifest records."""
    folder = Path(folder)
    files = (_manifest(folder) or {}).get("files", {})
    wanted = {name: files.get(name) for name in ("config.json", WEIGHTS_FILE)}
    if not all(isinstance(v, dict) for v in wanted.values()):
        return False
    try:
        verify_files(folder, wanted)  # type: ignore[arg-type]
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
    before anything is loaded (a folder written by a pre-release build, before
    checkpoints had a manifest, has none and is loaded unchecked, with a warning).
    The training state is read with ``torch.load(weights_only=True)``: a file
    that carries arbitrary pickled objects is refused, never executed.

    Raises:
        FileNotFoundError: the checkpoint or one of its files is missing.
        IntegrityError: a file differs from what was written (names it).
        ValueError: the training state is not a tensors-only file, or the
            weights do not match ``model``.
    """
    from dagnet_layers.models.hub import WEIGHTS_NAME, load_pretrained_weights

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
        verify_checkpoint_files(directory, manifest)
    elif (directory / MANIFEST_NAME).exists():
        raise IntegrityError(directory / MANIFEST_NAME, "corrupted: it is not the "
                             "checksum list save_checkpoint wrote")
    else:
        logger.warning("%s has no %s (a pre-release checkpoint): loading it without checksums",
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
        saved_groups = len(state["optimizer"].get("param_groups", []))
        if saved_groups != len(optimizer.param_groups):
            raise CorruptFileError(
                state_file, f"its optimizer has {saved_groups} parameter group(s) and this "
                f"run's has {len(optimizer.param_groups)}: weight decay splits the parameters "
                "into a decayed and a spared group (a pre-release build, or a run with "
                "--weight-decay 0, had one); resume with the run's own --weight-decay"
            )
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
        quarantine/        damaged checkpoints recover() moved aside, with the reason

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
    ``epoch-*`` folder whose checksums are right. A committed folder whose
    checksums fail is damage, not an interrupted write: it is moved into
    ``quarantine/`` with a ``QUARANTINED.txt`` naming the file that failed (and
    whether the weights are intact), never deleted.

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
            if link.is_dir() and not link.is_symlink():  # a pre-release run's real folder
                shutil.rmtree(link)
            os.replace(tmp, link)
        except (OSError, NotImplementedError) as err:
            tmp.unlink(missing_ok=True)
            logger.warning("cannot point %s at %s (%s); use the folder directly", link,
                           target.name, err)

    #: Where :meth:`recover` moves damaged checkpoints (inside the checkpoint folder).
    QUARANTINE = "quarantine"
    #: The note each quarantined folder gets, saying why it was moved.
    QUARANTINE_NOTE = "QUARANTINED.txt"

    def _quarantine(self, folder: Path, problem: str) -> Path:
        """Move a damaged checkpoint into ``quarantine/`` with a note; never delete it."""
        quarantine = self.directory / self.QUARANTINE
        quarantine.mkdir(exist_ok=True)
        target = quarantine / folder.name
        n = 1
        while target.exists():
            target, n = quarantine / f"{folder.name}.{n}", n + 1
        os.rename(folder, target)
        intact = weights_loadable(target)
        note = (f"{folder.name} failed its checksums when the run was resumed: {problem}\n"
                + (f"Its config.json and {WEIGHTS_FILE} check out against the manifest: "
                   f"DAGNet.from_pretrained('{target}') loads the model.\n" if intact else ""))
        write_bytes_atomic(target / self.QUARANTINE_NOTE, note.encode())
        fsync_dir(self.directory)
        logger.warning("%s is damaged (%s); moved to %s, not deleted", folder, problem, target)
        return target

    def quarantined(self) -> list[Path]:
        """The damaged checkpoints :meth:`recover` moved aside, oldest first."""
        quarantine = self.directory / self.QUARANTINE
        if not quarantine.is_dir():
            return []
        return sorted(p for p in quarantine.iterdir() if p.is_dir())

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
            no checkpoint yet (a pre-release run's ``last`` folder, a real
            folder rather than a link, is returned as is).
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
            problem = _problem(folder)
            if problem is None:
                newest = folder
                break
            # A committed folder that fails its checksums is damage (a bad sector, an
            # edit), not an interrupted write: it may be the user's only copy of the
            # weights, so it is moved aside with the reason, never deleted.
            self._quarantine(folder, problem)
        if newest is None:
            for name in (self.LAST, self.BEST):  # links into folders now quarantined
                link = self.directory / name
                if link.is_symlink() and not link.exists():
                    link.unlink()
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

    def newest_intact(self) -> Path | None:
        """The newest ``epoch-*`` folder whose checksums are right: what :meth:`recover`
        resumes from, found without repairing, moving or deleting anything (a
        pre-release run's real ``last`` folder when there is none, else ``None``)."""
        for folder in reversed(self._epochs()):
            if _problem(folder) is None:
                return folder
        legacy = self.directory / self.LAST
        return legacy if legacy.is_dir() and not legacy.is_symlink() else None

    @staticmethod
    def progress(folder: str | os.PathLike[str]) -> dict[str, Any]:
        """The progress record committed with a checkpoint (``{}`` for a pre-release folder)."""
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
