"""The order in which trainers visit their data: reproducible epochs, resumable at any micro-step.

Each epoch is a shuffle of the local rows drawn from ``(seed, epoch)`` alone, so a resumed run
recomputes the order instead of replaying the data loader (methods.md §7 #11).
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

__all__ = ["epoch_order", "micro_batch_indices", "process_share"]


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


def process_share(idx: list[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s contiguous share of one global micro-batch ``idx`` (of ``batch_size · world``
    indices): the pairs of a step then do not depend on the number of processes. A short last
    batch of an epoch is wrapped so that every process gets at least one index."""
    if world <= 1:
        return idx
    idx = (idx * world)[: max(len(idx), world)]
    share = -(-len(idx) // world)
    return idx[rank * share : (rank + 1) * share] or idx[-1:]
