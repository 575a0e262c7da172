"""The diagnostic benchmark's report: per-arm numbers over seeds, the contrasts, the verdicts.

:func:`summarise` turns the results of :func:`~dagnet_layers.emotic.diagnostic.run_arm`
(per module, arm and seed) into what ``report.json`` holds: every arm's primary and
secondary numbers over the seeds, the paired contrasts (the primary family of
:data:`~dagnet_layers.emotic.diagnostic.arms.PRIMARY_CONTRASTS`, Holm-adjusted; the
rest as exploratory), the test-time interventions against the intact model, and a
verdict per module: the paper's module against the floor, unless the oracle does not
stand above the floor either, in which case anything short of "supported" is
"inconclusive" (the set cannot show the module failing). :func:`report_tables` lays
that out as tables (cells as text), the one source of ``report.md`` and of the
documentation page.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dagnet_layers.emotic.diagnostic.arms import (
    ARMS,
    PRIMARY_CONTRASTS,
    PRIMARY_METRIC,
    SMALLEST_EFFECT,
    arm,
    primary_value,
)
from dagnet_layers.emotic.diagnostic.stats import holm, paired_difference, verdict

__all__ = ["SYNTHETIC_NOTE", "report_markdown", "report_tables", "summarise"]

#: What every output made from these scenes says.
SYNTHETIC_NOTE = "SYNTHETIC diagnostic scenes, not EMOTIC"

Results = Mapping[str, Mapping[str, Mapping[int, Mapping[str, Any]]]]


def _get(record: Mapping[str, Any] | None, path: Sequence[str]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _over_seeds(values: Sequence[float | None]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    out: dict[str, Any] = {"mean": float(v.mean()) if v.size else None,
                           "sd": float(v.std(ddof=1)) if v.size > 1 else None,
                           "n": int(v.size), "values": list(values)}  # fmt: skip
    if v.size > 1:  # a 95% interval of the arm's own mean (not a comparison)
        ci = paired_difference(v.tolist(), [0.0] * v.size)["ci"]
        out["ci"] = ci
    return out


def _secondary_paths(module: str) -> dict[str, tuple[str, ...]]:
    paths: dict[str, tuple[str, ...]] = {
        "test accuracy": ("splits", "test", "accuracy"),
        "test mAP": ("splits", "test", "map"),
    }
    if module == "bam":
        paths["test_iid contested accuracy"] = ("splits", "test_iid", "accuracy_contested")
        paths["test_iid accuracy"] = ("splits", "test_iid", "accuracy")
        for group in ("reliable, flag true", "reliable, flag decoy", "misleading", "neutral"):
            paths[f"accuracy: {group}"] = ("splits", "test", "accuracy_by_body", group)
        paths["weight AUC (reliable vs misleading)"] = ("mechanism", "weight_auc")
        for kind in ("reliable", "misleading", "neutral"):
            paths[f"mean weight: {kind}"] = ("mechanism", "mean_weight", kind)
    if module == "gsam":
        paths["pointing among candidates"] = ("mechanism", "pointing")
        paths["target share of candidate mass"] = ("mechanism", "target_share")
        paths["map range"] = ("mechanism", "map_range")
    if module == "lsam":
        paths["relation accuracy"] = ("splits", "test", "accuracy")
        paths["marker AP (control)"] = ("splits", "test", "marker_ap")
        paths["relation contrast of the graph"] = ("mechanism", "relation_contrast")
    return paths


def _contrast(module: str, a: str, b: str, seeds: Sequence[int], results: Results,
              family: str) -> dict[str, Any] | None:  # fmt: skip
    runs = results.get(module, {})
    if a not in runs or b not in runs:
        return None
    pairs = [(primary_value(runs[a][s]), primary_value(runs[b][s])) for s in seeds
             if s in runs[a] and s in runs[b]]  # fmt: skip
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return None
    diff = paired_difference([x for x, _ in pairs], [y for _, y in pairs])
    return {"module": module, "a": a, "b": b, "family": family, **diff}


def summarise(results: Results, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Per-arm numbers over seeds, the contrasts with Holm's correction, and the verdicts.

    Args:
        results: ``{module: {arm: {seed: run_arm result}}}``.
        seeds: The seeds to use (default: every seed found). A contrast uses the seeds
            both of its arms have.

    Returns:
        ``{"seeds", "arms": {module: {arm: {"primary": ..., "secondary": {...},
        "interventions": {...}}}}, "contrasts": [...], "verdicts": {module: ...}}``.
        Every over-seeds entry is ``{"mean", "sd", "n", "values"}`` (and ``"ci"``
        with two seeds or more); every contrast is a
        :func:`~dagnet_layers.emotic.diagnostic.stats.paired_difference` with
        ``"module"``, ``"a"``, ``"b"``, ``"family"`` (``"primary"`` or
        ``"exploratory"``), and, for the primary family, ``"p_holm"`` and
        ``"verdict"``.
    """
    found = sorted({int(s) for m in results.values() for r in m.values() for s in r})
    seeds = list(seeds) if seeds is not None else found
    arms_out = {module: {a.name: _arm_row(module, a, [runs[a.name].get(s) for s in seeds])
                         for a in ARMS[module] if a.name in runs}
                for module, runs in results.items()}  # fmt: skip
    contrasts = _primary_contrasts(seeds, results)
    contrasts += _exploratory_contrasts(seeds, results)
    return {"seeds": seeds, "arms": arms_out, "contrasts": contrasts,
            "verdicts": _verdicts(contrasts, arms_out)}  # fmt: skip


def _arm_row(module: str, a: Any, per_seed: list[Any]) -> dict[str, Any]:
    """One arm over the seeds: its primary and secondary numbers, its training time, and
    each intervention against the intact model, seed by seed."""
    row: dict[str, Any] = {
        "role": a.role,
        "primary": _over_seeds([None if r is None else primary_value(r) for r in per_seed]),
        "secondary": {label: _over_seeds([_get(r, path) for r in per_seed])
                      for label, path in _secondary_paths(module).items()},
        "train_seconds": _over_seeds([_get(r, ("train_seconds",)) for r in per_seed]),
    }  # fmt: skip
    names = sorted({k for r in per_seed if r for k in r.get("interventions", {})})
    row["interventions"] = {}
    for name in names:  # the intervened model against the intact one, seed by seed
        pairs = [(_get(r, ("interventions", name, "accuracy")),
                  _get(r, ("splits", "test", "accuracy"))) for r in per_seed if r]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if pairs:
            row["interventions"][name] = paired_difference(
                [x for x, _ in pairs], [y for _, y in pairs])
    return row


def _primary_contrasts(seeds: list[int], results: Results) -> list[dict[str, Any]]:
    """The primary family, Holm-corrected together, each with its verdict."""
    contrasts = []
    for module, a, b in PRIMARY_CONTRASTS:
        c = _contrast(module, a, b, seeds, results, "primary")
        if c is not None:
            contrasts.append(c)
    adjusted = holm([c["p"] for c in contrasts])
    for c, p in zip(contrasts, adjusted, strict=True):
        c["p_holm"] = p
        c["verdict"] = verdict(c, p, SMALLEST_EFFECT)
    return contrasts


def _exploratory_contrasts(seeds: list[int], results: Results) -> list[dict[str, Any]]:
    """Every other arm against the floor and the paper (not corrected, no verdict)."""
    primary_pairs = {(m, a, b) for m, a, b in PRIMARY_CONTRASTS}
    contrasts = []
    for module in results:
        floor = next(a.name for a in ARMS[module] if a.role == "floor")
        papers = [a.name for a in ARMS[module] if a.role == "paper"]
        for a in ARMS[module]:
            if a.role == "floor":  # against the paper's module: the primary contrast, reversed
                continue
            for b in [floor, *papers[:1]]:
                if a.name == b or (module, a.name, b) in primary_pairs:
                    continue
                if a.role == "paper" and b in papers:
                    continue
                c = _contrast(module, a.name, b, seeds, results, "exploratory")
                if c is not None:
                    contrasts.append(c)
    return contrasts


def _find(contrasts: Sequence[Mapping[str, Any]], module: str, a: str, b: str
          ) -> Mapping[str, Any] | None:  # fmt: skip
    return next((c for c in contrasts if (c["module"], c["a"], c["b"]) == (module, a, b)), None)


def _verdicts(contrasts: Sequence[Mapping[str, Any]], arms_out: Mapping[str, Any]
              ) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    for module in arms_out:
        floor = next(a.name for a in ARMS[module] if a.role == "floor")
        paper = next(a.name for a in ARMS[module] if a.role == "paper")
        oracle = next(a.name for a in ARMS[module] if a.role == "oracle")
        headroom = _find(contrasts, module, oracle, floor)
        helps = _find(contrasts, module, paper, floor)
        entry: dict[str, Any] = {
            "headroom": headroom["verdict"] if headroom else "not run",
            "paper_module": helps["verdict"] if helps else "not run",
            "variants": {},
        }
        if entry["headroom"] != "supported" and entry["paper_module"] != "supported":
            entry["paper_module"] = "inconclusive"  # a set without headroom cannot judge
            entry["note"] = ("the oracle does not stand above the floor: this set cannot show "
                             "whether the module helps")
        for a in ARMS[module]:
            if a.role == "variant":
                c = _find(contrasts, module, a.name, paper)
                entry["variants"][a.name] = c["verdict"] if c else "not run"
        out[module] = entry
    return out


# ------------------------------------------------------------------------------ tables
def _pct(s: Mapping[str, Any] | None, signed: bool = False, ci: bool = False) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    text = f"{100 * s['mean']:+.1f}" if signed else f"{100 * s['mean']:.1f}"
    if ci and s.get("ci"):
        lo, hi = s["ci"]
        return f"{text} [{100 * lo:+.1f}, {100 * hi:+.1f}]" if signed else (
            f"{text} [{100 * lo:.1f}, {100 * hi:.1f}]")
    return text + (f" ± {100 * s['sd']:.1f}" if s.get("sd") is not None else "")


def _num(s: Mapping[str, Any] | None, digits: int = 2) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['sd']:.{digits}f}" if s.get("sd") is not None
                                        else "")  # fmt: skip


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


_MODULE_TITLES = {"bam": "BAM (body attention)", "gsam": "GSAM (attention branch)",
                  "lsam": "LSAM (graph over patches)"}  # fmt: skip


def report_tables(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report's tables, each ``{"title", "text", "header", "rows"}`` (cells as text).

    One table of arms per module (the primary metric with its 95% CI, the secondary
    numbers, the interventions), then the primary contrasts with their Holm-adjusted
    p-values and verdicts, then the exploratory contrasts.
    """
    tables = []
    for module, arms_out in summary["arms"].items():
        _, _, what = PRIMARY_METRIC[module]
        secondary = _secondary_shown(module)
        rows = []
        for name, row in arms_out.items():
            a = arm(module, name)
            cells = [name, a.role, a.description, a.source,
                     _pct(row["primary"], ci=True)]  # fmt: skip
            for label in secondary:
                s = row["secondary"].get(label)
                cells.append(_num(s) if "AUC" in label or "contrast" in label
                             or "weight:" in label or "range" in label else _pct(s))
            rows.append(cells)
        tables.append({
            "title": f"{_MODULE_TITLES[module]}: the arms",
            "text": f"Primary metric: {what}, in % (mean over seeds [95% CI]). The other "
                    "columns: mean ± sd over seeds.",
            "header": ["arm", "role", "what", "from", "primary", *secondary],
            "rows": rows,
        })  # fmt: skip
        iv_rows = []
        for name, row in arms_out.items():
            for iv, d in row.get("interventions", {}).items():
                iv_rows.append([name, iv, _pct(d, signed=True, ci=True), _p(d.get("p"))])
        if iv_rows:
            tables.append({
                "title": f"{_MODULE_TITLES[module]}: does the trained model use the module?",
                "text": "Test accuracy with the module's output swapped at test time, minus "
                        "the intact model's, in points (mean [95% CI] over seeds, paired; "
                        "p unadjusted). Near 0: the model does not use what the module "
                        "computes.",
                "header": ["arm", "swap", "change in accuracy", "p"], "rows": iv_rows,
            })  # fmt: skip
    primary = [c for c in summary["contrasts"] if c["family"] == "primary"]
    tables.append({
        "title": "Primary contrasts (Holm-corrected together)",
        "text": "Paired by seed: the difference in the module's primary metric, in points "
                f"(mean [95% t CI]); p from a paired t-test, Holm-adjusted over these "
                f"{len(primary)} contrasts. Supported: adjusted p < 0.05 and a positive "
                f"difference; not supported: the (unadjusted) CI lies below "
                f"+{100 * SMALLEST_EFFECT:g} points, or the difference is significantly "
                "negative; otherwise inconclusive. The last p is exact, from sign flips "
                "of the per-seed differences (no normality assumed); with n seeds it "
                "cannot fall below 2 / 2^n.",
        "header": ["module", "arm", "against", "difference", "p", "p (Holm)", "verdict",
                   "p (sign flips)"],
        "rows": [[c["module"], c["a"], c["b"], _pct(c, signed=True, ci=True), _p(c["p"]),
                  _p(c["p_holm"]), c["verdict"], _p(c.get("p_exact"))] for c in primary],
    })  # fmt: skip
    exploratory = [c for c in summary["contrasts"] if c["family"] == "exploratory"]
    if exploratory:
        tables.append({
            "title": "Exploratory contrasts (not corrected; no verdict)",
            "text": "The other arms against the floor and against the paper's module, "
                    "paired by seed, in points of the primary metric.",
            "header": ["module", "arm", "against", "difference", "p"],
            "rows": [[c["module"], c["a"], c["b"], _pct(c, signed=True, ci=True), _p(c["p"])]
                     for c in exploratory],
        })  # fmt: skip
    return tables


def _secondary_shown(module: str) -> list[str]:
    return {
        "bam": ["test_iid contested accuracy", "accuracy: misleading",
                "accuracy: reliable, flag decoy", "weight AUC (reliable vs misleading)",
                "mean weight: reliable", "mean weight: misleading"],
        "gsam": ["test mAP", "pointing among candidates", "target share of candidate mass",
                 "map range"],
        "lsam": ["relation accuracy", "marker AP (control)", "relation contrast of the graph"],
    }[module]


def report_markdown(summary: Mapping[str, Any], settings_line: str) -> str:
    """``report.md``: the verdicts, the settings, then every table of :func:`report_tables`."""
    lines = [f"# Diagnostic benchmark: {SYNTHETIC_NOTE}", "",
             f"{SYNTHETIC_NOTE}: these numbers say what each module does on scenes built for "
             "it, nothing about EMOTIC, and are not comparable with the paper's.", "",
             settings_line, "", "## Verdicts", ""]  # fmt: skip
    for module, v in summary["verdicts"].items():
        variants = ", ".join(f"{k}: {w}" for k, w in v["variants"].items()) or "none"
        lines.append(f"- {_MODULE_TITLES[module]}: the paper's module **{v['paper_module']}**; "
                     f"headroom (oracle over floor) {v['headroom']}; beyond the paper: "
                     f"{variants}." + (f" ({v['note']})" if v.get("note") else ""))
    for table in report_tables(summary):
        lines += ["", f"## {table['title']}", ""]
        if table["text"]:
            lines += [table["text"], ""]
        lines += ["| " + " | ".join(table["header"]) + " |",
                  "|" + "---|" * len(table["header"])]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"
