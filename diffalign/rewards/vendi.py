"""Vendi score: the effective number of distinct samples in a set (no reference needed).

Friedman & Dieng, "The Vendi Score: A Diversity Evaluation Metric for Machine Learning",
arXiv:2210.02410; order q: Pasarkar & Dieng, arXiv:2310.12952. ``VS_q = exp(H_q(λ))`` with
``λ = eig(K / N)`` of the cosine kernel on embeddings (formulas in :func:`~diffalign.rewards.distribution.vendi_score`).
Written from the papers, not from the ``vendi-score`` package (whose ``score_X`` ignores ``q``).
"""

from __future__ import annotations

from typing import Any

import torch

from diffalign.rewards.base import RewardSpec, Samples
from diffalign.rewards.distribution import leave_one_out_vendi2, vendi_score
from diffalign.rewards.set_reward import FlattenEmbedder, SetReward, embedder_spec

__all__ = ["SPEC", "Vendi", "build"]

SPEC = RewardSpec("vendi", "image", scope="set", needs_prompt=False, differentiable=True, sample_rate=None)


class Vendi(SetReward):
    """Vendi score of a batch's embeddings; ``[]``, range ``[1, B]``, higher = more diverse.

    Args:
        embedder (torch.nn.Module | None): Module with ``embed(samples) -> [B, D]`` (e.g. a built
            ``clip_score`` or ``clap`` reward); None = the data themselves, flattened (pixel/waveform kernel).
        q (float): Order: 1 (Shannon, default), 2 (closed form, smooth gradients), any q > 0, or ``math.inf``.
        modality (str | None): ``"image"`` or ``"audio"`` when ``embedder`` is not a Reward. Default image.
        sample_rate (int): Audio rate when ``embedder`` is None and ``modality="audio"``. Default 16000.
        normalize (bool): Cosine kernel (L2-normalised rows). Default is True.
    """

    spec = SPEC

    def __init__(
        self,
        embedder: torch.nn.Module | None = None,
        q: float = 1.0,
        modality: str | None = None,
        sample_rate: int = 16000,
        normalize: bool = True,
    ) -> None:
        if not (q > 0):
            raise ValueError(f"Vendi order q must be > 0, got {q}")
        embedder = FlattenEmbedder() if embedder is None else embedder
        self.spec = embedder_spec(SPEC, embedder, modality, sample_rate)
        super().__init__()
        self.embedder, self.q, self.normalize = embedder, q, normalize

    def embed(self, samples: Samples) -> torch.Tensor:
        return self.embedder.embed(samples)

    def score_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        return vendi_score(emb, q=self.q, normalize=self.normalize)

    def attribute(self, emb: torch.Tensor) -> torch.Tensor:
        """LOO attributions; closed form for ``q = 2``, brute force otherwise."""
        if self.q == 2:
            return leave_one_out_vendi2(emb, normalize=self.normalize)
        return super().attribute(emb)


def build(weights: Any = None, embedder: str | torch.nn.Module | None = None, q: float = 1.0, **kwargs: Any) -> Vendi:
    """Entry-point factory (``vendi``).

    Args:
        weights: Weights of a named ``embedder`` (see :func:`diffalign.rewards.load`); unused otherwise.
        embedder (str | torch.nn.Module | None): A registered reward name with an ``embed`` method (e.g.
            ``"clip_score"``), a module, or None for the flattened data.
        q (float): Vendi order. Default is 1.
        **kwargs: ``modality``, ``sample_rate``, ``normalize``, or, with a named embedder, its factory arguments.
    """
    own = {k: kwargs.pop(k) for k in ("modality", "sample_rate", "normalize") if k in kwargs}
    if isinstance(embedder, str):
        from diffalign.rewards.registry import load

        embedder = load(embedder, weights=weights, **kwargs)
    elif kwargs:
        raise TypeError(f"vendi: unexpected arguments {sorted(kwargs)}")
    return Vendi(embedder, q=q, **own)

