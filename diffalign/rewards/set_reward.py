"""Set-scope rewards: embed once, aggregate with linear algebra, attribute back to samples.

A :class:`SetReward` splits ``score`` into ``embed(samples) -> [B, D]`` and
``score_embeddings(emb) -> []`` so that statistics, leave-one-out attributions and subset searches
reuse one embedding pass (reference/rewards.md §5). :class:`LeaveOneOut` turns any set reward into a
per-sample signal ``g_i = R(D) − R(D ∖ {i})`` (DRAGON, arXiv:2504.15217).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.distribution import leave_one_out

__all__ = ["FlattenEmbedder", "LeaveOneOut", "SetReward", "embedder_spec"]


class FlattenEmbedder(torch.nn.Module):
    """The identity feature map: each sample's data flattened to ``[B, C·H·W]`` (pixel/waveform space)."""

    def embed(self, samples: Samples) -> torch.Tensor:
        return samples.data.reshape(samples.data.shape[0], -1)


def embedder_spec(base: RewardSpec, embedder: torch.nn.Module, modality: str | None, sample_rate: int | None) -> RewardSpec:
    """``base`` narrowed to its embedder.

    A Reward embedder dictates modality, sample rate and differentiability; any other module (e.g.
    :class:`FlattenEmbedder`) uses ``modality`` (default image) and, for audio, ``sample_rate``.
    """
    if isinstance(embedder, Reward):
        es = embedder.spec
        return replace(base, modality=es.modality, sample_rate=es.sample_rate, differentiable=es.differentiable)
    modality = modality or "image"
    return replace(base, modality=modality, sample_rate=sample_rate if modality == "audio" else None)


class SetReward(Reward):
    """Base of set-scope rewards. Subclasses implement :meth:`embed` and :meth:`score_embeddings`.

    ``attribute`` defaults to brute-force leave-one-out; subclasses override it with closed forms.
    """

    def embed(self, samples: Samples) -> torch.Tensor:
        """Embeddings ``[B, D]`` of a clean batch (on the module's device)."""
        raise NotImplementedError

    def score_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """The set value (raw, before any orientation) of embeddings ``[B, D]``: float64 scalar."""
        raise NotImplementedError

    def attribute(self, emb: torch.Tensor) -> torch.Tensor:
        """Leave-one-out attributions ``[B]``: ``score_embeddings(emb) − score_embeddings(emb without i)``."""
        return leave_one_out(self.score_embeddings, emb)

    def score(self, samples: Samples) -> RewardResult:
        value = self.score_embeddings(self.embed(samples))
        return RewardResult(value.float(), {"raw": value.detach().float()})


class LeaveOneOut(Reward):
    """Per-sample signal from a set reward: ``g_i = R(D) − R(D ∖ {i})`` (scope ``instance_to_set``).

    Keeps the wrapped reward's orientation (``higher_is_better``): for FAD a positive ``g_i`` means
    sample i pushes the set away from the reference. Never chunked: ``g_i`` depends on the whole batch.
    Details: ``"set"`` = ``R(D)`` broadcast to ``[B]``.

    Args:
        reward (SetReward): A set-scope reward with ``embed`` / ``score_embeddings`` / ``attribute``.
    """

    spec = RewardSpec("leave_one_out", "image", scope="instance_to_set", needs_prompt=False)
    chunkable = False

    def __init__(self, reward: SetReward) -> None:
        if reward.spec.scope != "set":
            raise ValueError(f"LeaveOneOut wraps set-scope rewards; {reward.spec.name!r} has scope {reward.spec.scope!r}")
        self.spec = replace(reward.spec, name=f"loo_{reward.spec.name}", scope="instance_to_set", max_batch_size=None)
        super().__init__()
        self.reward = reward

    def _prepare(self, samples: Samples) -> Samples:
        return self.reward._prepare(samples)

    def score(self, samples: Samples) -> RewardResult:
        emb = self.reward.embed(samples)
        g = self.reward.attribute(emb)
        total = self.reward.score_embeddings(emb).detach().float()
        return RewardResult(g.float(), {"raw": g.detach().float(), "set": total.expand(len(samples))})
