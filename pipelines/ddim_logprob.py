"""DDIM sampling that returns every latent and the log-probability of every step, as a diffusers custom pipeline.

Self-contained (imports torch and diffusers only)::

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained("assets/toy/image/pipeline",
                                             custom_pipeline="pipelines/ddim_logprob.py", trust_remote_code=True)
    out = pipe(["a small red circle on a grey background"], eta=1.0, generator=[torch.Generator().manual_seed(0)])
    out.latents    # [N, S + 1, C, h, w]: x_T first
    out.log_probs  # [N, S]: log N(x_prev; mean, σ²) of each step, averaged over dimensions (DDPO)

With ``eta = 0`` it is deterministic DDIM and matches ``StableDiffusionPipeline`` with a
``DDIMScheduler``. The DDIM functions below are verbatim copies of ``diffalign/sampling/ddim.py``
(Song et al., arXiv 2010.02502, Eq. 12 and 16), kept identical by ``tests/pipelines/test_copies.py``.
"""

from __future__ import annotations

import math
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

# Copied from diffalign.sampling.ddim.step_log_prob
def step_log_prob(x_prev: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``log N(x_prev; mean, σ²)`` averaged over the non-batch dimensions (DDPO's convention): ``[N]``."""
    std = std.expand_as(mean).clamp(min=1e-12)
    lp = -((x_prev.detach().float() - mean) ** 2) / (2 * std**2) - std.log() - math.log(math.sqrt(2 * math.pi))
    return lp.mean(dim=tuple(range(1, lp.ndim)))

# Copied from diffalign.sampling.ddim._noise
def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal noise like ``x``; with a list of generators, row ``i`` from generator ``i``."""
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in generator]).to(x.device)
    return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)

# Copied from diffalign.sampling.ddim.ddim_sample
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


@dataclass
class LogProbPipelineOutput(BaseOutput):
    """What ``StableDiffusionLogProbPipeline.__call__`` returns.

    Attributes:
        images: the samples (PIL images, numpy or a ``[N, 3, H, W]`` tensor by ``output_type``).
        latents (torch.Tensor): ``[N, S + 1, C, h, w]`` every latent, ``x_T`` first.
        log_probs (torch.Tensor): ``[N, S]`` log-probability of each step (zeros when ``eta = 0``).
        timesteps (torch.Tensor): ``[S]`` the sampler's timesteps.
    """

    images: object
    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor


class StableDiffusionLogProbPipeline(StableDiffusionPipeline):
    """A ``StableDiffusionPipeline`` that samples with DDIM and keeps latents and step log-probabilities."""

    @torch.no_grad()
    def __call__(self, prompt, num_inference_steps: int = 50, guidance_scale: float = 7.5, eta: float = 1.0,
                 generator=None, latents: torch.Tensor | None = None, negative_prompt=None, height: int | None = None,
                 width: int | None = None, output_type: str = "pil", return_dict: bool = True):
        """Sample ``prompt`` (one image per prompt).

        Args:
            eta (float): η of DDIM (0: deterministic; 1: DDPM-like variance, what DDPO samples with).
            generator: a ``torch.Generator`` or one per prompt (the initial noise and every step's
                noise of row ``i`` come from generator ``i``).
        """
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        cfg = guidance_scale > 1.0
        prompt_embeds, negative_embeds = self.encode_prompt(prompts, device, 1, cfg, negative_prompt)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        latents = self.prepare_latents(n, self.unet.config.in_channels, height, width, prompt_embeds.dtype, device,
                                       generator, latents)
        ac = self.scheduler.alphas_cumprod

        def eps_fn(x, t):
            x = x.to(prompt_embeds.dtype)
            if cfg:
                out = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([negative_embeds, prompt_embeds])).sample
                uncond, text = out.chunk(2)
                out = uncond + guidance_scale * (text - uncond)
            else:
                out = self.unet(x, t, prompt_embeds).sample
            if self.scheduler.config.prediction_type == "v_prediction":
                a = alphas_at(ac, t, x)
                out = a.sqrt() * out + (1 - a).sqrt() * x.float()
            return out

        final = float(self.scheduler.final_alpha_cumprod)
        x0, all_latents, log_probs = ddim_sample(eps_fn, latents, [int(t) for t in timesteps], ac, final, eta, generator,
                                                 self.scheduler.config.num_train_timesteps)
        decoded = self.vae.decode((x0 / self.vae.config.scaling_factor).to(self.vae.dtype)).sample
        images = self.image_processor.postprocess(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        out = LogProbPipelineOutput(images, all_latents, log_probs, timesteps)
        return out if return_dict else out.to_tuple()
