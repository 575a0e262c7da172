"""``dagnet-emotic-cache``: build the decoded EMOTIC cache, or verify one.

The command line of :func:`~dagnet_layers.emotic.data.build_emotic_cache` and
:func:`~dagnet_layers.emotic.data.verify_emotic_cache`; its parser is
:func:`~dagnet_layers.commands.args.build_cache_parser`, so that ``--help`` needs no
torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from dagnet_layers.commands.args import build_cache_parser
from dagnet_layers.emotic.data.cache import _read_manifest, build_emotic_cache, verify_emotic_cache

__all__ = ["main"]


def main(argv: Sequence[str], prog: str = "dagnet-emotic-cache") -> int:
    """Build or verify a cache (see ``dagnet-emotic-cache --help``); returns the exit status.

    Failures raise; :func:`~dagnet_layers.commands.entry.cache_entry` prints them as one
    line (exit status 2).
    """
    parser = build_cache_parser(prog)
    args = parser.parse_args(argv)
    for flag, value, least in (("--size", args.size, 1), ("--workers", args.workers, 0),
                               ("--max-pixels", args.max_pixels, 1)):  # fmt: skip
        if value < least:
            parser.error(f"argument {flag}: must be >= {least}, got {value}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verify:
        if len(args.paths) != 1:
            parser.error("--verify takes one path: the cache folder")
        checked = verify_emotic_cache(args.paths[0])
        splits = (_read_manifest(Path(args.paths[0]).expanduser()) or {}).get("splits", {})
        for split, n in checked.items():
            by = " and ".join(splits.get(split, {}).get("decoders", [])) or "an unrecorded decoder"
            print(f"{split}: {n / 2**20:.1f} MiB verified in {args.paths[0]} (written by {by})")
        return 0
    if len(args.paths) != 2:
        parser.error("building takes two paths: ROOT CACHE_DIR")
    args.root, args.cache_dir = args.paths
    torch.set_num_threads(1)
    counts = build_emotic_cache(
        args.root, args.cache_dir, args.splits, size=args.size,
        on_missing_image="skip" if args.skip_missing_images else "error",
        on_bad_record="error" if args.strict else "skip", max_pixels=args.max_pixels,
        num_workers=args.workers, progress=not args.no_progress, overwrite=args.overwrite,
    )  # fmt: skip
    for split, n in counts.items():
        print(f"{split}: {n} persons cached in {args.cache_dir}")
    return 0
