"""Weighted sum of rewards with per-component logging.

``r(x) = Σ_k w_k · s_k · r_k(x)`` with ``s_k = +1`` for higher-is-better components and ``-1`` for
distances. NaN-aware in the manner of TRL's ``GRPOTrainer`` (``nansum`` over reward functions) and
Flow-GRPO's ``multi_score``: a component that is not applicable to a sample (NaN) contributes
nothing; a sample for which no component applies is NaN. Normalise-then-sum vs sum-then-normalise
is the trainer's business, not this module's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples

__all__ = ["WeightedSum"]


class WeightedSum(Reward):
    """``{"name": weight}`` → one reward whose details hold every component.

    Args:
        weights (Mapping[str, float]): Component name → weight.
        rewards (Mapping[str, Reward] | None): Built components by name; names missing here are built
            with :func:`diffalign.rewards.load` using ``load_kwargs[name]``.
        load_kwargs (Mapping[str, dict] | None): Per-component factory arguments (e.g. ``weights=``).

    Details: ``"<name>"`` (the component's score), ``"<name>/raw"`` (its raw value) and ``"raw"`` (the
    weighted sum). Components must share a modality and have per-sample scopes (wrap a set reward
    in :class:`diffalign.rewards.distribution.LeaveOneOut` first).
    """

    spec = RewardSpec("weighted_sum", "image")

    def __init__(
        self,
        weights: Mapping[str, float],
        rewards: Mapping[str, Reward] | None = None,
        load_kwargs: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        if not weights:
            raise ValueError("WeightedSum needs at least one component")
        from diffalign.rewards.registry import load

        rewards, load_kwargs = dict(rewards or {}), dict(load_kwargs or {})
        built = {name: rewards[name] if name in rewards else load(name, **load_kwargs.get(name, {})) for name in weights}
        specs = {name: r.spec for name, r in built.items()}
        modalities = {s.modality for s in specs.values()}
        if len(modalities) != 1:
            raise ValueError(f"WeightedSum: components mix modalities {sorted(modalities)}")
        for name, s in specs.items():
            if s.scope == "set":
                raise ValueError(f"WeightedSum: component {name!r} has scope 'set'; wrap it in LeaveOneOut first")
        rates = {s.sample_rate for s in specs.values()}
        self.spec = replace(
            type(self).spec,
            name="+".join(weights),
            modality=modalities.pop(),
            scope="instance_to_set" if any(s.scope == "instance_to_set" for s in specs.values()) else "instance",
            needs_prompt=any(s.needs_prompt for s in specs.values()),
            differentiable=all(s.differentiable for s in specs.values()),
            sample_rate=max(r for r in rates if r is not None) if rates != {None} else None,
        )
        super().__init__()
        self.weights = {name: float(w) for name, w in weights.items()}
        self.components = torch.nn.ModuleDict(built)
        self.chunkable = all(r.chunkable for r in built.values())

    def _prepare(self, samples: Samples) -> Samples:
        return samples  # each component resamples and moves for itself (resampling twice would blur)

    def score(self, samples: Samples) -> RewardResult:
        """Sums the components' scores (each through its own ``forward``: resampling, chunking, NaN)."""
        total, seen, details = None, None, {}
        for name, reward in self.components.items():
            res = reward(samples)
            sign = 1.0 if reward.spec.higher_is_better else -1.0
            term = self.weights[name] * sign * res.scores
            present = ~torch.isnan(term)
            term = torch.where(present, term, torch.zeros_like(term))
            total = term if total is None else total + term
            seen = present if seen is None else seen | present
            details[name] = res.scores.detach()
            details[f"{name}/raw"] = res.details["raw"]
        total = torch.where(seen, total, torch.full_like(total, math.nan))
        details["raw"] = total.detach()
        return RewardResult(total, details)
