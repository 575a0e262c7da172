"""Install the wheel into a fresh venv, extra by extra; measure each; train on the demo set.

What a newcomer gets from ``pip install dagnet-layers`` with no source tree around:

1. builds the wheel from this checkout;
2. in a new venv (``--venv``), installs the wheel alone (the core), then adds the
   ``emotic``, ``viz`` and ``onnx`` extras one at a time, measuring the venv's
   ``site-packages`` after each step (PyTorch and its CUDA libraries reported apart);
3. from an empty folder, runs the installed ``dagnet-train`` on a tiny synthetic
   demo set, and ``dagnet-predict`` on its best checkpoint;
4. writes ``docs/results/install_sizes.json``.

Slow (several GB are copied) and it needs the package index; not part of CI::

    python docs/_scripts/install_sizes.py --venv /tmp/dagnet-fresh
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "results" / "install_sizes.json"
TORCH_PARTS = ("torch", "nvidia", "triton", "cuda")


def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> str:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return result.stdout


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _measure(site: Path) -> dict[str, int]:
    torch_bytes = sum(_size(p) for p in site.iterdir()
                      if p.is_dir() and p.name.lower().startswith(TORCH_PARTS))
    return {"total": _size(site), "torch_and_cuda": torch_bytes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "dagnet-fresh")
    args = parser.parse_args()
    if args.venv.exists():
        shutil.rmtree(args.venv)
    wheels = Path(tempfile.mkdtemp())
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
          "print(build_meta.build_wheel(sys.argv[1]))", str(wheels)], cwd=ROOT)
    wheel = next(wheels.glob("*.whl"))
    _run([sys.executable, "-m", "venv", str(args.venv)])
    py = args.venv / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                .strip())
    sizes = {"empty venv": _measure(site)}
    for step, spec in (("core", str(wheel)), ("+emotic", f"{wheel}[emotic]"),
                       ("+viz", f"{wheel}[viz]"), ("+onnx", f"{wheel}[onnx]")):
        _run([str(py), "-m", "pip", "install", "-q", spec])
        sizes[step] = _measure(site)
    work = Path(tempfile.mkdtemp())  # no source tree here
    env = {**os.environ, "DAGNET_CACHE": str(work / "cache")}
    bin_dir = args.venv / "bin"
    _run([str(bin_dir / "dagnet-train"), "--epochs", "1", "--demo-images", "24",
          "--batch-size", "8", "--output-dir", str(work / "run"), "--no-progress"],
         cwd=work, env=env)
    from PIL import Image

    Image.new("RGB", (96, 72), (120, 90, 60)).save(work / "photo.jpg")
    _run([str(bin_dir / "dagnet-predict"), "--checkpoint", str(work / "run/checkpoints/best"),
          "--image", str(work / "photo.jpg"), "--box", "10", "10", "60", "70", "--no-plot"],
         cwd=work, env=env)
    report = {"wheel": wheel.name, "python": sys.version.split()[0], "sizes_bytes": sizes,
              "demo_training": "ok", "predict": "ok"}
    OUT.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    previous = None
    for step, s in sizes.items():
        delta = "" if previous is None else f" (+{(s['total'] - previous) / 2**20:,.0f} MiB)"
        print(f"{step:12s} {s['total'] / 2**20:9,.0f} MiB{delta}, of which torch/CUDA "
              f"{s['torch_and_cuda'] / 2**20:,.0f} MiB")
        previous = s["total"]
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
