"""SePPO (Zhang, Lan et al., "SePPO: Semi-Policy Preference Optimization for Diffusion Alignment",
arXiv 2410.05255 v1; v2 "Bridging SFT and DPO for Diffusion Model Alignment with Self-Sampling
Preference Optimization", SSPO) on the shared loss core.

SePPO needs no reward model and no human losers: the **winners** come from a preference dataset
(Pick-a-Pic's preferred images; here the ``data:`` section's preferred images), and the loser slot
of each pair holds an on-policy **reference sample** of the same prompt, drawn from a reference that
is itself sampled uniformly from the pool of previous checkpoints, the initial model included
(``reference: {strategy: checkpoint_pool}``; v2's Random Checkpoint Replay; the paper's ablation:
random 21.57 PickScore vs initial 21.41 vs latest 21.34). The loss is Diffusion-DPO's with the
loser's term gated by the anchor criterion (``losses/anchor.py``)::

    a   = ‖ε − ε_ref(x_t^w)‖² − ‖ε − ε_θ(x_t^w)‖²                        (the winner is the anchor)
    I   = sign(a)  (criterion: sign, v1's AAF)   or 1[a > 0]  (indicator: DPO → SFT, v2's SSR)
    L   = −log σ( −(β/2) · [ Δ(x^w) − I · Δ(x^ref) ] ),   Δ(x) = ‖ε − ε_θ(x_t)‖² − ‖ε − ε_ref(x_t)‖²

with one ``t`` and ``ε`` shared by the two samples of a pair and ``I`` computed without gradient
from that same draw. Per round (``trainer: online``): the reference is drawn from the pool; it
samples ``samples_per_prompt`` images for the prompts of ``prompts_per_round`` dataset winners
(``rollout_model = "reference"``); every (winner, reference sample) pair is built
(``data/builders.py``: ``dataset_mix``); the inner steps train against the same drawn reference.

What the public record leaves open (no training code is public; SePPO issue #2) and is fixed here:
the orientation of the anchor test and that ``I`` scales the loser's implicit reward (see
``losses/anchor.py``); shared noise per pair (Diffusion-DPO's convention); the snapshot cadence
and pool size (``reference.every`` / ``pool_size``; reviews of the submission read "every 30
updates, K = 7"); one reference per round for both sampling and the loss. The switch rates are
logged: ``anchor/loser`` (I = 1), ``anchor/sft`` (I = 0) and ``anchor/flip`` (I = −1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..data.builders import mix_pairs
from ..losses.anchor import apply_anchor
from .diffusion_dpo import DiffusionDPO, DiffusionDPOConfig

__all__ = ["SePPO", "SePPOConfig"]


@dataclass
class SePPOConfig(DiffusionDPOConfig):
    """``method: seppo`` — Diffusion-DPO's fields plus the anchor criterion.

    Attributes:
        criterion: ``sign`` (v1's AAF, the paper's main setting), ``indicator`` (its ablation; v2's
            switch to SFT) or ``always_loser`` (reference samples are always losers: "w/o AAF").
    """

    criterion: Literal["sign", "indicator", "always_loser"] = "sign"


class SePPO(DiffusionDPO):
    """SePPO: dataset winners against reference samples, the loser's term gated by the anchor."""

    Config = SePPOConfig
    paper = "Zhang, Lan et al., arXiv 2410.05255"
    needs_rollouts = True
    needs_winners = True
    rollout_model = "reference"  # who samples the round: the drawn reference checkpoint

    def __init__(self, scheduler, *args, criterion: str = "sign", **kwargs):
        super().__init__(scheduler, *args, **kwargs)
        if not self.needs_reference:
            raise ValueError(f"SePPO compares the policy with the reference on the winner; loss kind(s) "
                             f"{self.kinds!r} are reference-free")
        self.criterion = criterion

    @classmethod
    def from_config(cls, cfg: SePPOConfig, loss, components, **kwargs) -> "SePPO":
        return super().from_config(cfg, loss, components, criterion=cfg.criterion, **kwargs)

    def build(self, groups):
        """Every (winner, reference sample) pair of the round: ``[G·K, 2]`` rows, the winner's anchor row first."""
        if groups.anchors is None:
            raise ValueError("SePPO pairs dataset winners with reference samples: the round has no winners")
        return mix_pairs(len(groups.prompts), groups.k)

    def adjust_scores(self, scores):
        """The anchor criterion: ``I`` per pair scales the loser's term (``losses/anchor.py``)."""
        scaled, ind = apply_anchor(scores, self.criterion)
        return scaled, {"anchor/loser": (ind > 0).float().mean(), "anchor/sft": (ind == 0).float().mean(),
                        "anchor/flip": (ind < 0).float().mean()}
