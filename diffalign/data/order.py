"""The order in which trainers visit their data: reproducible epochs, resumable at any micro-step.

Each epoch is a shuffle of the local rows drawn from ``(seed, epoch)`` alone, so a resumed run
recomputes the order instead of replaying the data loader (methods.md §7 #11).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

__all__ = ["epoch_order", "micro_batch_indices"]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """A reproducible shuffle of ``range(n)`` for one epoch."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def micro_batch_indices(n: int, batch_size: int, seed: int, start_micro: int = 0) -> Iterator[tuple[int, list[int]]]:
    """``(epoch, indices into range(n))`` of every micro-batch from micro-step ``start_micro`` on,
    epoch after epoch (the last batch of an epoch may be smaller)."""
    per_epoch = math.ceil(n / batch_size)
    m = start_micro
    while True:
        epoch, off = divmod(m, per_epoch)
        yield epoch, epoch_order(n, seed, epoch)[off * batch_size : (off + 1) * batch_size]
        m += 1
