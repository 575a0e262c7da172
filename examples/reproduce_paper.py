#!/usr/bin/env python
"""Run the paper's experiments: every Table 2 row and the Fig. 3 partition sweep.

Each configuration is one ``dagnet-train`` (``examples/train_emotic.py``) run in its own folder
under ``--output-dir``; a run whose ``test_report.json`` already exists is not
trained again, so an interrupted sweep picks up where it stopped. Arguments
after ``--`` go to every training run.

Examples::

    # Table 2 (+ the two-stream baseline and a body-only model) on your EMOTIC copy
    python examples/reproduce_paper.py table2 -- --data-root /data/emotic --cache-dir /data/cache

    # Fig. 3: N = 2..9 with and without the GCN
    python examples/reproduce_paper.py fig3 -- --data-root /data/emotic --cache-dir /data/cache

    # both, on the synthetic demo data (no dataset argument)
    python examples/reproduce_paper.py table2 fig3

Writes ``table2.md`` / ``table2.json`` (our test mAP beside the paper's on
EMOTIC; on the synthetic demo data alone, and saying so) and ``fig3.json`` /
``fig3.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from dagnet_layers import cli
from dagnet_layers.commands.args import SYNTHETIC_NOTE
from dagnet_layers.emotic.paper import PAPER_TABLE2

HERE = Path(__file__).resolve().parent
TABLE2_ROWS = ("body_only", "baseline", "bam", "gsam", "lsam", "bam_gsam",
               "bam_gsam_lsam_nogcn", "full")
FIG3_VARIANTS = {"w/ GCN": "full", "w/o GCN": "bam_gsam_lsam_nogcn"}


def _train_main() -> Any:
    from dagnet_layers.commands import train  # dagnet-train, in this process

    return train.main


def run(name: str, out: Path, train_args: list[str], extra: list[str]) -> dict[str, Any]:
    """Train one configuration (unless its report exists) and return its test report."""
    report_file = out / name / "test_report.json"
    if not report_file.is_file():
        print(f"=== {name}", flush=True)
        code = _train_main()([*train_args, *extra, "--output-dir", str(out / name)])
        if code != 0:
            raise SystemExit(f"run {name} failed with exit code {code}")
    return json.loads(report_file.read_text())


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def _synthetic(report: dict[str, Any]) -> bool:
    return bool(report.get("demo") or (report.get("data") or {}).get("synthetic"))


def table2(out: Path, train_args: list[str]) -> list[dict[str, Any]]:
    rows = []
    for preset in TABLE2_ROWS:
        report = run(f"table2_{preset}", out, train_args, ["--ablation", preset])
        synthetic = _synthetic(report)
        rows.append({"preset": preset, "mean_ap": report["mean_ap"],
                     "protocol": report["protocol"], "ties": report.get("ties"),
                     "score": report.get("score"), "synthetic": synthetic,
                     # a synthetic number is never put beside the paper's EMOTIC one
                     "paper_map": None if synthetic else PAPER_TABLE2.get(preset)})
    if any(r["synthetic"] for r in rows):
        lines = [f"{SYNTHETIC_NOTE}.", "",
                 "| preset | mAP (%) on synthetic data |", "|---|---|"]
        lines += [f"| {r['preset']} | {_fmt(r['mean_ap'])} |" for r in rows]
    else:
        lines = ["| preset | ours mAP (%) | paper mAP (%) |", "|---|---|---|"]
        for r in rows:
            paper = "" if r["paper_map"] is None else f"{r['paper_map']:.2f}"
            lines.append(f"| {r['preset']} | {_fmt(r['mean_ap'])} | {paper} |")
    (out / "table2.md").write_text("\n".join(lines) + "\n")
    (out / "table2.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n".join(lines))
    return rows


def fig3(out: Path, train_args: list[str], partitions: list[int]) -> dict[str, dict[int, float]]:
    results: dict[str, dict[int, float]] = {label: {} for label in FIG3_VARIANTS}
    synthetic = False
    for label, preset in FIG3_VARIANTS.items():
        for n in partitions:
            report = run(f"fig3_{preset}_n{n}", out, train_args,
                         ["--ablation", preset, "--partition", str(n),
                          "--partition-policy", "resize"])
            mean_ap = report["mean_ap"]
            results[label][n] = float("nan") if mean_ap is None else mean_ap
            synthetic = synthetic or _synthetic(report)
    (out / "fig3.json").write_text(json.dumps(
        {k: {str(n): v for n, v in pts.items()} for k, pts in results.items()}, indent=2) + "\n")
    from dagnet_layers.figures import plot_partition_sweep

    title = ("SYNTHETIC demo data (not EMOTIC): effect of the partition N" if synthetic
             else "Effect of the partition N (cf. the paper's Fig. 3)")
    plot_partition_sweep(results, out / "fig3.png", title=title)
    for label, pts in results.items():
        print(label, " ".join(f"N={n}: {_fmt(v)}" for n, v in sorted(pts.items())))
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="+", choices=["table2", "fig3"])
    parser.add_argument("--output-dir", type=Path, default=Path("runs/paper"))
    parser.add_argument("--partitions", type=int, nargs="+", default=list(range(2, 10)),
                        help="N values of the Fig. 3 sweep")
    args = parser.parse_args(argv)
    if "--output-dir" in train_args:
        parser.error("give --output-dir before '--': each run gets its own folder under it")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if "table2" in args.experiments:
        table2(args.output_dir, train_args)
    if "fig3" in args.experiments:
        fig3(args.output_dir, train_args, args.partitions)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_cli(main, prog="reproduce_paper.py"))
