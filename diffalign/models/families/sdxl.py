"""SDXL: two text encoders (CLIP-L, OpenCLIP-bigG) and micro-conditioning.

The U-Net sees the penultimate hidden states of both encoders concatenated ``[B, 77, D1 + D2]``,
the pooled projection of the second ``[B, D2]`` and ``add_time_ids = (orig_h, orig_w, crop_top,
crop_left, target_h, target_w)`` from each image's real size and crop (Podell et al., arXiv
2307.01952 §2.2; diffusers PR #6668 — not the fixed ``(res, res, 0, 0, res, res)`` of the
official Diffusion-DPO code, methods.md §7 #4). The VAE runs in fp32 by default (the SDXL VAE
gives NaNs in fp16; methods.md §7 #6).
"""

from __future__ import annotations

import torch

from ..denoiser import Conditioning
from .base import Components, Family

__all__ = ["SDXL"]


class SDXL(Family):
    name = "sdxl"
    pipeline_class_name = "StableDiffusionXLPipeline"
    text_encoders = (("tokenizer", "text_encoder", "CLIPTextModel"),
                     ("tokenizer_2", "text_encoder_2", "CLIPTextModelWithProjection"))
    text_fields = ("encoder_hidden_states", "text_embeds")

    @torch.no_grad()
    def encode_prompts(self, comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
        device = device or comp.unet.device
        states, pooled = [], None
        for tok, enc in zip(comp.tokenizers, comp.text_encoders):
            ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                      return_tensors="pt").input_ids.to(enc.device)
            out = enc(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])  # penultimate layer [B, L, D_i]
            pooled = out[0]  # the last encoder's pooled projection [B, D2]
        return {"encoder_hidden_states": torch.cat(states, dim=-1).to(device), "text_embeds": pooled.to(device)}

    def empty_conditioning(self, comp: Components, device=None) -> dict[str, torch.Tensor]:
        """Zeros for a pipeline with ``force_zeros_for_empty_prompt`` (what
        ``StableDiffusionXLPipeline`` feeds as the negative prompt), else the encoding of ``""``."""
        out = self.encode_prompts(comp, [""], device)
        if self.model_index(comp).get("force_zeros_for_empty_prompt", True):
            out = {k: torch.zeros_like(v) for k, v in out.items()}
        return out

    def conditioning(self, text: dict[str, torch.Tensor], time_ids: torch.Tensor | None) -> Conditioning:
        if time_ids is None:
            raise ValueError("sdxl conditioning needs each image's time ids (original size, crop, target size)")
        return Conditioning(text["encoder_hidden_states"], text["text_embeds"], time_ids)
