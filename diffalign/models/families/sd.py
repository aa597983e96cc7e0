"""Stable Diffusion 1.x / 2.x: one CLIP text encoder; the U-Net sees its last hidden states
``[B, 77, D]`` (``StableDiffusionPipeline.encode_prompt`` with ``clip_skip=None``)."""

from __future__ import annotations

import torch

from ..denoiser import Conditioning
from .base import Components, Family

__all__ = ["SD"]


class SD(Family):
    name = "sd"
    pipeline_class_name = "StableDiffusionPipeline"
    text_encoders = (("tokenizer", "text_encoder", "CLIPTextModel"),)
    text_fields = ("encoder_hidden_states",)

    @torch.no_grad()
    def encode_prompts(self, comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
        device = device or comp.unet.device
        tok, enc = comp.tokenizers[0], comp.text_encoders[0]
        ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(enc.device)
        return {"encoder_hidden_states": enc(ids)[0].to(device)}  # last hidden state [B, L, D]

    def conditioning(self, text: dict[str, torch.Tensor], time_ids: torch.Tensor | None) -> Conditioning:
        return Conditioning(text["encoder_hidden_states"])
