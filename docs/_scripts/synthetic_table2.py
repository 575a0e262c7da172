"""Summarise a Table 2 sweep on the synthetic demo set into ``docs/results/synthetic/table2.json``.

Usage (after ``examples/reproduce_paper.py table2 --output-dir RUNS -- ...`` on the demo set)::

    python docs/_scripts/synthetic_table2.py RUNS [--out docs/results/synthetic/table2.json]

For each preset: test mAP, and the mean AP (percent) of the categories whose
synthetic cue is in the body, outside it, or both
(:data:`dagnet_layers.emotic.data.synthetic.SYNTHETIC_CUES`), with the run's protocol,
tie rule and score. The docs build renders the file (``gen_pages.py``); the
numbers are never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from dagnet_layers.emotic.data.synthetic import SYNTHETIC_CUES

PRESETS = ("body_only", "baseline", "bam", "gsam", "lsam", "bam_gsam", "bam_gsam_lsam_nogcn",
           "full")
GROUPS = {"body": "body", "context": "context", "joint": "body+context"}


def summarise(report: dict[str, Any], preset: str) -> dict[str, Any]:
    """One row of the table from a run's ``test_report.json``."""
    if not (report.get("demo") or (report.get("data") or {}).get("synthetic")):
        raise SystemExit(f"{preset}: not a synthetic demo run; this table is for those only")
    ap = report["per_category_ap"]
    row: dict[str, Any] = {"preset": preset, "mean_ap": report["mean_ap"]}
    for key, cue in GROUPS.items():
        values = [ap[c] for c, where in SYNTHETIC_CUES.items()
                  if where == cue and ap.get(c) is not None and not math.isnan(ap[c])]
        row[key] = 100 * sum(values) / len(values) if values else None
    row.update(n=report["num_samples"], protocol=report["protocol"], ties=report.get("ties"),
               score=report.get("score"), synthetic=True,
               missing=report["categories_without_positives"])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="the --output-dir of reproduce_paper.py table2")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "results" / "synthetic"
                        / "table2.json")
    args = parser.parse_args(argv)
    rows = []
    for preset in PRESETS:
        path = args.runs / f"table2_{preset}" / "test_report.json"
        if not path.is_file():
            raise SystemExit(f"{path} not found: run the whole table2 sweep first")
        rows.append(summarise(json.loads(path.read_text()), preset))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    for r in rows:
        print(f"{r['preset']:<22} {100 * r['mean_ap']:6.2f}  body {r['body']:5.1f}  "
              f"context {r['context']:5.1f}  joint {r['joint']:5.1f}")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
