"""Model families: Stable Diffusion 1.5/2.x and SDXL components from a diffusers pipeline folder.

* ``sd``   — one CLIP text encoder; the U-Net sees its last hidden states ``[B, 77, D]``.
* ``sdxl`` — two text encoders (CLIP-L, OpenCLIP-bigG): penultimate hidden states of both
  concatenated ``[B, 77, D1 + D2]``, the pooled projection of the second ``[B, D2]``, and the
  micro-conditioning ``add_time_ids = (orig_h, orig_w, crop_top, crop_left, target_h, target_w)``
  from each image's real size and crop (Podell et al., arXiv 2307.01952 §2.2; diffusers PR #6668).
  The VAE runs in fp32 by default (the SDXL VAE gives NaNs in fp16; methods.md §7 #6).

Training uses a ``DDPMScheduler`` built from the pipeline's scheduler config (same betas and
``prediction_type``), whatever sampler the pipeline ships with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .loading import resolve_pretrained

__all__ = ["FAMILIES", "Components", "detect_family", "load_components", "encode_prompts", "empty_conditioning",
           "encode_images", "time_ids", "pipeline_class"]

FAMILIES = ("sd", "sdxl")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pipeline_class(family: str):
    """``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline``."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline


def detect_family(path: str | Path) -> str:
    """``sdxl`` when the folder holds a second text encoder (or names an XL pipeline), else ``sd``."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
    info = json.loads(index.read_text())
    if "XL" in info.get("_class_name", "") or (info.get("text_encoder_2") or [None])[0]:
        return "sdxl"
    return "sd"


@dataclass
class Components:
    """The parts of a text-to-image pipeline that training touches.

    Attributes:
        family (str): ``sd`` or ``sdxl``. path (str): the local pipeline folder.
        unet, vae: diffusers models. text_encoders, tokenizers (list): one (sd) or two (sdxl).
        scheduler: a ``DDPMScheduler`` for training (the pipeline's betas and prediction type).
        prediction_type (str): ``epsilon``, ``v_prediction`` or ``sample``.
    """

    family: str
    path: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list = field(default_factory=list)
    tokenizers: list = field(default_factory=list)
    scheduler: object = None
    prediction_type: str = "epsilon"

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)


def load_components(
    path: str,
    family: str = "auto",
    vae: str | None = None,
    dtype: str = "float32",
    vae_dtype: str = "float32",
    prediction_type: str = "auto",
) -> Components:
    """Load U-Net, VAE, text encoders, tokenizers and the training scheduler of a pipeline.

    Args:
        path (str): local pipeline folder or a hub id already in the HF cache.
        family (str): ``auto`` (from the folder), ``sd`` or ``sdxl``.
        vae (str | None): another VAE folder / id (e.g. ``madebyollin/sdxl-vae-fp16-fix``).
        dtype (str): dtype of the frozen text encoders (the U-Net is loaded in fp32; accelerate's
            mixed precision handles compute). vae_dtype (str): VAE dtype, fp32 by default.
        prediction_type (str): ``auto`` reads the scheduler config; else overrides it.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    root = resolve_pretrained(path, "model.path")
    fam = detect_family(root) if family == "auto" else family
    if fam not in FAMILIES:
        raise ValueError(f"model.family must be one of {FAMILIES} or auto, got {family!r}")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
    vae_kw = {"torch_dtype": _DTYPES[vae_dtype]}
    vae_model = (
        AutoencoderKL.from_pretrained(resolve_pretrained(vae, "model.vae"), **vae_kw)
        if vae
        else AutoencoderKL.from_pretrained(root, subfolder="vae", **vae_kw)
    )
    subs = [("tokenizer", "text_encoder", CLIPTextModel)]
    if fam == "sdxl":
        subs.append(("tokenizer_2", "text_encoder_2", CLIPTextModelWithProjection))
    toks, encs = [], []
    for tok_sub, enc_sub, cls in subs:
        if not (Path(root) / enc_sub).is_dir():
            raise FileNotFoundError(f"{root}: family {fam!r} needs a {enc_sub}/ folder")
        toks.append(AutoTokenizer.from_pretrained(root, subfolder=tok_sub))
        encs.append(cls.from_pretrained(root, subfolder=enc_sub, dtype=_DTYPES[dtype]))
    scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    pt = scheduler.config.prediction_type if prediction_type == "auto" else prediction_type
    if pt != scheduler.config.prediction_type:
        scheduler = DDPMScheduler.from_config(scheduler.config, prediction_type=pt)
    for m in (vae_model, *encs):
        m.requires_grad_(False).eval()
    return Components(fam, str(root), unet, vae_model, encs, toks, scheduler, pt)


@torch.no_grad()
def encode_prompts(comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
    """Text conditioning of prompts, as the diffusers pipelines compute it.

    Returns:
        dict: ``encoder_hidden_states`` ``[B, L, D]``; for sdxl also ``text_embeds`` ``[B, D2]``.
    """
    device = device or comp.unet.device
    states, pooled = [], None
    for tok, enc in zip(comp.tokenizers, comp.text_encoders):
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(enc.device)
        if comp.family == "sd":
            states.append(enc(ids)[0])  # last hidden state [B, L, D]
        else:
            out = enc(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])  # penultimate layer [B, L, D_i]
            pooled = out[0]  # the last encoder's pooled projection [B, D2]
    out = {"encoder_hidden_states": torch.cat(states, dim=-1).to(device)}
    if comp.family == "sdxl":
        out["text_embeds"] = pooled.to(device)
    return out


def empty_conditioning(comp: Components, device=None) -> dict[str, torch.Tensor]:
    """The unconditional input the pipeline uses for classifier-free guidance (caption dropout).

    The encoding of ``""``; zeros for an SDXL pipeline with ``force_zeros_for_empty_prompt``
    (what ``StableDiffusionXLPipeline`` feeds as the negative prompt), so training drops captions
    to the same input inference guides with.
    """
    out = encode_prompts(comp, [""], device)
    info = json.loads((Path(comp.path) / "model_index.json").read_text())
    if comp.family == "sdxl" and info.get("force_zeros_for_empty_prompt", True):
        out = {k: torch.zeros_like(v) for k, v in out.items()}
    return out


@torch.no_grad()
def encode_images(comp: Components, pixels: torch.Tensor) -> torch.Tensor:
    """VAE posterior means × scaling factor: ``[N, 3, H, W]`` in [−1, 1] → ``[N, C, H/f, W/f]`` fp32.

    The mean (not a posterior sample) is used on both the cached and the uncached path, so the
    two train on identical latents.
    """
    vae = comp.vae
    x = pixels.to(device=vae.device, dtype=vae.dtype)
    lat = vae.encode(x).latent_dist.mean
    shift = vae.config.shift_factor or 0.0
    return ((lat - shift) * comp.vae_scale).float()


def time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]) -> torch.Tensor:
    """SDXL micro-conditioning of one image: ``[6]`` = original (h, w), crop (top, left), target (h, w)."""
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)
