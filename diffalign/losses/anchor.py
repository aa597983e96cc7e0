"""SePPO's anchor-based criterion (Zhang, Lan et al., arXiv 2410.05255): is the reference sample a loser?

SePPO trains on dataset winners ``x^w`` only; the "loser" slot of each pair holds a sample
``x^ref`` of the same prompt from the reference (a previous checkpoint). Whether ``x^ref`` really
is worse than what the policy would draw is unknown, so the winner serves as an **anchor**: at the
pair's timestep and noise, compare how well the policy and the reference denoise it. With scores
``s = −err`` (``denoising.pair_scores``)::

    a = s_θ(x^w) − s_ref(x^w) = ‖ε − ε_ref(x_t^w)‖² − ‖ε − ε_θ(x_t^w)‖²      (> 0: the policy fits the anchor better)

    sign       I = sign(a)            (v1's anchor-based adaptive flipper, AAF)
    indicator  I = 1[a > 0]           (the ablation's indicator; v2's "switch from DPO to SFT")

and the loser's implicit reward is multiplied by ``I`` before the core's loss::

    L = −log σ( −(β/2) · [ Δ(x^w) − I · Δ(x^ref) ] ),     Δ(x) = ‖ε − ε_θ(x_t)‖² − ‖ε − ε_ref(x_t)‖²

* ``I = +1``: the policy is ahead of the reference on the anchor, so the reference's sample is
  taken as a loser — the Diffusion-DPO term;
* ``I = 0``: only the winner's term is left, ``−log σ(−(β/2)·Δ(x^w))`` — SFT on the winner
  relative to the reference (DPO turned SFT-like);
* ``I = −1`` (``sign`` only): the reference fits the anchor better, so its sample is likely a
  winner too: both terms pull the policy towards lower error than the reference.

``I`` is computed without gradient, from the same single draw of ``(t, ε)`` as the loss (a
one-sample Monte Carlo test, as the paper's reviewers read it); an exact tie (the policy *is*
the reference, e.g. at the first step) gives ``I = 0``. What the public record leaves open, and
what is fixed here: the orientation of the test (reconstructed from the abstract and reviews:
"when the generated samples are more likely to be winning samples, switch from DPO to SFT"), the
detached sign, and that ``I`` scales the loser's implicit reward ``s − s_ref`` (so every
reference-based kind of the core can carry it; reference-free kinds cannot, and are refused).
"""

from __future__ import annotations

import dataclasses

import torch

from .types import PreferenceBatch

__all__ = ["CRITERIA", "anchor_indicator", "apply_anchor"]

CRITERIA = ("sign", "indicator", "always_loser")


@torch.no_grad()
def anchor_indicator(scores: PreferenceBatch, criterion: str = "sign") -> torch.Tensor:
    """``I`` per pair ``[B]`` from the anchor (chosen) scores of the policy and the reference.

    Args:
        scores (PreferenceBatch): per-pair scores; ``chosen`` is the anchor (the dataset winner).
        criterion (str): ``sign`` (I ∈ {−1, 0, 1}), ``indicator`` (I ∈ {0, 1}) or ``always_loser``
            (I = 1: plain Diffusion-DPO with reference samples as losers; the "without AAF" ablation).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"anchor criterion must be one of {CRITERIA}, got {criterion!r}")
    if scores.ref_chosen is None:
        raise ValueError("the anchor criterion compares policy and reference on the winner: it needs reference scores")
    a = (scores.chosen - scores.ref_chosen).detach()  # [B] > 0: the policy fits the anchor better
    if criterion == "sign":
        return torch.sign(a)
    if criterion == "indicator":
        return (a > 0).to(a.dtype)
    return torch.ones_like(a)


def apply_anchor(scores: PreferenceBatch, criterion: str = "sign") -> tuple[PreferenceBatch, torch.Tensor]:
    """Scale the loser's scores by ``I`` so that the core's margin reads ``Δ(x^w) − I·Δ(x^ref)``.

    Returns:
        tuple: the scaled ``PreferenceBatch`` and ``I`` ``[B]``.
    """
    ind = anchor_indicator(scores, criterion)
    scaled = dataclasses.replace(scores, rejected=ind * scores.rejected, ref_rejected=ind * scores.ref_rejected)
    return scaled, ind
