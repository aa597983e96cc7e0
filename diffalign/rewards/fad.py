"""Fréchet distance between generated embeddings and a reference set (FAD; FID on image embeddings).

Kilgour et al., "Fréchet Audio Distance", arXiv:1812.08466; Gui et al., "Adapting Frechet Audio
Distance for Generative Music Evaluation" (fadtk: FAD-∞, per-song FAD), arXiv:2311.01616. Maths in
:mod:`diffalign.rewards.distribution` (float64, eigvalsh-based, differentiable w.r.t. the generated
side). Written from the papers, not from fadtk / frechet-audio-distance (see reference/rewards.md §3).

Two registered scopes, one entry point ``fad``:

* ``per_sample=False`` (default): scope ``set``, ``FD(N(μ_gen, Σ_gen), N(μ_ref, Σ_ref))``, or FAD-∞
  with ``fad_inf=True``; :meth:`FrechetDistance.attribute` gives leave-one-out attributions.
* ``per_sample=True``: scope ``instance_to_set``, each clip's own frame statistics (``[W, D]`` from
  the embedder's ``embed_frames``) against the reference, fadtk's ``score_individual``.

Values are comparable only with the same encoder, windowing, sample rate and reference set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from diffalign.rewards.base import RewardResult, RewardSpec, Samples
from diffalign.rewards.distribution import (
    ReferenceStats,
    frechet_distance,
    frechet_distance_inf,
    gaussian_stats,
    leave_one_out_frechet,
    sqrtm_psd,
)
from diffalign.rewards.set_reward import SetReward, embedder_spec

__all__ = ["SPEC", "FrechetDistance", "PerSampleFrechet", "build"]

SPEC = RewardSpec(
    "fad",
    "audio",
    scope="set",
    needs_prompt=False,
    differentiable=True,
    higher_is_better=False,
    sample_rate=48000,
    weights=("hf://laion/clap-htsat-unfused",),
)


class FrechetDistance(SetReward):
    """FAD of a batch against reference statistics; ``[]`` float32, lower is better.

    Args:
        embedder (torch.nn.Module): Module with ``embed(samples) -> [B, D]`` (a built ``clap`` or
            ``clip_score`` reward, or any module); per-sample mode also needs ``embed_frames``.
        reference (ReferenceStats | torch.Tensor | str | Path | None): Statistics, reference embeddings
            ``[N, D]``, or an ``.npz`` file (see :meth:`ReferenceStats.load`); may be set later with
            :meth:`fit_reference`.
        fad_inf (bool): Report the FAD-∞ intercept instead of the plain FD. Default is False.
        inf_sizes (list[int] | None): FAD-∞ subset sizes (default: 10 sizes from B/5 to B).
        seed (int): Seed of the FAD-∞ subsets (no global RNG). Default is 0.
        eps (float): Eigenvalue floor in the trace of the square root. Default is 1e-12.
        modality (str | None) / sample_rate (int): For non-Reward embedders.
    """

    spec = SPEC

    def __init__(
        self,
        embedder: torch.nn.Module,
        reference: ReferenceStats | torch.Tensor | str | Path | None = None,
        fad_inf: bool = False,
        inf_sizes: list[int] | None = None,
        seed: int = 0,
        eps: float = 1e-12,
        modality: str | None = "audio",
        sample_rate: int = 48000,
    ) -> None:
        self.spec = embedder_spec(type(self).spec, embedder, modality, sample_rate)
        super().__init__()
        self.embedder, self.fad_inf, self.inf_sizes, self.seed, self.eps = embedder, fad_inf, inf_sizes, seed, eps
        self.reference_meta: dict = {}
        for name in ("mu_ref", "cov_ref", "sqrt_cov_ref"):
            self.register_buffer(name, None)
        if reference is not None:
            self.fit_reference(reference)

    def fit_reference(self, reference: ReferenceStats | torch.Tensor | str | Path) -> FrechetDistance:
        """Sets the reference from statistics, embeddings ``[N, D]`` / frames ``[N, W, D]``, or an ``.npz`` path."""
        if isinstance(reference, (str, Path)):
            reference = ReferenceStats.load(reference)
        elif isinstance(reference, torch.Tensor):
            reference = ReferenceStats.from_embeddings(reference)
        self.mu_ref, self.cov_ref = reference.mu.double(), reference.cov.double()
        self.sqrt_cov_ref = sqrtm_psd(self.cov_ref)  # Σ_r^{1/2}: once per reference
        self.reference_meta = dict(reference.meta)
        return self

    def _check_reference(self, dim: int) -> None:
        if self.mu_ref is None:
            raise RuntimeError(f"{self.spec.name}: no reference statistics; pass reference=... or call fit_reference()")
        if self.mu_ref.shape[0] != dim:
            raise ValueError(f"{self.spec.name}: embeddings have D={dim}, the reference D={self.mu_ref.shape[0]}")

    def embed(self, samples: Samples) -> torch.Tensor:
        return self.embedder.embed(samples)

    def score_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """FD (or FAD-∞) of ``emb`` ``[B, D]`` against the reference: float64 scalar."""
        self._check_reference(emb.shape[-1])
        if self.fad_inf:
            gen = torch.Generator().manual_seed(self.seed)
            a, _ = frechet_distance_inf(emb, self.mu_ref, self.cov_ref, self.inf_sizes, gen, self.sqrt_cov_ref)
            return a
        mu, cov = gaussian_stats(emb)
        return frechet_distance(self.mu_ref, self.cov_ref, mu, cov, self.sqrt_cov_ref, self.eps)

    def attribute(self, emb: torch.Tensor) -> torch.Tensor:
        """LOO attributions ``FD(D) − FD(D ∖ {i})`` (rank-one downdates; brute force under FAD-∞)."""
        if self.fad_inf:
            return super().attribute(emb)
        self._check_reference(emb.shape[-1])
        return leave_one_out_frechet(emb, self.mu_ref, self.cov_ref, self.sqrt_cov_ref)


class PerSampleFrechet(FrechetDistance):
    """Per-clip FAD (fadtk ``score_individual``): each clip's frame Gaussian vs the reference; ``[B]``.

    Needs an embedder with ``embed_frames(samples) -> [B, W, D]`` and ``W >= 2`` frames per clip (the
    frame covariance has rank ``≤ W − 1``; the eigenvalue floor keeps the square root finite).
    """

    spec = RewardSpec(**{**SPEC.__dict__, "scope": "instance_to_set"})

    def embed(self, samples: Samples) -> torch.Tensor:
        return self.embedder.embed_frames(samples)

    def score(self, samples: Samples) -> RewardResult:
        frames = self.embed(samples).double()  # [B, W, D]
        if frames.ndim != 3 or frames.shape[1] < 2:
            raise ValueError(f"per-sample FAD needs >= 2 frames per clip, got embeddings {list(frames.shape)}")
        self._check_reference(frames.shape[-1])
        mu = frames.mean(dim=1)  # [B, D]
        xc = frames - mu[:, None]
        cov = xc.transpose(1, 2) @ xc / (frames.shape[1] - 1)  # [B, D, D]
        fd = frechet_distance(self.mu_ref, self.cov_ref, mu, cov, self.sqrt_cov_ref, self.eps)
        return RewardResult(fd.float(), {"raw": fd.detach().float()})


def build(
    weights: Any = None,
    embedder: str | torch.nn.Module = "clap",
    reference: ReferenceStats | torch.Tensor | str | Path | None = None,
    per_sample: bool = False,
    **kwargs: Any,
) -> FrechetDistance:
    """Entry-point factory (``fad``).

    Args:
        weights: Weights of a named ``embedder`` (passed to :func:`diffalign.rewards.load`).
        embedder (str | torch.nn.Module): Registered reward name with ``embed`` (default ``"clap"``) or a module.
        reference: See :class:`FrechetDistance`. With ``weights=None`` and no reference, the
            reference is ``N(0, I)`` in the embedder's dimension (random-weight tests only).
        per_sample (bool): Per-clip scope ``instance_to_set`` instead of the set FAD. Default is False.
        **kwargs: :class:`FrechetDistance` options (``fad_inf``, ``inf_sizes``, ``seed``, ``eps``,
            ``modality``, ``sample_rate``); the rest go to a named embedder's factory.
    """
    own_keys = ("fad_inf", "inf_sizes", "seed", "eps", "modality", "sample_rate")
    own = {k: kwargs.pop(k) for k in own_keys if k in kwargs}
    if isinstance(embedder, str):
        from diffalign.rewards.registry import load

        if embedder == "clap" and per_sample:  # frames short enough that a clip yields >= 2 of them
            kwargs.setdefault("window_s", 1.0)
            kwargs.setdefault("hop_s", kwargs["window_s"] / 2)
        embedder = load(embedder, weights=weights, **kwargs)
    elif kwargs:
        raise TypeError(f"fad: unexpected arguments {sorted(kwargs)}")
    if reference is None and weights is None and hasattr(embedder, "embed_dim"):
        dim = embedder.embed_dim
        reference = ReferenceStats(torch.zeros(dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64), 0,
                                   {"synthetic": "N(0, I): random-weight tests only"})
    cls = PerSampleFrechet if per_sample else FrechetDistance
    return cls(embedder, reference=reference, **own)
