"""Time the README's demo run: ``python examples/train_emotic.py`` on a fresh cache.

Each run writes the synthetic demo set and its decoded cache afresh (a new
``$DAGNET_CACHE``), as a newcomer's first run does, and trains into a temporary
folder. Wall time and the CPU-seconds of the run (user + system, from
``getrusage(RUSAGE_CHILDREN)``) are recorded per run with the date, the commit, the
CPU and the load average before each run, into ``docs/results/demo_time.json``,
which the README quotes and ``tests/test_readme.py`` checks against.

Run it on an idle machine::

    python docs/_scripts/time_demo.py --runs 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "results" / "demo_time.json"


def _cpu() -> str:
    """The benchmarks' reading of the CPU model, so the two name a machine alike."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import cpu_model_name

    return cpu_model_name()


def one_run() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DAGNET_CACHE": str(Path(tmp) / "cache")}
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "examples" / "train_emotic.py"),
                        "--output-dir", str(Path(tmp) / "run"), "--no-progress"],
                       env=env, check=True, capture_output=True)  # fmt: skip
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    record = {
        "what": "python examples/train_emotic.py, fresh $DAGNET_CACHE each run",
        "date": dt.date.today().isoformat(), "commit": commit, "cpu": _cpu(),
        "cores": os.cpu_count(), "runs": runs,
        "wall_s": [min(r["wall_s"] for r in runs), max(r["wall_s"] for r in runs)],
        "cpu_s": [min(r["cpu_s"] for r in runs), max(r["cpu_s"] for r in runs)],
    }  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
