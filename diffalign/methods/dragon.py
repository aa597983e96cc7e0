"""DRAGON (Bai, Casebeer, Sojoudi, Bryan, "DRAGON: Distributional Rewards Optimize Diffusion Generative
Models", arXiv 2504.15217, TMLR 2025) on the shared loss core.

DRAGON optimises a reward of any scope — instance ``r(x, c)``, instance-to-set ``r(x; D_ref)``
(per-sample FAD or similarity to an exemplar set), set ``R(D)`` (FAD of the generated set, Vendi)
— by generating on-policy samples, scoring them, splitting them into a positive set D⁺ and a
negative set D⁻, and minimising ``KL(D⁺ ‖ p_θ)`` while maximising ``KL(D⁻ ‖ p_θ)`` through a
contrastive surrogate: Diffusion-DPO when D⁺ and D⁻ are paired, Diffusion-KTO when unpaired (the
reference is the pre-finetuning model)::

    L = −log σ( −(β/2) · [ (‖ε − ε_θ(x_t⁺)‖² − ‖ε − ε_ref(x_t⁺)‖²) − (‖ε − ε_θ(x_t⁻)‖² − ‖ε − ε_ref(x_t⁻)‖²) ] )

with one ``t`` and ``ε`` shared by the two samples of a pair (``loss.kinds: kto`` for the unpaired
surrogate). What this implementation fixes where the paper (abstract and summaries; no public
code) is silent — written here so that runs are reproducible:

* **samples**: each round, ``samples_per_prompt`` samples of ``prompts_per_round`` prompts from the
  current policy (the trainer's ``rollout`` section), with fewer sampler steps than evaluation;
* **scopes**: instance and instance-to-set rewards score each sample; a set-scope reward is
  attributed to samples by leave-one-out over the round (``rewards.set_reward.LeaveOneOut``:
  ``R(D) − R(D ∖ {i})``), DRAGON's own attribution for distributional rewards;
* **D⁺ / D⁻** (``method.build``, ``data/builders.py``): ``best_worst`` (default; per prompt the
  best against the worst sample — the paired construction for instance rewards), ``margin`` (all
  pairs above a gap), ``advantage`` (per prompt, above vs below the group mean, paired in rank
  order: the unpaired construction, for KTO), ``quantile`` (top vs bottom ``q`` of the round:
  for set-level values comparable across prompts);
* prompts whose samples do not spread (``min_spread``) are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..data.builders import build_pairs
from .diffusion_dpo import DiffusionDPO, DiffusionDPOConfig

__all__ = ["Dragon", "DragonConfig"]


@dataclass
class DragonConfig(DiffusionDPOConfig):
    """``method: dragon`` — Diffusion-DPO's fields plus the D⁺ / D⁻ construction.

    Attributes:
        build: ``best_worst``, ``margin``, ``advantage`` or ``quantile`` (``data/builders.py``).
        margin: score gap of ``margin`` pairs. quantile: share of the round in D⁺ and in D⁻ (``quantile``).
        min_spread: a prompt whose samples' scores spread by no more than this is dropped.
    """

    build: Literal["best_worst", "margin", "advantage", "quantile"] = "best_worst"
    margin: float = 0.0
    quantile: float = 0.25
    min_spread: float = 1e-6


class Dragon(DiffusionDPO):
    """DRAGON: on-policy samples, a reward of any scope, D⁺ / D⁻ pairs, the shared core's loss."""

    Config = DragonConfig
    paper = "Bai et al., arXiv 2504.15217"
    needs_rollouts = True
    needs_reward = True
    rollout_model = "policy"  # who samples the round: the current policy

    def __init__(self, scheduler, *args, build: str = "best_worst", margin: float = 0.0, quantile: float = 0.25,
                 min_spread: float = 1e-6, **kwargs):
        super().__init__(scheduler, *args, **kwargs)
        self.build_kind, self.margin, self.quantile, self.min_spread = build, margin, quantile, min_spread

    @classmethod
    def from_config(cls, cfg: DragonConfig, loss, components, **kwargs) -> "Dragon":
        return super().from_config(cfg, loss, components, build=cfg.build, margin=cfg.margin, quantile=cfg.quantile,
                                   min_spread=cfg.min_spread, **kwargs)

    def build(self, groups):
        """D⁺ / D⁻ pairs ``[P, 2]`` (row indices, preferred first) of a scored round."""
        return build_pairs(groups.scores, groups.k, self.build_kind, self.margin, self.quantile, self.min_spread)
