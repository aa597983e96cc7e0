"""AudioLDM: text-to-audio latent diffusion on log-mel "images" (Liu et al., arXiv 2301.12503).

What ``AudioLDMPipeline`` (diffusers) does, and therefore what training must do:

* **text** — CLAP's text tower (``ClapTextModelWithProjection``) gives ``text_embeds`` ``[B, D]``,
  L2-normalised (``F.normalize(dim=-1)``); the unconditional input is the embedding of ``""``.
* **U-Net** — ``UNet2DConditionModel`` with ``class_embed_type="simple_projection"``: the text
  embedding enters as ``class_labels`` (added to the time embedding), ``encoder_hidden_states`` is
  ``None`` (AudioLDM §3.2: the CLAP embedding is the only condition).
* **samples** — a waveform ``[T]`` at the vocoder's rate becomes a log-mel ``[1, T/hop, mels]``
  (``mel.py``), the VAE encodes it to latents ``[C, T/hop/f, mels/f]``; sampling decodes latents
  to a mel and ``SpeechT5HifiGan`` turns it into a waveform.

The pipeline has no LoRA loader (diffusers 0.42 marks AudioLDM deprecated): a LoRA is saved in
the diffusers format (``pytorch_lora_weights.safetensors``, keys ``unet.…``) and loads with
``pipe.unet.load_lora_adapter(folder, prefix="unet")`` (``AudioLDM.load_lora``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from ..denoiser import Conditioning
from ..loading import safe_from_pretrained
from .base import Components, Family
from .mel import MEL_CONFIG, MelConfig, log_mel

__all__ = ["AudioLDM"]


class _Latents(Exception):
    """Raised from inside the pipeline to hand back the sampler's final latents."""

    def __init__(self, latents: torch.Tensor):
        self.latents = latents


class AudioLDM(Family):
    name = "audioldm"
    modality = "audio"
    pipeline_class_name = "AudioLDMPipeline"
    text_encoders = (("tokenizer", "text_encoder", "ClapTextModelWithProjection"),)
    text_fields = ("class_labels",)

    def load(self, root: str, vae: str | None = None, dtype: str = "float32", vae_dtype: str = "float32",
             prediction_type: str = "auto", trust_pickle: bool = False) -> Components:
        """As ``Family.load``, plus the vocoder (``extras["vocoder"]``) and the mel front-end
        (``extras["mel"]``, from ``mel_config.json`` or AudioLDM's)."""
        from transformers import SpeechT5HifiGan

        comp = super().load(root, vae, dtype, vae_dtype, prediction_type, trust_pickle)
        if not (Path(root) / "vocoder").is_dir():
            raise FileNotFoundError(f"{root}: family 'audioldm' needs a vocoder/ folder")
        vocoder = safe_from_pretrained(SpeechT5HifiGan, root, "model.path", "vocoder", trust_pickle)
        vocoder.requires_grad_(False).eval()
        comp.extras["vocoder"] = vocoder
        comp.extras["mel"] = MelConfig.of_pipeline(root, vocoder.config)
        return comp

    def pipeline_parts(self, comp: Components) -> dict:
        return {"vae": comp.vae.float(), "tokenizer": comp.tokenizers[0], "text_encoder": comp.text_encoders[0],
                "vocoder": comp.extras["vocoder"]}

    def save_pipeline(self, comp: Components, unet: torch.nn.Module, path: str | Path) -> Path:
        out = super().save_pipeline(comp, unet, path)
        if (Path(comp.path) / MEL_CONFIG).is_file():  # the front-end travels with the pipeline
            shutil.copyfile(Path(comp.path) / MEL_CONFIG, out / MEL_CONFIG)
        return out

    def save_lora(self, unet: torch.nn.Module, path: str | Path) -> Path:
        """LoRA in the diffusers format (written through ``StableDiffusionPipeline.save_lora_weights``,
        which AudioLDM lacks); load it with :meth:`load_lora`."""
        import diffusers

        from ..lora import save_lora

        return save_lora(unet, diffusers.StableDiffusionPipeline, path)

    def load_lora(self, pipe, folder: str | Path) -> None:
        """A LoRA folder into an ``AudioLDMPipeline``'s U-Net (the pipeline has no ``load_lora_weights``)."""
        pipe.unet.load_lora_adapter(str(folder), prefix="unet", use_safetensors=True)

    # ---- samples ------------------------------------------------------------------------------
    def sample_rate(self, comp: Components) -> int:
        return comp.extras["mel"].sample_rate

    def clip_samples(self, comp: Components) -> int:
        """Default clip length (samples): the pipeline's default ``audio_length_in_s``
        (``unet.sample_size · vae_scale_factor`` mel frames)."""
        return int(comp.unet.config.sample_size) * self.vae_factor(comp) * comp.extras["mel"].hop

    def vae_factor(self, comp: Components) -> int:
        return 2 ** (len(comp.vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode_samples(self, comp: Components, waves: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` waveforms → log-mels ``[N, 1, T/hop, mels]`` → VAE posterior means × scale
        ``[N, C, T/hop/f, mels/f]`` fp32."""
        vae = comp.vae
        mel = log_mel(waves.to(vae.device), comp.extras["mel"])  # [N, 1, frames, mels]
        return super().encode_samples(comp, mel)

    @torch.no_grad()
    def decode_samples(self, comp: Components, latents: torch.Tensor) -> torch.Tensor:
        """Latents → mel (VAE decoder) → ``[N, T]`` waveforms (vocoder), as the pipeline decodes."""
        vae, voc = comp.vae, comp.extras["vocoder"]
        mel = vae.decode((latents / comp.vae_scale).to(device=vae.device, dtype=vae.dtype)).sample  # [N, 1, F, M]
        voc_dev = next(voc.parameters()).device
        return voc(mel[:, 0].to(voc_dev, torch.float32)).float()  # [N, T]

    def latent_shape(self, comp_or_pipe) -> tuple[int, int, int]:
        """``(C, h, w)`` of one sample's latents at the pipeline's default length."""
        unet, vae = comp_or_pipe.unet, comp_or_pipe.vae
        f = 2 ** (len(vae.config.block_out_channels) - 1)
        voc = comp_or_pipe.extras["vocoder"] if isinstance(comp_or_pipe, Components) else comp_or_pipe.vocoder
        return int(unet.config.in_channels), int(unet.config.sample_size), int(voc.config.model_in_dim) // f

    def sample_latents(self, pipe, prompts: list[str], generators: list, guidance_scale: float,
                       num_inference_steps: int) -> torch.Tensor:
        """The sampler's final latents ``[N, C, h, w]`` (the pipeline has no ``output_type="latent"``:
        its ``decode_latents`` is intercepted). Each sample's starting noise comes from its generator."""
        shape = self.latent_shape(pipe)
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])

        def grab(latents):
            raise _Latents(latents)

        pipe.decode_latents = grab
        try:
            pipe(prompts, generator=generators, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                 latents=noise.to(pipe.unet.device, pipe.unet.dtype))
        except _Latents as got:
            return got.latents.float().cpu()
        finally:
            del pipe.decode_latents  # back to the class method
        raise RuntimeError("AudioLDMPipeline returned without decoding its latents")

    # ---- conditioning -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
        device = device or comp.unet.device
        tok, enc = comp.tokenizers[0], comp.text_encoders[0]
        t = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
        emb = enc(t.input_ids.to(enc.device), attention_mask=t.attention_mask.to(enc.device)).text_embeds  # [B, D]
        return {"class_labels": F.normalize(emb, dim=-1).to(device)}

    def conditioning(self, text: dict[str, torch.Tensor], time_ids: torch.Tensor | None) -> Conditioning:
        return Conditioning(encoder_hidden_states=None, class_labels=text["class_labels"])
