"""Builders of the online trainer: from scored groups to preference pairs.

Every builder returns pairs of row indices ``(preferred, other)`` into a round's samples (see
``sampling.rollouts.Groups``) and counts what it dropped. Groups whose scores do not spread
(``max − min ≤ min_spread``, or fewer than two finite scores) carry no preference: they are dropped
and counted.

* ``best_worst`` — per prompt, the best sample against the worst (Flow-GRPO's online DPO, DRAGON's
  paired construction for instance rewards);
* ``margin`` — per prompt, every pair whose score gap exceeds ``margin`` (SPO-style);
* ``advantage`` — per prompt, scores normalised to advantages ``(s − mean) / std``; samples above the
  mean form D⁺, below it D⁻ (DRAGON's unpaired D⁺ / D⁻ for KTO; DGPO's sign split), paired in rank
  order within the prompt (best D⁺ with worst D⁻, …);
* ``quantile`` — over the whole round, the top ``q`` of scores form D⁺ and the bottom ``q`` D⁻,
  paired in rank order across prompts (for set-level rewards whose values are comparable across
  prompts);
* ``dataset_mix`` (``mix_pairs``) — per prompt, its dataset sample (an anchor row ``G·K + g``)
  against each of its ``K`` on-policy samples: SePPO's (winner, reference sample) pairs. Needs no
  scores.

Pairs built from unpaired splits are fed to the loss core's paired kinds (``sigmoid``) or, with
``kind: kto``, read as (desirable, undesirable) — Diffusion-KTO, DRAGON's unpaired surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["BUILDERS", "BuiltPairs", "build_pairs", "mix_pairs"]

BUILDERS = ("best_worst", "margin", "advantage", "quantile")


@dataclass
class BuiltPairs:
    """Index pairs ``[P, 2]`` (preferred first) into a round's rows, and what was dropped."""

    pairs: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.pairs.shape[0]


def build_pairs(scores: torch.Tensor, k: int, kind: str = "best_worst", margin: float = 0.0, quantile: float = 0.25,
                min_spread: float = 1e-6) -> BuiltPairs:
    """Pairs from ``scores`` ``[G·k]`` (prompt-major groups of ``k``).

    Args:
        kind (str): one of ``BUILDERS``. margin (float): for ``margin``. quantile (float): for ``quantile``.
        min_spread (float): groups with ``max − min`` at most this carry no preference.
    """
    if kind not in BUILDERS:
        raise ValueError(f"build.kind must be one of {BUILDERS}, got {kind!r}")
    if scores.numel() % k:
        raise ValueError(f"{scores.numel()} scores are not groups of {k}")
    s = scores.detach().double().view(-1, k)  # [G, k]
    finite = torch.isfinite(s)
    lo = torch.where(finite, s, torch.full_like(s, float("inf"))).min(dim=1).values
    hi = torch.where(finite, s, torch.full_like(s, float("-inf"))).max(dim=1).values
    live = (finite.sum(dim=1) >= 2) & (hi - lo > min_spread)  # [G]
    pairs: list[tuple[int, int]] = []
    if kind == "quantile":
        rows = [r for g in live.nonzero().flatten().tolist() for r in range(g * k, (g + 1) * k)
                if torch.isfinite(scores[r])]
        order = sorted(rows, key=lambda r: -float(scores[r]))
        n = int(len(order) * quantile)
        pairs = [(order[i], order[-1 - i]) for i in range(n) if float(scores[order[i]]) > float(scores[order[-1 - i]])]
    else:
        for g in live.nonzero().flatten().tolist():
            rows = [g * k + j for j in range(k) if bool(finite[g, j])]
            ranked = sorted(rows, key=lambda r: -float(scores[r]))
            if kind == "best_worst":
                pairs.append((ranked[0], ranked[-1]))
            elif kind == "margin":
                pairs += [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1 :]
                          if float(scores[a]) - float(scores[b]) > margin]
            else:  # advantage: D+ above the group mean, D- below, paired in rank order
                vals = s[g][finite[g]]
                mean, std = vals.mean(), vals.std(unbiased=False).clamp_min(1e-12)
                adv = {r: (float(scores[r]) - float(mean)) / float(std) for r in rows}
                plus = [r for r in ranked if adv[r] > 0]
                minus = [r for r in reversed(ranked) if adv[r] < 0]
                pairs += list(zip(plus, minus))
    t = torch.tensor(pairs, dtype=torch.long).view(-1, 2)
    stats = {"groups": int(s.shape[0]), "groups_without_spread": int((~live).sum()), "pairs": int(t.shape[0])}
    return BuiltPairs(t, stats)


def mix_pairs(groups: int, k: int) -> BuiltPairs:
    """``dataset_mix``: ``[G·K, 2]`` pairs ``(G·K + g, g·K + j)`` — prompt ``g``'s dataset sample
    (anchor row) first, then each of its ``K`` on-policy samples."""
    n = groups * k
    rows = torch.arange(n)
    t = torch.stack([n + rows // k, rows], dim=1)
    return BuiltPairs(t, {"groups": groups, "groups_without_spread": 0, "pairs": n})
