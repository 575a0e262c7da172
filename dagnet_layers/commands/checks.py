"""Checks the command-line tools share, made when a command starts.

Each runs before any data set is read, model built or file written, and a refusal is
one ``argument --flag: ...`` line with exit status 2 (``parser.error``), instead of
torch's or the OS's error, or a silent fallback, minutes later:

- :func:`usable_device`: a ``--device`` torch does not know, a GPU this machine
  lacks, or a CPU-only torch build;
- :func:`~dagnet_layers.storage.file_in_the_way`: a file standing where an output
  folder must be made (the storage helper a folder lock names it with, too).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

import torch

__all__ = ["refuse", "usable_device"]


def refuse(parser: argparse.ArgumentParser, flag: str, message: str) -> NoReturn:
    """Report ``argument <flag>: <message>`` through ``parser`` and exit with status 2."""
    parser.error(f"argument {flag}: {message}")


def _one_line(err: BaseException) -> str:
    # torch's CUDA errors run over several lines, with advice on CUDA_LAUNCH_BLOCKING
    return " ".join(str(err).split("\n")[0].split()) or type(err).__name__


def _why_not(device: torch.device) -> str | None:
    """Why ``device`` cannot hold a tensor on this machine, or ``None`` if it can."""
    if device.type == "cuda":
        if torch.version.cuda is None and torch.version.hip is None:
            return (f"this torch ({torch.__version__}) is a CPU-only build; install a "
                    "CUDA build of torch, or give --device cpu")  # fmt: skip
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return ("torch finds no CUDA GPU (no driver or no device, or "
                    "CUDA_VISIBLE_DEVICES hides them)")  # fmt: skip
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"
        # no tensor made: that would open a context on the GPU in every torchrun process
        return None
    if device.type == "mps" and not torch.backends.mps.is_available():
        return "torch finds no MPS (Apple GPU) device"
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as err:
        return _one_line(err)
    return None


def usable_device(parser: argparse.ArgumentParser, value: str,
                  flag: str = "--device") -> torch.device:  # fmt: skip
    """The torch device ``value`` names, after checking it can hold a tensor here.

    Args:
        parser: The command's parser; its ``error`` reports the problem and exits with 2.
        value: The device string the user gave (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        flag: The option, as the message names it.

    Returns:
        ``torch.device(value)``.

    Example:
        >>> usable_device(argparse.ArgumentParser(), "cpu")
        device(type='cpu')
    """
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        refuse(parser, flag, f"{value!r} is not a torch device; give cpu, cuda, cuda:N "
               "(the N-th GPU) or another torch device type such as mps")
    problem = _why_not(device)
    if problem is not None:
        refuse(parser, flag, f"{value!r} is not usable here: {problem}")
    return device
