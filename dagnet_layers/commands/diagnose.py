#!/usr/bin/env python
"""The diagnostic scene benchmark: does each DAG-Net module do its job on scenes built for it?

For each seed, ``dagnet-diagnose`` writes diagnostic scenes
(:func:`~dagnet_layers.emotic.data.make_diagnostic_emotic`: body, whole-scene and
local-object cues apart, a share of the bodies corrupted), trains every preset
of the paper's Table 2 on them with ``dagnet-train``, runs each best checkpoint
over the test split (:func:`~dagnet_layers.emotic.diagnostic.collect_outputs`) and
reads every module against the scenes' ground truth
(:func:`~dagnet_layers.emotic.diagnostic.diagnose`). The report compares each
module with the ablation without it, per seed, and gives the spread over seeds.

Examples::

    dagnet-diagnose                                   # 3 seeds x 8 presets, CPU-sized
    dagnet-diagnose --seeds 0 1 2 3 4 --output-dir runs/diag5
    dagnet-diagnose --presets baseline bam full -- --amp bf16   # after --: dagnet-train flags

Resumable: a scene set, a training run or a diagnosis that is complete is not
done again, an interrupted training run continues from its last checkpoint, and
the output folder is locked while a process works in it. The settings are
recorded in ``settings.json``; a later call with other settings is refused (seeds
and presets may be added). Outputs under ``--output-dir``: ``scenes/seed<S>/``,
``cache/seed<S>/``, ``runs/<preset>/seed<S>/`` (a ``dagnet-train`` run plus
``diagnostic.json`` and ``diagnostic_outputs.npz``) and ``report/`` (``report.md``,
``report.json`` and the figures). Everything says SYNTHETIC: the scenes are not
EMOTIC.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dagnet_layers.commands.args import DIAGNOSE_DEFAULTS, build_diagnose_parser
from dagnet_layers.storage import FolderLock, file_in_the_way, write_bytes_atomic

logger = logging.getLogger("dagnet_diagnose")

#: Each module against the ablation without it: (module, preset with, preset without).
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("BAM", "bam", "baseline"),
    ("BAM", "bam_gsam", "gsam"),
    ("GSAM", "gsam", "baseline"),
    ("GSAM", "bam_gsam", "bam"),
    ("LSAM (GCN)", "lsam", "baseline"),
    ("LSAM (GCN)", "full", "bam_gsam"),
    ("GCN vs per-patch sum", "full", "bam_gsam_lsam_nogcn"),
    ("context streams", "baseline", "body_only"),
)
#: The numbers of each preset's table, as (label, path into diagnose()'s dict).
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cue mAP", ("map",)),
    ("body", ("family_map", "body")),
    ("global", ("family_map", "global")),
    ("local", ("family_map", "local")),
    ("body, corrupted", ("body", "corrupted")),
    ("body, clean", ("body", "clean")),
)
SYNTHETIC = "SYNTHETIC diagnostic scenes, not EMOTIC"


# ------------------------------------------------------------------ settings and steps
def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"images": args.images, "scene_size": args.scene_size, "image_size": args.image_size,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "model": args.model, "corrupt_fraction": args.corrupt_fraction,
            "train_args": list(args.train_args)}  # fmt: skip


def check_settings(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Record the settings of a new output folder, or refuse other settings for an old one."""
    from dagnet_layers.storage import read_json_object

    wanted = _settings(args)
    path = out / "settings.json"
    if path.exists():
        recorded = read_json_object(path, "diagnostic settings")
        differ = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
        if differ:
            what = ", ".join(f"{k}={a!r} there, {b!r} now" for k, (a, b) in differ.items())
            raise SystemExit(f"{out} holds a diagnostic run with other settings ({what}); pass "
                             "the same settings, or another --output-dir")
        return recorded
    write_bytes_atomic(path, (json.dumps({"synthetic": True, "note": SYNTHETIC, **wanted},
                                         indent=1) + "\n").encode())  # fmt: skip
    return wanted


def check_scenes(scenes: Any, args: argparse.Namespace, seed: int) -> None:
    """Refuse complete scenes written with other settings than this call's."""
    from dagnet_layers.emotic.data.scenes import DIAGNOSTIC_JSON

    wanted = {"n_images": args.images, "seed": seed, "image_size": args.scene_size,
              "corrupt_fraction": args.corrupt_fraction,
              "split_fractions": list(DIAGNOSE_DEFAULTS["split_fractions"])}  # fmt: skip
    differ = [f"{k}={scenes.settings.get(k)!r} there, {v!r} now" for k, v in wanted.items()
              if scenes.settings.get(k) != v]  # fmt: skip
    if differ:
        raise SystemExit(f"{scenes.root / DIAGNOSTIC_JSON} holds other scenes "
                         f"({', '.join(differ)}); use another --output-dir")


def ensure_scenes(root: Path, args: argparse.Namespace, seed: int) -> Any:
    """The scenes of one seed, written unless complete (their ground truth is written last)."""
    from dagnet_layers.emotic.data import make_diagnostic_emotic, read_diagnostic_scenes
    from dagnet_layers.emotic.data.scenes import DIAGNOSTIC_JSON

    if (root / DIAGNOSTIC_JSON).is_file():
        scenes = read_diagnostic_scenes(root)
        check_scenes(scenes, args, seed)
        return scenes
    logger.info("writing the diagnostic scenes of seed %d to %s", seed, root)
    return make_diagnostic_emotic(
        root, n_images=args.images, seed=seed, image_size=args.scene_size,
        corrupt_fraction=args.corrupt_fraction,
        split_fractions=DIAGNOSE_DEFAULTS["split_fractions"],
    )  # fmt: skip


def train_args_for(run: Path, scenes: Path, cache: Path, preset: str, seed: int,
                   args: argparse.Namespace) -> list[str]:  # fmt: skip
    """The ``dagnet-train`` arguments of one preset and seed (``--resume`` once it started)."""
    from dagnet_layers.commands.train import RUN_ARTIFACTS

    argv = ["--data-root", str(scenes), "--cache-dir", str(cache), "--model", args.model,
            "--ablation", preset, "--image-size", str(args.image_size),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--lr", str(args.lr), "--no-pretrained", "--seed", str(seed),
            "--output-dir", str(run)]  # fmt: skip
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    if args.device is not None:
        argv += ["--device", args.device]
    if args.no_progress:
        argv.append("--no-progress")
    if any((run / name).exists() for name in RUN_ARTIFACTS):
        argv.append("--resume")  # an interrupted run continues from its last checkpoint
    return argv + list(args.train_args)


def ensure_trained(run: Path, argv: list[str]) -> dict[str, Any]:
    """Train one run unless its test report exists; returns the test report."""
    from dagnet_layers.commands import train
    from dagnet_layers.storage import read_json_object

    report = run / "test_report.json"
    if not report.is_file():
        code = train.main(argv)
        if code != 0:
            raise SystemExit(f"the training run in {run} failed (exit status {code})")
    return read_json_object(report, "test report")


def ensure_diagnosed(run: Path, scenes: Any, cache: Path, args: argparse.Namespace,
                     test_report: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Run the best checkpoint over the test split and diagnose it, unless done."""
    from dagnet_layers.storage import read_json_object

    done = run / "diagnostic.json"
    if done.is_file():
        return read_json_object(done, "diagnosis")
    import torch

    from dagnet_layers.emotic.data import EmoticDataset, emotic_batch_transform, normalization_of
    from dagnet_layers.emotic.diagnostic import collect_outputs, diagnose
    from dagnet_layers.models import DAGNet

    # the report names the checkpoint as the run was called (maybe relative to another
    # working folder); it is the folder of that name under this run's checkpoints
    checkpoint = run / "checkpoints" / Path(test_report["checkpoint"]).name
    inference = read_json_object(checkpoint / "inference.json", "inference settings")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = DAGNet.from_pretrained(checkpoint, map_location=device)
    dataset = EmoticDataset(scenes.root, "test", size=args.image_size, cache_dir=cache)
    transform = emotic_batch_transform(False, size=args.image_size,
                                       **normalization_of(model)).to(device)  # fmt: skip
    outputs = collect_outputs(model, dataset, score=inference["score"],
                              batch_transform=transform, device=device)  # fmt: skip
    result = diagnose(outputs, scenes, protocol=test_report.get("protocol", "emotic"),
                      ties=test_report.get("ties") or "octave")  # fmt: skip
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **outputs.to_arrays())
    write_bytes_atomic(run / "diagnostic_outputs.npz", buffer.getvalue())
    record = {"synthetic": True, "note": SYNTHETIC, "checkpoint": str(checkpoint), **result}
    write_bytes_atomic(done, (json.dumps(_json_safe(record), indent=1) + "\n").encode())
    return _json_safe(record)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as ``None`` (JSON has none), recursively."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- report
def _get(record: dict[str, Any] | None, path: Sequence[str]) -> float | None:
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    return {"mean": float(v.mean()) if v.size else None,
            "sd": float(v.std(ddof=1)) if v.size > 1 else None,
            "n": int(v.size), "values": list(values)}  # fmt: skip


def _pct(s: dict[str, Any], signed: bool = False) -> str:
    if s["mean"] is None:
        return "n/a"
    text = f"{100 * s['mean']:+.1f}" if signed else f"{100 * s['mean']:.1f}"
    return text + (f" ± {100 * s['sd']:.1f}" if s["sd"] is not None else "")


def _num(s: dict[str, Any], digits: int = 3) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['sd']:.{digits}f}" if s["sd"] is not None else "")


def summarise(results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Mean, sd and per-seed values of every number, and the paired module contrasts."""
    seeds = sorted({s for per_seed in results.values() for s in per_seed})
    presets: dict[str, Any] = {}
    for preset, per_seed in results.items():
        row = {label: _stats([_get(per_seed.get(s), path) for s in seeds])
               for label, path in METRICS}  # fmt: skip
        row["bam point_biserial"] = _stats(
            [_get(per_seed.get(s), ("bam", "point_biserial")) for s in seeds])
        for kind in ("clean", "occluded", "blurred", "no_body_cue"):
            row[f"bam weight {kind}"] = _stats(
                [_get(per_seed.get(s), ("bam", "mean_weight", kind)) for s in seeds])
        for region in ("echo", "local", "sky"):
            for key in ("mass", "chance", "pointing"):
                row[f"gsam {region} {key}"] = _stats(
                    [_get(per_seed.get(s), ("gsam", region, key)) for s in seeds])
        row["gsam range"] = _stats([_get(per_seed.get(s), ("gsam", "range")) for s in seeds])
        for key in ("ratio", "ratio_initial", "cue", "rest"):
            row[f"lsam {key}"] = _stats([_get(per_seed.get(s), ("lsam", key)) for s in seeds])
        presets[preset] = row
    contrasts = []
    for module, with_, without in CONTRASTS:
        if with_ not in results or without not in results:
            continue
        row = {"module": module, "with": with_, "without": without}
        for label, path in METRICS:
            diffs = []
            for s in seeds:
                a, b = _get(results[with_].get(s), path), _get(results[without].get(s), path)
                diffs.append(None if a is None or b is None else a - b)
            row[label] = _stats(diffs)
        contrasts.append(row)
    return {"seeds": seeds, "presets": presets, "contrasts": contrasts}


def report_tables(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's tables, each ``{"title", "text", "header", "rows"}`` (cells as text).

    One source for ``report.md`` (:func:`report_markdown`) and the documentation page,
    which renders the committed ``report.json`` through this function.
    """
    presets = summary["presets"]
    labels = [label for label, _ in METRICS]
    tables = [{
        "title": "Test mAP per cue family", "text": "",
        "header": ["preset", *labels],
        "rows": [[p, *(_pct(r[label]) for label in labels)] for p, r in presets.items()],
    }]  # fmt: skip
    rows = []
    for row in summary["contrasts"]:
        cells = []
        for label in labels:
            s = row[label]
            wins = sum(1 for v in s["values"] if v is not None and v > 0)
            cells.append(_pct(s, signed=True) + (f" ({wins}/{s['n']})" if s["n"] else ""))
        rows.append([row["module"], row["with"], row["without"], *cells])
    if rows:  # only where both presets of a contrast were trained
        tables.append({
            "title": "Each module against the ablation without it",
            "text": "Paired by seed (same scenes, same training seed): the difference in "
                    "percentage points, mean ± sd, and in how many seeds it is positive.",
            "header": ["module", "with", "without", *labels], "rows": rows,
        })  # fmt: skip
    kinds = ("clean", "occluded", "blurred", "no_body_cue")
    with_bam = [p for p, r in presets.items() if r["bam point_biserial"]["n"]]
    if with_bam:
        tables.append({
            "title": "BAM: the body weight against corruption",
            "text": "Point-biserial r between the weight and 'this body is corrupted' "
                    "(persons with a body cue; negative when corrupted bodies weigh less), "
                    "and the mean weight per kind of body.",
            "header": ["preset", "r", "clean", "occluded", "blurred", "no body cue"],
            "rows": [[p, _num(presets[p]["bam point_biserial"]),
                      *(_num(presets[p][f"bam weight {k}"]) for k in kinds)]
                     for p in with_bam],
        })  # fmt: skip
    with_gsam = [p for p, r in presets.items() if r["gsam echo mass"]["n"]]
    if with_gsam:
        tables.append({
            "title": "GSAM: attention on the cue regions",
            "text": "Share of the map's mass on each region against its area (what a "
                    "uniform map scores), and how often the map's peak falls on it "
                    "(pointing game; a random peak hits as often as the area); the last "
                    "column is the maps' mean max - min (near 0: the map is uniform).",
            "header": ["preset", "region", "mass (%)", "area = chance (%)", "pointing (%)",
                       "map range"],
            "rows": [[p, region, _pct(presets[p][f"gsam {region} mass"]),
                      _pct(presets[p][f"gsam {region} chance"]),
                      _pct(presets[p][f"gsam {region} pointing"]),
                      _num(presets[p]["gsam range"])]
                     for p in with_gsam for region in ("echo", "local", "sky")],
        })  # fmt: skip
    with_gcn = [p for p, r in presets.items() if r["lsam ratio"]["n"]]
    if with_gcn:
        tables.append({
            "title": "LSAM: the learned adjacency between cue patches",
            "text": "Mean |A_ij| between the patches a person's local objects lie in, over "
                    "the mean of the other pairs (1 = no preference), learned and at "
                    "initialisation (the grid's neighbours already link adjacent patches).",
            "header": ["preset", "learned ratio", "initial ratio", "cue |A|", "rest |A|"],
            "rows": [[p, _num(presets[p]["lsam ratio"], 2),
                      _num(presets[p]["lsam ratio_initial"], 2), _num(presets[p]["lsam cue"]),
                      _num(presets[p]["lsam rest"])] for p in with_gcn],
        })  # fmt: skip
    return tables


def settings_text(settings: dict[str, Any], seeds: Sequence[int]) -> str:
    """One sentence of what was run."""
    extra = (f", extra training flags `{' '.join(settings['train_args'])}`"
             if settings["train_args"] else "")  # fmt: skip
    return (f"Settings: {settings['images']} images of {settings['scene_size']} px "
            f"({settings['corrupt_fraction']:.0%} of the bodies corrupted), model "
            f"`{settings['model']}` at {settings['image_size']} px, {settings['epochs']} "
            f"epochs, batch {settings['batch_size']}, Adam lr {settings['lr']:g}{extra}; "
            f"seeds {', '.join(map(str, seeds))} (scenes and training). Values: mean ± sd "
            "over the seeds (official `eval.m` AP, in %).")


def report_markdown(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    """The report's tables as Markdown (every number a percentage unless said)."""
    lines = [f"# Diagnostic scene benchmark: {SYNTHETIC}", "",
             f"{SYNTHETIC}: these numbers say what each module does on scenes built for it, "
             "nothing about EMOTIC, and are not comparable with the paper's.", "",
             settings_text(settings, summary["seeds"])]  # fmt: skip
    for table in report_tables(summary):
        lines += ["", f"## {table['title']}", ""]
        if table["text"]:
            lines += [table["text"], ""]
        lines += ["| " + " | ".join(table["header"]) + " |",
                  "|" + "---|" * len(table["header"])]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def write_figures(out: Path, report: Path, results: dict[str, dict[int, dict[str, Any]]],
                  scenes: dict[int, Any], args: argparse.Namespace) -> list[str]:  # fmt: skip
    """The report's figures; returns their file names."""
    from dagnet_layers.emotic.diagnostic import DiagnosticOutputs, body_kind, cue_boxes
    from dagnet_layers.figures.diagnostic import (
        plot_adjacency_matrices,
        plot_attention_on_cues,
        plot_body_weights,
        plot_family_ap,
    )

    seeds = sorted({s for per_seed in results.values() for s in per_seed})
    names = []
    family = {p: {label: [_get(per_seed.get(s), path) for s in seeds]
                  for label, path in METRICS[1:5]} for p, per_seed in results.items()}  # fmt: skip
    plot_family_ap(family, report / "family_ap.png")
    names.append("family_ap.png")

    def outputs(preset: str, seed: int) -> DiagnosticOutputs:
        with np.load(out / "runs" / preset / f"seed{seed}" / "diagnostic_outputs.npz") as f:
            return DiagnosticOutputs.from_arrays(dict(f))

    for preset in ("bam", "full"):
        if preset not in results:
            continue
        kinds: dict[str, list[float]] = {"clean": [], "occluded": [], "blurred": [],
                                         "no body cue": []}  # fmt: skip
        # one seed: each run's weights sit at their own level, which pooling would mix
        o, truth = outputs(preset, seeds[0]), scenes[seeds[0]].by_filename()
        for f, w in zip(o.filenames, o.body_weights, strict=True):
            kinds[body_kind(truth[f]).replace("_", " ")].append(float(w))
        name = f"body_weights_{preset}.png"
        plot_body_weights(kinds, report / name,
                          title=f"SYNTHETIC diagnostic scenes (not EMOTIC):\nBAM weight, "
                          f"{preset}, seed {seeds[0]} (test persons)")  # fmt: skip
        names.append(name)

    from PIL import Image

    from dagnet_layers.emotic.data import EmoticDataset

    s = seeds[0]
    shown = [p for p in scenes[s].persons if p.split == "test"][:8]
    items = []
    for p in shown:
        tags = [*p.categories, *([f"body {p.corrupted}"] if p.corrupted else [])]
        with Image.open(scenes[s].root / "emotic" / "diagnostic" / "images" / p.filename) as im:
            image = np.asarray(im.convert("RGB"))
        items.append({"image": image, "regions": cue_boxes(p), "body_box": p.bbox,
                      "caption": ", ".join(tags)})  # fmt: skip
    plot_attention_on_cues(items, report / "scenes.png",
                           title=f"SYNTHETIC diagnostic scenes (not EMOTIC): test images of "
                           f"seed {s}, cue regions outlined, body dashed")  # fmt: skip
    names.append("scenes.png")

    for preset in ("gsam", "full"):
        if preset not in results:
            continue
        s = seeds[0]
        o, truth = outputs(preset, s), scenes[s].by_filename()
        dataset = EmoticDataset(scenes[s].root, "test", size=args.image_size,
                                cache_dir=out / "cache" / f"seed{s}")  # fmt: skip
        scale = o.size / int(scenes[s].settings["image_size"])
        items = []
        for i, f in enumerate(o.filenames):
            p = truth[f]
            if not (p.local or p.echo_box is not None) or len(items) >= 8:
                continue
            regions = {k: [tuple(v * scale for v in b) for b in boxes]
                       for k, boxes in cue_boxes(p).items() if k != "sky"}  # fmt: skip
            cues = ", ".join(p.categories)
            items.append({"image": dataset[i]["context"], "attention": o.attention[i],
                          "regions": regions, "caption": cues,
                          "body_box": tuple(v * scale for v in p.bbox)})  # fmt: skip
        name = f"attention_{preset}.png"
        plot_attention_on_cues(items, report / name,
                               title=f"SYNTHETIC diagnostic scenes (not EMOTIC): GSAM maps, "
                               f"{preset}, seed {s}")  # fmt: skip
        names.append(name)

    matrices: dict[str, Any] = {}
    for preset in ("lsam", "full"):
        if preset not in results:
            continue
        o = outputs(preset, seeds[0])
        if o.initial_adjacency is not None and not matrices:
            matrices["initial"] = o.initial_adjacency
        matrices[f"{preset}, seed {seeds[0]}"] = o.adjacency
    if matrices:
        plot_adjacency_matrices(matrices, report / "adjacency.png")
        names.append("adjacency.png")
    return names


def write_report(out: Path, results: dict[str, dict[int, dict[str, Any]]], scenes: dict[int, Any],
                 settings: dict[str, Any], args: argparse.Namespace
                 ) -> tuple[Path, str]:  # fmt: skip
    """``report/report.{md,json}`` and the figures; returns the folder and the tables."""
    report = args.report_dir or out / "report"
    report.mkdir(parents=True, exist_ok=True)
    summary = summarise(results)
    figures = write_figures(out, report, results, scenes, args)
    tables = report_markdown(summary, settings)
    text = tables + "\n## Figures\n\n" + "\n".join(f"![{n}]({n})" for n in figures) + "\n"
    write_bytes_atomic(report / "report.md", text.encode())
    record = {"synthetic": True, "note": SYNTHETIC, "settings": settings, **summary,
              "runs": {p: {str(s): r for s, r in per_seed.items()}
                       for p, per_seed in results.items()}}  # fmt: skip
    write_bytes_atomic(report / "report.json",
                       (json.dumps(_json_safe(record), indent=1) + "\n").encode())  # fmt: skip
    return report, tables


# ------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None, prog: str = "dagnet-diagnose") -> int:
    """Run the diagnostic benchmark (see ``dagnet-diagnose --help``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_args = argv[:cut], argv[cut + 1:]
    parser = build_diagnose_parser(prog)
    args = parser.parse_args(argv)
    args.train_args = train_args
    from dagnet_layers import ABLATIONS, list_models

    for preset in args.presets:
        if preset not in ABLATIONS:
            parser.error(f"argument --presets: unknown {preset!r}; choose from "
                         f"{', '.join(ABLATIONS)}")
    if args.model not in list_models():
        parser.error(f"argument --model: unknown {args.model!r}; see dagnet_layers.list_models()")
    for flag in ("--output-dir", "--data-root", "--ablation", "--seed", "--resume",
                 "--overwrite", "--preprocessed"):  # fmt: skip
        if flag in train_args:
            parser.error(f"{flag} after '--' is set by dagnet-diagnose for each run")
    for name in ("images", "scene_size", "image_size", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"argument --{name.replace('_', '-')} must be >= 1")
    if args.scene_size < 64:
        parser.error("argument --scene-size must be at least 64")
    if not 0.0 <= args.corrupt_fraction <= 1.0:
        parser.error("argument --corrupt-fraction must be in [0, 1]")
    from dagnet_layers.commands import train
    from dagnet_layers.commands.args import build_train_parser
    from dagnet_layers.commands.checks import refuse

    for flag, path in (("--output-dir", args.output_dir), ("--report-dir", args.report_dir)):
        blocking = None if path is None else file_in_the_way(path, folder=True)
        if blocking is not None:
            refuse(parser, flag, f"{blocking} is a file, not a folder")
    # the training runs' own arguments (with those after '--'), as dagnet-train checks
    # them, before any scene is written: the first run's stand for every run's
    probe = train_args_for(args.output_dir / "runs" / args.presets[0] / "probe",
                           args.output_dir / "scenes", args.output_dir / "cache",
                           args.presets[0], args.seeds[0], args)  # fmt: skip
    train_parser = build_train_parser(prog)
    train.check_arguments(train_parser, train_parser.parse_args(probe), folders=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    with FolderLock(out, purpose="dagnet-diagnose"):
        from dagnet_layers.emotic.data import read_diagnostic_scenes
        from dagnet_layers.emotic.data.scenes import DIAGNOSTIC_JSON

        scenes: dict[int, Any] = {}
        for seed in args.seeds:  # before settings.json is written: nothing recorded wrongly
            root = out / "scenes" / f"seed{seed}"
            if (root / DIAGNOSTIC_JSON).is_file():
                scenes[seed] = read_diagnostic_scenes(root)
                check_scenes(scenes[seed], args, seed)
        settings = check_settings(out, args)
        results: dict[str, dict[int, dict[str, Any]]] = {p: {} for p in args.presets}
        total, k = len(args.seeds) * len(args.presets), 0
        for seed in args.seeds:
            if seed not in scenes:
                scenes[seed] = ensure_scenes(out / "scenes" / f"seed{seed}", args, seed)
            cache = out / "cache" / f"seed{seed}"
            for preset in args.presets:
                k += 1
                run = out / "runs" / preset / f"seed{seed}"
                logger.info("[%d/%d] %s, seed %d (%s)", k, total, preset, seed, run)
                argv_run = train_args_for(run, scenes[seed].root, cache, preset, seed, args)
                test_report = ensure_trained(run, argv_run)
                results[preset][seed] = ensure_diagnosed(run, scenes[seed], cache, args,
                                                         test_report)  # fmt: skip
        report, tables = write_report(out, results, scenes, settings, args)
    print(tables)
    print(f"report and figures in {report.resolve()}")
    return 0


if __name__ == "__main__":
    from dagnet_layers import cli

    sys.exit(cli.run_cli(main, prog="dagnet_layers.commands.diagnose"))
