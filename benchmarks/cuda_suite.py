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
                bf16 + channels-last + compile, data pipeline included: the
                samples/s to hold against the 1,200 samples/s target
``ddp``         the same under ``torchrun`` on every GPU (skipped with one GPU)
==============  ==================================================================

Results go to ``--out-dir`` (default ``benchmarks/results``) named by device, e.g.
``model_cuda-nvidia-h100.json``, with ``cuda_suite_<device>.json`` summarising
every stage (status, seconds, log). Without CUDA, or with ``--dry-run``, nothing
runs: each stage is printed with the reason it is skipped (CI does this, so the
suite cannot rot). Examples::

    python benchmarks/cuda_suite.py                       # everything
    python benchmarks/cuda_suite.py --stages tests model  # some stages
    python benchmarks/cuda_suite.py --out-dir /tmp/res --timeout 540
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
STAGES = ("env", "tests", "model", "layers", "layers_cl", "data", "predict", "throughput",
          "train", "ddp")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


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


def commands(out: Path, slug: str, n_gpus: int) -> dict[str, list[str] | None]:
    """Each stage's command line (``None``: nothing to run on this machine)."""
    py = sys.executable
    train = [py, "-m", "dagnet_layers.commands.train", "--model", "dagnet_r50_r18",
             "--no-pretrained", "--image-size", "224", "--batch-size", "64", "--epochs", "2",
             "--demo-images", "2000", "--demo-dir", str(out / "demo"), "--amp", "bf16",
             "--channels-last", "--compile", "--workers", str(min(16, os.cpu_count() or 1)),
             "--no-progress", "--overwrite"]  # fmt: skip
    return {
        "env": [py, "-c", "import json, torch, timm, torch_geometric, einops; print(json.dumps({"
                "'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': "
                "torch.backends.cudnn.version(), 'timm': timm.__version__, 'torch_geometric': "
                "torch_geometric.__version__, 'einops': einops.__version__, 'devices': "
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
                 str(min(16, os.cpu_count() or 1)), "--batches", "20",
                 "--out", str(out / f"data_{slug}.json")],
        "predict": [py, str(BENCH / "bench_predict.py"), "--device", "cuda",
                    "--out", str(out / f"predict_{slug}.json")],
        "throughput": [py, str(BENCH / "bench_train.py"), "--device", "cuda",
                       "--out", str(out / f"throughput_{slug}.json")],
        "train": [*train, "--output-dir", str(out / f"train_{slug}")],
        "ddp": None if n_gpus < 2 else [
            py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
            "-m", "dagnet_layers.commands.train", *train[3:],
            "--output-dir", str(out / f"train_ddp_{slug}"),
        ],
    }


def _train_summary(run: Path) -> dict[str, object] | None:
    log = run / "log.csv"
    if not log.is_file():
        return None
    rows = log.read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=False))
    return {"samples_per_s_last_epoch": float(last.get("samples_per_s", "nan")),
            "target_samples_per_s": 1200, "epochs": len(rows) - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="stages to run, in this order")
    parser.add_argument("--out-dir", type=Path, default=BENCH / "results",
                        help="where results and logs go")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per stage")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would run and why a stage is skipped; run nothing")
    args = parser.parse_args(argv)

    ok, n_gpus, name = (False, 0, "") if args.dry_run else _cuda()
    slug = f"cuda-{_slug(name)}" if ok else "cuda-none"
    out = args.out_dir.resolve()
    cmds = commands(out, slug, n_gpus)
    summary: dict[str, object] = {"device": name or None, "gpus": n_gpus, "stages": {}}
    if not args.dry_run and ok:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    for stage in args.stages:
        cmd = cmds[stage]
        if args.dry_run or not ok or cmd is None:
            why = ("dry run" if args.dry_run else "no CUDA device" if not ok
                   else "needs more than one GPU")
            print(f"[{stage}] skipped: {why}")
            if cmd is not None:
                print("    " + " ".join(cmd))
            summary["stages"][stage] = {"status": "skipped", "why": why}
            continue
        log = out / "logs" / f"{stage}_{slug}.log"
        print(f"[{stage}] running (log: {log})", flush=True)
        start = time.perf_counter()
        try:
            with open(log, "w") as f:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                    env=_env(), timeout=args.timeout).returncode  # fmt: skip
            status = "passed" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {args.timeout:.0f} s"
        seconds = time.perf_counter() - start
        record: dict[str, object] = {"status": status, "seconds": round(seconds, 1),
                                     "log": str(log.relative_to(out))}
        if stage in ("train", "ddp"):
            record["throughput"] = _train_summary(out / f"train{'_ddp' if stage == 'ddp' else ''}"
                                                  f"_{slug}")
        summary["stages"][stage] = record
        print(f"[{stage}] {status} in {seconds:.0f} s", flush=True)
    if not args.dry_run and ok:
        demo = out / "demo"
        if demo.is_dir():
            shutil.rmtree(demo, ignore_errors=True)  # regenerated data, not a result
        (out / f"cuda_suite_{slug}.json").write_text(json.dumps(summary, indent=1) + "\n")
    failed = [s for s, r in summary["stages"].items() if str(r["status"]).startswith(("failed",
                                                                                       "timed"))]
    print(f"cuda suite on {name or 'no CUDA device'}: "
          + ", ".join(f"{s} {r['status']}" for s, r in summary["stages"].items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
