"""The installed commands' entry points: ``--help`` at once, the program only after.

Each entry point answers ``--help`` from its parser in
:mod:`dagnet_layers.commands.args` (no torch imported), and otherwise imports its
program and runs it under :func:`dagnet_layers.cli.run_cli`, which prints a failure
as one line (exit status 2) instead of a traceback. ``pyproject.toml`` installs them
as ``dagnet-train``, ``dagnet-predict``, ``dagnet-demo``, ``dagnet-diagnose`` and
``dagnet-emotic-cache``; ``examples/*.py`` call the same functions.

Imports run one way: this module imports the parsers and (lazily) the programs;
neither imports it back.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dagnet_layers.commands.args import (
    build_cache_parser,
    build_demo_parser,
    build_diagnose_parser,
    build_predict_parser,
    build_train_parser,
)

__all__ = ["cache_entry", "demo_entry", "diagnose_entry", "predict_entry", "train_entry"]


def _wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def _run_program(module: str, build_parser: Callable[[str], Any], argv: Sequence[str] | None,
                 prog: str) -> int:  # fmt: skip
    """Answer ``--help`` from ``build_parser`` at once, else run
    ``dagnet_layers.commands.<module>.main`` under :func:`dagnet_layers.cli.run_cli`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if _wants_help(args):
        build_parser(prog).parse_args(args)  # prints the help and exits
    from dagnet_layers import cli

    program = importlib.import_module(f"dagnet_layers.commands.{module}")
    return cli.run_cli(lambda a: program.main(a, prog=prog), args, prog=prog)


def train_entry(argv: Sequence[str] | None = None, prog: str = "dagnet-train") -> int:
    """``dagnet-train``: answer ``--help`` at once, else run the training.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name in messages.

    Returns:
        The exit status (failures print one line, see :mod:`dagnet_layers.cli`).
    """
    return _run_program("train", build_train_parser, argv, prog)


def cache_entry(argv: Sequence[str] | None = None, prog: str = "dagnet-emotic-cache") -> int:
    """``dagnet-emotic-cache``: answer ``--help`` at once, else build or verify the cache.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name in messages.

    Returns:
        The exit status (failures print one line, see :mod:`dagnet_layers.cli`).
    """
    return _run_program("cache", build_cache_parser, argv, prog)


def predict_entry(argv: Sequence[str] | None = None, prog: str = "dagnet-predict") -> int:
    """``dagnet-predict``: answer ``--help`` at once, else run the prediction.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name in messages.

    Returns:
        The exit status.
    """
    return _run_program("predict", build_predict_parser, argv, prog)


def demo_entry(argv: Sequence[str] | None = None, prog: str = "dagnet-demo") -> int:
    """``dagnet-demo``: answer ``--help`` at once, else serve the web demo.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name in messages.

    Returns:
        The exit status.
    """
    return _run_program("demo", build_demo_parser, argv, prog)


def diagnose_entry(argv: Sequence[str] | None = None, prog: str = "dagnet-diagnose") -> int:
    """``dagnet-diagnose``: answer ``--help`` at once, else run the diagnostic benchmark.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name in messages.

    Returns:
        The exit status.
    """
    return _run_program("diagnose", build_diagnose_parser, argv, prog)
