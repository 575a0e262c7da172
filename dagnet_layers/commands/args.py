"""The command lines' arguments: every parser, its defaults and presets, without torch.

The entry points (:mod:`dagnet_layers.commands.entry`) build these parsers to answer
``--help`` before anything heavy is imported; the programs
(:mod:`dagnet_layers.commands.train`, ``predict``, ``cache``...) build them to parse.
This module imports only the standard library, ``dagnet_layers._detectors`` (the
detector names) and ``dagnet_layers._paths`` (the cache home), and nothing of the
programs, so imports among the commands run one
way: entry -> program -> args.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from dagnet_layers._detectors import AUTO_DETECTORS, PERSON_DETECTORS
from dagnet_layers._paths import cache_home

__all__ = [
    "AUTO_DETECTORS",
    "DEMO_DEFAULTS",
    "DEMO_IMAGES",
    "DIAGNOSE_DEFAULTS",
    "MAX_IMAGE_PIXELS",
    "PAPER_DEFAULTS",
    "PREDICT_DETECTORS",
    "SYNTHETIC_NOTE",
    "build_cache_parser",
    "build_demo_parser",
    "build_diagnose_parser",
    "build_predict_parser",
    "build_train_parser",
    "cache_home",
    "default_workers",
]

#: The default image-size bound of the readers (the same number as
#: :data:`dagnet_layers.emotic.data.MAX_IMAGE_PIXELS`, restated so that ``--help`` needs no import).
MAX_IMAGE_PIXELS = 64_000_000

#: EMOTIC's splits (:data:`dagnet_layers.emotic.data.EMOTIC_SPLITS`, restated likewise).
EMOTIC_SPLITS = ("train", "val", "test")

TRAIN_DESCRIPTION = ("Train and evaluate DAG-Net on EMOTIC with the paper's recipe, completed "
                     "where the paper is silent.")
TRAIN_EPILOG = """The paper's settings: lr 1e-4, batch 32, N = 4, 224 x 224 body and context,
ColorJitter 0.4 + horizontal flip, ResNet-50 body / ResNet-18 context, KL-divergence loss.
ABN's: its auxiliary loss on the attention branch. Ours, where the paper is silent: Adam,
30 epochs (the best validation epoch kept), ImageNet backbone weights. AP is the official
eval.m protocol, tie order included. With no dataset, the synthetic EMOTIC-format demo set
is written and a small configuration trained on it (a few minutes on a 2-core CPU);
everything it outputs says SYNTHETIC. Examples:
  dagnet-train
  dagnet-train --data-root /data/emotic --cache-dir /data/emotic-cache
  dagnet-train --preprocessed /data/emotic_pre
  dagnet-train --data-root /data/emotic --ablation bam_gsam --partition 6
  torchrun --nproc_per_node 8 -m dagnet_layers.commands.train --data-root /data/emotic"""


def default_workers() -> int:
    """DataLoader workers per training process: its share of the usable cores, 1 to 16.

    Usable cores are the process's CPU affinity (a container's or ``taskset``'s limit,
    not the machine's count); under ``torchrun`` they are shared by the
    ``LOCAL_WORLD_SIZE`` processes of the node.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(16, cores // local))


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown, epilog kept as written; no "(default: None)" for preset flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _preset_help(key: str) -> str:
    whose = "ours: the paper does not say" if key in NOT_THE_PAPERS else "the paper"
    return (f"default: {PAPER_DEFAULTS[key]} with a dataset ({whose}), "
            f"{DEMO_DEFAULTS[key]} for the demo")


#: The settings of :data:`PAPER_DEFAULTS` that the paper does not give (ours).
NOT_THE_PAPERS = ("epochs",)
#: The recipe used when a dataset is given: the paper's (Sec. 4.2), but for the
#: settings in :data:`NOT_THE_PAPERS`.
PAPER_DEFAULTS: dict[str, Any] = dict(
    model="dagnet_r50_r18", epochs=30, batch_size=32, lr=1e-4, image_size=224, jitter=0.4,
)
#: A small configuration that learns the synthetic demo set on a CPU in minutes.
DEMO_DEFAULTS: dict[str, Any] = dict(
    model="test_dagnet", epochs=12, batch_size=32, lr=1e-3, image_size=64, jitter=0.4,
)
#: Images of the synthetic demo set (with 12 epochs: the docs' full vs body-only comparison).
DEMO_IMAGES = 600
#: What every output of a demo run says about its data.
SYNTHETIC_NOTE = ("SYNTHETIC demo data, not EMOTIC: these numbers say nothing about EMOTIC "
                  "and are not comparable with the paper's")


def build_train_parser(prog: str = "dagnet-train") -> argparse.ArgumentParser:
    """The training command line; flags left unset take the paper's (or the demo's) defaults.

    Imports nothing heavy: ``--help`` answers before torch is loaded. Names that
    need the package (``--model``, ``--ablation``, ``--loss``) are checked after
    parsing, by :func:`dagnet_layers.commands.train.main`.
    """
    p = argparse.ArgumentParser(
        prog=prog,
        description=TRAIN_DESCRIPTION,
        epilog=TRAIN_EPILOG,
        formatter_class=_Formatter,
    )
    _add_data_arguments(p)
    _add_model_arguments(p)
    _add_training_arguments(p)
    _add_run_arguments(p)
    return p


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data (give none of these to train on the synthetic demo set)")
    data.add_argument("--data-root", type=Path, help="official EMOTIC release root")
    data.add_argument("--preprocessed", type=Path, help="community CSV + npy folder")
    data.add_argument("--cache-dir", type=Path,
                      help="decode JPEGs once into memory-mapped arrays here (official layout; "
                      "default: under $DAGNET_CACHE or ~/.cache/dagnet_layers, named by the "
                      "dataset and the image size, when its disk has room)")
    data.add_argument("--no-cache", action="store_true",
                      help="decode the JPEGs every epoch instead of once into the cache")
    data.add_argument("--jpeg-decode", choices=("auto", "workers", "device"), default="auto",
                      help="where JPEGs read every epoch are decoded: in the DataLoader "
                      "workers, or batched on the training device (nvJPEG on CUDA); auto: "
                      "on the device when training on CUDA without a cache (default). "
                      "'device' reads the JPEGs, so it uses no cache")
    data.add_argument("--demo-dir", type=Path,
                      default=cache_home() / "synthetic-emotic",
                      help="where the synthetic demo set is written when no data is given")
    data.add_argument("--demo-images", type=int, default=DEMO_IMAGES,
                      help="images in the synthetic demo set")
    data.add_argument("--strict-data", action="store_true",
                      help="fail at the first bad record or unusable image instead of skipping "
                      "and counting it (the counts are logged per split)")
    data.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS,
                      help="largest image (width x height) decoded; larger ones are refused")
    data.add_argument("--no-mask-body", action="store_true",
                      help="do not mask the body box in the context image")
    data.add_argument("--workers", type=int, default=default_workers(),
                      help="DataLoader worker processes per training process (default: the "
                      "cores this process may use, divided among LOCAL_WORLD_SIZE processes, "
                      "at most 16)")


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    model = p.add_argument_group("model")
    model.add_argument("--model", metavar="NAME", help="registered variant, one of "
                       "dagnet_layers.list_models() (default: "
                       f"{PAPER_DEFAULTS['model']} with a dataset, {DEMO_DEFAULTS['model']} "
                       "for the demo)")
    model.add_argument("--body-backbone", help="override the body backbone (any timm model)")
    model.add_argument("--context-backbone", help="override the context backbone (timm CNN)")
    model.add_argument("--ablation", metavar="PRESET", help="a Table 2 row: "
                       "one of dagnet_layers.ABLATIONS (full, baseline, body_only, bam, gsam, "
                       "lsam, bam_gsam, bam_gsam_lsam_nogcn...)")
    model.add_argument("--partition", type=int, help="patches per side N (Fig. 3: 2..9)")
    model.add_argument("--partition-policy", choices=["error", "resize", "pad"], default="error",
                       help="context sizes not divisible by N: fail, resize or pad the patches")
    model.add_argument("--gcn-normalization", choices=["none", "symmetric", "softmax"],
                       default=None, help="LSAM's adjacency normalisation (default: the "
                       "model's; none is the paper's literal eq. 4)")
    model.add_argument("--gcn-init", choices=["grid", "identity", "uniform"], default=None,
                       help="LSAM's adjacency initialisation (default: the model's, grid)")
    model.add_argument("--gcn-readout", choices=["mean", "sum", "max"], default=None,
                       help="LSAM's pooling of the patch nodes (default: the model's, mean)")
    model.add_argument("--fixed-adjacency", action="store_true",
                       help="keep LSAM's adjacency at its initialisation instead of learning "
                       "it (the paper learns it)")
    model.add_argument("--lsam-graph", choices=["gcn", "residual_gcn", "attention"], default=None,
                       help="what runs over the patches: the paper's gcn, or beyond the paper "
                       "residual_gcn (position embeddings, zero-initialised residual update) "
                       "or attention (relative-position bias); default: the model's")
    model.add_argument("--bam-target", choices=["none", "confidnet"], default=None,
                       help="what trains BAM's weight: the main loss alone (none, the paper) "
                       "or, beyond the paper, a body-only classifier's true-class probability "
                       "(confidnet); default: the model's")
    model.add_argument("--gsam-map", choices=["sigmoid", "softmax"], default=None,
                       help="GSAM map activation: sigmoid (ABN, the paper) or a spatial softmax "
                       "(beyond the paper); default: the model's")
    model.add_argument("--gsam-aux", action=argparse.BooleanOptionalAction, default=None,
                       help="GSAM's auxiliary head and loss (ABN's; default: the model's, on)")
    model.add_argument("--vad", action="store_true", help="also regress valence/arousal/dominance")
    model.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                       help="ImageNet backbone weights through timm (default: on with a "
                       "dataset, off for the demo; needs timm's cache, the network or "
                       "--body-weights/--context-weights)")
    model.add_argument("--body-weights", type=Path, help="local timm weight file, body backbone")
    model.add_argument("--context-weights", type=Path,
                       help="local timm weight file, context backbone")


def _add_training_arguments(p: argparse.ArgumentParser) -> None:
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, help=_preset_help("epochs"))
    train.add_argument("--batch-size", type=int, help="per process; " + _preset_help("batch_size"))
    train.add_argument("--lr", type=float, help="Adam learning rate; " + _preset_help("lr"))
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--scheduler", choices=["none", "cosine"], default="none")
    train.add_argument("--image-size", type=int,
                       help="body and context side; " + _preset_help("image_size"))
    train.add_argument("--jitter", type=float,
                       help="ColorJitter strength; " + _preset_help("jitter"))
    train.add_argument("--flip", type=float, default=0.5, help="horizontal flip probability")
    train.add_argument("--loss", default="kl", metavar="NAME",
                       help="category loss, one of dagnet_layers.emotic.losses.list_losses()")
    train.add_argument("--aux-weight", type=float, default=1.0, help="ABN auxiliary loss weight")
    train.add_argument("--bam-weight", type=float, default=1.0,
                       help="weight of BAM's reliability term with --bam-target confidnet")
    train.add_argument("--vad-weight", type=float, default=0.5, help="VAD loss weight (--vad)")
    train.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    train.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None,
                       help="autocast dtype (default: bf16 on CUDA, none on CPU)")
    train.add_argument("--channels-last", action="store_true", help="channels-last on CUDA")
    train.add_argument("--compile", action="store_true",
                       help="torch.compile the model: faster steps after a compile of a "
                       "minute or so, which pays on long runs only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-steps", type=int, help="stop each epoch after this many steps")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best)")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    run = p.add_argument_group("run")
    run.add_argument("--output-dir", type=Path, default=Path("runs/dagnet"),
                     help="run folder: log, checkpoints, reports, figures")
    run.add_argument("--resume", nargs="?", const="auto", default=None,
                     help="continue the run in --output-dir (from its newest complete "
                     "checkpoint, repairing an interrupted save), or from a given checkpoint "
                     "folder")
    run.add_argument("--overwrite", action="store_true",
                     help="delete the run already in --output-dir and start over")
    run.add_argument("--protocol", choices=["emotic", "sklearn"], default="emotic",
                     help="AP protocol of the reports")
    run.add_argument("--ties", choices=["octave", "stable"], default="octave",
                     help="order of tied scores under the emotic protocol: eval.m's seeded "
                     "random order (as Octave draws it) or sample order")
    run.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true",
                     help="show the traceback of a failure instead of one line")



#: The diagnostic benchmark's defaults: every module's set, 6 seeds (the docs give the
#: measured time on a 2-core CPU).
DIAGNOSE_DEFAULTS: dict[str, Any] = dict(modules=("bam", "gsam", "lsam"), seeds=list(range(6)))
#: The modules with a diagnostic set, restated so that ``--help`` needs no import (a test
#: keeps them equal to ``dagnet_layers.emotic.diagnostic.SET_MODULES``).
DIAGNOSE_MODULES = ("bam", "gsam", "lsam")


def build_diagnose_parser(prog: str = "dagnet-diagnose") -> argparse.ArgumentParser:
    """The diagnostic benchmark's command line (imports nothing heavy)."""
    d = DIAGNOSE_DEFAULTS
    p = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_Formatter,
        description="The diagnostic benchmark: for each module (BAM, GSAM, LSAM), SYNTHETIC "
        "scenes where doing the module's job should pay; the paper's module trained on them "
        "beside its floor (no module), its ceiling (an oracle that knows the ground truth), "
        "controls and the options beyond the paper, over several seeds; test-time swaps of "
        "what each module computes; paired 95% confidence intervals, Holm's correction and "
        "a verdict per module. Resumable: a finished run is never repeated.",
        epilog="examples:\n  dagnet-diagnose\n  dagnet-diagnose --modules lsam --seeds 0 1 2 "
        "3 4 5 6 7\n  dagnet-diagnose --arms bam/oracle gsam/none --output-dir runs/two",
    )
    p.add_argument("--modules", nargs="+", default=list(d["modules"]), metavar="MODULE",
                   help=f"modules whose set to run: {', '.join(DIAGNOSE_MODULES)}")
    p.add_argument("--arms", nargs="+", default=None, metavar="MODULE/ARM",
                   help="only these arms (e.g. bam/oracle lsam/gcn; default: every arm of "
                   "each module, see dagnet_layers.emotic.diagnostic.ARMS)")
    p.add_argument("--seeds", type=int, nargs="+", default=d["seeds"],
                   help="one scene set and one training seed each (at least 5 for the "
                   "verdicts to mean much)")
    p.add_argument("--output-dir", type=Path, default=Path("runs/diagnostic"),
                   help="the runs (one JSON file per module, arm and seed) and the report")
    p.add_argument("--report-dir", type=Path, default=None,
                   help="where report.md, report.json and the figures go (default: "
                   "OUTPUT_DIR/report)")
    size = p.add_argument_group("size (for a quick look; the defaults are the benchmark's)")
    size.add_argument("--scale", type=float, default=1.0,
                      help="multiply every set's train and test sizes by this")
    size.add_argument("--epochs", type=int, default=None,
                      help="epochs for every set (default: each set's own)")
    run = p.add_argument_group("run")
    run.add_argument("--device", default=None, help="cpu, cuda... (default: cpu, the "
                     "measured times are a CPU's)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true",
                     help="show the traceback of a failure instead of one line")
    return p


#: torchvision person detectors ``dagnet-predict --detector`` names (fastest first).
PREDICT_DETECTORS = PERSON_DETECTORS
DETECTOR_HELP = (
    "torchvision COCO person detector: auto (fasterrcnn_resnet50_fpn_v2 on CUDA, "
    "fasterrcnn_mobilenet_v3_large_fpn otherwise) or one of " + ", ".join(PREDICT_DETECTORS)
)


def build_predict_parser(prog: str = "dagnet-predict") -> argparse.ArgumentParser:
    """The prediction command line (imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_Formatter,
        description="Predict the 26 EMOTIC emotion categories for every person in photos, "
        "folders, globs or videos with a DAG-Net checkpoint. Persons are found by a "
        "torchvision person detector unless boxes are given. One photo: a table and a "
        "Fig. 2-style figure. Several inputs or a video: predictions.jsonl, "
        "predictions.csv and annotated pictures, videos and timelines in --output-dir.",
        epilog="examples:\n"
        "  dagnet-predict --checkpoint runs/dagnet/checkpoints/best photo.jpg\n"
        "  dagnet-predict --checkpoint CKPT photos/ 'more/*.png' clip.mp4 --output-dir out\n"
        "  dagnet-predict --checkpoint CKPT photo.jpg --box 120 40 310 460",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="folder written by DAGNet.save_pretrained (config.json, model.safetensors), "
        "optionally with the engine's inference.json",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="photos, folders, glob patterns or videos")
    parser.add_argument("--image", action="append", type=str, default=[], metavar="INPUT",
                        help="an input, as the positional ones (repeatable)")
    persons = parser.add_argument_group("persons (default: found by the detector)")
    persons.add_argument("--box", action="append", nargs="+", metavar="X",
                         help="person box x1 y1 x2 y2 in image pixels, for a single photo; "
                         "repeat for each person")
    persons.add_argument("--boxes-file", type=Path, default=None,
                         help='person boxes per photo: JSON {"photo.jpg": [[x1, y1, x2, y2], '
                         "...]} or CSV with image,x1,y1,x2,y2; photos not in it are detected")
    persons.add_argument("--true-labels", action="append", default=None, metavar="LABELS",
                         help='comma-separated ground-truth categories, e.g. '
                         '"Happiness,Engagement"; repeat once per --box, in the same order')
    persons.add_argument("--detector", default="auto", choices=("auto", *PREDICT_DETECTORS),
                         metavar="NAME", help=DETECTOR_HELP)
    persons.add_argument("--detector-weights", default="DEFAULT", metavar="WEIGHTS",
                         help="DEFAULT (torchvision's, through its cache), a weights name, a "
                         "local .pth state dict, or 'none' for random weights")
    persons.add_argument("--det-threshold", type=float, default=0.5,
                         help="detector confidence below which a person is ignored")
    persons.add_argument("--max-persons", type=int, default=20,
                         help="persons kept per image, the most confident")
    out = parser.add_argument_group("outputs")
    out.add_argument("--output", type=Path, default=None,
                     help="one photo: the figure to write (default: <image stem>_dagnet.png in "
                     "--output-dir, else in dagnet_predictions/, the folder several inputs "
                     "write to)")
    out.add_argument("--no-plot", action="store_true", help="one photo: print the table only")
    out.add_argument("--json", type=Path, default=None,
                     help="one photo: also write the scores as JSON")
    out.add_argument("--output-dir", type=Path, default=None,
                     help="predictions.jsonl, predictions.csv and annotated/ (default "
                     "dagnet_predictions for several inputs or a video)")
    out.add_argument("--jsonl", type=Path, default=None,
                     help="JSON Lines file (default: OUTPUT_DIR/predictions.jsonl)")
    out.add_argument("--csv", type=Path, default=None,
                     help="CSV file (default: OUTPUT_DIR/predictions.csv)")
    out.add_argument("--no-annotate", action="store_true",
                     help="no annotated pictures, videos or timelines")
    run = parser.add_argument_group("running")
    run.add_argument("--top-k", type=int, default=5, help="emotions listed per person")
    run.add_argument("--every", type=int, default=1, help="keep one video frame in EVERY")
    run.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    run.add_argument("--batch-size", type=int, default=32, help="persons per forward pass")
    run.add_argument("--device", default="cpu", help='torch device, e.g. "cpu" or "cuda"')
    run.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                     help="autocast on CUDA (the output layers stay in float32)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser

def build_demo_parser(prog: str = "dagnet-demo") -> argparse.ArgumentParser:
    """The web demo's command line (imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=_Formatter,
        description="A local web page (Gradio, the demo extra) that finds the persons in an "
        "uploaded photo and shows each one's emotions, BAM body weight and GSAM attention map.",
    )
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="folder written by DAGNet.save_pretrained, optionally with the "
                        "engine's inference.json")
    parser.add_argument("--detector", default="auto", choices=("auto", *PREDICT_DETECTORS),
                        metavar="NAME", help=DETECTOR_HELP)
    parser.add_argument("--detector-weights", default="DEFAULT", metavar="WEIGHTS",
                        help="DEFAULT (torchvision's, through its cache), a weights name, a "
                        "local .pth state dict, or 'none' for random weights")
    parser.add_argument("--det-threshold", type=float, default=0.5,
                        help="detector confidence below which a person is ignored")
    parser.add_argument("--max-persons", type=int, default=20, help="persons kept per photo")
    parser.add_argument("--top-k", type=int, default=3, help="emotions listed per person")
    parser.add_argument("--example", action="append", default=[], type=Path,
                        help="a photo offered as an example on the page (repeatable)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--device", default="cpu", help='torch device, e.g. "cpu" or "cuda"')
    return parser


def build_cache_parser(prog: str = "dagnet-emotic-cache") -> argparse.ArgumentParser:
    """The parser of ``dagnet-emotic-cache`` (:func:`dagnet_layers.commands.cache.main`)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Decode EMOTIC JPEGs once into a memory-mapped uint8 cache (resumable); "
        "or check a cache with --verify CACHE_DIR.",
    )
    parser.add_argument("paths", nargs="+", metavar="ROOT CACHE_DIR",
                        help="EMOTIC root holding Annotations/ and emotic/, then the cache "
                        "folder; with --verify, the cache folder alone")
    parser.add_argument("--verify", action="store_true",
                        help="check every file of the cache against its recorded SHA-256 "
                        "(reads the whole cache) instead of building")
    parser.add_argument("--splits", nargs="+", default=list(EMOTIC_SPLITS), choices=EMOTIC_SPLITS)
    parser.add_argument("--size", type=int, default=224, help="side of body and context (224)")
    parser.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="decoding processes"
    )
    parser.add_argument(
        "--skip-missing-images", action="store_true",
        help="skip persons whose image file is missing instead of failing",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="rebuild a mismatching cache")
    parser.add_argument("--strict", action="store_true",
                        help="fail at the first bad record or unusable image instead of "
                        "skipping and counting it")
    parser.add_argument("--max-pixels", type=int, default=MAX_IMAGE_PIXELS,
                        help="largest image (width x height) decoded; larger ones are skipped "
                        f"(default: {MAX_IMAGE_PIXELS:,})")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    return parser
