"""Diffusion adapter of the loss core: denoising errors → per-pair scores.

Diffusion-DPO (Wallace et al., arXiv 2311.12908, Eq. 14) scores a sample by how well a model
denoises it, at a timestep ``t`` and noise ``ε`` **shared by the two images of a pair**::

    x_t   = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε                       (forward process, shared t, ε per pair)
    err(x) = mean_{C,H,W} ‖target − model(x_t, t, c)‖²       (fp32, per sample; target ε, v or x_0)
    s(x)   = −err(x)                                        (the score the core sees)

The core's DPO loss ``ℓ(β_core·[(s_w − s_ref,w) − (s_l − s_ref,l)])`` with ``s = −err`` is
``−log σ(−β_core·(Δθ − Δref))``, ``Δ = err(w) − err(l)``. The paper writes
``−log σ(−(β/2)·(Δθ − Δref))`` (its ``T·ω(λ_t)`` folded into β), so::

    β_core = β_paper / 2                                    (``core_params``, the ONE conversion)

Every diffusion config stores the **paper-form β** (5000 for SD1.5/SDXL in the paper; the
diffusers SD1.5 script's ``--beta_dpo 2500`` is paper-form 5000). ``core_params`` halves it for
every loss kind, so ``hinge`` reads ``relu(1 − β_core·(Δref − Δθ))`` and ``ipo``
``((Δref − Δθ) − 1/(2·β_core))²`` exactly as the diffusers SD1.5 script meant them (with its
``β_diffusers = β_core``), and ``kto`` uses ``β_core`` as Diffusion-KTO's β (arXiv 2404.04465).

The pieces are separate so later methods swap one of them: the noise source (InPO: DDIM
inversion instead of random ε), the distance (NCP: U-Net feature space instead of ε-MSE,
``perceptual.py``). A *distance* is an object with ``prepare(noised, cond)`` (draws and
computes what policy and reference share, once per batch) and ``__call__(pred, noised,
cond) -> [N]``; ``LatentDistance`` is Diffusion-DPO's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import torch
import torch.nn.functional as F

from .params import LossParams
from .types import PreferenceBatch

__all__ = [
    "PREDICTION_TYPES",
    "NoisedPairs",
    "LatentDistance",
    "core_params",
    "draw_timesteps",
    "noise_pairs",
    "denoising_target",
    "per_sample_error",
    "predicted_x0",
    "snr",
    "min_snr_weight",
    "pair_scores",
]

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")



def core_params(params: LossParams) -> LossParams:
    """The loss core's parameters for a diffusion method: ``β_core = β_paper / 2``.

    Args:
        params (LossParams): parameters with ``beta`` in the Diffusion-DPO paper form
            (the inside of the log-sigmoid is ``−(β/2)·(Δθ − Δref)``; arXiv 2311.12908 Eq. 14,
            Salesforce ``train.py`` ``-0.5 * beta_dpo * (model_diff - ref_diff)``).

    Returns:
        LossParams: a copy with ``beta = params.beta / 2``; every other field unchanged.
    """
    return dataclasses.replace(params, beta=params.beta / 2)


@dataclass
class NoisedPairs:
    """Noisy inputs of a batch of ``B`` pairs, chosen rows first; every tensor has ``2B`` rows.

    Attributes:
        x_t (torch.Tensor): ``[2B, C, h, w]`` noisy latents.
        t (torch.Tensor): ``[2B]`` long timesteps; ``t[:B] == t[B:]``.
        noise (torch.Tensor): ``[2B, C, h, w]`` the ε used; ``noise[:B] == noise[B:]`` for shared noise.
        target (torch.Tensor): ``[2B, C, h, w]`` what the model should predict.
        x0 (torch.Tensor): ``[2B, C, h, w]`` the clean latents.
        aux (dict): what a distance's ``prepare`` computed for this batch (shared by policy and
            reference), e.g. NCP's encoded targets.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    noise: torch.Tensor
    target: torch.Tensor
    x0: torch.Tensor
    aux: dict = dataclasses.field(default_factory=dict)


def draw_timesteps(
    n: int, t_min: int, t_max: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` timesteps uniform on the integers ``[t_min, t_max)``, ``[n]`` long."""
    if not 0 <= t_min < t_max:
        raise ValueError(f"timestep range must satisfy 0 <= t_min < t_max, got [{t_min}, {t_max})")
    return torch.randint(t_min, t_max, (n,), device=device, generator=generator)


def denoising_target(
    scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The regression target of a ``prediction_type`` model: ε, ``v = √ᾱ·ε − √(1−ᾱ)·x_0`` or ``x_0``.

    Args:
        scheduler: a diffusers noise scheduler (``get_velocity`` for v-prediction).
        x0, noise (torch.Tensor): ``[N, C, h, w]``. t (torch.Tensor): ``[N]``.
        prediction_type (str): ``epsilon``, ``v_prediction`` (Salimans & Ho, arXiv 2202.00512) or ``sample``.
    """
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)
    if prediction_type == "sample":
        return x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def noise_pairs(
    scheduler,
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    t_range: tuple[int, int],
    prediction_type: str,
    noise: torch.Tensor | None = None,
    t: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: torch.Tensor | None = None,
) -> NoisedPairs:
    """Forward-noise both halves of each pair with ONE ``t`` and ONE ``ε`` per pair (methods.md §0.3).

    Args:
        scheduler: diffusers noise scheduler (``add_noise``, ``get_velocity``).
        chosen, rejected (torch.Tensor): ``[B, C, h, w]`` clean latents ``x_0``.
        t_range (tuple[int, int]): ``[t_min, t_max)`` of the uniform timestep draw.
        prediction_type (str): see ``denoising_target``.
        noise (torch.Tensor | None): ``[2B, C, h, w]`` given noise (InPO: inverted ε, one per
            image); default: one draw ``[B]`` repeated for both halves.
        t (torch.Tensor | None): ``[B]`` given timesteps; default: drawn from ``t_range``.
        generator (torch.Generator | None): for the draws (default: the global RNG).
        seeds (torch.Tensor | None): ``[B]`` int64, one seed per pair: pair ``i``'s ``t`` and ``ε``
            come from a generator of its own (CPU), so they do not depend on the batch the pair is
            in nor on the process that holds it (``data.per_pair_noise``).

    Returns:
        NoisedPairs: ``2B`` rows, chosen first.
    """
    b = chosen.shape[0]
    x0 = torch.cat([chosen, rejected])  # [2B, C, h, w]
    if seeds is not None and (t is None or noise is None):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds.tolist()]
        if t is None:
            t = torch.cat([torch.randint(*t_range, (1,), generator=g) for g in gens]).to(x0.device)
        if noise is None:
            eps = torch.cat([torch.randn(1, *chosen.shape[1:], generator=g) for g in gens]).to(x0.device, x0.dtype)
            noise = eps.repeat(2, 1, 1, 1)
    if t is None:
        t = draw_timesteps(b, *t_range, device=x0.device, generator=generator)
    t = t.repeat(2)  # [2B]
    if noise is None:
        eps = torch.randn(chosen.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        noise = eps.repeat(2, 1, 1, 1)  # [2B, C, h, w]: the same ε for w and l
    x_t = scheduler.add_noise(x0, noise, t)
    return NoisedPairs(x_t, t, noise, denoising_target(scheduler, x0, noise, t, prediction_type), x0)


def per_sample_error(
    prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``w · mean_{C,H,W} (prediction − target)²`` per sample, in fp32.

    Args:
        prediction, target (torch.Tensor): ``[N, ...]`` (any dtype; upcast before the square).
        weight (torch.Tensor | None): ``[N]`` per-sample weight (e.g. ``min_snr_weight``).

    Returns:
        torch.Tensor: ``[N]`` fp32.
    """
    err = F.mse_loss(prediction.float(), target.float(), reduction="none")
    err = err.mean(dim=tuple(range(1, err.ndim)))  # [N]
    return err if weight is None else err * weight.float()


def reference_kl(prediction: torch.Tensor, ref_prediction: torch.Tensor) -> torch.Tensor:
    """Per-sample KL surrogate between policy and reference denoisers, ``[N]``, fp32.

    DPOK (Fan et al., arXiv 2305.16381, Lemma 4.1 / Eq. 7) bounds the KL between the two models'
    sample distributions by the expected squared gap of their noise predictions along the way,
    ``Σ_t E‖ε_θ(x_t, t) − ε_ref(x_t, t)‖²`` (up to the schedule's weights); this is one term of that
    sum at the batch's own ``(x_t, t)``, averaged over the latent's elements like ``per_sample_error``.
    The reference prediction carries no gradient.
    """
    diff = prediction.float() - ref_prediction.detach().float()
    return diff.pow(2).flatten(1).mean(dim=1)


class LatentDistance:
    """Diffusion-DPO's distance: ``per_sample_error(prediction, target)`` in latent space, ``[N]``."""

    def prepare(self, noised: NoisedPairs, cond) -> None:
        pass

    def __call__(self, prediction: torch.Tensor, noised: NoisedPairs, cond) -> torch.Tensor:
        return per_sample_error(prediction, noised.target)


def predicted_x0(scheduler, x_t: torch.Tensor, t: torch.Tensor, prediction: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The clean sample a prediction implies (DDIM, Song et al., arXiv 2010.02502 Eq. 12), fp32:
    ``(x_t − √(1−ᾱ)·ε̂)/√ᾱ`` for ε, ``√ᾱ·x_t − √(1−ᾱ)·v̂`` for v, the prediction itself for x_0."""
    a = scheduler.alphas_cumprod.to(device=x_t.device, dtype=torch.float32)[t].view(-1, *[1] * (x_t.ndim - 1))
    x_t, prediction = x_t.float(), prediction.float()
    if prediction_type == "epsilon":
        return (x_t - (1 - a).sqrt() * prediction) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * prediction
    if prediction_type == "sample":
        return prediction
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def snr(scheduler, t: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``ᾱ_t / (1 − ᾱ_t)`` at ``t`` ``[N]`` (fp32, on t's device)."""
    ac = scheduler.alphas_cumprod.to(device=t.device, dtype=torch.float32)[t]
    return ac / (1 - ac)


def min_snr_weight(scheduler, t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-γ weight (Hang et al., arXiv 2303.09556, Eq. 9), as a multiplier of the error.

    ``min(SNR, γ) / SNR`` for ε-targets, ``min(SNR, γ) / (SNR + 1)`` for v-targets,
    ``min(SNR, γ)`` for x_0-targets. In DPO the weight scales the per-sample error of policy
    and reference alike (it is ω(λ_t) of the paper made explicit); ``[N]``.
    """
    s = snr(scheduler, t)
    clipped = torch.clamp(s, max=gamma)
    if prediction_type == "epsilon":
        return clipped / s
    if prediction_type == "v_prediction":
        return clipped / (s + 1)
    return clipped


def pair_scores(err_policy: torch.Tensor, err_ref: torch.Tensor | None, needs: frozenset) -> PreferenceBatch:
    """Scores ``s = −err`` for the loss core, from per-sample errors with chosen rows first.

    Args:
        err_policy (torch.Tensor): ``[2B]`` policy errors (grad flows).
        err_ref (torch.Tensor | None): ``[2B]`` reference errors (no grad), or None.
        needs (frozenset): the kinds' needs (``losses.needs_of``). ``lengths`` are 1 (an image
            is one "token"; losses.md §5); ``nll`` is the policy error on the chosen sample
            (the SFT term of Diffusion-DPO's ``--sft``).

    Returns:
        PreferenceBatch: ``[B]`` per-pair scores.
    """
    b = err_policy.shape[0] // 2
    ones = torch.ones(b, device=err_policy.device)
    return PreferenceBatch(
        chosen=-err_policy[:b],
        rejected=-err_policy[b:],
        ref_chosen=None if err_ref is None else -err_ref[:b],
        ref_rejected=None if err_ref is None else -err_ref[b:],
        chosen_lengths=ones if "lengths" in needs else None,
        rejected_lengths=ones if "lengths" in needs else None,
        chosen_nll=err_policy[:b] if "nll" in needs else None,
    )
