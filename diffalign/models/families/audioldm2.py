"""AudioLDM 2: text-to-audio latent diffusion with a "language of audio" (Liu et al., arXiv 2308.05734).

What ``AudioLDM2Pipeline`` (diffusers) does, and therefore what training must do (§3 of the paper):

* **text** — two encoders: CLAP's ``get_text_features`` ``[B, 1, D_clap]`` and T5 (or VITS for TTS)
  states ``[B, L, D_t5]``; ``AudioLDM2ProjectionModel`` projects both to the GPT-2 width and
  concatenates them (with learned start/end tokens); GPT-2 then *generates* 8 new hidden states
  ``[B, 8, D_lm]`` (the "AudioMAE" sequence, eq. 5). We call the pipeline's own ``encode_prompt``.
* **U-Net** — ``AudioLDM2UNet2DConditionModel`` with two cross-attention streams:
  ``encoder_hidden_states`` = the generated states, ``encoder_hidden_states_1`` = the T5 states with
  ``encoder_attention_mask_1``. The T5 states are padded to ``tokenizer_2.model_max_length`` (mask 0),
  so every prompt has the same shape (cacheable, batchable); masked keys change nothing.
* **samples** — as AudioLDM: waveform → log-mel ``[1, frames, mels]`` → VAE latents; decoding goes
  through the VAE and ``SpeechT5HifiGan`` (``AudioLDM`` methods, inherited).

diffusers' AudioLDM 2 U-Net has no PEFT adapter support (no ``add_adapter``): this family trains
fully (``model.lora: null``) and says so in one line otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..denoiser import Conditioning
from ..loading import safe_from_pretrained
from .audioldm import AudioLDM
from .base import DTYPES, Components, training_scheduler
from .mel import MelConfig

__all__ = ["AudioLDM2"]


class AudioLDM2(AudioLDM):
    name = "audioldm2"
    pipeline_class_name = "AudioLDM2Pipeline"
    text_encoders = (("tokenizer", "text_encoder", "ClapModel"), ("tokenizer_2", "text_encoder_2", "T5EncoderModel"))
    text_fields = ("encoder_hidden_states", "encoder_hidden_states_1", "encoder_attention_mask_1")
    supports_lora = False

    def load(self, root: str, vae: str | None = None, dtype: str = "float32", vae_dtype: str = "float32",
             prediction_type: str = "auto", trust_pickle: bool = False) -> Components:
        """U-Net, VAE, both text encoders, the projection model, GPT-2, the vocoder and the mel front-end
        (safetensors only unless ``trust_pickle``)."""
        import transformers
        from diffusers import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL
        from transformers import AutoTokenizer, SpeechT5HifiGan

        tp, idx = trust_pickle, json.loads((Path(root) / "model_index.json").read_text())
        for sub in ("unet", "vae", "text_encoder", "text_encoder_2", "projection_model", "language_model", "vocoder"):
            if not (Path(root) / sub).is_dir():
                raise FileNotFoundError(f"{root}: family 'audioldm2' needs a {sub}/ folder")

        def tf(sub):  # the transformers class the pipeline names (T5EncoderModel or VitsModel; GPT2 variants)
            return getattr(transformers, idx[sub][1])

        unet = safe_from_pretrained(AudioLDM2UNet2DConditionModel, root, "model.path", "unet", tp)
        vae_model = safe_from_pretrained(AutoencoderKL, vae or root, "model.vae" if vae else "model.path",
                                         None if vae else "vae", tp, torch_dtype=DTYPES[vae_dtype])
        encs = [safe_from_pretrained(tf(s), root, "model.path", s, tp, dtype=DTYPES[dtype])
                for s in ("text_encoder", "text_encoder_2")]
        toks = [AutoTokenizer.from_pretrained(root, subfolder=s) for s in ("tokenizer", "tokenizer_2")]
        extras = {
            "projection_model": safe_from_pretrained(AudioLDM2ProjectionModel, root, "model.path", "projection_model", tp),
            "language_model": safe_from_pretrained(tf("language_model"), root, "model.path", "language_model", tp),
            "vocoder": safe_from_pretrained(SpeechT5HifiGan, root, "model.path", "vocoder", tp),
        }
        extras["mel"] = MelConfig.of_pipeline(root, extras["vocoder"].config)
        scheduler, pt = training_scheduler(root, prediction_type)
        for m in (vae_model, *encs, *(v for v in extras.values() if isinstance(v, torch.nn.Module))):
            m.requires_grad_(False).eval()
        return Components(self, str(root), unet, vae_model, encs, toks, scheduler, pt, extras)

    def pipeline_parts(self, comp: Components) -> dict:
        e = comp.extras
        return {"vae": comp.vae.float(), "tokenizer": comp.tokenizers[0], "text_encoder": comp.text_encoders[0],
                "tokenizer_2": comp.tokenizers[1], "text_encoder_2": comp.text_encoders[1],
                "projection_model": e["projection_model"], "language_model": e["language_model"],
                "vocoder": e["vocoder"]}

    def save_lora(self, unet: torch.nn.Module, path: str | Path) -> Path:
        raise ValueError("model.lora: diffusers' AudioLDM 2 U-Net has no adapter support; train it fully "
                         "(model.lora: null)")

    def load_lora(self, pipe, folder: str | Path) -> None:
        self.save_lora(pipe.unet, folder)

    def sample_latents(self, pipe, prompts: list[str], generators: list, guidance_scale: float,
                       num_inference_steps: int) -> torch.Tensor:
        """The sampler's final latents ``[N, C, h, w]`` (``output_type="latent"``); each sample's
        starting noise comes from its generator."""
        noise = torch.stack([torch.randn(self.latent_shape(pipe), generator=g) for g in generators])
        out = pipe(prompts, generator=generators, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                   latents=noise.to(pipe.unet.device, pipe.unet.dtype), output_type="latent")
        return out.audios.float().cpu()

    # ---- conditioning -------------------------------------------------------------------------
    def _encoder_pipe(self, comp: Components):
        """An ``AudioLDM2Pipeline`` of the text parts only (its ``encode_prompt`` is the reference)."""
        pipe = comp.extras.get("_text_pipe")
        if pipe is None:
            from diffusers import AudioLDM2Pipeline

            parts = self.pipeline_parts(comp)
            pipe = AudioLDM2Pipeline(**parts, feature_extractor=None, unet=None, scheduler=comp.scheduler)
            comp.extras["_text_pipe"] = pipe
        return pipe

    @torch.no_grad()
    def encode_prompts(self, comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
        device = device or comp.unet.device
        enc_dev = comp.text_encoders[0].device
        t5, mask, generated = self._encoder_pipe(comp).encode_prompt(prompts, enc_dev, 1, False)
        length = int(comp.tokenizers[1].model_max_length)
        pad = max(0, length - t5.shape[1])  # a fixed length: T5 pads to the longest prompt of the batch
        t5 = F.pad(t5, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad))
        return {"encoder_hidden_states": generated.float().to(device), "encoder_hidden_states_1": t5.float().to(device),
                "encoder_attention_mask_1": mask.float().to(device)}

    def conditioning(self, text: dict[str, torch.Tensor], time_ids: torch.Tensor | None) -> Conditioning:
        return Conditioning(encoder_hidden_states=text["encoder_hidden_states"],
                            encoder_hidden_states_1=text["encoder_hidden_states_1"],
                            encoder_attention_mask_1=text["encoder_attention_mask_1"])
