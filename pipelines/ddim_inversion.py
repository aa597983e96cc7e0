"""DDIM inversion as a diffusers custom pipeline: image → noise → reconstruction.

Self-contained (imports torch and diffusers only), so it loads from this file alone::

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("assets/toy/image/pipeline",
                                             custom_pipeline="pipelines/ddim_inversion.py", trust_remote_code=True)
    out = pipe("a small red circle on a grey background", image=img, num_inference_steps=50)
    out.inverted_latents, out.images, out.reconstruction_error

The image is VAE-encoded (posterior mean), inverted with deterministic DDIM to level ``t``
(default ``T − 1``; one per image allowed), then sampled back along the same levels and decoded.
The DDIM functions below are verbatim copies of ``diffalign/sampling/ddim.py`` (Song et al., arXiv
2010.02502; inversion as diffusers' ``DDIMInverseScheduler``: the model is queried at the target
level), kept identical by ``tests/pipelines/test_copies.py`` (``python scripts/sync_pipelines.py``
rewrites them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import BaseOutput

# Copied from diffalign.sampling.ddim.alphas_at
def alphas_at(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ at levels ``t`` ``[N]`` (level −1: 1.0), fp32, shaped ``[N, 1, …]`` to broadcast against ``like``."""
    ac = alphas_cumprod.to(device=like.device, dtype=torch.float32)
    a = torch.where(t < 0, torch.ones_like(t, dtype=torch.float32), ac[t.clamp(min=0)])
    return a.view(-1, *[1] * (like.ndim - 1))

# Copied from diffalign.sampling.ddim.ddim_step
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

# Copied from diffalign.sampling.ddim.inversion_levels
def inversion_levels(t: torch.Tensor, num_train_timesteps: int, num_steps: int) -> torch.Tensor:
    """The levels each sample passes through, ``[N, K + 1]``: ``−1, Δ, 2Δ, …, t`` padded with ``t``.

    ``Δ = num_train_timesteps // num_steps``; ``K = ceil(max(t + 1) / Δ)``.
    """
    delta = num_train_timesteps // num_steps
    k = max(1, -(-(int(t.max()) + 1) // delta))
    grid = torch.arange(1, k + 1, device=t.device) * delta  # [K]
    levels = torch.minimum(grid[None, :], t[:, None])  # [N, K]
    return torch.cat([torch.full_like(t[:, None], -1), levels], dim=1)

# Copied from diffalign.sampling.ddim.ddim_invert
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

# Copied from diffalign.sampling.ddim.ddim_reconstruct
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


@dataclass
class DDIMInversionOutput(BaseOutput):
    """What ``StableDiffusionDDIMInversionPipeline.__call__`` returns.

    Attributes:
        images: the reconstructions (PIL images, numpy or a ``[N, 3, H, W]`` tensor by ``output_type``).
        latents (torch.Tensor): ``[N, C, h, w]`` clean latents of the input images.
        inverted_latents (torch.Tensor): ``[N, C, h, w]`` their DDIM inversions ``x_t``.
        reconstructed_latents (torch.Tensor): ``[N, C, h, w]`` sampled back from ``x_t``.
        reconstruction_error (torch.Tensor): ``[N]`` ``‖rec − x_0‖² / ‖x_0‖²`` in latent space.
    """

    images: object
    latents: torch.Tensor
    inverted_latents: torch.Tensor
    reconstructed_latents: torch.Tensor
    reconstruction_error: torch.Tensor


class StableDiffusionDDIMInversionPipeline(StableDiffusionPipeline):
    """A ``StableDiffusionPipeline`` whose ``__call__`` inverts images with DDIM and reconstructs them."""

    def _eps_fn(self, prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor | None, guidance_scale: float):
        """``(x, t, rows) -> ε̂`` with classifier-free guidance (ε from v for v-prediction U-Nets)."""
        ac = self.scheduler.alphas_cumprod

        def eps_fn(x, t, rows):
            cond = prompt_embeds[rows]
            if negative_embeds is not None and guidance_scale != 1.0:
                out = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([negative_embeds[rows], cond])).sample
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            else:
                out = self.unet(x, t, cond).sample
            if self.scheduler.config.prediction_type == "v_prediction":
                a = alphas_at(ac, t, x)
                out = a.sqrt() * out + (1 - a).sqrt() * x.float()
            return out

        return eps_fn

    @torch.no_grad()
    def __call__(self, prompt, image=None, latents: torch.Tensor | None = None, num_inference_steps: int = 50,
                 t=None, guidance_scale: float = 1.0, negative_prompt=None, output_type: str = "pil",
                 return_dict: bool = True):
        """Invert ``image`` (PIL, numpy or a ``[N, 3, H, W]`` tensor in [0, 1]) or clean ``latents``.

        Args:
            prompt (str | list[str]): one prompt, or one per image.
            num_inference_steps (int): inversion steps over the full range (grid ``T // steps``).
            t (int | list[int] | torch.Tensor | None): target level(s); default ``T − 1``.
            guidance_scale (float): classifier-free guidance of the inversion (1: conditional only,
                as InPO and null-text inversion).
        """
        device = self._execution_device
        if latents is None:
            if image is None:
                raise ValueError("give an image (or clean latents) to invert")
            pixels = self.image_processor.preprocess(image).to(device=device, dtype=self.vae.dtype)
            latents = self.vae.encode(pixels).latent_dist.mean * self.vae.config.scaling_factor
        x0 = latents.to(device).float()
        n = x0.shape[0]
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        cfg = guidance_scale != 1.0
        prompt_embeds, negative_embeds = self.encode_prompt(prompts, device, 1, cfg, negative_prompt)
        big_t = self.scheduler.config.num_train_timesteps
        t = torch.full((n,), big_t - 1) if t is None else torch.as_tensor(t).reshape(-1).expand(n)
        t = t.to(device=device, dtype=torch.long)
        eps_fn = self._eps_fn(prompt_embeds, negative_embeds if cfg else None, guidance_scale)
        ac = self.scheduler.alphas_cumprod
        x_t = ddim_invert(eps_fn, x0, t, ac, num_inference_steps, big_t)
        rec = ddim_reconstruct(eps_fn, x_t, t, ac, num_inference_steps, big_t)
        err = (rec - x0).pow(2).flatten(1).sum(1) / x0.pow(2).flatten(1).sum(1)
        decoded = self.vae.decode((rec / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        out = DDIMInversionOutput(images, x0, x_t, rec, err)
        return out if return_dict else out.to_tuple()
