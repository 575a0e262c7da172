"""End-to-end training throughput, data pipeline included: samples/s a run would see.

Each variant is a model (the paper's ``dagnet_r50_r18`` and the two-stream baseline
on the same backbones, ``dagnet_r50_r18_baseline``), a data path (``jpeg``: decoding
in the DataLoader workers every epoch; ``jpeg-device``: the workers read the files and
the training device decodes them, batched, as ``dagnet-train --jpeg-decode device``
does (nvJPEG on CUDA; on a CPU the main process decodes); ``cache``: the decoded-image
cache read with ``pread``), a precision (``fp32``, ``bf16`` autocast) and eager or
``torch.compile``.
Every variant keeps its model, optimiser (AdamW) and an endless loader alive; after
``--warmup`` steps (worker start, compilation, allocator), rounds time each variant
in turn for at least ``--min-time`` seconds of optimiser steps, so all see the same
machine load. A step is :func:`~dagnet_layers.emotic.engine.train_one_epoch`'s:
batched augmentation on the device, the paper's loss, backward, optimiser step.
Figures: median samples/s over the rounds with min-max, and the ratios that matter
(DAG-Net / baseline, cache / jpeg, jpeg-device / jpeg, bf16 / fp32, compiled / eager).

Each data path is also timed alone, in the same rounds (``loader alone, <path>``): the
same loader and batch transform (device-side augmentation, and decoding for
``jpeg-device``), with no model. Its samples/s over each variant's gives the loader's
headroom, the issue's target being at least 2x what the model consumes on the machine
it runs on (``--no-loader-alone`` leaves it out). For a path short of it, the report
says where the time goes: the share spent waiting for the loader's next batch, and, from
``--profile-batches`` batches under :mod:`torch.profiler` after the rounds, the
operators the training process issues per batch, the device kernels they launch and
the device time those take, against the wall time per batch of the rounds. A few
device milliseconds in a much longer batch, with little waiting for the loader: the
process that issues the work is the limit (launches, Python), not the device.

The data is synthetic EMOTIC in the official layout with 640 x 480 JPEGs
(``--images``; 17,077 is EMOTIC's count). All of one size, they spare the device
decoder the padding its chunks need for EMOTIC's mixed sizes (off the CPU). Example::

    python benchmarks/bench_train.py                         # CPU: small defaults, minutes
    python benchmarks/bench_train.py --device cuda --out benchmarks/results/train_cuda-h100.json
    python benchmarks/bench_train.py --quick                 # smoke run, tiny model
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    EndlessLoader,
    configure_torch,
    default_output,
    environment,
    environment_markdown,
    loadavg,
    markdown_table,
    resolve_device,
    write_outputs,
)

from dagnet_layers import create_model
from dagnet_layers.emotic.data import (
    EmoticDataset,
    EmoticJpegDataset,
    JpegBatchDecoder,
    collate_encoded,
    emotic_batch_transform,
    make_synthetic_emotic,
    normalization_of,
)
from dagnet_layers.emotic.engine import move_batch, train_one_epoch
from dagnet_layers.emotic.losses import DAGNetCriterion

CPU = dict(models=("dagnet_r50_r18", "dagnet_r50_r18_baseline"), data=("jpeg", "cache"),
           dtypes=("fp32",), compile=(False,), images=300, image_size=112, batch=8,
           min_time=15.0, warmup=2)  # fmt: skip
CUDA = dict(models=("dagnet_r50_r18", "dagnet_r50_r18_baseline"),
            data=("jpeg", "jpeg-device", "cache"),
            dtypes=("fp32", "bf16"), compile=(False, True), images=4000, image_size=224,
            batch=64, min_time=10.0, warmup=5)  # fmt: skip
QUICK = dict(models=("test_dagnet",), data=("jpeg", "jpeg-device", "cache"), dtypes=("fp32",),
             compile=(False,), images=24, image_size=32, batch=4, min_time=0.2, warmup=1)


#: The loader's headroom the issue asks for: what it delivers alone over what a model
#: consumes through it.
HEADROOM_TARGET = 2.0


@dataclass
class _Variant:
    name: str
    model: torch.nn.Module | None  # None: the data path alone
    optimizer: torch.optim.Optimizer | None
    stream: EndlessLoader
    transform: Any
    amp: str | None
    runs: list[float]
    #: the data path alone: per round, the share of its time spent waiting for the
    #: loader's next batch
    waits: list[float] = field(default_factory=list)
    #: the data path alone: seconds the last ``_load`` waited for batches
    wait_s: float = 0.0
    #: the data path alone: :func:`_profile`'s counts and times per batch
    profile: dict[str, Any] | None = None
    #: ``jpeg-device``: batches the device decoder refused whole, and the files it
    #: refused alone (decoded by Pillow), over the whole run (:func:`_fallbacks`)
    refused: int = 0
    host_files: set[str] = field(default_factory=set)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.rounds < 1:
        _parser().error(f"--rounds must be at least 1, got {args.rounds}")
    device = args.device = resolve_device(args.device)
    cfg = _settings(args, device)
    configure_torch(args)
    from dagnet_layers.commands.args import default_workers

    workers = default_workers() if args.workers is None else args.workers
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        md, paths = _run(args, cfg, device, workers, Path(tmp))
    print(md)
    print("wrote", *paths)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--quick", action="store_true", help="tiny model and data (smoke run)")
    p.add_argument("--images", type=int, default=None, help="synthetic images to write")
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers per variant (default: the usable cores, at most 16)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--min-time", type=float, default=None, help="timed seconds per round")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first")
    p.add_argument("--models", nargs="+", default=None)
    p.add_argument("--data", nargs="+", choices=("jpeg", "jpeg-device", "cache"), default=None)
    p.add_argument("--dtypes", nargs="+", choices=("fp32", "bf16"), default=None)
    p.add_argument("--compile", nargs="+", choices=("eager", "compile"), default=None)
    p.add_argument("--no-loader-alone", dest="loader_alone", action="store_false",
                   help="do not time each data path alone (the loader's headroom)")
    p.add_argument("--profile-batches", type=int, default=3,
                   help="batches of each data path alone profiled after the rounds (0: none)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--dir", type=Path, default=None, help="where the synthetic data goes")
    p.add_argument("--out", type=Path, default=None, help="JSON to write (and .md beside it)")
    return p


def _settings(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The preset for the device (or --quick) with the flags given over it."""
    cfg = dict(QUICK if args.quick else CUDA if device.type == "cuda" else CPU)
    for key, flag in (("images", "images"), ("image_size", "image_size"),
                      ("batch", "batch_size"), ("min_time", "min_time"), ("warmup", "warmup"),
                      ("models", "models"), ("data", "data"), ("dtypes", "dtypes")):
        if getattr(args, flag) is not None:
            cfg[key] = getattr(args, flag)
    if args.compile is not None:
        cfg["compile"] = tuple(c == "compile" for c in args.compile)
    if args.threads is None and device.type == "cpu":
        args.threads = torch.get_num_threads()  # the whole machine: this is a training run
    return cfg


def _run(args: argparse.Namespace, cfg: dict[str, Any], device: torch.device, workers: int,
         tmp: Path) -> tuple[str, tuple[Path, Path]]:  # fmt: skip
    """Write the data, build the variants, warm them up and time them in rounds."""
    size = int(cfg["image_size"])
    info = make_synthetic_emotic(tmp / "syn", n_images=int(cfg["images"]), seed=0,
                                 image_size=(640, 480))  # fmt: skip
    datasets = {"jpeg": EmoticDataset(info.root, "train", size=size),
                "jpeg-device": EmoticJpegDataset(info.root, "train", size=size),
                "cache": EmoticDataset(info.root, "train", size=size,
                                       cache_dir=tmp / "cache")}  # fmt: skip
    n_train = len(datasets["jpeg"])
    variants = _variants(args, cfg, device, workers, datasets)
    criterion = DAGNetCriterion().to(device)

    def steps(v: _Variant, n: int, timed: bool = False) -> tuple[int, float]:
        """``n`` optimiser steps in one call, as an epoch runs them: (samples, seconds)."""
        if v.model is None:  # by time, after the batches prefetched while others ran
            if not timed:
                return _load(v, n, device, 0.0)
            return _load(v, 1, device, float(cfg["min_time"]), skip=v.stream.prefetched)
        stats = train_one_epoch(v.model, v.stream, criterion, v.optimizer, device=device,
                                batch_transform=v.transform, amp=v.amp,
                                channels_last=device.type == "cuda", max_steps=n,
                                progress=False)  # fmt: skip
        return stats.samples, stats.seconds

    per_round: dict[str, int] = {}
    for v in variants:  # warm-up, then one more step to size the timed rounds
        steps(v, int(cfg["warmup"]))
        if v.model is None:  # timed by time alone: a first batch from the queue is free
            continue
        _, seconds = steps(v, 1)
        per_round[v.name] = max(2, math.ceil(float(cfg["min_time"]) / max(seconds, 1e-6)))
    out = args.out or default_output("train", device, args.quick)
    load_start = loadavg()
    for done in range(1, args.rounds + 1):
        for v in variants:
            samples, seconds = steps(v, per_round.get(v.name, 1), timed=True)
            v.runs.append(samples / seconds)
            if v.model is None:
                v.waits.append(v.wait_s / seconds)
        _fallbacks(variants)
        # written after every round: a run stopped by a time limit keeps what it measured
        md, paths = _report(variants, cfg, args, device, n_train, workers, done, out,
                            load_start=load_start)  # fmt: skip
    alone = [v for v in variants if v.model is None]
    if args.profile_batches > 0 and alone:
        for v in alone:
            v.profile = _profile(v, device, args.profile_batches)
        _fallbacks(variants)
        md, paths = _report(variants, cfg, args, device, n_train, workers, done, out,
                            load_start=load_start)  # fmt: skip
    return md, paths


def _variants(args: argparse.Namespace, cfg: dict[str, Any], device: torch.device,
              workers: int, datasets: dict[str, Any]) -> list[_Variant]:  # fmt: skip
    """One variant per model, data path, dtype and mode; then each data path alone."""
    size = int(cfg["image_size"])

    def pipeline(data: str, **normalization: Any) -> tuple[EndlessLoader, Any]:
        """A data path's loader and batch transform, the same for a model variant and
        for the path timed alone."""
        loader = DataLoader(datasets[data], batch_size=int(cfg["batch"]), shuffle=True,
                            num_workers=workers, drop_last=True,
                            persistent_workers=workers > 0,
                            pin_memory=device.type == "cuda",
                            collate_fn=collate_encoded if data == "jpeg-device" else None,
                            )  # fmt: skip
        transform = emotic_batch_transform(train=True, size=size, **normalization).to(device)
        if data == "jpeg-device":  # decode, crop, resize and mask on the device first
            transform = JpegBatchDecoder(size, channels_last=device.type == "cuda",
                                         transform=transform)  # fmt: skip
        return EndlessLoader(loader), transform

    variants: list[_Variant] = []
    combos = [(m, d, dt, c) for m, d, dt, c in itertools.product(
        cfg["models"], cfg["data"], cfg["dtypes"], cfg["compile"])
        # compiled fp32 only when asked for: each compilation costs about a minute
        if not (c and dt == "fp32" and args.dtypes is None and args.compile is None)]
    for model_name, data, dtype, compiled in combos:
        torch.manual_seed(0)
        model = create_model(model_name).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        net = torch.compile(model) if compiled else model
        name = f"{model_name}, {data}, {dtype}, {'compile' if compiled else 'eager'}"
        stream, transform = pipeline(data, **normalization_of(model))
        variants.append(_Variant(name, net, optimizer, stream, transform,
                                 None if dtype == "fp32" else dtype, []))  # fmt: skip
    paths = list(dict.fromkeys(cfg["data"])) if args.loader_alone else []
    for data in paths:  # the same loader and transform as a model variant, no model
        stream, transform = pipeline(data)
        variants.append(_Variant(f"{LOADER_ALONE}, {data}", None, None, stream, transform,
                                 None, []))  # fmt: skip
    return variants


LOADER_ALONE = "loader alone"


def _report(variants: list[_Variant], cfg: dict[str, Any], args: argparse.Namespace,
            device: torch.device, n_train: int, workers: int, done: int,
            out: Path, load_start: float | None = None) -> tuple[str, tuple[Path, Path]]:
    """Write the figures of the first ``done`` rounds; (markdown, paths written). The 1-min
    load average before the timed rounds (``load_start``) and now are recorded; the run's
    own threads and loader workers count in them, more than those means other jobs."""
    rates = {v.name: statistics.median(v.runs) for v in variants}
    rows = [(v.name, f"{rates[v.name]:,.2f}", f"{min(v.runs):,.2f}-{max(v.runs):,.2f}")
            for v in variants]  # fmt: skip
    ratios = _ratios(rates)
    headroom = _headroom(rates)
    size = int(cfg["image_size"])
    where = _where_time_goes(variants, rates, int(cfg["batch"]))
    fallbacks = {v.name: {"batches_refused": v.refused,
                          "files_decoded_by_pillow": len(v.host_files)}
                 for v in variants if isinstance(v.transform, JpegBatchDecoder)}  # fmt: skip
    fell_back = {k: f for k, f in fallbacks.items() if f["batches_refused"]}
    env = environment(device, models=list(cfg["models"]), images=int(cfg["images"]),
                      train_persons=n_train, image_size=size, batch_size=int(cfg["batch"]),
                      workers=workers, rounds=args.rounds, rounds_done=done,
                      min_time_s=float(cfg["min_time"]), quick=args.quick,
                      loadavg_1min_start=load_start, loadavg_1min_end=loadavg())  # fmt: skip
    partial = "" if done == args.rounds else (
        f" **Only {done} of {args.rounds} rounds had run when this was written.**")
    md = ("# End-to-end training throughput (data pipeline included)\n\n"
          f"Synthetic EMOTIC, {int(cfg['images'])} images of 640 x 480 ({n_train} train "
          f"persons), {size} px, batch {int(cfg['batch'])}, {workers} loader workers; "
          f"median samples/s of {done} interleaved rounds of at least "
          f"{float(cfg['min_time']):g} s each, with min-max.{partial}\n\n"
          + markdown_table(["model, data, dtype, mode", "samples/s", "min-max"], rows)
          + ("\n\n" + markdown_table(["ratio", "value"], list(ratios.items())) if ratios else "")
          + (f"\n\nThe loader's headroom: each data path alone (loader and batch transform, "
             f"no model) over what a variant consumes through it; target >= "
             f"{HEADROOM_TARGET:g}x.\n\n"
             + markdown_table(["variant", "loader alone / variant", "met"],
                              [(k, f"{v:.2f}x", "yes" if v >= HEADROOM_TARGET else "**no**")
                               for k, v in headroom.items()])
             if headroom else "")
          + (_where_markdown(where) if where else "")
          + ("\n\n**The device decoder fell back, so these figures time its slower paths:** "
             + "; ".join(f"{k}: {f['batches_refused']} batches refused whole, "
                         f"{f['files_decoded_by_pillow']} files decoded by Pillow"
                         for k, f in fell_back.items()) + "."
             if fell_back else "")
          + "\n\n" + environment_markdown(env))  # fmt: skip
    paths = write_outputs({"environment": env, "samples_per_s": rates,
                           "rounds": {v.name: v.runs for v in variants}, "ratios": ratios,
                           "loader_headroom": headroom, "headroom_target": HEADROOM_TARGET,
                           "loader_alone": where, "decoder_fallbacks": fallbacks},
                          md, out)  # fmt: skip
    return md, paths


def _fallbacks(variants: list[_Variant]) -> None:
    """Add what each device decoder refused since the last call to its variant's
    counts: a refused batch is decoded image by image, a refused file by Pillow, so a
    run that fell back times those slower paths and must say so."""
    for v in variants:
        if isinstance(v.transform, JpegBatchDecoder):
            batches, files = v.transform.pop_fallbacks()
            v.refused += batches
            v.host_files.update(files)


def _load(v: _Variant, n: int, device: torch.device, min_time: float,
          skip: int = 0) -> tuple[int, float]:
    """A data path alone, as :func:`train_one_epoch` feeds a model (moved to the device,
    then the batch transform) for at least ``n`` batches and ``min_time`` seconds;
    (samples, seconds). The first ``skip`` batches are taken untimed: the workers made
    them while other variants were timed, so they would come at no cost."""
    channels_last = device.type == "cuda"
    for _ in range(skip):
        next(v.stream)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # nothing queued by the variant before is timed
    samples, batches, wait, start = 0, 0, 0.0, time.perf_counter()
    while True:
        asked = time.perf_counter()
        raw = next(v.stream)
        wait += time.perf_counter() - asked
        batch = v.transform(move_batch(raw, device, channels_last))
        samples, batches = samples + int(batch["body"].shape[0]), batches + 1
        if batches >= n and time.perf_counter() - start >= min_time:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            v.wait_s = wait
            return samples, time.perf_counter() - start


def _profile(v: _Variant, device: torch.device, batches: int) -> dict[str, Any]:
    """Where a data path's time goes, per batch, from ``batches`` batches taken as
    :func:`_load` takes them under :mod:`torch.profiler`: the operators the process
    issues (``aten`` calls not inside another), the device kernels and copies they
    launch and the device time those take (none on a CPU). A failure is recorded,
    never raised: the rounds' figures are already written."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    try:
        for _ in range(v.stream.prefetched):
            next(v.stream)  # made while nothing was profiled: not this path's cost
        with profile(activities=activities) as prof:
            _load(v, batches, device, 0.0)
        events = prof.events()
        host = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU
                and e.name.startswith("aten::") and e.cpu_parent is None]  # fmt: skip
        out: dict[str, Any] = {"batches": batches, "host_ops_per_batch": len(host) / batches}
        if device.type != "cpu":
            kernels = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
            out["device_events_per_batch"] = len(kernels) / batches
            out["device_ms_per_batch"] = (sum(e.time_range.elapsed_us() for e in kernels)
                                          / 1000 / batches)  # fmt: skip
        return out
    except Exception as exc:  # a profiler that cannot start on this machine
        return {"batches": batches, "error": f"{type(exc).__name__}: {exc}"}


def _where_time_goes(variants: list[_Variant], rates: dict[str, float],
                     batch: int) -> dict[str, dict[str, Any]]:
    """Each data path alone: the wall time per batch of its rounds, the median share of
    it spent waiting for the loader's next batch, and its profile if taken."""
    out: dict[str, dict[str, Any]] = {}
    for v in variants:
        if v.model is not None:
            continue
        entry: dict[str, Any] = {"wall_ms_per_batch": 1000 * batch / rates[v.name]}
        if v.waits:
            entry["wait_share"] = statistics.median(v.waits)
        if v.profile is not None:
            entry["profile"] = v.profile
            if "device_ms_per_batch" in v.profile:
                entry["device_busy_share"] = (v.profile["device_ms_per_batch"]
                                              / entry["wall_ms_per_batch"])  # fmt: skip
        out[v.name] = entry
    return out


def _where_markdown(where: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, e in where.items():
        prof = e.get("profile") or {}
        wait = f"{e['wait_share']:.0%}" if "wait_share" in e else "n/a"
        if "error" in prof:
            counts = ["profiler failed: " + prof["error"].replace("|", "/"), "", "", ""]
        elif not prof:
            counts = ["n/a"] * 4
        elif "device_ms_per_batch" not in prof:  # a CPU: no device of its own
            counts = [f"{prof['host_ops_per_batch']:,.0f}", "n/a", "n/a", "n/a"]
        else:
            counts = [f"{prof['host_ops_per_batch']:,.0f}",
                      f"{prof['device_events_per_batch']:,.0f}",
                      f"{prof['device_ms_per_batch']:,.2f}", f"{e['device_busy_share']:.0%}"]
        rows.append((name.removeprefix(f"{LOADER_ALONE}, "), f"{e['wall_ms_per_batch']:,.1f}",
                     wait, *counts))  # fmt: skip
    return ("\n\nWhere each data path's time goes (alone, per batch): the wall time of the "
            "rounds; the share of it spent waiting for the loader's next batch (the workers' "
            "shortfall; without workers, the loading itself); and, from batches profiled "
            "after the rounds, the operators the training process issues (outermost `aten` "
            "calls, views included), the device kernels and copies they launch and the "
            "device time those take. Little waiting and a small device share: the process "
            "issuing the work is the limit (launches, Python), not the device. Every "
            "synthetic image here is 640 x 480; off the CPU `jpeg-device` resizes many "
            "persons per chunk, padded to the chunk's largest, so EMOTIC's mixed sizes cost "
            "it more device time than here.\n\n"
            + markdown_table(["data path", "wall ms", "waiting for the loader", "host ops",
                              "device kernels", "device ms", "device busy"], rows))


def _headroom(rates: dict[str, float]) -> dict[str, float]:
    """Each model variant's data path alone over the variant: the loader's headroom."""
    out = {}
    for name, rate in rates.items():
        fields = name.split(", ")
        alone = rates.get(f"{LOADER_ALONE}, {fields[1]}")
        if not name.startswith(LOADER_ALONE) and alone is not None:
            out[name] = alone / rate
    return out


def _ratios(rates: dict[str, float]) -> dict[str, str]:
    """Pairs of model variants that differ in one field: DAG-Net/baseline, cache/jpeg,
    jpeg-device/jpeg, bf16/fp32, compile/eager."""
    out = {}
    fields = {name: name.split(", ") for name in rates if not name.startswith(LOADER_ALONE)}
    for a, fa in fields.items():
        for b, fb in fields.items():
            diff = [i for i in range(4) if fa[i] != fb[i]]
            if len(diff) != 1:
                continue
            i = diff[0]
            pairs = {0: [("dagnet_r50_r18", "dagnet_r50_r18_baseline")],
                     1: [("cache", "jpeg"), ("jpeg-device", "jpeg")],
                     2: [("bf16", "fp32")], 3: [("compile", "eager")]}[i]  # fmt: skip
            if (fa[i], fb[i]) in pairs:
                out[f"{a} / {fb[i]}"] = f"{rates[a] / rates[b]:.2f}x"
    return out


if __name__ == "__main__":
    sys.exit(main())
