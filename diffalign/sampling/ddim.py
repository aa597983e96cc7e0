"""DDIM in tensors: the step, its log-probability, sampling, and DDIM inversion with a per-sample timestep.

Song et al., "Denoising Diffusion Implicit Models", arXiv 2010.02502. With ``ᾱ`` the cumulative
product of the noise schedule and ``ε̂`` the model's noise prediction at ``x_t``::

    x̂_0     = (x_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t                                   (Eq. 12, "predicted x_0")
    σ_t     = η · √((1−ᾱ_prev)/(1−ᾱ_t)) · √(1 − ᾱ_t/ᾱ_prev)                 (Eq. 16)
    x_prev  = √ᾱ_prev·x̂_0 + √(1−ᾱ_prev−σ_t²)·ε̂ + σ_t·z                     (Eq. 12)

Every function works per sample: ``t`` is a ``[N]`` tensor, so a batch may mix timesteps (the
public InPO code inverts a whole batch to ``timesteps[0]``, methods.md §7 #3). Level ``−1``
means the clean sample (``ᾱ = 1``).

**Inversion** runs the deterministic step backwards (x_prev → x_t), querying the model at the
*target* level with the current sample — the approximation ``ε̂(x_t, t) ≈ ε̂(x_prev, t)`` of
diffusers' ``DDIMInverseScheduler`` and of null-text inversion (Mokady et al., arXiv 2211.09794)::

    x_t = √ᾱ_t · x̂_0(x_prev, ε̂) + √(1−ᾱ_t) · ε̂,   ε̂ = ε_θ(x_prev, t)

along the levels ``−1 → Δ → 2Δ → … → t`` (``Δ = T // num_steps``; the last step lands exactly
on ``t``, not on the grid point below it as the public InPO code does).

These functions are self-contained (torch only): ``pipelines/`` carries verbatim copies, and a
test keeps them identical.
"""

from __future__ import annotations

import math

import torch

__all__ = ["alphas_at", "ddim_step", "step_log_prob", "inversion_levels", "ddim_invert", "ddim_reconstruct",
           "ddim_sample"]


def alphas_at(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ at levels ``t`` ``[N]`` (level −1: 1.0), fp32, shaped ``[N, 1, …]`` to broadcast against ``like``."""
    ac = alphas_cumprod.to(device=like.device, dtype=torch.float32)
    a = torch.where(t < 0, torch.ones_like(t, dtype=torch.float32), ac[t.clamp(min=0)])
    return a.view(-1, *[1] * (like.ndim - 1))


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor, eta: float = 0.0,
              noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One DDIM step from ``ᾱ_t`` to ``ᾱ_prev`` (Eq. 12): returns ``(x_prev, mean, σ)``, fp32.

    Args:
        x_t, eps (torch.Tensor): ``[N, …]`` sample and noise prediction.
        a_t, a_prev (torch.Tensor): ``[N, 1, …]`` ᾱ of the two levels (``alphas_at``).
        eta (float): η of Eq. 16 (0: deterministic DDIM; 1: DDPM-like variance).
        noise (torch.Tensor | None): ``z`` for ``eta > 0``.
    """
    x_t, eps = x_t.float(), eps.float()
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    std = eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
    if eta == 0 or noise is None:
        return mean, mean, std
    return mean + std * noise, mean, std


def step_log_prob(x_prev: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log N(x_prev; mean, σ²)`` averaged over the non-batch dimensions (DDPO's convention): ``[N]``."""
    std = std.expand_as(mean).clamp(min=1e-12)
    lp = -((x_prev.detach().float() - mean) ** 2) / (2 * std**2) - std.log() - math.log(math.sqrt(2 * math.pi))
    return lp.mean(dim=tuple(range(1, lp.ndim)))


def inversion_levels(t: torch.Tensor, num_train_timesteps: int, num_steps: int) -> torch.Tensor:
    """The levels each sample passes through, ``[N, K + 1]``: ``−1, Δ, 2Δ, …, t`` padded with ``t``.

    ``Δ = num_train_timesteps // num_steps``; ``K = ceil(max(t + 1) / Δ)``.
    """
    delta = num_train_timesteps // num_steps
    k = max(1, -(-(int(t.max()) + 1) // delta))
    grid = torch.arange(1, k + 1, device=t.device) * delta  # [K]
    levels = torch.minimum(grid[None, :], t[:, None])  # [N, K]
    return torch.cat([torch.full_like(t[:, None], -1), levels], dim=1)


@torch.no_grad()
def ddim_invert(eps_fn, x0: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, num_steps: int,
                num_train_timesteps: int = 1000) -> torch.Tensor:
    """Deterministic DDIM inversion of clean samples to their own timesteps.

    Args:
        eps_fn: ``(x [M, …], t [M], rows [M]) -> ε̂ [M, …]``; ``rows`` are the indices of the
            samples in the batch (to pick their conditioning). Called only on samples that still
            move, so a sample's result does not depend on the others.
        x0 (torch.Tensor): ``[N, …]`` clean samples. t (torch.Tensor): ``[N]`` long target levels.
        num_steps (int): inversion steps over the full range (grid spacing ``T // num_steps``).

    Returns:
        torch.Tensor: ``[N, …]`` fp32 ``x_t`` for each sample's ``t``.
    """
    levels = inversion_levels(t, num_train_timesteps, num_steps)
    x = x0.float().clone()
    for k in range(1, levels.shape[1]):
        cur, nxt = levels[:, k - 1], levels[:, k]
        rows = (nxt > cur).nonzero().flatten()
        if rows.numel() == 0:
            continue
        eps = eps_fn(x[rows], nxt[rows], rows).float()  # the model at the target level
        a_cur, a_nxt = alphas_at(alphas_cumprod, cur[rows], x), alphas_at(alphas_cumprod, nxt[rows], x)
        x0_hat = (x[rows] - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
        x[rows] = a_nxt.sqrt() * x0_hat + (1 - a_nxt).sqrt() * eps
    return x


@torch.no_grad()
def ddim_reconstruct(eps_fn, x_t: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor, num_steps: int,
                     num_train_timesteps: int = 1000) -> torch.Tensor:
    """Deterministic DDIM sampling from ``x_t`` back to the clean sample along the levels of
    ``ddim_invert`` (same arguments): the round trip of an inversion."""
    levels = inversion_levels(t, num_train_timesteps, num_steps)
    x = x_t.float().clone()
    for k in range(levels.shape[1] - 1, 0, -1):
        cur, prev = levels[:, k], levels[:, k - 1]
        rows = (cur > prev).nonzero().flatten()
        if rows.numel() == 0:
            continue
        eps = eps_fn(x[rows], cur[rows], rows).float()
        x[rows] = ddim_step(x[rows], eps, alphas_at(alphas_cumprod, cur[rows], x),
                            alphas_at(alphas_cumprod, prev[rows], x))[0]
    return x


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal noise like ``x``; with a list of generators, row ``i`` from generator ``i``."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in generator]).to(x.device)
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)


@torch.no_grad()
def ddim_sample(eps_fn, latents: torch.Tensor, timesteps: list[int], alphas_cumprod: torch.Tensor,
                final_alpha_cumprod: float = 1.0, eta: float = 0.0, generator=None, num_train_timesteps: int = 1000):
    """DDIM sampling that keeps every latent and the log-probability of every step.

    Args:
        eps_fn: ``(x [N, …], t [N]) -> ε̂`` (classifier-free guidance inside, if any).
        latents (torch.Tensor): ``[N, …]`` initial noise ``x_T`` (already scaled).
        timesteps (list[int]): decreasing sampler timesteps (a diffusers scheduler's ``timesteps``).
        final_alpha_cumprod (float): ᾱ after the last step (1.0: ``set_alpha_to_one``).
        eta (float): η of Eq. 16; ``eta > 0`` draws ``z`` from ``generator`` (a generator or one per row).
        num_train_timesteps (int): ``T``; the previous level is ``t − T // S`` (diffusers' ``DDIMScheduler``).

    Returns:
        tuple: ``x_0`` ``[N, …]``, all latents ``[N, S + 1, …]`` (``x_T`` first), step
        log-probabilities ``[N, S]`` (zeros when ``eta = 0``: the step is deterministic).
    """
    x = latents.float()
    n = x.shape[0]
    all_latents, log_probs = [x], []
    for step in timesteps:
        t = torch.full((n,), int(step), device=x.device, dtype=torch.long)
        prev = t - num_train_timesteps // len(timesteps)
        a_t = alphas_at(alphas_cumprod, t, x)
        a_prev = torch.where(prev.view_as(a_t.flatten()) < 0, torch.full_like(a_t.flatten(), final_alpha_cumprod),
                             alphas_at(alphas_cumprod, prev.clamp(min=0), x).flatten()).view_as(a_t)
        eps = eps_fn(x, t)
        x_prev, mean, std = ddim_step(x, eps, a_t, a_prev, eta, _noise(x, generator) if eta > 0 else None)
        log_probs.append(step_log_prob(x_prev, mean, std) if eta > 0 else torch.zeros(n, device=x.device))
        x = x_prev
        all_latents.append(x)
    return x, torch.stack(all_latents, dim=1), torch.stack(log_probs, dim=1)
