#!/usr/bin/env python
"""Train and evaluate DAG-Net on EMOTIC with the paper's recipe.

Paper defaults: Adam, lr 1e-4, batch 32, N = 4, 224 x 224 body and context,
ColorJitter 0.4 + horizontal flip, ResNet-50 body / ResNet-18 context with
ImageNet weights, KL-divergence loss (plus ABN's auxiliary loss on the
attention branch). Evaluation scores follow the loss (softmax for KL) and AP
is the official eval.m protocol, tie order included.

Examples::

    # no data given: writes the synthetic EMOTIC-format demo set and trains a
    # small configuration on it (about half a minute on an idle 2-core CPU; see the README)
    dagnet-train

    # the official release (Annotations/Annotations.mat + emotic/*/images)
    dagnet-train --data-root /data/emotic --cache-dir /data/emotic-cache

    # the community CSV + npy layout
    dagnet-train --preprocessed /data/emotic_pre

    # a Table 2 row, or Fig. 3's partition sweep
    dagnet-train --data-root /data/emotic --ablation bam_gsam
    dagnet-train --data-root /data/emotic --partition 6

    # several GPUs / nodes
    torchrun --nproc_per_node 8 examples/train_emotic.py --data-root /data/emotic

Outputs (``--output-dir``): ``args.json``, ``log.csv`` (one row per epoch),
``checkpoints/{last,best}/`` (safetensors weights + JSON config + tensors-only
training state; ``best`` also holds ``inference.json`` with the score function,
the validation thresholds and the data source for ``examples/predict.py``),
``test_report.{json,csv}``, ``test_ap.png`` (per-category AP; beside the
paper's Table 1 only when the data is EMOTIC) and ``training_curves.png``.
Outputs of the synthetic demo say so in every title and file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from dagnet_layers import ABLATIONS, EMOTIC_CATEGORIES, cli, create_model, list_models
from dagnet_layers._deps import require
from dagnet_layers._distributed import from_rank0
from dagnet_layers.commands.args import (
    DEMO_DEFAULTS,
    PAPER_DEFAULTS,
    SYNTHETIC_NOTE,
    build_train_parser,
)
from dagnet_layers.commands.checks import refuse, usable_device
from dagnet_layers.emotic.data import (
    EmoticDataset,
    EmoticJpegDataset,
    JpegBatchDecoder,
    collate_encoded,
    demo_datasets,
    detect_layout,
    emotic_batch_transform,
    emotic_datasets,
    normalization_of,
    synthetic_marker,
)
from dagnet_layers.emotic.data.synthetic import MIN_IMAGES
from dagnet_layers.emotic.engine import (
    EpochSampler,
    NonFiniteLossError,
    RunCheckpoints,
    crash_point,
    evaluate,
    load_checkpoint,
    process_seed,
    seed_everything,
    train_one_epoch,
    unwrap_model,
    weights_loadable,
)
from dagnet_layers.emotic.losses import DAGNetCriterion, list_losses
from dagnet_layers.emotic.paper import PAPER_TABLE1, PAPER_TABLE1_MAP
from dagnet_layers.errors import DAGNetError
from dagnet_layers.inference.checkpoint import MAX_IMAGE_SIZE
from dagnet_layers.models import (
    DAGNetConfig,
    check_pretrained_weights,
    model_config,
)
from dagnet_layers.storage import (
    FolderLock,
    FolderLockedError,
    StorageError,
    file_in_the_way,
    read_json_object,
    verify_files,
    write_bytes_atomic,
)

logger = logging.getLogger("train_emotic")

# ------------------------------------------------------------------ helpers
def setup_distributed(args: argparse.Namespace) -> tuple[torch.device, int, int]:
    """Initialise torch.distributed under torchrun; returns (device, rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and (args.device is None or args.device.startswith("cuda"))
    if world > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        dist.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(local_rank)
        device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        return device, dist.get_rank(), world
    if args.device:
        return torch.device(args.device), 0, 1
    return torch.device("cuda" if cuda else "cpu"), 0, 1


def resolve_defaults(args: argparse.Namespace) -> bool:
    """Fill unset flags from the paper (data given) or the demo (no data); returns demo."""
    demo = args.data_root is None and args.preprocessed is None
    for key, value in (DEMO_DEFAULTS if demo else PAPER_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.data_root is not None and args.preprocessed is not None:
        raise SystemExit("give either --data-root or --preprocessed, not both")
    if args.pretrained is None:
        args.pretrained = not demo  # a real dataset deserves ImageNet features
    if (args.partition is not None and args.image_size % args.partition
            and args.partition_policy == "error"):
        raise SystemExit(f"--image-size {args.image_size} must be divisible by --partition "
                         f"{args.partition}, or pass --partition-policy resize (or pad)")
    return demo


def make_datasets(args: argparse.Namespace, demo: bool, rank: int,
                  device: torch.device | None = None) -> dict[str, EmoticDataset]:
    """Train/val/test datasets of uint8 samples (augmentation runs batched on the device):
    :func:`~dagnet_layers.emotic.data.demo_datasets` or
    :func:`~dagnet_layers.emotic.data.emotic_datasets` with the flags' choices."""
    mode = getattr(args, "jpeg_decode", "auto")
    source = args.preprocessed if args.preprocessed is not None else args.data_root
    if mode == "device" and not demo and detect_layout(source, "train") != "official":
        raise SystemExit(f"--jpeg-decode device decodes the official layout's JPEGs; "
                         f"{source} is in the {detect_layout(source, 'train')} layout")
    options: dict[str, Any] = dict(
        cache=None if args.no_cache else args.cache_dir or "auto", size=args.image_size,
        jpeg_decode=mode, device=device, mask_body=not args.no_mask_body,
        max_pixels=args.max_pixels, on_bad_record="error" if args.strict_data else "skip",
        progress=not args.no_progress, rank=rank)  # fmt: skip
    if demo:
        return demo_datasets(args.demo_dir, args.demo_images, args.seed, **options)
    return emotic_datasets(source, **options)


def data_source(args: argparse.Namespace, demo: bool) -> dict[str, Any]:
    """What the model is trained on, recorded in checkpoints and reports.

    A ``--data-root`` that a synthetic writer marked (the demo set, diagnostic scenes)
    is synthetic too: its outputs say so, and no paper number stands beside them.
    """
    if demo:
        return {"source": "synthetic", "synthetic": True, "note": SYNTHETIC_NOTE}
    if args.preprocessed is not None:
        return {"source": "emotic-preprocessed", "synthetic": False,
                "path": str(args.preprocessed)}
    marker = synthetic_marker(args.data_root)
    if marker is not None:
        return {"source": "synthetic", "synthetic": True, "note": SYNTHETIC_NOTE,
                "path": str(args.data_root), "writer": marker.get("writer")}
    return {"source": "emotic", "synthetic": False, "path": str(args.data_root)}


def check_steps(loader: DataLoader, dataset: EmoticDataset, args: argparse.Namespace,
                world: int) -> None:
    """A training set too small for one full batch per process is an error, not 0 steps."""
    if len(loader) == 0:
        per_process = math.ceil(len(dataset) / world) if world > 1 else len(dataset)
        raise SystemExit(
            f"--batch-size {args.batch_size} gives no training step: the train split has "
            f"{len(dataset)} persons ({per_process} per process over {world}) and incomplete "
            f"batches are dropped; use --batch-size {max(1, per_process)} or less"
        )


def make_loader(dataset: EmoticDataset, args: argparse.Namespace, train: bool) -> DataLoader:
    if dist.is_initialized():
        sampler: Any = DistributedSampler(dataset, shuffle=train, seed=args.seed)
    else:
        sampler = EpochSampler(len(dataset), seed=args.seed, shuffle=train)
    return DataLoader(
        dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
        pin_memory=torch.cuda.is_available(), drop_last=train,
        persistent_workers=args.workers > 0,
        collate_fn=collate_encoded if isinstance(dataset, EmoticJpegDataset) else None,
    )


def check_model(args: argparse.Namespace) -> None:
    """Before any data is read: build the model on the meta device, where it takes no
    memory, loads no weights and draws no random number, so that a configuration it
    refuses (``--partition 100``, an unknown ``--body-backbone``) fails in a second
    instead of after the demo set and the caches are written. With ``--resume``, the
    model must also be the checkpoint's (:func:`check_resume`)."""
    probe = argparse.Namespace(**{**vars(args), "pretrained": False, "body_weights": None,
                                  "context_weights": None})  # fmt: skip
    with torch.device("meta"):
        model = build_model(probe)
    check_resume(args, model.config.to_dict())


def check_resume(args: argparse.Namespace, config: dict[str, Any]) -> None:
    """A ``--resume`` whose flags build another model than the checkpoint holds fails
    before any data is read, naming the fields that differ; the weights would otherwise
    be refused after the data, as a size mismatch deep in the state dict.

    ``config`` is what the flags build (:meth:`DAGNetConfig.to_dict`). The checkpoint is
    the one ``--resume`` will load: the newest whose checksums are right
    (:meth:`RunCheckpoints.newest_intact`; a damaged newer one is quarantined by the
    resume, not blamed on the flags), or the folder ``--resume`` names. Without a
    readable ``config.json`` there is nothing to compare (the load says what is wrong),
    nor with one that fails the checksum its ``MANIFEST.json`` records.
    ``gsam_block`` is left out: no flag sets it, and older versions recorded ``"abn"``
    for a backbone that fell back to the light block.
    """
    if not args.resume:
        return
    if args.resume == "auto":
        folder = RunCheckpoints(args.output_dir / "checkpoints").newest_intact()
        if folder is None:
            return  # nothing to compare: the resume says what it finds
    else:
        folder = Path(args.resume)
    try:
        saved = read_json_object(folder / "config.json", "checkpoint config").get("config")
    except (OSError, ValueError):
        return
    if not isinstance(saved, dict) or not _config_intact(folder):
        return
    ours = json.loads(json.dumps(config))  # tuples as the saved lists
    differ = [f"{k} {saved[k]!r} there, {ours[k]!r} now" for k in sorted(ours)
              if k in saved and k != "gsam_block" and saved[k] != ours[k]]  # fmt: skip
    if differ:
        raise SystemExit(f"--resume: the checkpoint in {folder} holds another model than "
                         f"these flags build ({'; '.join(differ)}); resume with the flags "
                         f"the run started with ({args.output_dir / 'args.json'}), or give "
                         "another --output-dir")


def _config_intact(folder: Path) -> bool:
    """Whether ``folder/config.json`` matches its manifest's record (or none is kept)."""
    from dagnet_layers.emotic.engine.checkpoints import _manifest

    record = ((_manifest(folder) or {}).get("files") or {}).get("config.json")
    if not isinstance(record, dict):
        return True  # no manifest (a save_pretrained folder): the config is all there is
    try:
        verify_files(folder, {"config.json": record})
    except (OSError, ValueError):  # IntegrityError is a ValueError
        return False
    return True


def check_weights(args: argparse.Namespace) -> None:
    """Before any data is read: fail in seconds if the pretrained weights cannot be had."""
    if not args.pretrained:
        return
    config, defaults = model_config(args.model), DAGNetConfig()
    for stream, given in (("body", args.body_weights), ("context", args.context_weights)):
        if given is None:
            key = f"{stream}_backbone"
            name = getattr(args, key) or config.get(key, getattr(defaults, key))
            check_pretrained_weights(name, key)


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    overrides: dict[str, Any] = {}
    if args.body_backbone:
        overrides["body_backbone"] = args.body_backbone
    if args.context_backbone:
        overrides["context_backbone"] = args.context_backbone
    if args.ablation:
        overrides["ablation"] = args.ablation
    if args.partition is not None:
        overrides["partition"] = args.partition
    if args.partition_policy != "error":
        overrides["patch_size_policy"] = args.partition_policy
    for flag, field in (("gcn_normalization", "gcn_normalization"),
                        ("gcn_init", "gcn_adjacency_init"), ("gcn_readout", "gcn_readout"),
                        ("lsam_graph", "lsam_graph"), ("bam_target", "bam_target"),
                        ("gsam_map", "gsam_map"), ("gsam_aux", "gsam_aux")):
        if getattr(args, flag, None) is not None:
            overrides[field] = getattr(args, flag)
    if getattr(args, "fixed_adjacency", False):
        overrides["gcn_learn_adjacency"] = False
    if args.vad:
        overrides["vad_head"] = True
    for stream, path in (("body", args.body_weights), ("context", args.context_weights)):
        if path is not None:
            if not path.is_file():
                raise SystemExit(f"--{stream}-weights {path} does not exist")
            overrides[f"{stream}_backbone_kwargs"] = dict(
                pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    overrides["image_size"] = args.image_size  # recorded in the checkpoint's pretrained_cfg
    return create_model(args.model, pretrained=args.pretrained, **overrides)


def build_optimizer(model: torch.nn.Module, *, lr: float,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:  # fmt: skip
    """Adam (the paper's optimiser) through timm's factory, which honours the model's contract.

    With ``weight_decay > 0``, :func:`timm.optim.create_optimizer_v2` puts biases,
    norms (every 1-D parameter) and what the model's ``no_weight_decay()`` names
    (the learned adjacency) in a group without decay; with 0 it is one plain group,
    as checkpoints written before this change hold.
    """
    from timm.optim import create_optimizer_v2

    inner = model.module if hasattr(model, "module") else model  # DDP / compile wrappers
    inner = getattr(inner, "_orig_mod", inner)
    return create_optimizer_v2(inner, opt="adam", lr=lr, weight_decay=weight_decay)


def print_table1(report: dict[str, Any], protocol: str, synthetic: bool = False) -> str:
    """Our per-category test AP (percent), next to the paper's Table 1 on EMOTIC runs only."""
    methods = [] if synthetic else list(PAPER_TABLE1)
    header = f"{'Category':<16} {'ours':>7} " + " ".join(f"{m[:12]:>12}" for m in methods)
    ties = f", ties={report['ties']}" if report.get("ties") else ""
    title = f"Test AP (%), protocol={protocol}{ties}, score={report.get('score')}"
    lines = [f"{SYNTHETIC_NOTE}." if synthetic else "EMOTIC test split.", title, header,
             "-" * len(header)]
    for cat in EMOTIC_CATEGORIES:
        ap = report["per_category_ap"].get(cat)
        missing = ap is None or (isinstance(ap, float) and math.isnan(ap))
        ours = "   n/a" if missing else f"{100 * ap:7.2f}"
        lines.append(f"{cat:<16} {ours:>7} "
                     + " ".join(f"{PAPER_TABLE1[m][cat]:12.2f}" for m in methods))
    mean_ap = report["mean_ap"]
    ours = "n/a" if mean_ap is None else f"{100 * mean_ap:7.2f}"
    lines.append("-" * len(header))
    lines.append(f"{'mAP':<16} {ours:>7} "
                 + " ".join(f"{PAPER_TABLE1_MAP[m]:12.2f}" for m in methods))
    return "\n".join(lines)


def write_reports(out: Path, report: dict[str, Any], protocol: str,
                  synthetic: bool = False) -> None:
    """test_report.json/.csv and the two figures; the paper's columns on EMOTIC runs only."""
    # each file whole or not at all: a full disk names the file and leaves no empty one
    write_bytes_atomic(out / "test_report.json", (json.dumps(report, indent=2) + "\n").encode())
    methods = [] if synthetic else list(PAPER_TABLE1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if synthetic:
        writer.writerow([f"# {SYNTHETIC_NOTE}"])
    writer.writerow(["category", "ap_ours", *[f"ap_{m}" for m in methods]])
    for cat in EMOTIC_CATEGORIES:
        ap = report["per_category_ap"].get(cat)
        writer.writerow([cat, "" if ap is None else ap,
                         *[PAPER_TABLE1[m][cat] / 100 for m in methods]])
    writer.writerow(["mAP", report["mean_ap"], *[PAPER_TABLE1_MAP[m] / 100 for m in methods]])
    write_bytes_atomic(out / "test_report.csv", buffer.getvalue().encode())
    from dagnet_layers.figures import plot_ap_comparison, plot_training_curves

    ap = {k: (float("nan") if v is None else v) for k, v in report["per_category_ap"].items()}
    if synthetic:
        plot_ap_comparison(ap, reference=None, ours_label="this run",
                           title=f"SYNTHETIC demo data (not EMOTIC): test AP ({protocol} protocol)",
                           path=out / "test_ap.png")
        plot_training_curves(out / "log.csv", out / "training_curves.png", reference_map=None,
                             title="SYNTHETIC demo data (not EMOTIC): training curves")
    else:
        plot_ap_comparison(ap, title=f"EMOTIC test AP ({protocol} protocol)",
                           path=out / "test_ap.png")
        plot_training_curves(out / "log.csv", out / "training_curves.png")


# --------------------------------------------------------------------- main
LOG_FIELDS = ("epoch", "train_loss", "val_loss", "val_map", "lr", "samples_per_s", "seconds")
#: What a run writes into its --output-dir (what --overwrite deletes).
RUN_ARTIFACTS = ("checkpoints", "log.csv", "args.json", "test_report.json", "test_report.csv",
                 "test_ap.png", "training_curves.png", "tensorboard")


def _keep_quarantine(out: Path) -> None:
    """Move the damaged checkpoints out of ``checkpoints/`` before --overwrite deletes it."""
    quarantine = out / "checkpoints" / RunCheckpoints.QUARANTINE
    if not quarantine.is_dir():
        return
    kept = out / f"quarantine-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        shutil.move(quarantine, kept)  # a rename, or a copy when checkpoints/ is elsewhere
    except OSError as err:
        raise StorageError(err.errno, f"--overwrite: cannot keep the damaged checkpoints of "
                           f"{quarantine} in {kept} ({err.strerror or err}); move them away "
                           "yourself first") from err
    logger.warning("--overwrite: the damaged checkpoints are kept in %s", kept)


def _nothing_intact(store: RunCheckpoints) -> str | None:
    """The one-line refusal of a resume that found only damaged checkpoints, or ``None``."""
    damaged = store.quarantined()
    if not damaged:
        return None
    notes = []
    for folder in damaged:
        notes.append(f"{folder.name}" + (" (its model checks out: DAGNet.from_pretrained"
                                         f"('{folder}') loads it)"
                                         if weights_loadable(folder) else ""))
    return (f"--resume: no intact checkpoint in {store.directory}; {len(damaged)} damaged "
            f"one(s) are in {store.directory / RunCheckpoints.QUARANTINE}, each with "
            f"{RunCheckpoints.QUARANTINE_NOTE} saying what failed: {'; '.join(notes)}. Start "
            "over with --overwrite (the quarantine is kept, moved beside the run), or repair "
            "one and pass --resume PATH")


def open_run(args: argparse.Namespace, rank: int) -> FolderLock | None:
    """Lock the output folder (rank 0) and refuse to overwrite a run implicitly.

    Every rank gets the same outcome: rank 0's error, if any, ends all of them.
    """
    out: Path = args.output_dir
    lock, error = None, None
    if rank == 0:
        try:
            lock = FolderLock(out, purpose="train_emotic.py").acquire()
            existing = [name for name in RUN_ARTIFACTS if (out / name).exists()]
            if args.resume and args.overwrite:
                error = "give --resume or --overwrite, not both"
            elif existing and not args.resume and not args.overwrite:
                error = (f"{out} already holds a training run ({', '.join(existing)}); pass "
                         "--resume to continue it, --overwrite to delete it and start over, or "
                         "another --output-dir")
            elif existing and args.overwrite:
                logger.warning("--overwrite: deleting the run in %s (%s)", out,
                               ", ".join(existing))
                _keep_quarantine(out)  # damaged checkpoints may be the only copy: kept
                for name in existing:
                    path = out / name
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
        except (FolderLockedError, StorageError) as err:
            error = str(err)
    error = from_rank0(error, rank)
    if error:
        if lock is not None:
            lock.release()
        raise SystemExit(error)
    return lock


def log_fallbacks(transform: Any, when: str) -> None:
    """Warn of what the device JPEG decoder refused during ``when`` (the same pixels
    came from slower paths): nothing when it refused nothing or is not in use."""
    if not isinstance(transform, JpegBatchDecoder):
        return
    batches, files = transform.pop_fallbacks()
    if not batches:
        return
    names = sorted(files)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    logger.warning(
        "%s: the device decoder refused %d batch(es) as a whole and decoded them image by "
        "image, which is slower%s", when, batches,
        f"; {len(names)} file(s) it could not decode at all were decoded by Pillow on the "
        f"host: {shown}" if names else "")


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite ``log.csv`` atomically from the committed progress record."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buffer.getvalue().encode())


def _legacy_log(path: Path, upto: int) -> list[dict[str, Any]]:
    """Rows of a pre-release run's log.csv up to epoch ``upto`` (its checkpoints had no log)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("epoch", "").isdigit()]
    by_epoch = {int(r["epoch"]): r for r in rows if int(r["epoch"]) <= upto}
    return [{k: by_epoch[e].get(k) for k in LOG_FIELDS} for e in sorted(by_epoch)]


def _check_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The names the light parser cannot list without importing the package."""
    import difflib

    for flag, value, known in (("--model", args.model, list_models()),
                               ("--ablation", args.ablation, list(ABLATIONS)),
                               ("--loss", args.loss, list_losses())):
        if value is not None and value not in known:
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            parser.error(f"argument {flag}: unknown {value!r}; {hint}choose from "
                         f"{', '.join(known)}")
    if args.jpeg_decode == "device":  # both hold decoded images: nothing to decode
        if args.preprocessed is not None:
            parser.error("argument --jpeg-decode: 'device' decodes the official layout's "
                         "JPEGs; --preprocessed arrays hold decoded images")
        if args.cache_dir is not None:
            parser.error("argument --jpeg-decode: 'device' decodes the JPEGs every epoch; "
                         "--cache-dir reads them decoded once: give one of the two")


#: Integer flags and the least value each takes (``None``: the preset's default).
_AT_LEAST = (("--epochs", "epochs", 1), ("--batch-size", "batch_size", 1),
             ("--image-size", "image_size", 1), ("--partition", "partition", 1),
             ("--max-steps", "max_steps", 1), ("--workers", "workers", 0),
             ("--max-pixels", "max_pixels", 1))  # fmt: skip
#: Float flags, what each must be, and that rule in words (all must be finite too).
_FLOATS = (("--lr", "lr", lambda v: v > 0, "> 0"),
           ("--weight-decay", "weight_decay", lambda v: v >= 0, ">= 0"),
           ("--grad-clip", "grad_clip", lambda v: v > 0, "> 0 (0 would zero every gradient)"),
           ("--aux-weight", "aux_weight", lambda v: v >= 0, ">= 0"),
           ("--bam-weight", "bam_weight", lambda v: v >= 0, ">= 0"),
           ("--vad-weight", "vad_weight", lambda v: v >= 0, ">= 0"),
           ("--flip", "flip", lambda v: 0 <= v <= 1, "in [0, 1]"),
           ("--jitter", "jitter", lambda v: 0 <= v < 1, "in [0, 1)"))  # fmt: skip


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    folders: bool = True) -> None:  # fmt: skip
    """The names, numbers, device and (with ``folders``) folders of a parsed command
    line, before anything is read, written or built.

    Each refusal is one ``argument --flag: ...`` line through ``parser`` with exit
    status 2, not a failure minutes later (or a run that trains nothing, as
    ``--max-steps 0`` did). ``dagnet-diagnose`` checks its training runs' arguments
    with ``folders=False``: their data does not exist yet.
    """
    _check_names(parser, args)
    _check_numbers(parser, args)
    if args.no_cache and args.cache_dir is not None:
        refuse(parser, "--no-cache", "give --cache-dir or --no-cache, not both")
    if args.device is not None:
        usable_device(parser, args.device)
    for flag, path in (("--body-weights", args.body_weights),
                       ("--context-weights", args.context_weights)):
        if path is not None and not path.expanduser().is_file():
            refuse(parser, flag, f"{path} is a folder, not a file"
                   if path.expanduser().exists() else f"{path}: no such file")
    if folders:
        _check_folders(parser, args)


def _check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Counts at least their minimum, sizes within what a checkpoint may hold, rates
    and weights finite and in range."""
    for flag, name, least in _AT_LEAST:
        value = getattr(args, name)
        if value is not None and value < least:
            refuse(parser, flag, f"must be >= {least}, got {value}")
    if args.image_size is not None and args.image_size > MAX_IMAGE_SIZE:
        refuse(parser, "--image-size", f"must be <= {MAX_IMAGE_SIZE} (what a checkpoint's "
               f"inference.json may hold; the paper uses 224), got {args.image_size}")
    if args.data_root is None and args.preprocessed is None and args.demo_images < MIN_IMAGES:
        refuse(parser, "--demo-images", f"must be >= {MIN_IMAGES} (each split needs room "
               f"for the demo set's planted quirks), got {args.demo_images}")
    for flag, name, rule, words in _FLOATS:
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and rule(value)):
            refuse(parser, flag, f"must be finite and {words}, got {value}")


def _check_folders(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Data folders that exist, output folders no file stands in the way of, and a
    ``--resume`` folder that is a checkpoint."""
    for flag, path in (("--data-root", args.data_root), ("--preprocessed", args.preprocessed)):
        if path is not None and not path.expanduser().is_dir():
            refuse(parser, flag, f"{path} is a file, not a folder"
                   if path.expanduser().exists() else f"{path}: no such folder")
    for flag, path in (("--output-dir", args.output_dir), ("--cache-dir", args.cache_dir),
                       ("--demo-dir", args.demo_dir)):
        blocking = None if path is None else file_in_the_way(path.expanduser(), folder=True)
        if blocking is not None:
            refuse(parser, flag, f"{blocking} is a file, not a folder")
    if args.resume not in (None, "auto"):
        given = Path(args.resume).expanduser()
        if not (given / "model.safetensors").is_file():
            refuse(parser, "--resume", f"{given} is not a checkpoint folder (no "
                   "model.safetensors): give one a run wrote (RUN/checkpoints/last or "
                   "epoch-NNNN), or --resume alone to continue the run in --output-dir")


def main(argv: list[str] | None = None, prog: str = "dagnet-train") -> int:
    """Run the training command line (see ``dagnet-train --help``); returns the exit status."""
    parser = build_train_parser(prog)
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    # The EMOTIC toolkit's extra, before any data is read or written. Imported here,
    # before seeding, also because importing sklearn draws from Python's global RNG
    # (through rich): imported lazily at the first evaluation, it made a resumed run's
    # saved RNG state differ from an uninterrupted one's (tests/test_crash.py).
    require("scipy.io", "dagnet-train (reading and writing Annotations.mat)")
    require("sklearn.metrics", "dagnet-train (the validation thresholds)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    device, rank, world = setup_distributed(args)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    demo = resolve_defaults(args)
    if demo:
        logger.warning("no --data-root/--preprocessed given: training the demo configuration "
                       "on %s", SYNTHETIC_NOTE)
    data = data_source(args, demo)
    if data["synthetic"] and not demo:
        logger.warning("%s is marked synthetic (%s): every output will say %s", args.data_root,
                       data.get("writer"), SYNTHETIC_NOTE)
    check_weights(args)  # first: its message names the ways out of a missing download
    check_model(args)
    lock = open_run(args, rank)
    try:
        return _train(args, data, demo, device, rank, world)
    finally:
        if lock is not None:
            lock.release()
        if dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class _Run:
    """What one training run holds from its set-up to its final test."""

    args: argparse.Namespace
    data: dict[str, Any]
    demo: bool
    device: torch.device
    rank: int
    world: int
    amp: str
    channels_last: bool
    loaders: dict[str, DataLoader]
    model: torch.nn.Module
    train_tf: Any
    eval_tf: Any
    criterion: DAGNetCriterion
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    store: RunCheckpoints
    net: torch.nn.Module | None = None
    writer: Any = None
    start_epoch: int = 0
    best_map: float = -1.0
    best_epoch: int | None = None
    log_rows: list[dict[str, Any]] = dataclass_field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.args.output_dir

    @property
    def score(self) -> str:
        """How this loss's logits become scores (softmax for KL)."""
        return self.criterion.score


def _train(args: argparse.Namespace, data: dict[str, Any], demo: bool, device: torch.device,
           rank: int, world: int) -> int:
    """Set up, resume, train epoch by epoch (each committed), then test the best epoch."""
    run = _set_up(args, data, demo, device, rank, world)
    _resume(run)
    if rank == 0:
        write_log(run.out / "log.csv", run.log_rows)  # exactly the committed epochs, each once
    run.net = _wrap(run)
    run.writer = _tensorboard(run)
    for epoch in range(run.start_epoch, args.epochs):
        if not _epoch(run, epoch):
            return 2
    return _final_test(run)


def _set_up(args: argparse.Namespace, data: dict[str, Any], demo: bool, device: torch.device,
            rank: int, world: int) -> _Run:  # fmt: skip
    """The data, the model, its transforms, loss and optimiser, in the order that fixes
    every random draw (a cache build must not shift the model's initialisation)."""
    seed_everything(args.seed)
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    channels_last = args.channels_last and device.type == "cuda"
    if rank == 0:
        write_bytes_atomic(args.output_dir / "args.json", (json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            indent=2) + "\n").encode())

    datasets = make_datasets(args, demo, rank, device)
    loaders = {s: make_loader(d, args, s == "train") for s, d in datasets.items()}
    check_steps(loaders["train"], datasets["train"], args, world)
    seed_everything(args.seed)  # after the data: a cache build must not shift the model's init
    model = build_model(args).to(device)
    # each stream normalised as its backbone was trained (timm's pretrained_cfg)
    norm = normalization_of(model)
    train_tf: Any = emotic_batch_transform(True, size=args.image_size, jitter=args.jitter,
                                           flip_p=args.flip, **norm).to(device)
    eval_tf: Any = emotic_batch_transform(False, size=args.image_size, **norm).to(device)
    if isinstance(datasets["train"], EmoticJpegDataset):  # decode, crop and mask first
        decoding = dict(size=args.image_size, mask_body=not args.no_mask_body,
                        channels_last=channels_last)
        train_tf = JpegBatchDecoder(**decoding, transform=train_tf)
        eval_tf = JpegBatchDecoder(**decoding, transform=eval_tf)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = DAGNetCriterion(args.loss, aux_weight=args.aux_weight,
                                vad_weight=args.vad_weight if args.vad else 0.0,
                                bam_weight=args.bam_weight)
    optimizer = build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(loaders["train"]) if args.max_steps is None else min(
        args.max_steps, len(loaders["train"]))
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, args.epochs * steps_per_epoch))
        if args.scheduler == "cosine" else None)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" and device.type == "cuda" else None
    return _Run(args, data, demo, device, rank, world, amp, channels_last, loaders, model,
                train_tf, eval_tf, criterion, optimizer, scheduler, scaler,
                RunCheckpoints(args.output_dir / "checkpoints"))


def _resume(run: _Run) -> None:
    """With ``--resume``: load the newest intact checkpoint (rank 0 repairs what an
    interrupted run left, every rank loads the result) and its progress record."""
    args, rank = run.args, run.rank
    if not args.resume:
        return
    if args.resume == "auto":
        found, refusal = None, None
        if rank == 0:
            try:
                found = run.store.recover()
                refusal = _nothing_intact(run.store) if found is None else None
            except (OSError, DAGNetError) as err:  # every rank stops, none waits
                refusal = f"--resume: cannot recover {run.store.directory}: {err}"
        ckpt, refusal = from_rank0((None if found is None else str(found), refusal), rank)
        if refusal is not None:
            raise SystemExit(refusal)
    else:
        ckpt = str(args.resume)
    if ckpt is None:
        logger.warning("--resume: nothing to resume in %s; starting a fresh run", run.out)
        return
    last = load_checkpoint(ckpt, run.model, run.optimizer, run.scheduler, scaler=run.scaler,
                           map_location=run.device)
    run.start_epoch = last + 1
    record = RunCheckpoints.progress(ckpt)
    run.best_map = record.get("best_val_map", run.best_map)
    run.best_epoch = record.get("best_epoch")
    run.log_rows = record.get("log") or _legacy_log(run.out / "log.csv", last)
    logger.info("resumed from %s at epoch %d", ckpt, run.start_epoch)


def _wrap(run: _Run) -> torch.nn.Module:
    """The module the steps call: DistributedDataParallel over several processes, then
    ``torch.compile`` with ``--compile``."""
    net: torch.nn.Module = run.model
    if run.world > 1:
        model = run.model
        unused = bool((model.context_attention is not None and run.args.aux_weight == 0)
                      or (model.body_head is not None and run.args.bam_weight == 0))
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=unused)
    if run.args.compile:
        net = torch.compile(net)
    return net


def _tensorboard(run: _Run) -> Any:
    """A TensorBoard writer on rank 0 with ``--tensorboard``, else None."""
    if not run.args.tensorboard or run.rank != 0:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise SystemExit("--tensorboard needs the tensorboard package: pip install "
                         "tensorboard (or, from a clone, pip install -e '.[dev]')") from err
    return SummaryWriter(run.out / "tensorboard")


def _epoch(run: _Run, epoch: int) -> bool:
    """Train and validate one epoch, then commit it (rank 0) while the others wait;
    False when the loss stopped being finite (the error is logged)."""
    args, progress = run.args, not run.args.no_progress
    # Every draw of epoch k depends on (seed, k, rank) only: a resumed run repeats an
    # uninterrupted one, and no two ranks share augmentations or dropout masks.
    seed_everything(process_seed(args.seed, epoch, run.rank))
    run.loaders["train"].sampler.set_epoch(epoch)
    try:
        stats = train_one_epoch(
            run.net, run.loaders["train"], run.criterion, run.optimizer, epoch=epoch,
            device=run.device, batch_transform=run.train_tf, scheduler=run.scheduler,
            amp=run.amp, scaler=run.scaler, grad_clip=args.grad_clip,
            channels_last=run.channels_last, max_steps=args.max_steps, progress=progress,
        )
    except NonFiniteLossError as err:
        logger.error("%s", err)
        return False
    val = evaluate(run.net, run.loaders["val"], device=run.device, batch_transform=run.eval_tf,
                   criterion=run.criterion, amp=run.amp, channels_last=run.channels_last,
                   protocol=args.protocol, ties=args.ties, score=run.score, progress=progress,
                   desc=f"epoch {epoch} val")
    log_fallbacks(run.train_tf, f"epoch {epoch} train")
    log_fallbacks(run.eval_tf, f"epoch {epoch} val")
    logger.info("epoch %d: train loss %.4f, val loss %.4f, val mAP %.2f%%, %.1f samples/s",
                epoch, stats.loss, val.loss, 100 * val.report.mean_ap,
                stats.samples_per_second)
    if run.rank == 0:
        _commit(run, epoch, stats, val)
    if dist.is_initialized():
        dist.barrier()  # the other ranks wait for rank 0's commit
    return True


def _commit(run: _Run, epoch: int, stats: Any, val: Any) -> None:
    """One commit holds the weights, the progress record and the log rows; then the
    log and TensorBoard are written from it."""
    args, val_map = run.args, val.report.mean_ap
    run.log_rows.append(dict(zip(LOG_FIELDS, [
        epoch, stats.loss, val.loss, val_map, run.optimizer.param_groups[0]["lr"],
        stats.samples_per_second, stats.seconds], strict=True)))
    if not math.isnan(val_map) and val_map > run.best_map:
        run.best_map, run.best_epoch = val_map, epoch
    inference = {
        "image_size": args.image_size, "mask_body": not args.no_mask_body,
        "mask_fill": 0, "score": run.score, "loss": args.loss,
        "protocol": args.protocol, "ties": args.ties, "val_map": val_map,
        "data": run.data,
        "thresholds": dict(zip(EMOTIC_CATEGORIES,
                               [None if math.isnan(t) else float(t)
                                for t in val.thresholds], strict=True)),
    }
    run.store.save(run.model, run.optimizer, run.scheduler, epoch=epoch, scaler=run.scaler,
                   inference=inference,
                   progress={"best_val_map": run.best_map, "best_epoch": run.best_epoch,
                             "log": run.log_rows})
    write_log(run.out / "log.csv", run.log_rows)
    crash_point("log-written", epoch)
    if run.writer is not None:
        run.writer.add_scalar("train/loss", stats.loss, epoch)
        run.writer.add_scalar("val/mAP", val_map, epoch)
        run.writer.add_scalar("train/samples_per_s", stats.samples_per_second, epoch)


def _final_test(run: _Run) -> int:
    """The test split with the best validation checkpoint, and the reports."""
    # The run knows its best epoch; only a resumed pre-release run needs the store to find it.
    best_folder = None
    if run.rank == 0:
        best_folder = (run.store.folder(run.best_epoch) if run.best_epoch is not None
                       else run.store.best())  # fmt: skip
    best = from_rank0(None if best_folder is None else str(best_folder), run.rank)
    if best is not None:
        load_checkpoint(best, run.model, map_location=run.device, restore_rng=False)
    else:
        logger.warning("no validation score was ever finite: testing the last weights")
    args = run.args
    test = evaluate(run.net, run.loaders["test"], device=run.device,
                    batch_transform=run.eval_tf, amp=run.amp, channels_last=run.channels_last,
                    protocol=args.protocol, ties=args.ties, score=run.score,
                    progress=not args.no_progress, desc="test")
    log_fallbacks(run.eval_tf, "test")
    crash_point("test-evaluated", "final")
    if run.rank == 0:
        report = test.report.to_dict()
        report["model"] = unwrap_model(run.model).config.to_dict()
        report["demo"] = run.demo
        report["data"] = run.data
        report["checkpoint"] = best
        write_reports(run.out, report, args.protocol, synthetic=run.data["synthetic"])
        print(print_table1(report, args.protocol, synthetic=run.data["synthetic"]))
        print(f"\nreports, checkpoints and plots in {run.out.resolve()}")
        if run.writer is not None:
            run.writer.close()
    return 0


def run_cli(argv: list[str] | None = None, prog: str = "dagnet-train") -> int:
    """:func:`main` with a failure printed as one line (exit status 2), not a traceback.

    Library errors (a bad file, record, config or checkpoint, each named), OS errors
    (a full disk...) and rejected argument values exit with status 2; ``--debug``
    shows the traceback instead (see :mod:`dagnet_layers.cli`).
    """
    return cli.run_cli(lambda a: main(a, prog=prog), argv, prog=prog)


if __name__ == "__main__":  # python -m dagnet_layers.commands.train (e.g. under torchrun)
    start = time.perf_counter()
    code = run_cli(prog="dagnet_layers.commands.train")
    logger.info("done in %.1f s", time.perf_counter() - start)
    sys.exit(code)
