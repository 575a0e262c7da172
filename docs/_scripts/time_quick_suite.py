"""Keep the quick suite quick, and time it: ``python docs/_scripts/time_quick_suite.py``.

The quick suite (``python -m pytest``) leaves out the tests marked ``slow`` and the
tests listed in ``tests/quick_suite_slow.txt``: those whose call took more than
``--threshold`` seconds as pytest prints it (two decimals, so 0.03 lists calls of
0.035 s and more; a shared fixture's setup is paid once whichever test comes first)
when the quick suite was last measured. Tests marked ``quick`` are never listed. The
list is made here, never by hand:

1. ``--update-list``: run the quick suite without the list
   (``DAGNET_QUICK_LIST=off``), with every test's duration, and list those over the
   threshold; run it again with the list, add those now over it (a test that paid
   a shared import for the tests it left out), until none is (or says that it did not
   settle). ``--full`` (CI) runs every listed test all the same.
2. ``--runs N``: time the quick suite as a contributor runs it, N times, recording
   the wall time and CPU-seconds (user + system of the pytest process and any process
   it started, from ``getrusage(RUSAGE_CHILDREN)``) with the date, the commit, the CPU and the load
   average before each run into ``docs/results/quick_suite_time.json``, which the
   README quotes and ``tests/test_readme.py`` checks against. Each run follows
   :data:`PAUSE_S` seconds of rest.

Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST = ROOT / "tests" / "quick_suite_slow.txt"
OUT = ROOT / "docs" / "results" / "quick_suite_time.json"
#: Seconds of rest before each timed run.
PAUSE_S = 20
_DURATION = re.compile(r"^([0-9.]+)s (setup|call|teardown)\s+(\S.*)$")


def measure(use_list: bool) -> dict[str, float]:
    """Seconds of the call of every test of the quick suite."""
    # (the README test of the list's count waits: the README is updated after the list)
    env = {**os.environ, "DAGNET_QUICK_LIST": "on" if use_list else "off",
           "DAGNET_REMAKING_QUICK_LIST": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--durations=0", "--durations-min=0"],
                          cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the quick suite failed:\n{proc.stdout[-3000:]}")
    seconds: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        m = _DURATION.match(line)
        if m and m.group(2) == "call":
            seconds[m.group(3)] = float(m.group(1))
    return seconds


def read_list() -> list[str]:
    if not LIST.is_file():
        return []
    return [line.strip() for line in LIST.read_text().splitlines()
            if line.strip() and not line.startswith("#")]  # fmt: skip


def write_list(ids: list[str], threshold: float) -> None:
    header = (f"# Tests the quick suite leaves to --full: each took more than {threshold:g} s\n"
              f"# to run in the quick suite on {dt.date.today().isoformat()}. Made by\n"
              "# `python docs/_scripts/time_quick_suite.py --update-list`; never edited by hand.\n")
    LIST.write_text(header + "".join(f"{i}\n" for i in sorted(set(ids))))


def quick_marked() -> set[str]:
    """The tests marked ``quick``: never listed."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--collect-only", "-m", "quick"],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def update_list(threshold: float, rounds: int = 4) -> None:
    keep = quick_marked()
    listed = [i for i, s in measure(use_list=False).items() if s > threshold and i not in keep]
    write_list(listed, threshold)
    for _ in range(rounds):
        more = [i for i, s in measure(use_list=True).items() if s > threshold and i not in keep]
        print(f"listed {len(listed)}; now over {threshold:g} s: {len(more)}")
        if not more:
            return
        listed += more
        write_list(listed, threshold)
    print(f"not settled after {rounds} rounds: rerun --update-list")


def time_suite(runs: int) -> None:
    rows = []
    for _ in range(runs):
        time.sleep(PAUSE_S)  # the machine settles between runs (the load average records it)
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                       cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "DAGNET_REMAKING_QUICK_LIST": "1"})  # fmt: skip
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows.append({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "load_before": round(load, 2)})  # fmt: skip
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import cpu_model_name

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    record = {
        "what": "python -m pytest (the quick suite), from the repository root",
        "date": dt.date.today().isoformat(), "commit": commit, "cpu": cpu_model_name(),
        "cores": os.cpu_count(), "left_to_full": len(read_list()), "runs": rows,
        "wall_s": [min(r["wall_s"] for r in rows), max(r["wall_s"] for r in rows)],
        "cpu_s": [min(r["cpu_s"] for r in rows), max(r["cpu_s"] for r in rows)],
    }  # fmt: skip
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-list", action="store_true")
    parser.add_argument("--threshold", type=float, default=0.03)
    parser.add_argument("--runs", type=int, default=0)
    args = parser.parse_args()
    if args.update_list:
        update_list(args.threshold)
    if args.runs:
        time_suite(args.runs)


if __name__ == "__main__":
    main()
