#!/usr/bin/env python
"""The diagnostic benchmark: does each DAG-Net module do the job the paper gives it?

For each module (BAM, GSAM, LSAM) and seed, ``dagnet-diagnose`` makes the module's
SYNTHETIC set (:mod:`dagnet_layers.emotic.diagnostic.sets`), trains every arm of
:data:`~dagnet_layers.emotic.diagnostic.ARMS` on it (the paper's module, its floor,
an oracle ceiling, controls, the options beyond the paper;
:func:`~dagnet_layers.emotic.diagnostic.run_arm`), and writes the report: every
arm over the seeds, the paired contrasts with Holm's correction, the test-time
swaps, a verdict per module, and the figures.

Examples::

    dagnet-diagnose                                   # 3 sets x 6 seeds, CPU-sized
    dagnet-diagnose --modules lsam --seeds 0 1 2 3 4 5 6 7
    dagnet-diagnose --arms bam/oracle bam/none --output-dir runs/bam_headroom

Resumable: each run (module, arm, seed) is one JSON file under
``OUTPUT_DIR/runs/<module>/<arm>/seed<S>.json``, written when it is complete and
never repeated; the output folder is locked while a process works in it. The
settings are recorded in ``settings.json``; a later call with other sizes or epochs
is refused (seeds, modules and arms may be added). The report (``report.md``,
``report.json``, the figures) covers the modules, arms and seeds of the call.
Everything says SYNTHETIC: the scenes are not EMOTIC.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dagnet_layers.commands.args import DIAGNOSE_MODULES, build_diagnose_parser
from dagnet_layers.storage import FolderLock, file_in_the_way, write_bytes_atomic

logger = logging.getLogger("dagnet_diagnose")


# ------------------------------------------------------------------ settings and runs
def set_sizes(module: str, scale: float) -> dict[str, int]:
    """The train and test sizes of one module's set at ``scale`` (at least 32 and 16)."""
    from dagnet_layers.emotic.diagnostic import SET_SIZES

    base = SET_SIZES[module]
    return {"n_train": max(32, round(base["n_train"] * scale)),
            "n_test": max(16, round(base["n_test"] * scale))}  # fmt: skip


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What decides a run's result, besides its module, arm and seed."""
    from dagnet_layers._version import __version__
    from dagnet_layers.emotic.diagnostic import BASE_MODEL, EPOCHS, TRAINING

    return {
        "sizes": {m: set_sizes(m, args.scale) for m in DIAGNOSE_MODULES},
        "epochs": {m: args.epochs or EPOCHS[m] for m in DIAGNOSE_MODULES},
        "training": dict(TRAINING),
        "base_model": {k: list(v) if isinstance(v, tuple) else v for k, v in BASE_MODEL.items()},
        "version": __version__,
    }


def check_settings(out: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    """Record the settings of a new output folder, or refuse other settings for an old one."""
    from dagnet_layers.emotic.diagnostic.report import SYNTHETIC_NOTE
    from dagnet_layers.storage import read_json_object

    path = out / "settings.json"
    if path.exists():
        recorded = read_json_object(path, "diagnostic settings")
        differ = [k for k in ("sizes", "epochs", "training", "base_model")
                  if recorded.get(k) != wanted[k]]  # fmt: skip
        if differ:
            what = "; ".join(f"{k}: {recorded.get(k)!r} there, {wanted[k]!r} now" for k in differ)
            raise SystemExit(f"{out} holds diagnostic runs made with other settings ({what}); "
                             "pass the same --scale and --epochs, or another --output-dir")
        return recorded
    write_bytes_atomic(path, (json.dumps({"synthetic": True, "note": SYNTHETIC_NOTE, **wanted},
                                         indent=1) + "\n").encode())  # fmt: skip
    return wanted


def selected_arms(parser: argparse.ArgumentParser, args: argparse.Namespace
                  ) -> dict[str, list[str]]:  # fmt: skip
    """``{module: [arm names]}`` this call runs, checked against the declared arms."""
    from dagnet_layers.commands.checks import refuse
    from dagnet_layers.emotic.diagnostic import ARMS

    for module in args.modules:
        if module not in DIAGNOSE_MODULES:
            refuse(parser, "--modules", f"unknown module {module!r}; choose from "
                   f"{', '.join(DIAGNOSE_MODULES)}")
    modules = [m for m in DIAGNOSE_MODULES if m in args.modules]
    if args.arms is None:
        return {m: [a.name for a in ARMS[m]] for m in modules}
    chosen: dict[str, list[str]] = {m: [] for m in modules}
    for item in args.arms:
        module, _, name = item.partition("/")
        if module not in chosen:
            refuse(parser, "--arms", f"{item!r} is not MODULE/ARM with MODULE among --modules "
                   f"({', '.join(modules)})")
        names = [a.name for a in ARMS[module]]
        if name not in names:
            refuse(parser, "--arms", f"{module} has no arm {name!r}; its arms: {', '.join(names)}")
        if name not in chosen[module]:
            chosen[module].append(name)
    return {m: [a.name for a in ARMS[m] if a.name in v] for m, v in chosen.items() if v}


def _run_path(out: Path, module: str, name: str, seed: int) -> Path:
    return out / "runs" / module / name / f"seed{seed}.json"


def ensure_run(out: Path, module: str, name: str, seed: int, data: Any, settings: dict[str, Any],
               device: str, progress: bool) -> dict[str, Any]:  # fmt: skip
    """One arm on one seed, trained and tested unless its result is on disk."""
    from dagnet_layers.emotic.diagnostic import arm, run_arm
    from dagnet_layers.emotic.diagnostic.report import SYNTHETIC_NOTE
    from dagnet_layers.storage import read_json_object

    path = _run_path(out, module, name, seed)
    if path.is_file():
        return read_json_object(path, "diagnostic run")
    epochs = settings["epochs"][module]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc=f"{module}/{name} seed {seed}", unit="epoch", leave=False,
                   dynamic_ncols=True)  # fmt: skip

    def step(epoch: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = run_arm(arm(module, name), data, seed, epochs=epochs,
                         batch_size=settings["training"]["batch_size"],
                         lr=settings["training"]["lr"], device=device, progress=step)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    result.update(run_seconds=round(time.perf_counter() - start, 3),
                  run_cpu_seconds=round(time.process_time() - cpu, 3))
    record = {"synthetic": True, "note": SYNTHETIC_NOTE, **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(_json_safe(record)) + "\n").encode())
    logger.info("%s/%s seed %d: primary %s (%.0f s)", module, name, seed,
                _primary_text(record), result["run_seconds"])  # fmt: skip
    return _json_safe(record)


def _primary_text(record: dict[str, Any]) -> str:
    from dagnet_layers.emotic.diagnostic import primary_value

    value = primary_value(record)
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _json_safe(value: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has none), recursively; numpy as Python."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------- the report
def metric_checks(sets: dict[str, Any]) -> dict[str, Any]:
    """Each metric on an oracle and on a null, on the report's first seed's test splits.

    What a metric gives a perfect answer (its ceiling) and one that knows nothing (its
    chance level), computed on the very scenes it judges: a metric that could not
    tell the two apart would not be used.
    """
    from dagnet_layers.emotic.diagnostic import (
        accuracy,
        candidate_pointing,
        candidate_share,
        oracle_adjacency,
        relation_contrast,
        roc_auc,
    )
    from dagnet_layers.emotic.metrics import average_precision
    from dagnet_layers.layers import grid_adjacency

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for module, data in sets.items():
        rows = data.indices("test")
        y = data.labels[rows].astype(np.float64)
        task = list(data.task)
        noise = rng.random(y.shape)
        checks: dict[str, Any] = {}
        if module == "bam":
            kind, decoy = data.truth["kind"][rows], data.truth["decoy"][rows]
            contested = (kind == 1) | decoy
            checks["contested accuracy"] = {
                "oracle": accuracy(y[contested], y[contested], task),
                "null": accuracy(noise[contested], y[contested], task), "chance": 1 / len(task)}
            bodies = kind < 2
            checks["weight AUC"] = {"oracle": roc_auc((kind == 0)[bodies], kind[bodies] == 0),
                                    "null": roc_auc(rng.random(int(bodies.sum())),
                                                    kind[bodies] == 0), "chance": 0.5}
        if module == "gsam":
            checks["accuracy"] = {"oracle": accuracy(y, y, task), "null": accuracy(noise, y, task),
                                  "chance": 1 / len(task)}  # fmt: skip
            cand, target = data.truth["candidate_cells"][rows], data.truth["target_cell"][rows]
            perfect = np.zeros((rows.size, data.grid, data.grid))
            perfect.reshape(rows.size, -1)[np.arange(rows.size), target] = 1.0
            flat = np.ones_like(perfect)
            chance = 1 / cand.shape[1]
            for name, fn in (("pointing", candidate_pointing), ("target share", candidate_share)):
                checks[name] = {"oracle": float(np.mean(fn(perfect, cand, target, data.grid))),
                                "null": float(np.mean(fn(flat, cand, target, data.grid))),
                                "chance": chance}  # fmt: skip
        if module == "lsam":
            ap_null = average_precision(noise[:, task], y[:, task])
            checks["relation mAP"] = {
                "oracle": float(np.nanmean(average_precision(y[:, task], y[:, task]))),
                "null": float(np.nanmean(ap_null)),
                "chance": float(y[:, task].mean(0).mean())}  # fmt: skip
            grid = grid_adjacency(data.grid).numpy()
            checks["relation contrast"] = {
                "oracle": relation_contrast(oracle_adjacency(data.grid).numpy(), data.grid),
                "null": relation_contrast(grid, data.grid), "chance": 0.0}  # fmt: skip
        out[module] = checks
    return out


def _panel(module: str, summary: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    from dagnet_layers.emotic.diagnostic import PRIMARY_METRIC

    arms = [{"name": name, "role": row["role"], "values": row["primary"]["values"],
             "ci": row["primary"].get("ci")} for name, row in summary["arms"][module].items()]
    data = sets[module]
    task_labels = data.labels[data.indices("test")][:, list(data.task)]
    chance = (1 / len(data.task) if PRIMARY_METRIC[module][1].startswith("accuracy")
              else float(task_labels.mean(0).mean()))  # fmt: skip
    return {"arms": arms, "chance": chance, "ylabel": _SHORT[module]}


_SHORT = {"bam": "accuracy, contested persons (%)", "gsam": "accuracy (%)",
          "lsam": "relation mAP (%)"}  # fmt: skip


def write_figures(report: Path, summary: dict[str, Any], runs: dict[str, Any],
                  sets: dict[str, Any]) -> list[str]:  # fmt: skip
    """The report's figures (PNG) from the runs of the first seed; returns their names."""
    from dagnet_layers.figures.diagnostic import (
        plot_adjacency_matrices,
        plot_attention_on_cues,
        plot_body_weights,
        plot_image_grid,
        plot_module_arms,
    )

    title = "SYNTHETIC diagnostic scenes (not EMOTIC)"
    seed = summary["seeds"][0]
    names = []
    titles = {"bam": "BAM set", "gsam": "GSAM set", "lsam": "LSAM set"}
    panels = {titles[m]: _panel(m, summary, sets) for m in summary["arms"]}
    plot_module_arms(panels, report / "arms.png",
                     title=f"{title}: every arm's primary metric, {len(summary['seeds'])} seeds")
    names.append("arms.png")

    rows: dict[str, list[dict[str, Any]]] = {}
    for module, data in sets.items():
        test = data.indices("test")[:6]
        if module == "bam":
            kinds = ("reliable", "misleading", "neutral")
            captions = [f"{kinds[data.truth['kind'][i]]}"
                        f"{', decoy' if data.truth['decoy'][i] else ''}\n"
                        f"true {data.classes[data.truth['y'][i]]}" for i in test]
            rows["BAM: body"] = [{"image": data.body[i], "caption": c}
                                 for i, c in zip(test, captions, strict=True)]  # fmt: skip
            rows["BAM: context"] = [{"image": data.context[i], "caption": ""} for i in test]
        elif module == "gsam":
            rows["GSAM: context"] = [{"image": data.context[i],
                                      "caption": f"framed: {data.classes[data.truth['y'][i]]}"}
                                     for i in test]  # fmt: skip
        else:
            rows["LSAM: context"] = [{"image": data.context[i], "caption": ", ".join(
                data.classes[k] for k in np.nonzero(data.labels[i])[0])} for i in test]
    plot_image_grid(rows, report / "scenes.png",
                    title=f"{title}: test scenes, seed {seed}")
    names.append("scenes.png")

    bam = runs.get("bam", {})
    for name in ("bam", "confidnet"):
        samples = bam.get(name, {}).get(seed, {}).get("samples", {})
        if samples.get("weights"):
            w, k = np.asarray(samples["weights"]), np.asarray(samples["kinds"])
            plot_body_weights({kind: w[k == i] for i, kind in
                               enumerate(("reliable", "misleading", "neutral"))},
                              report / f"bam_weights_{name}.png",
                              title=f"{title}:\nBAM weight, arm {name}, seed {seed} "
                              "(test persons)")  # fmt: skip
            names.append(f"bam_weights_{name}.png")

    gsam, data = runs.get("gsam", {}), sets.get("gsam")
    if data is not None:
        items = []
        cell = data.context.shape[1] / data.grid
        for name in ("gsam", "no_aux", "softmax"):
            samples = gsam.get(name, {}).get(seed, {}).get("samples", {})
            for row, att in list(zip(samples.get("rows", []), samples.get("maps", []),
                                     strict=False))[:4]:  # fmt: skip
                def box(c: int) -> tuple[float, float, float, float]:
                    r, col = divmod(int(c), data.grid)
                    return (col * cell, r * cell, (col + 1) * cell - 1, (r + 1) * cell - 1)

                target = int(data.truth["target_cell"][row])
                others = [box(c) for c in data.truth["candidate_cells"][row] if c != target]
                items.append({"image": data.context[row], "attention": np.asarray(att),
                              "regions": {"target": [box(target)], "candidates": others},
                              "caption": f"{name}"})  # fmt: skip
        if items:
            plot_attention_on_cues(items, report / "gsam_maps.png", columns=4,
                                   title=f"{title}: GSAM maps, seed {seed}\ngreen: the "
                                   "framed target; blue: the look-alikes")
            names.append("gsam_maps.png")

    lsam = runs.get("lsam", {})
    matrices: dict[str, Any] = {}
    from dagnet_layers.emotic.diagnostic import oracle_adjacency
    from dagnet_layers.layers import grid_adjacency

    if lsam:
        g = grid_adjacency(4).numpy()
        matrices["initial (grid)"] = g / g.sum(1, keepdims=True)
        matrices["oracle (fixed)"] = oracle_adjacency(4).numpy()
    for name in ("gcn", "gcn_paper_widths", "residual_gcn"):
        samples = lsam.get(name, {}).get(seed, {}).get("samples", {})
        if samples.get("adjacency"):
            matrices[f"{name}, learned"] = np.asarray(samples["adjacency"])
    if len(matrices) > 2:
        plot_adjacency_matrices(matrices, report / "lsam_graphs.png",
                                title=f"{title}: LSAM adjacency, seed {seed}")
        names.append("lsam_graphs.png")
    return names


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` where there is one), for the timing's record."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def settings_text(settings: dict[str, Any], seeds: Sequence[int]) -> str:
    """One paragraph of what was run."""
    sizes = "; ".join(f"{m.upper()} {s['n_train']} train / {s['n_test']} test scenes, "
                      f"{settings['epochs'][m]} epochs" for m, s in settings["sizes"].items())
    t = settings["training"]
    return (f"Settings: {sizes}. Every arm: {t['optimizer']} at lr {t['lr']:g}, batches of "
            f"{t['batch_size']}, the paper's KL-divergence loss (with ABN's auxiliary term "
            "where the arm has it), the last epoch tested. BAM and GSAM arms: timm's "
            "`test_resnet` backbones trained from scratch (not the paper's ResNet-50/18); "
            "LSAM arms: the local stream alone; widths of `BASE_MODEL`. "
            f"Seeds {', '.join(map(str, seeds))} (each: the scenes, the initial weights and "
            "the batch order; arms share them).")


def torch_threads() -> int:
    """The intra-op threads torch trains with."""
    import torch

    return int(torch.get_num_threads())


def write_report(report: Path, results: dict[str, Any], sets: dict[str, Any],
                 settings: dict[str, Any], seeds: list[int], device: str = "cpu") -> str:
    """``report.json``, ``report.md`` and the figures; returns the Markdown.

    The timing it records is the sum over the runs it reports (each run's wall and CPU
    time as measured when it ran), whichever call trained them.
    """
    from dagnet_layers.emotic.diagnostic import (
        ARMS,
        PRIMARY_METRIC,
        SMALLEST_EFFECT,
        describe_arm,
    )
    from dagnet_layers.emotic.diagnostic.report import SYNTHETIC_NOTE, report_markdown, summarise

    report.mkdir(parents=True, exist_ok=True)
    summary = summarise(results, seeds)
    text = report_markdown(summary, settings_text(settings, seeds))
    figures = write_figures(report, summary, results, sets)
    text += "\n## Figures\n\n" + "\n".join(f"![{n}]({n})" for n in figures) + "\n"
    run_seconds = [r.get("run_seconds") or 0.0 for m in results.values()
                   for a in m.values() for r in a.values()]  # fmt: skip
    run_cpu = [r.get("run_cpu_seconds") or 0.0 for m in results.values()
               for a in m.values() for r in a.values()]  # fmt: skip
    record = {
        "synthetic": True, "note": SYNTHETIC_NOTE, "settings": settings,
        "primary_metric": {m: {"split": s, "key": k, "what": w}
                           for m, (s, k, w) in PRIMARY_METRIC.items() if m in results},
        "smallest_effect": SMALLEST_EFFECT,
        "arms_declared": {m: [describe_arm(a) for a in ARMS[m]] for m in results},
        **summary,
        "metric_checks": metric_checks(sets),
        "timing": {"runs": len(run_seconds), "run_seconds": round(sum(run_seconds), 1),
                   "run_cpu_seconds": round(sum(run_cpu), 1),
                   "machine": cpu_model(), "device": str(device),
                   "cores": os.cpu_count(), "torch_threads": torch_threads(),
                   "date": datetime.date.today().isoformat()},
        "runs": {m: {a: {str(s): {k: v for k, v in r.items() if k != "samples"}
                         for s, r in per_seed.items()} for a, per_seed in arms.items()}
                 for m, arms in results.items()},
    }
    write_bytes_atomic(report / "report.md", text.encode())
    write_bytes_atomic(report / "report.json",
                       (json.dumps(_json_safe(record), indent=1) + "\n").encode())
    return text


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None, prog: str = "dagnet-diagnose") -> int:
    """Run the diagnostic benchmark (see ``dagnet-diagnose --help``); returns the exit status."""
    parser = build_diagnose_parser(prog)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from dagnet_layers.commands.checks import refuse, usable_device

    chosen = selected_arms(parser, args)
    if not (args.scale > 0 and math.isfinite(args.scale)):
        refuse(parser, "--scale", f"must be a finite number > 0, got {args.scale}")
    if args.epochs is not None and args.epochs < 1:
        refuse(parser, "--epochs", f"must be >= 1, got {args.epochs}")
    if len(set(args.seeds)) != len(args.seeds):
        refuse(parser, "--seeds", f"repeats a seed: {args.seeds}")
    for flag, path in (("--output-dir", args.output_dir), ("--report-dir", args.report_dir)):
        blocking = None if path is None else file_in_the_way(path, folder=True)
        if blocking is not None:
            refuse(parser, flag, f"{blocking} is a file, not a folder")
    device = str(usable_device(parser, args.device)) if args.device else "cpu"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, purpose="dagnet-diagnose"):
        from dagnet_layers.emotic.diagnostic import make_set

        settings = check_settings(out, settings_of(args))
        results: dict[str, dict[str, dict[int, dict[str, Any]]]] = {
            m: {a: {} for a in names} for m, names in chosen.items()}
        first_sets: dict[str, Any] = {}
        total = sum(len(v) for v in chosen.values()) * len(args.seeds)
        k = 0
        for seed in args.seeds:
            for module, names in chosen.items():
                data = None  # made only if a run needs it (or for the report's figures)
                for name in names:
                    k += 1
                    if not _run_path(out, module, name, seed).is_file() and data is None:
                        data = make_set(module, seed, **settings["sizes"][module])
                    logger.info("[%d/%d] %s/%s, seed %d", k, total, module, name, seed)
                    results[module][name][seed] = ensure_run(
                        out, module, name, seed, data, settings, device, not args.no_progress)
                if seed == args.seeds[0]:
                    first_sets[module] = data or make_set(module, seed, **settings["sizes"][module])
        report = args.report_dir or out / "report"
        text = write_report(report, results, first_sets, settings, list(args.seeds), device)
    print(text)
    print(f"report and figures in {report.resolve()}")
    return 0


if __name__ == "__main__":
    from dagnet_layers import cli

    sys.exit(cli.run_cli(main, prog="dagnet_layers.commands.diagnose"))
