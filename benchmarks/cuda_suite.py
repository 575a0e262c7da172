#!/usr/bin/env python
"""Everything a GPU should confirm, in one command, with nothing to install.

Runs from the source tree (it puts the checkout on ``PYTHONPATH``) on any machine
that already has torch, timm, torch-geometric and einops. Stages, each a separate
process with its own time limit and log, so that one failure never hides the rest:

==============  ==================================================================
stage           what it runs
==============  ==================================================================
``env``         device, driver and library versions (``env.json``)
``tests``       ``pytest -m cuda``: every layer and the model on CUDA against
                float64 CPU references, AMP, channels-last, compile, a training
                epoch with device-side augmentation
``model``       ``bench_model.py --device cuda`` (fp32, bf16, bf16+cl,
                bf16+cl+compile, fp32+ckpt; FLOPs, memory, largest batch)
``layers``      ``bench_layers.py --device cuda --dtype fp32 bf16 --compile``
``layers_cl``   the same with ``--channels-last``
``data``        ``bench_data.py --device cuda`` (JPEG vs cache, GPU augmentation)
``predict``     ``bench_predict.py --device cuda`` (person detectors, DAG-Net per
                person, the in-the-wild pipeline in frames/s)
``throughput``  ``bench_train.py --device cuda``: training samples/s with the data
                pipeline, paper model and two-stream baseline, JPEG and cache, fp32,
                bf16 and bf16 + compile
``train``       the paper model trained for 2 epochs on the synthetic demo set with
                bf16 + channels-last + compile, data pipeline included (the demo
                set's decoded cache, the default): the samples/s to hold against
                the 1,200 samples/s target
``ddp``         the same under ``torchrun`` on every GPU (skipped with one GPU)
==============  ==================================================================

Results go to ``--out-dir`` (default ``benchmarks/results``) named by device, e.g.
``model_cuda-nvidia-h100.json``, with ``cuda_suite_<device>.json`` summarising
every stage (status, seconds, log), rewritten after each stage. Without CUDA, or
with ``--dry-run``, nothing runs: each stage is printed with the reason it is
skipped (CI does this, so the suite cannot rot).

``--short`` fits one time-limited call on a lent GPU (``--deadline``, default
480 s in all): the stages that matter most, in order of what they settle, each
cut to a smaller matrix and given its own time cap: the CUDA tests, the
paper model's and the baseline's training samples/s with the data pipeline (bf16,
from the cache and with GPU decoding, each loader alone for its headroom), the
paper model's 2-epoch training with bf16 + channels-last + compile against the
1,200 samples/s target, then the per-module tables in fp32 and bf16+cl. A stage
that would start with less than a minute left is skipped and says so. Examples::

    python benchmarks/cuda_suite.py                       # everything
    python benchmarks/cuda_suite.py --stages tests model  # some stages
    python benchmarks/cuda_suite.py --out-dir /tmp/res --timeout 540
    python benchmarks/cuda_suite.py --short --out-dir /tmp/res --archive "$OUT/suite.tar.gz"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
STAGES = ("env", "tests", "model", "layers", "layers_cl", "data", "predict", "throughput",
          "train", "ddp")
#: ``--short``: stages in the order of what they settle, each with its time cap (s).
SHORT = {"env": 60, "tests": 240, "throughput": 200, "train": 200, "model": 180}
SHORT_DEADLINE = 480.0
#: a stage is not started with less than this many seconds left before the deadline
MIN_STAGE_S = 60.0


def _slug(text: str) -> str:
    """``_common.slugify`` (which imports torch, and this process does not): the same
    file-name form of a device's name, trademark marks left out."""
    text = re.sub(r"\((?:r|tm|c)\)|[\u00ae\u2122\u00a9]", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _cuda() -> tuple[bool, int, str]:
    """(available, device count, name) without importing torch in this process."""
    code = ("import torch, json; ok = torch.cuda.is_available(); "
            "print(json.dumps([ok, torch.cuda.device_count() if ok else 0, "
            "torch.cuda.get_device_name(0) if ok else '']))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, env=_env())  # fmt: skip
        ok, count, name = json.loads(out.stdout.strip().splitlines()[-1])
        return bool(ok), int(count), str(name)
    except Exception:
        return False, 0, ""


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
            "PYTHONUNBUFFERED": "1"}


def commands(out: Path, slug: str, n_gpus: int, short: bool = False,
             scratch: Path | None = None) -> dict[str, list[str] | None]:
    """Each stage's command line (``None``: nothing to run on this machine); ``short``:
    the smaller matrices of ``--short``; ``scratch``: where the trainings put their demo
    data and run folders (default ``out``)."""
    scratch = out if scratch is None else scratch
    py = sys.executable
    workers = str(min(16, os.cpu_count() or 1))
    train = [py, "-m", "dagnet_layers.commands.train", "--model", "dagnet_r50_r18",
             "--no-pretrained", "--image-size", "224", "--batch-size", "64", "--epochs", "2",
             "--demo-images", "2000", "--demo-dir", str(scratch / "demo"), "--amp", "bf16",
             "--channels-last", "--compile", "--workers", workers,
             "--no-progress", "--overwrite"]  # fmt: skip
    cmds: dict[str, list[str] | None] = {
        "env": [py, "-c", "import json, importlib.util, torch, timm, einops; "
                "pyg = importlib.util.find_spec('torch_geometric'); print(json.dumps({"
                "'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': "
                "torch.backends.cudnn.version(), 'timm': timm.__version__, 'torch_geometric': "
                "__import__('torch_geometric').__version__ if pyg else None, "
                "'einops': einops.__version__, 'devices': "
                "[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}))"],
        "tests": [py, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                  "--no-header", "tests"],
        "model": [py, str(BENCH / "bench_model.py"), "--device", "cuda",
                  "--out", str(out / f"model_{slug}.json")],
        "layers": [py, str(BENCH / "bench_layers.py"), "--device", "cuda", "--dtype", "fp32",
                   "bf16", "--compile", "--out", str(out / f"layers_{slug}.json")],
        "layers_cl": [py, str(BENCH / "bench_layers.py"), "--device", "cuda", "--dtype",
                      "fp32", "bf16", "--compile", "--channels-last",
                      "--out", str(out / f"layers_{slug}_channels-last.json")],
        "data": [py, str(BENCH / "bench_data.py"), "--device", "cuda", "--workers",
                 workers, "--batches", "20",
                 "--out", str(out / f"data_{slug}.json")],
        "predict": [py, str(BENCH / "bench_predict.py"), "--device", "cuda",
                    "--out", str(out / f"predict_{slug}.json")],
        "throughput": [py, str(BENCH / "bench_train.py"), "--device", "cuda",
                       "--out", str(out / f"throughput_{slug}.json")],
        "train": [*train, "--output-dir", str(scratch / f"train_{slug}")],
        "ddp": None if n_gpus < 2 else [
            py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
            "-m", "dagnet_layers.commands.train", *train[3:],
            "--output-dir", str(scratch / f"train_ddp_{slug}"),
        ],
    }
    if short:
        cmds["throughput"] = [
            *cmds["throughput"][:4], "--models", "dagnet_r50_r18", "dagnet_r50_r18_baseline",
            "--data", "cache", "jpeg-device", "--dtypes", "bf16", "--compile", "eager",
            "--images", "1500", "--rounds", "2", "--min-time", "5", "--warmup", "3",
            "--workers", str(min(8, os.cpu_count() or 1)), *cmds["throughput"][4:]]
        cmds["model"] = [*cmds["model"][:4], "--models", "dagnet", "backbones_only",
                         "--variants", "fp32", "bf16+cl", "--no-max-batch", "--rounds", "2",
                         *cmds["model"][4:]]  # fmt: skip
    return cmds


def _run_stage(cmd: list[str], log: IO[str], limit: float) -> int | None:
    """Run one stage in its own process group; its exit code, or ``None`` when it ran
    past ``limit`` seconds and the whole group (loader workers, compile workers,
    torchrun's ranks) was killed, so nothing of it runs on into the next stage."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=_env(),
                            start_new_session=True)  # fmt: skip
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def _keep_run(run: Path, dest: Path) -> None:
    """Copy a training's run folder to the results without its checkpoints (hundreds
    of MiB each) and TensorBoard events: the log, reports and figures are the result."""
    if run.is_dir():
        shutil.copytree(run, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))


def _train_summary(run: Path) -> dict[str, object] | None:
    log = run / "log.csv"
    if not log.is_file():
        return None
    rows = log.read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=False))
    return {"samples_per_s_last_epoch": float(last.get("samples_per_s", "nan")),
            "target_samples_per_s": 1200, "epochs": len(rows) - 1}


def _write_summary(path: Path, summary: dict[str, object]) -> None:
    """Write the summary beside itself and rename it into place: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1) + "\n")
    os.replace(tmp, path)


def _write_archive(out: Path, archive: Path) -> None:
    """Pack everything under ``out`` into ``archive`` (gzipped tar), written beside itself
    and renamed into place: one file to carry back from a machine that returns only a
    few, none deep in folders (a lent GPU's)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path != archive:
                tar.add(path, arcname=str(path.relative_to(out)))
    os.replace(tmp, archive)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=None,
                        help="stages to run, in this order (default: all)")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results",
                        help="where results and logs go")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per stage")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would run and why a stage is skipped; run nothing")
    parser.add_argument("--short", action="store_true",
                        help="the stages that matter most, smaller, to fit one time-limited "
                             f"call: {' '.join(SHORT)} (with --stages: those, in that order)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds for the whole suite: each stage's time limit is cut to "
                             "what is left, and a stage with less than "
                             f"{MIN_STAGE_S:.0f} s left is skipped (--short: "
                             f"{SHORT_DEADLINE:.0f})")
    parser.add_argument("--archive", type=Path, default=None,
                        help="also pack the results into this .tar.gz after every stage "
                             "(one file to copy back; a lent GPU returns at most 8)")
    args = parser.parse_args(argv)
    if args.archive is not None and not args.archive.name.endswith((".tar.gz", ".tgz")):
        parser.error(f"--archive must name a .tar.gz or .tgz file, got {args.archive}")
    if args.deadline is not None and args.deadline <= 0:
        parser.error(f"--deadline must be positive, got {args.deadline}")
    stages = list(args.stages or STAGES)
    if args.short:
        extra = sorted(set(args.stages or ()) - set(SHORT))
        if extra:
            parser.error(f"--short has no stage {', '.join(extra)}; its stages: "
                         f"{' '.join(SHORT)}")
        stages = [stage for stage in SHORT if stage in set(args.stages or SHORT)]
    deadline = args.deadline or (SHORT_DEADLINE if args.short else None)
    begin = time.perf_counter()

    ok, n_gpus, name = (False, 0, "") if args.dry_run else _cuda()
    slug = f"cuda-{_slug(name)}" if ok else "cuda-none"
    out = args.out_dir.resolve()
    # the trainings' demo data and checkpoints stay out of the results folder
    scratch = (Path(tempfile.mkdtemp(prefix="dagnet-cuda-suite-")) if not args.dry_run and ok
               else Path(tempfile.gettempdir()) / "dagnet-cuda-suite-XXXX")
    cmds = commands(out, slug, n_gpus, short=args.short, scratch=scratch)
    summary: dict[str, object] = {"device": name or None, "gpus": n_gpus,
                                  "profile": "short" if args.short else "full",
                                  "deadline_s": deadline, "stages": {}}  # fmt: skip
    written = not args.dry_run and ok
    if written:
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def save() -> None:
        """The summary, and the archive if asked for: after every stage and at the end."""
        _write_summary(out / f"cuda_suite_{slug}.json", summary)
        if args.archive is not None:
            _write_archive(out, args.archive.resolve())

    if deadline is not None:
        print(f"deadline: {deadline:.0f} s for {', '.join(stages)}")
    for stage in stages:
        cmd = cmds[stage]
        limit = args.timeout if not args.short else min(args.timeout, SHORT[stage])
        left = None if deadline is None else deadline - (time.perf_counter() - begin)
        if left is not None:
            limit = min(limit, left)
        if args.dry_run or not ok or cmd is None or (left is not None and left < MIN_STAGE_S):
            why = ("dry run" if args.dry_run else "no CUDA device" if not ok
                   else "needs more than one GPU" if cmd is None
                   else f"deadline: {left:.0f} s left of {deadline:.0f}")
            print(f"[{stage}] skipped: {why}")
            if cmd is not None:
                print(f"    (time limit {limit:.0f} s) " + " ".join(cmd))
            summary["stages"][stage] = {"status": "skipped", "why": why}
            continue
        log = out / "logs" / f"{stage}_{slug}.log"
        print(f"[{stage}] running, time limit {limit:.0f} s (log: {log})", flush=True)
        start = time.perf_counter()
        with open(log, "w") as f:
            rc = _run_stage(cmd, f, limit)
        status = (f"timed out after {limit:.0f} s" if rc is None
                  else "passed" if rc == 0 else f"failed (exit {rc})")
        seconds = time.perf_counter() - start
        record: dict[str, object] = {"status": status, "seconds": round(seconds, 1),
                                     "log": str(log.relative_to(out))}
        if stage in ("train", "ddp"):
            run = f"train{'_ddp' if stage == 'ddp' else ''}_{slug}"
            _keep_run(scratch / run, out / run)
            record["throughput"] = _train_summary(out / run)
        summary["stages"][stage] = record
        print(f"[{stage}] {status} in {seconds:.0f} s", flush=True)
        save()  # kept if the call is cut
    if written:
        shutil.rmtree(scratch, ignore_errors=True)  # demo data and checkpoints
        save()
    failed = [s for s, r in summary["stages"].items() if str(r["status"]).startswith(("failed",
                                                                                       "timed"))]
    print(f"cuda suite on {name or 'no CUDA device'}: "
          + ", ".join(f"{s} {r['status']}" for s, r in summary["stages"].items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
