"""Compare variants of one preset, trained by ``dagnet-diagnose``, with the main diagnostic run.

Usage (each variant a ``dagnet-diagnose --presets full --output-dir DIR -- FLAGS`` run on
the same seeds and settings, so the scenes are the same files)::

    python docs/_scripts/diagnostic_variants.py runs/diagnostic \\
        "readout max=runs/diagnostic_gcn_max" ... [--out docs/results/diagnostic/variants.json]

For each variant: per seed, its numbers and their differences from the main run's
``full`` and ``bam_gsam_lsam_nogcn`` (paired by seed), with mean and sd. Refuses a
variant whose scenes differ from the main run's. The docs build renders the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from dagnet_layers.commands.diagnose import METRICS, _get, _stats

KEYS = [*METRICS, ("LSAM ratio (learned)", ("lsam", "ratio"))]


def _scenes_digest(out: Path, seed: int) -> str:
    path = out / "scenes" / f"seed{seed}" / "diagnostic.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(out: Path, preset: str, seed: int) -> dict[str, Any]:
    return json.loads((out / "runs" / preset / f"seed{seed}" / "diagnostic.json").read_text())


def compare(main: Path, variants: dict[str, Path], seeds: list[int],
            preset: str = "full") -> dict[str, Any]:
    """The variants' numbers, and their per-seed differences from the main run's presets."""
    settings = json.loads((main / "settings.json").read_text())
    rows = []
    references = {"full": "full", "per-patch sum": "bam_gsam_lsam_nogcn"}
    for label, out in {"paper (mean readout, grid, no normalisation)": main,
                       **variants}.items():
        row: dict[str, Any] = {"variant": label, "folder": str(out)}
        if out != main:
            mine = json.loads((out / "settings.json").read_text())
            row["flags"] = mine["train_args"]
            if {k: v for k, v in mine.items() if k != "train_args"} != {
                    k: v for k, v in settings.items() if k != "train_args"}:
                raise SystemExit(f"{out}: other settings than {main}")
        for s in seeds:
            if _scenes_digest(out, s) != _scenes_digest(main, s):
                raise SystemExit(f"{out}: the scenes of seed {s} differ from {main}'s")
        runs = {s: _run(out, preset, s) for s in seeds}
        row["values"] = {label_: _stats([_get(runs[s], path) for s in seeds])
                         for label_, path in KEYS}
        for name, ref in references.items():
            base = {s: _run(main, ref, s) for s in seeds}
            row[f"minus {name}"] = {
                label_: _stats([None if _get(runs[s], path) is None or _get(base[s], path) is None
                                else _get(runs[s], path) - _get(base[s], path) for s in seeds])
                for label_, path in KEYS[:len(METRICS)]}
        rows.append(row)
    return {"synthetic": True, "note": "SYNTHETIC diagnostic scenes, not EMOTIC",
            "preset": preset, "seeds": seeds, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("main", type=Path)
    parser.add_argument("variants", nargs="+", metavar="LABEL=DIR")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path,
                        default=Path("docs/results/diagnostic/variants.json"))
    args = parser.parse_args(argv)
    variants = {}
    for item in args.variants:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: give LABEL=DIR")
        variants[label] = Path(folder)
    record = compare(args.main, variants, args.seeds)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
