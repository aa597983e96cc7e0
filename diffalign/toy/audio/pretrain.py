"""Training stages of the toy AudioLDM pipeline: tokenizer, VAE, vocoder, then text encoder + UNet.

All components are the real transformers / diffusers classes of ``AudioLDMPipeline`` at tiny sizes:
a ``RobertaTokenizer`` written from local files, ``ClapTextModelWithProjection``, a 1-channel
``AutoencoderKL`` on ``[B, 1, 64, 32]`` log-mels (latents ``[B, 4, 16, 8]``), a ``SpeechT5HifiGan``
vocoder (hop 256 = 8·8·4) and a ``UNet2DConditionModel`` conditioned AudioLDM-style: the
L2-normalised CLAP text embedding enters as a ``simple_projection`` class embedding concatenated to
the time embedding (no cross-attention). See reference/toy-feasibility.md for the prototype.

The vocoder has no discriminator (mel L1 + multi-resolution STFT losses): it needs to get the
pitch and the spectral envelope right, not studio phase. It is trained on a mix of true and
VAE-reconstructed log-mels, so that it tolerates the decoder's smoothing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diffalign.losses.denoising import min_snr_weight
from diffalign.rewards._tokenizers import byte_level_chars
from diffalign.toy.common import learn_merges
from diffalign.toy.audio.world import HOP, N_MELS, TonesWorld, log_mel, toy_words

# AudioLDM's training noise schedule (scaled-linear betas 0.0015..0.0195)
NOISE_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear"}
LATENT_CHANNELS = 4
MEL_FRAMES = 64  # frames per 1.024 s clip


# ------------------------------------------------------------------------------------------ tokenizer
def build_tokenizer(folder: str | Path, model_max_length: int = 16):
    """A byte-level ``RobertaTokenizer`` from local files in which every grammar word (after a space) is one token.

    Vocabulary: ``<s> <pad> </s> <unk>``, the 256 byte characters, the merged words, ``<mask>``.

    Returns:
        RobertaTokenizer: loaded from ``folder`` (``vocab.json`` + ``merges.txt``).
    """
    from transformers import RobertaTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = learn_merges({w: list("Ġ" + w) for w in toy_words()})
    toks = ["<s>", "<pad>", "</s>", "<unk>", *byte_level_chars(), *("".join(m) for m in merges), "<mask>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(toks)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tok = RobertaTokenizer.from_pretrained(folder, model_max_length=model_max_length)
    if len(tok) <= 5:
        raise RuntimeError(f"toy tokenizer in {folder} came out empty")
    return tok


# ------------------------------------------------------------------------------------------ settings
@dataclass
class VAEConfig:
    """AutoencoderKL on log-mels ``[B, 1, 64, 32]`` -> latents ``[B, 4, 16, 8]``.

    Args:
        channels (tuple): block widths (3 levels = 2 downsamplings).
        steps (int): optimiser steps (random batches of the rendered pool).
        batch (int): clips per step.
        lr (float): peak AdamW learning rate (cosine to lr / 20).
        kl_weight (float): KL weight (tiny: a near-deterministic autoencoder).
    """

    channels: tuple[int, ...] = (16, 32, 32)
    steps: int = 300
    batch: int = 16
    lr: float = 2e-3
    kl_weight: float = 1e-6


@dataclass
class VocoderConfig:
    """SpeechT5HifiGan training (mel L1 + multi-resolution STFT; optionally HiFi-GAN's multi-period discriminator).

    Args:
        initial_channels (int): ``upsample_initial_channel`` (halved after each upsampling).
        upsample_rates (tuple): product = hop (256). The first stage's rate (here 16000 / 2 = 8 kHz) should lie
            above every fundamental and most partials: 8·8·4 (a 500 Hz first stage) left mid-band tones with no
            fundamental, only a comb at multiples of 500 Hz (README "Audio").
        resblock_kernels (tuple): kernel sizes of the multi-receptive-field fusion blocks.
        steps (int): optimiser steps.
        batch (int): segments per step.
        segment_frames (int): mel frames per training segment (8 frames = 0.128 s).
        lr (float): peak AdamW learning rate (cosine to lr / 10).
        vae_input_share (float): share of segments whose input mel is the VAE's reconstruction.
        stft_sizes (tuple): window lengths of the multi-resolution STFT loss (hop = n_fft / 4).
        adv_weight (float): weight of HiFi-GAN's multi-period discriminator terms (adversarial + 2 × feature
            matching, :mod:`diffalign.toy.audio.discriminator`); 0 trains without a discriminator. Probed at 128
            channels × 3,000 steps (README "Audio"): weights 1 and 0.1 both lowered the round-trip band accuracy.
        adv_start (int): the step at which the discriminator starts (the generator first learns the envelope).
        stft_floor (float): magnitude floor of the STFT loss's log term. A tone's spectrum is a few partials in
            a thousand near-empty bins; with a tiny floor the log term is spent on the empty bins' noise.
        stft_rel_floor (float): a second, per-frame floor of the log term at this fraction of the target frame's
            peak magnitude (0 = off): loud and quiet clips then get the same dynamic range in the loss.
        mel_weight (float): weight of the log-mel L1 term beside the STFT loss (HiFi-GAN weights its mel term 45;
            5 lowered the round-trip band accuracy here).
    """

    initial_channels: int = 64
    upsample_rates: tuple[int, ...] = (128, 2)
    resblock_kernels: tuple[int, ...] = (3, 7)
    steps: int = 1500
    batch: int = 16
    segment_frames: int = 8
    lr: float = 2e-3
    vae_input_share: float = 0.5
    stft_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    adv_weight: float = 0.0
    adv_start: int = 0
    stft_floor: float = 0.1
    stft_rel_floor: float = 0.0
    mel_weight: float = 1.0


@dataclass
class UNetConfig:
    """Text encoder + UNet training.

    Args:
        channels (tuple): UNet block widths.
        layers_per_block (int): ResNet layers per block.
        text_width (int): CLAP text hidden size.
        text_layers (int): CLAP text layers.
        projection_dim (int): CLAP text projection (the UNet's class-embedding input).
        steps (int): optimiser steps.
        batch (int): latents per step.
        lr (float): peak AdamW learning rate (50-step warm-up, cosine to lr / 10).
        caption_dropout (float): share of captions replaced by "" (classifier-free guidance).
        ema_decay (float): EMA of the saved weights.
        min_snr_gamma (float): Min-SNR-γ weighting (arXiv:2303.09556); 0 turns it off.
        prediction_type (str): ``"v_prediction"`` (Salimans & Ho, arXiv:2202.00512) or ``"epsilon"``. A small,
            briefly trained ε-model over-shoots at high noise (its x0 error is amplified by 1/√ᾱ_t): sampling
            drifted off the latent manifold in our runs; v-prediction keeps the high-noise steps stable.
        text_pretrain_steps (int): steps of attribute classification that pre-train the text encoder
            (:func:`pretrain_text_encoder`, a stand-in for CLAP's contrastive pre-training).
        freeze_text (bool): keep the pre-trained text encoder frozen while the UNet trains, as AudioLDM
            freezes CLAP. Trained jointly from scratch, its pooled embeddings stayed near-identical across
            prompts (cosine 0.9999) and the UNet ignored them.
    """

    channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    text_width: int = 64
    text_layers: int = 2
    projection_dim: int = 32
    steps: int = 300  # 1500 steps gave 93% held-out band accuracy: no headroom left (see audio_build)
    batch: int = 32
    lr: float = 1e-3
    caption_dropout: float = 0.1
    ema_decay: float = 0.995
    min_snr_gamma: float = 5.0
    prediction_type: str = "v_prediction"
    text_pretrain_steps: int = 300
    freeze_text: bool = True


def _cosine_lr(step: int, total: int, warmup: int, floor: float) -> float:
    """Multiplier of the peak lr: linear warm-up, then cosine from 1 to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def render_mels(world: TonesWorld, prompts: list[str], seed: int, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders clips for ``prompts``: waveforms ``[N, T]`` and log-mels ``[N, 64, 32]``."""
    rng = np.random.default_rng(seed)
    waves, mels = [], []
    for i in range(0, len(prompts), chunk):
        w, _ = world.render_prompts(prompts[i : i + chunk], rng)
        w = torch.from_numpy(w)
        waves.append(w)
        mels.append(log_mel(w))
    return torch.cat(waves), torch.cat(mels)


# ------------------------------------------------------------------------------------------ VAE
def make_vae(cfg: VAEConfig, seed: int):
    """A fresh 1-channel AutoencoderKL (scale factor 4)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(cfg.channels)
    return AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=LATENT_CHANNELS, block_out_channels=cfg.channels,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=1, norm_num_groups=8, sample_size=MEL_FRAMES,
    )


def train_vae(vae, mels: torch.Tensor, cfg: VAEConfig, seed: int, log: Callable[[str], None] = print) -> dict:
    """L1 reconstruction of log-mels ``[N, 64, 32]`` (+ tiny KL); returns the last-50-step loss and wall time."""
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    vae.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _cosine_lr(step, cfg.steps, 20, 0.05)
        x = mels[torch.randint(len(mels), (cfg.batch,), generator=gen)][:, None]  # [B, 1, 64, 32]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        loss = (rec - x).abs().mean() + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0:
            log(f"vae step {step}: loss {np.mean(losses[-100:]):.4f}")
    vae.eval()
    return {"loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0, "steps": cfg.steps}


@torch.no_grad()
def encode_mels(vae, mel: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Posterior means of ``[N, 64, 32]`` log-mels: ``[N, 4, 16, 8]`` (unscaled)."""
    return torch.cat([vae.encode(mel[i : i + batch, None]).latent_dist.mean for i in range(0, len(mel), batch)])


@torch.no_grad()
def reconstruct_mels(vae, mel: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """VAE round trip of ``[N, 64, 32]`` log-mels through the posterior mean."""
    return torch.cat([vae.decode(vae.encode(mel[i : i + batch, None]).latent_dist.mean).sample[:, 0]
                      for i in range(0, len(mel), batch)])


# ------------------------------------------------------------------------------------------ vocoder
def make_vocoder(cfg: VocoderConfig, mel_mean: torch.Tensor, mel_std: torch.Tensor, seed: int):
    """A fresh SpeechT5HifiGan whose input normalisation uses the training log-mel statistics."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    if math.prod(cfg.upsample_rates) != HOP:
        raise ValueError(f"vocoder upsample_rates {cfg.upsample_rates} must multiply to the hop {HOP}")
    torch.manual_seed(seed)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=N_MELS, sampling_rate=16000, upsample_initial_channel=cfg.initial_channels,
        upsample_rates=list(cfg.upsample_rates), upsample_kernel_sizes=[2 * r for r in cfg.upsample_rates],
        resblock_kernel_sizes=list(cfg.resblock_kernels), resblock_dilation_sizes=[[1, 3, 5]] * len(cfg.resblock_kernels),
        normalize_before=True,
    ))
    voc.mean.copy_(mel_mean)
    voc.scale.copy_(mel_std)
    return voc


def _stft_loss(pred: torch.Tensor, target: torch.Tensor, sizes: tuple[int, ...] = (256, 512, 1024, 2048),
               floor: float = 1e-6, rel_floor: float = 0.0) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log-magnitude L1), Parallel WaveGAN eq. (4)-(6).

    Hop = n_fft / 4. The long windows resolve single partials of low tones: without them the vocoder
    settles for a buzz at the frame rate (16000 / 256 = 62.5 Hz and its multiples) under the right envelope.
    """
    total = pred.new_zeros(())
    for n_fft, hop in ((n, n // 4) for n in sizes):
        win = torch.hann_window(n_fft, device=pred.device)
        p = torch.stft(pred, n_fft, hop, window=win, return_complex=True).abs().clamp_min(floor)
        t = torch.stft(target, n_fft, hop, window=win, return_complex=True).abs().clamp_min(floor)  # [B, F, frames]
        sc = torch.linalg.norm(t - p) / torch.linalg.norm(t)
        if rel_floor > 0:  # a second floor per frame: rel_floor × the target frame's peak
            lo = rel_floor * t.amax(dim=1, keepdim=True)
            p, t = torch.maximum(p, lo), torch.maximum(t, lo)
        total = total + sc + (p.log() - t.log()).abs().mean()
    return total / len(sizes)


def train_vocoder(voc, vae, waves: torch.Tensor, mels: torch.Tensor, cfg: VocoderConfig, seed: int,
                  log: Callable[[str], None] = print) -> dict:
    """Trains the vocoder on random segments of pre-rendered clips.

    Args:
        waves (torch.Tensor): ``[N, T]`` clips.
        mels (torch.Tensor): ``[N, 64, 32]`` their log-mels.
        vae: the trained VAE (its reconstructions are a share of the inputs), or None.

    Returns:
        dict: last-50-step loss, wall time, steps.
    """
    recon = reconstruct_mels(vae, mels) if vae is not None and cfg.vae_input_share > 0 else mels
    opt = torch.optim.AdamW(voc.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    seg = cfg.segment_frames
    voc.train()
    disc = d_opt = None
    if cfg.adv_weight > 0:
        from .discriminator import MultiPeriodDiscriminator, discriminator_loss, generator_adv_loss

        torch.manual_seed(seed + 1)
        disc = MultiPeriodDiscriminator()
        d_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=1e-4)
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _cosine_lr(step, cfg.steps, 20, 0.1)
        idx = torch.randint(len(mels), (cfg.batch,), generator=gen)
        start = torch.randint(0, mels.shape[1] - seg + 1, (cfg.batch,), generator=gen)
        use_rec = torch.rand(cfg.batch, generator=gen) < cfg.vae_input_share
        src = torch.where(use_rec[:, None, None], recon[idx], mels[idx])  # [B, 64, 32]
        x = torch.stack([src[b, s : s + seg] for b, s in enumerate(start.tolist())])  # [B, seg, 32]
        y = torch.stack([waves[i, s * HOP : (s + seg) * HOP] for i, s in zip(idx.tolist(), start.tolist())])
        pred = voc(x)  # [B, seg * HOP]
        mel_target = mels[idx][torch.arange(cfg.batch)[:, None], start[:, None] + torch.arange(seg)]  # true mel
        mel_loss = (log_mel(pred)[:, 1:-1] - mel_target[:, 1:-1]).abs().mean()  # edge frames see padding
        loss = cfg.mel_weight * mel_loss + _stft_loss(pred, y, cfg.stft_sizes, cfg.stft_floor, cfg.stft_rel_floor)
        if disc is not None and step >= cfg.adv_start:
            d_loss = discriminator_loss(disc(y), disc(pred.detach()))  # HiFi-GAN: D step, then G step
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            loss = loss + cfg.adv_weight * generator_adv_loss(disc(y), disc(pred))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(voc.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0:
            log(f"vocoder step {step}: loss {np.mean(losses[-100:]):.4f}")
    voc.eval()
    return {"loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0, "steps": cfg.steps}


@torch.no_grad()
def vocode(voc, mels: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Waveforms ``[N, 64 * 256]`` of log-mels ``[N, 64, 32]``."""
    return torch.cat([voc(mels[i : i + batch]) for i in range(0, len(mels), batch)])


# ------------------------------------------------------------------------------------------ text + UNet
def make_text_unet(cfg: UNetConfig, tokenizer, seed: int):
    """Fresh ClapTextModelWithProjection and UNet2DConditionModel (AudioLDM conditioning)."""
    from diffusers import UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    torch.manual_seed(seed)
    text_encoder = ClapTextModelWithProjection(ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_width, intermediate_size=2 * cfg.text_width,
        num_hidden_layers=cfg.text_layers, num_attention_heads=4, projection_dim=cfg.projection_dim,
        max_position_embeddings=tokenizer.model_max_length + 2, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    ))
    torch.manual_seed(seed + 1)
    n = len(cfg.channels)
    unet = UNet2DConditionModel(
        sample_size=MEL_FRAMES // 4, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=cfg.channels, layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * n, up_block_types=("UpBlock2D",) * n,
        mid_block_type="UNetMidBlock2D", attention_head_dim=16, norm_num_groups=16,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=cfg.projection_dim,
        class_embeddings_concat=True, resnet_time_scale_shift="scale_shift",
    )
    return text_encoder, unet


def encode_text(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """The pipeline's conditioning: L2-normalised ``text_embeds`` ``[B, projection_dim]`` (as ``_encode_prompt``)."""
    enc = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt")
    out = text_encoder(enc.input_ids, attention_mask=enc.attention_mask).text_embeds
    return F.normalize(out, dim=-1)


def pretrain_text_encoder(text_encoder, tokenizer, prompts: list[str], steps: int, seed: int, lr: float = 1e-3,
                          log: Callable[[str], None] = print) -> dict:
    """Pre-trains the CLAP text tower to tell the caption's band, timbre and loudness apart.

    Three linear heads on the pipeline's conditioning (the L2-normalised ``text_embeds``, × 10) are
    trained with cross-entropy on the attributes parsed from each caption (loudness: quiet / loud /
    unstated); the heads are then discarded. A stand-in for CLAP's contrastive pre-training that
    costs seconds.

    Returns:
        dict: final loss, attribute accuracy on all prompts, wall time.
    """
    from diffalign.toy.audio.world import BANDS, LOUDNESS, TIMBRES, parse_prompt

    parsed = [parse_prompt(p) for p in prompts]
    labels = torch.tensor([[list(BANDS).index(p.band), list(TIMBRES).index(p.timbre),
                            len(LOUDNESS) if p.loudness is None else list(LOUDNESS).index(p.loudness)] for p in parsed])
    dim = text_encoder.config.projection_dim
    torch.manual_seed(seed)
    heads = torch.nn.ModuleList([torch.nn.Linear(dim, 3), torch.nn.Linear(dim, len(TIMBRES)),
                                 torch.nn.Linear(dim, len(LOUDNESS) + 1)])
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    gen = torch.Generator().manual_seed(seed)
    text_encoder.train()
    t0, losses = time.time(), []
    for step in range(steps):
        idx = torch.randint(len(prompts), (64,), generator=gen)
        e = 10.0 * encode_text(text_encoder, tokenizer, [prompts[i] for i in idx.tolist()])  # [64, P]
        loss = sum(F.cross_entropy(h(e), labels[idx, k]) for k, h in enumerate(heads))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    text_encoder.eval()
    with torch.no_grad():
        e = 10.0 * encode_text(text_encoder, tokenizer, prompts)
        acc = torch.stack([(h(e).argmax(-1) == labels[:, k]) for k, h in enumerate(heads)]).float().mean(dim=1)
    out = {"loss": float(np.mean(losses[-20:])), "attribute_accuracy": acc.tolist(), "seconds": time.time() - t0,
           "steps": steps}
    log(f"text pre-training: loss {out['loss']:.3f}, band/timbre/loudness accuracy {acc.tolist()}")
    return out


def train_text_unet(text_encoder, unet, tokenizer, latents: torch.Tensor, prompts: list[str], cfg: UNetConfig,
                    seed: int, log: Callable[[str], None] = print) -> dict:
    """Trains text encoder and UNet jointly (v- or ε-prediction), then loads their EMA weights.

    Args:
        latents (torch.Tensor): ``[N, 4, 16, 8]`` scaled latents.
        prompts (list[str]): N captions.

    Returns:
        dict: mean loss of the last 100 steps, wall time, steps.
    """
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    sched = DDPMScheduler(**NOISE_SCHEDULE, prediction_type=cfg.prediction_type)
    unique = sorted(set(prompts) | {""})
    index = {p: i for i, p in enumerate(unique)}
    prompt_idx = torch.tensor([index[p] for p in prompts])  # [N]
    empty = index[""]
    params = list(unet.parameters()) + ([] if cfg.freeze_text else list(text_encoder.parameters()))
    text_encoder.requires_grad_(not cfg.freeze_text)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(seed)
    unet.train()
    text_encoder.train(not cfg.freeze_text)
    if cfg.freeze_text:  # embeddings of every caption once
        with torch.no_grad():
            table = encode_text(text_encoder, tokenizer, unique)  # [U, P]
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _cosine_lr(step, cfg.steps, 50, 0.1)
        idx = torch.randint(len(latents), (cfg.batch,), generator=gen)
        x0 = latents[idx]  # [B, 4, 16, 8]
        drop = torch.rand(cfg.batch, generator=gen) < cfg.caption_dropout
        pid = torch.where(drop, torch.full_like(prompt_idx[idx], empty), prompt_idx[idx])  # [B]
        if cfg.freeze_text:
            cond = table[pid]  # [B, P]
        else:
            used, inverse = pid.unique(return_inverse=True)
            cond = encode_text(text_encoder, tokenizer, [unique[i] for i in used.tolist()])[inverse]  # [B, P]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.batch,), generator=gen)
        x_t = sched.add_noise(x0, noise, t)
        pred = unet(x_t, t, encoder_hidden_states=None, class_labels=cond).sample
        target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        err = (pred - target).pow(2).mean(dim=(1, 2, 3))  # [B]
        if cfg.min_snr_gamma > 0:  # Min-SNR-γ (the loss core's weight for ε- or v-targets)
            err = err * min_snr_weight(sched, t, cfg.min_snr_gamma, cfg.prediction_type)
        loss = err.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.step(params)
        losses.append(loss.item())
        if step % 100 == 0:
            log(f"unet step {step}: loss {np.mean(losses[-100:]):.4f} ({time.time() - t0:.0f} s)")
    ema.copy_to(params)
    unet.eval()
    text_encoder.eval()
    text_encoder.requires_grad_(True)
    return {"loss": float(np.mean(losses[-100:])), "seconds": time.time() - t0, "steps": cfg.steps}


def assemble_pipeline(vae, text_encoder, tokenizer, unet, vocoder, prediction_type: str = "v_prediction"):
    """An ``AudioLDMPipeline`` with a DDIM scheduler on the training noise schedule and prediction type."""
    import warnings

    from diffusers import DDIMScheduler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from diffusers import AudioLDMPipeline

    scheduler = DDIMScheduler(**NOISE_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            scheduler=scheduler, vocoder=vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
