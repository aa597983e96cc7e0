"""Noise-conditioned perceptual distance: the denoising error measured in a U-Net's feature space.

NCP (Gambashidze et al., "Aligning Diffusion Models with Noise-Conditioned Perception", arXiv
2406.17636) replaces Diffusion-DPO's latent ``‖ε − ε̂‖²`` by a distance between features of a
frozen U-Net encoder ``E`` (its down blocks, optionally its mid block), conditioned on the
noise level and the prompt like the denoiser itself::

    d_θ(x) = mean ‖E(ẑ_θ(x), s, c) − E(z*(x), s, c)‖²            (per sample, fp32)

and feeds ``s = −d`` to the same loss core (DPO, the reference-free CPO-style kinds, SFT on
winners, …). What is encoded is the *target mode* (``SpaceConfig.target``):

* ``t-1`` (NCP's default): one DDPM posterior step (Ho et al., arXiv 2006.11239 Eq. 7) from
  ``x_t`` with the predicted ``x̂_0`` and with the true ``x_0``, the same posterior noise ``z``
  in both: ``ẑ = μ̃(x_t, x̂_0) + σ_t z``, ``z* = μ̃(x_t, x_0) + σ_t z``, encoded at ``s = t − 1``;
* ``uniform``: ``x̂_0`` and ``x_0`` re-noised at a random ``t'`` with shared noise, at ``s = t'``;
* ``x0``: ``x̂_0`` and ``x_0`` themselves, at ``s = 0``;
* ``direct``: the prediction and the regression target, at ``s = t`` — with an identity ``E``
  this is latent-space Diffusion-DPO exactly (the test of this module's plumbing).

Random draws (``z``, ``t'``) are shared by the two images of a pair and by policy and reference,
so the margin keeps Diffusion-DPO's low variance (methods.md §0.3). The target features
``E(z*)`` do not depend on θ: ``prepare`` encodes them once per batch.

Multi-level features (``level: multi``) are pooled to the smallest spatial size and each channel
is divided by the target's root-mean-square over the batch (detached), so that no level dominates
by its scale (NCP's ``--normalize_intermediate_steps``; the exact normaliser of the public code is
not documented — this one is ours).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .denoising import NoisedPairs, per_sample_error, predicted_x0

__all__ = ["TARGETS", "feature_distance", "PerceptualDistance"]

TARGETS = ("t-1", "uniform", "x0", "direct")

#: ``features(z [N, C, h, w], s [N], cond) -> list of [N, C_k, h_k, w_k]`` (models/features.py).
Features = Callable[[torch.Tensor, torch.Tensor, object], list]


def feature_distance(pred: list[torch.Tensor], target: list[torch.Tensor], normalize: bool = False) -> torch.Tensor:
    """Mean squared distance between feature lists, per sample, fp32: ``[N]``.

    One level without normalisation is ``per_sample_error(pred[0], target[0])``. With several
    levels (or ``normalize``), each level is average-pooled to the smallest spatial size, each
    channel divided by the target's RMS over batch and positions (detached), and the levels are
    concatenated on channels before the mean.
    """
    if len(pred) != len(target) or not pred:
        raise ValueError(f"feature_distance needs as many predicted as target levels, got {len(pred)} and {len(target)}")
    if len(pred) == 1 and not normalize:
        return per_sample_error(pred[0], target[0])
    size = min(f.shape[-2] for f in target), min(f.shape[-1] for f in target)
    ps, ts = [], []
    for p, t in zip(pred, target):
        p, t = F.adaptive_avg_pool2d(p.float(), size), F.adaptive_avg_pool2d(t.float(), size)
        if normalize:
            rms = t.detach().pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt().clamp_min(1e-6)  # [1, C_k, 1, 1]
            p, t = p / rms, t / rms
        ps.append(p)
        ts.append(t)
    return per_sample_error(torch.cat(ps, dim=1), torch.cat(ts, dim=1))


class PerceptualDistance:
    """NCP's distance for a denoising method (see the module docstring).

    Args:
        features (Features): the frozen encoder ``E``.
        scheduler: the training noise scheduler (``alphas_cumprod``, ``betas``).
        prediction_type (str): what the U-Net predicts (to recover ``x̂_0``).
        target (str): one of ``TARGETS``. Default ``t-1``.
        normalize (bool): per-channel normalisation of the levels (``feature_distance``).
    """

    def __init__(self, features: Features, scheduler, prediction_type: str, target: str = "t-1", normalize: bool = False):
        if target not in TARGETS:
            raise ValueError(f"space.target must be one of {TARGETS}, got {target!r}")
        self.features, self.scheduler, self.prediction_type = features, scheduler, prediction_type
        self.target, self.normalize = target, normalize

    def _alphas(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.to(device=like.device, dtype=torch.float32)[t].view(-1, *[1] * (like.ndim - 1))

    def _encode_inputs(self, x0: torch.Tensor, noised: NoisedPairs) -> tuple[torch.Tensor, torch.Tensor]:
        """What is encoded for a clean (or predicted clean) sample ``x0`` ``[2B, ...]``, and at which ``s``."""
        aux, t = noised.aux, noised.t
        if self.target == "x0":
            return x0, torch.zeros_like(t)
        if self.target == "uniform":
            a = self._alphas(aux["t_prime"], x0)
            return a.sqrt() * x0 + (1 - a).sqrt() * aux["noise_prime"], aux["t_prime"]
        # t-1: the DDPM posterior q(x_{t-1} | x_t, x_0) of Ho et al. Eq. 6–7, sampled with the shared z
        s = (t - 1).clamp(min=0)
        a_t, a_s = self._alphas(t, x0), self._alphas(s, x0)
        a_s = torch.where((t == 0).view_as(a_s), torch.ones_like(a_s), a_s)  # ᾱ_{-1} = 1: x_{-1} is x_0
        beta = 1 - a_t / a_s
        mean = (a_s.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_s) / (1 - a_t)) * noised.x_t.float()
        var = beta * (1 - a_s) / (1 - a_t)
        return mean + var.sqrt() * aux["z"], s

    def prepare(self, noised: NoisedPairs, cond) -> None:
        """Draw the shared randomness and encode the targets ``E(z*)`` once (no gradient)."""
        n = noised.t.shape[0] // 2  # B pairs
        dev, shape = noised.x0.device, (n, *noised.x0.shape[1:])
        if self.target == "t-1":
            noised.aux["z"] = torch.randn(shape, device=dev).repeat(2, *[1] * (len(shape) - 1))
        elif self.target == "uniform":
            n_t = self.scheduler.config.num_train_timesteps
            noised.aux["t_prime"] = torch.randint(0, n_t, (n,), device=dev).repeat(2)
            noised.aux["noise_prime"] = torch.randn(shape, device=dev).repeat(2, *[1] * (len(shape) - 1))
        if self.target == "direct":
            z_star, s = noised.target, noised.t
        else:
            z_star, s = self._encode_inputs(noised.x0.float(), noised)
        with torch.no_grad():
            noised.aux["target_features"] = [f.detach() for f in self.features(z_star, s, cond)]
        noised.aux["s"] = s

    def __call__(self, prediction: torch.Tensor, noised: NoisedPairs, cond) -> torch.Tensor:
        """``d(x)`` per sample ``[2B]`` for a denoiser's prediction (gradients flow to it)."""
        if self.target == "direct":
            z_hat = prediction
        else:
            x0_hat = predicted_x0(self.scheduler, noised.x_t, noised.t, prediction, self.prediction_type)
            z_hat = self._encode_inputs(x0_hat, noised)[0]
        return feature_distance(self.features(z_hat, noised.aux["s"], cond), noised.aux["target_features"],
                                self.normalize)
