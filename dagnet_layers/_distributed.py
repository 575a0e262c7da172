"""Rank 0 decides, every rank follows: the two collective steps the data and the
training programs share (no-ops without ``torch.distributed``)."""

from __future__ import annotations

from typing import Any

__all__ = ["barrier", "from_rank0"]


def from_rank0(value: Any, rank: int) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return value
    box = [value if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (nothing to wait for without a process group)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
