"""Unpaired (per-sample, batch-coupled) preference losses: KTO, BCO, NPO.

Each function takes an ``UnpairedBatch`` of ``N`` samples and returns ``(losses [N],
applicable [N] bool)``; the batch loss is the mean over applicable samples. On paired data
the chosen samples are desirable and the rejected ones undesirable
(``UnpairedBatch.from_pairs``).

Batch coupling: KTO's reference point ``z0`` and BCO's shift ``δ`` are batch statistics, so
micro-batching with gradient accumulation changes them (as in TRL and Diffusion-KTO).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .types import LossKind, LossParams, LossState, UnpairedBatch

__all__ = ["UNPAIRED_KINDS"]


def kto(b: UnpairedBatch, p: LossParams, state: LossState | None = None):
    """KTO: ``λ_D·(1 − σ(β(r − z0)))`` (desirable), ``λ_U·(1 − σ(β(z0 − r)))`` (undesirable).

    Ethayarajh et al., arXiv 2402.01306, Eq. 8. ``z0 = sg(max(0, mean r'))`` where ``r'``
    are log-ratios of mismatched prompt/completion pairs when given (``kl_policy``,
    ``kl_reference``; TRL), else of the batch itself (Diffusion-KTO, arXiv 2404.04465).
    """
    r = b.logratio()
    if b.kl_policy is not None:
        kl = (b.kl_policy - b.kl_reference).mean()
    else:
        kl = r.mean()
    z0 = torch.clamp(kl.detach(), min=0)
    loss = torch.where(
        b.desirable,
        p.desirable_weight * (1 - torch.sigmoid(p.beta * (r - z0))),
        p.undesirable_weight * (1 - torch.sigmoid(p.beta * (z0 - r))),
    )
    return loss, torch.ones_like(b.desirable)


def bco(b: UnpairedBatch, p: LossParams, state: LossState | None = None):
    """BCO: ``ℓ(βr − δ)`` (desirable), ``ℓ(−(βr − δ))`` (undesirable).

    Jung et al., arXiv 2404.04656, Eq. 7 (binary classifier with reward shift δ). ``δ`` is
    the running mean of all rewards ``β·r`` seen so far, updated with this batch first
    (TRL ``BCOTrainer``); it lives in ``state`` (a ``LossState``). Without a state, δ is this
    batch's mean. The density-ratio (UDM) weighting of the paper is not included.
    """
    r = p.beta * b.logratio()
    batch_mean, n = float(r.detach().mean()), r.numel()
    if state is None:
        delta = batch_mean
    else:
        total = state.bco_count + n
        state.bco_mean = (state.bco_mean * state.bco_count + batch_mean * n) / total
        state.bco_count = total
        delta = state.bco_mean
    z = r - delta
    loss = torch.where(b.desirable, -F.logsigmoid(z), -F.logsigmoid(-z))
    return loss, torch.ones_like(b.desirable)


def npo(b: UnpairedBatch, p: LossParams, state: LossState | None = None):
    """NPO: ``(2/β)·log(1 + (π/π_ref)^β) = (2/β)·softplus(β·r)`` on undesirable samples only.

    Zhang et al., arXiv 2404.05868, Eq. 3 (negative preference optimisation / unlearning).
    Desirable samples are not applicable (add an ``nll`` term to retain them).
    """
    loss = (2 / p.beta) * F.softplus(p.beta * b.logratio())
    return torch.where(b.desirable, torch.zeros_like(loss), loss), ~b.desirable


UNPAIRED_KINDS: dict[str, LossKind] = {
    "kto": LossKind("kto", kto, frozenset(["reference"]), "2402.01306", unpaired=True, batch_coupled=True),
    "bco": LossKind("bco", bco, frozenset(["reference"]), "2404.04656", unpaired=True, batch_coupled=True),
    "npo": LossKind("npo", npo, frozenset(["reference"]), "2404.05868", unpaired=True),
}
