"""Training stages of the toy text-to-image pipeline: VAE, then text encoder + UNet.

All components are the real diffusers / transformers classes at tiny sizes (see
reference/toy-feasibility.md for the measurements behind the defaults). Images are [B, 3, 32, 32]
in [0, 1] here and [-1, 1] inside the VAE, as in Stable Diffusion.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffalign.losses.denoising import min_snr_weight
from diffalign.toy.image.world import ShapesWorld, render

NOISE_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}


@dataclass
class VAEConfig:
    """AutoencoderKL training settings.

    Args:
        channels (tuple): block widths; 3 levels map 32×32 to 8×8 latents.
        latent_channels (int): channels of the latent.
        norm_groups (int): GroupNorm groups. 1 (a LayerNorm over channels and space) keeps the ratios
            between colour channels; with 8 groups of 2 channels the per-image normalisation erased
            the object's colour and red / orange / yellow reconstructed alike (colour 43% vs 92%
            correct after 300 steps).
        steps (int): optimiser steps (fresh renders every step, so no epochs).
        batch (int): images per step.
        lr (float): peak AdamW learning rate (cosine decay to lr / 20).
        kl_weight (float): weight of the KL term (tiny: we want a near-deterministic autoencoder).
        object_weight (float): extra L1 weight on object pixels (see `_object_weight`).
        latent_noise (float): std of the noise added to the posterior mean before decoding.
    """

    channels: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 4
    norm_groups: int = 1
    steps: int = 1200
    batch: int = 16
    lr: float = 2e-3
    kl_weight: float = 1e-6
    object_weight: float = 4.0
    latent_noise: float = 0.05


@dataclass
class UNetConfig:
    """Text encoder + UNet2DConditionModel training settings.

    Args:
        channels (tuple): UNet block widths (cross-attention in every block).
        text_width (int): CLIPTextModel hidden size (= UNet cross_attention_dim).
        text_layers (int): CLIPTextModel layers.
        n_images (int): rendered training images, encoded to latents once.
        steps (int): optimiser steps.
        batch (int): latents per step.
        lr (float): peak AdamW learning rate (50-step warm-up, cosine decay to lr / 10).
        caption_dropout (float): share of captions replaced by "" (for classifier-free guidance).
        ema_decay (float): EMA of the weights that are saved.
        min_snr_gamma (float): Min-SNR-γ loss weighting (arXiv:2303.09556); 0 turns it off.
        norm_groups (int): GroupNorm groups; 1 for the same reason as the VAE's (after 600 steps:
            held-out graded fidelity 0.50 with 1 group, 0.40 with 16).
    """

    channels: tuple[int, ...] = (48, 96)
    text_width: int = 64
    text_layers: int = 2
    n_images: int = 20000
    steps: int = 1000
    batch: int = 64
    lr: float = 1e-3
    caption_dropout: float = 0.1
    ema_decay: float = 0.995
    min_snr_gamma: float = 5.0
    norm_groups: int = 1


def _cosine_lr(step: int, total: int, warmup: int, floor: float) -> float:
    """Multiplier of the peak lr: linear warm-up, then cosine from 1 to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def render_batch(world: ShapesWorld, rng: np.random.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
    """n random training renders: images [n, 3, 32, 32] in [0, 1] and their prompts."""
    prompts = [world.train_prompts[i] for i in rng.integers(len(world.train_prompts), size=n)]
    specs = world.sample_specs(prompts, seed=int(rng.integers(2**31)))
    return torch.from_numpy(render(specs)), prompts


def _object_weight(images: torch.Tensor, object_weight: float) -> torch.Tensor:
    """Per-pixel loss weight 1 + object_weight · (how far the pixel is from the background).

    The object covers 6–50% of the image; without this the loss is mostly background and the
    VAE learns the object's exact colour late. images [B, 3, H, W] in [0, 1] -> [B, 1, H, W].
    """
    border = torch.cat([images[..., 0, :], images[..., -1, :]], dim=-1)  # [B, 3, 2W]
    bg = border.median(dim=-1).values[:, :, None, None]
    dist = (images - bg).norm(dim=1, keepdim=True)
    return 1 + object_weight * (dist / 0.3).clamp(0, 1)


def make_vae(cfg: VAEConfig, seed: int):
    """A fresh AutoencoderKL: 3 → 4 latent channels, no mid-block attention (cheap on CPU)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(cfg.channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_groups,
        sample_size=32,
        mid_block_add_attention=False,
    )


def train_vae(vae, world: ShapesWorld, cfg: VAEConfig, seed: int, log: Callable[[str], None] = print) -> dict:
    """Trains the VAE on fresh training renders with L1 + KL.

    Returns:
        dict: final mean L1 (on [-1, 1]) over the last 50 steps and the wall time.
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    vae.train()
    t0, losses = time.time(), []
    bar = tqdm(range(cfg.steps), desc="vae", mininterval=10)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _cosine_lr(step, cfg.steps, 20, 0.05)
        x, _ = render_batch(world, rng, cfg.batch)
        weight = _object_weight(x, cfg.object_weight)  # [B, 1, 32, 32]
        x = x * 2 - 1  # [B, 3, 32, 32] in [-1, 1]
        post = vae.encode(x).latent_dist
        # decode the mean plus a little noise: sampling the posterior at its initial std (≈ 1) drowns
        # the latent for hundreds of steps, yet a decoder that tolerates small latent errors
        # forgives the UNet's
        z = post.mean + cfg.latent_noise * torch.randn_like(post.mean)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        loss = ((rec - x).abs() * weight).mean() + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(l1.item())
        if step % 50 == 0:
            bar.set_postfix(l1=f"{np.mean(losses[-50:]):.4f}")
    vae.eval()
    out = {"l1": float(np.mean(losses[-50:])), "seconds": time.time() - t0, "steps": cfg.steps}
    log(f"vae: {cfg.steps} steps, L1 {out['l1']:.4f}, {out['seconds']:.0f} s")
    return out


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of images [N, 3, 32, 32] in [0, 1] -> [N, 4, 8, 8] (unscaled)."""
    return torch.cat([vae.encode(images[i : i + batch] * 2 - 1).latent_dist.mean for i in range(0, len(images), batch)])


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor) -> torch.Tensor:
    """Encode (mean) and decode: [N, 3, 32, 32] in [0, 1] -> same."""
    z = encode_latents(vae, images)
    return torch.cat([(vae.decode(z[i : i + 256]).sample + 1) / 2 for i in range(0, len(z), 256)]).clamp(0, 1)


def make_text_unet(cfg: UNetConfig, tokenizer, seed: int):
    """Fresh CLIPTextModel and UNet2DConditionModel sized for 4×8×8 latents."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.text_width,
            intermediate_size=4 * cfg.text_width,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            projection_dim=cfg.text_width,
        )
    )
    torch.manual_seed(seed + 1)
    n = len(cfg.channels)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        cross_attention_dim=cfg.text_width,
        attention_head_dim=8,
        norm_num_groups=cfg.norm_groups,
    )
    return text_encoder, unet


def train_text_unet(
    text_encoder,
    unet,
    tokenizer,
    latents: torch.Tensor,
    prompts: list[str],
    cfg: UNetConfig,
    seed: int,
    log: Callable[[str], None] = print,
) -> dict:
    """Trains text encoder and UNet jointly with the ε-prediction loss, then loads their EMA weights.

    Args:
        latents (torch.Tensor): [N, 4, 8, 8] scaled latents (× vae scaling factor).
        prompts (list[str]): N captions.

    Returns:
        dict: mean loss over the last 100 steps, wall time, steps.
    """
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    sched = DDPMScheduler(**NOISE_SCHEDULE)
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids  # [N, L]
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids  # [1, L]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(seed)
    unet.train()
    text_encoder.train()
    t0, losses = time.time(), []
    bar = tqdm(range(cfg.steps), desc="unet", mininterval=10)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _cosine_lr(step, cfg.steps, 50, 0.1)
        idx = torch.randint(len(latents), (cfg.batch,), generator=gen)
        x0 = latents[idx]  # [B, 4, 8, 8]
        drop = torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout
        cond_ids = torch.where(drop[:, None], empty, ids[idx])  # [B, L]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch,), generator=gen)
        x_t = sched.add_noise(x0, noise, t)
        cond = text_encoder(cond_ids)[0]  # [B, L, D], no attention mask: as the pipeline encodes
        pred = unet(x_t, t, cond).sample
        err = (pred - noise).pow(2).mean(dim=(1, 2, 3))  # [B]
        if cfg.min_snr_gamma > 0:  # Min-SNR-γ (the loss core's weight; ε-prediction)
            err = err * min_snr_weight(sched, t, cfg.min_snr_gamma, "epsilon")
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.step(params)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    out = {"loss": float(np.mean(losses[-100:])), "seconds": time.time() - t0, "steps": cfg.steps}
    log(f"unet: {cfg.steps} steps, loss {out['loss']:.4f}, {out['seconds']:.0f} s")
    return out


def assemble_pipeline(vae, text_encoder, tokenizer, unet):
    """A `StableDiffusionPipeline` with a DDIM scheduler on the training noise schedule."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(**NOISE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
