"""What every model family shares: the ``Components`` it loads and the ``Family`` protocol.

A family object is stateless: it knows how a kind of pipeline is put together (which text
encoders, which conditioning, which pipeline class) and acts on a ``Components``. Trainers,
data and evaluation call these methods and never branch on the family's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from ..denoiser import Conditioning
from ..loading import resolve_pretrained, safe_from_pretrained

__all__ = ["Components", "Family", "DTYPES", "training_scheduler"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def training_scheduler(root: str, prediction_type: str = "auto"):
    """``(DDPMScheduler, prediction_type)`` for training: the pipeline's scheduler config (same betas),
    its prediction type unless ``prediction_type`` overrides it."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
    pt = scheduler.config.prediction_type if prediction_type == "auto" else prediction_type
    if pt != scheduler.config.prediction_type:
        scheduler = DDPMScheduler.from_config(scheduler.config, prediction_type=pt)
    return scheduler, pt


@dataclass
class Components:
    """The parts of a pipeline that training touches.

    Attributes:
        family (Family): the family object that loaded them. path (str): the local pipeline folder.
        unet, vae: diffusers models. text_encoders, tokenizers (list): one (sd) or two (sdxl).
        scheduler: a ``DDPMScheduler`` for training (the pipeline's betas and prediction type).
        prediction_type (str): ``epsilon``, ``v_prediction`` or ``sample``.
        extras (dict): family-specific parts (AudioLDM: ``vocoder`` and the ``mel`` front-end).
    """

    family: "Family"
    path: str
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list = field(default_factory=list)
    tokenizers: list = field(default_factory=list)
    scheduler: object = None
    prediction_type: str = "epsilon"
    extras: dict = field(default_factory=dict)

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encoders(self) -> list[torch.nn.Module]:
        """The frozen encoders (VAE and text), e.g. to move them off the device after caching."""
        return [self.vae, *self.text_encoders, *(m for m in self.extras.values() if isinstance(m, torch.nn.Module))]


class Family:
    """A text-to-image latent-diffusion family with a ``UNet2DConditionModel`` and an ``AutoencoderKL``.

    Subclasses name their text encoders (``text_encoders``: ``(tokenizer, text_encoder, class name)``
    sub-folders), the fields ``encode_prompts`` returns (``text_fields``) and their pipeline class,
    and implement ``encode_prompts`` and ``conditioning``.
    """

    name: ClassVar[str] = ""
    modality: ClassVar[str] = "image"  # what a sample is: ``image`` [3, H, W] in [-1, 1], or ``audio`` [T]
    pipeline_class_name: ClassVar[str] = ""
    text_encoders: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    text_fields: ClassVar[tuple[str, ...]] = ("encoder_hidden_states",)

    def __repr__(self) -> str:
        return f"<family {self.name}>"

    # ---- loading and saving -------------------------------------------------------------------
    def pipeline_class(self):
        """The diffusers pipeline class of the family (what outputs load with)."""
        import diffusers

        return getattr(diffusers, self.pipeline_class_name)

    def load(self, root: str, vae: str | None = None, dtype: str = "float32", vae_dtype: str = "float32",
             prediction_type: str = "auto", trust_pickle: bool = False) -> Components:
        """U-Net, VAE, text encoders, tokenizers and the training scheduler of a pipeline folder.

        Args:
            root (str): local pipeline folder. vae (str | None): another VAE folder / cached id.
            dtype (str): dtype of the frozen text encoders (the U-Net is loaded in fp32;
                accelerate's mixed precision handles compute). vae_dtype (str): VAE dtype.
            prediction_type (str): ``auto`` reads the scheduler config; else overrides it.
            trust_pickle (bool): also read pickled ``.bin`` weights (``loading.safe_from_pretrained``).
        """
        import transformers
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import AutoTokenizer

        tp = trust_pickle
        unet = safe_from_pretrained(UNet2DConditionModel, root, "model.path", "unet", tp)
        vae_kw = {"torch_dtype": DTYPES[vae_dtype]}
        if vae:
            vae_model = safe_from_pretrained(AutoencoderKL, resolve_pretrained(vae, "model.vae"), "model.vae", None, tp,
                                             **vae_kw)
        else:
            vae_model = safe_from_pretrained(AutoencoderKL, root, "model.path", "vae", tp, **vae_kw)
        toks, encs = [], []
        for tok_sub, enc_sub, cls in self.text_encoders:
            if not (Path(root) / enc_sub).is_dir():
                raise FileNotFoundError(f"{root}: family {self.name!r} needs a {enc_sub}/ folder")
            toks.append(AutoTokenizer.from_pretrained(root, subfolder=tok_sub))
            encs.append(safe_from_pretrained(getattr(transformers, cls), root, "model.path", enc_sub, tp, dtype=DTYPES[dtype]))
        scheduler, pt = training_scheduler(root, prediction_type)
        for m in (vae_model, *encs):
            m.requires_grad_(False).eval()
        return Components(self, str(root), unet, vae_model, encs, toks, scheduler, pt)

    def pipeline_parts(self, comp: Components) -> dict:
        """Keyword arguments that put a pipeline together from ``comp`` (text parts and VAE)."""
        subs = [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")]
        kw = {"vae": comp.vae.float()}
        for (tok_key, enc_key), tok, enc in zip(subs, comp.tokenizers, comp.text_encoders):
            kw[tok_key], kw[enc_key] = tok, enc
        return kw

    def save_pipeline(self, comp: Components, unet: torch.nn.Module, path: str | Path) -> Path:
        """A whole pipeline folder (full fine-tuning) that ``from_pretrained`` loads."""
        pipe = self.pipeline_class().from_pretrained(comp.path, unet=unet.float(), **self.pipeline_parts(comp))
        pipe.save_pretrained(path, safe_serialization=True)
        return Path(path)

    def save_lora(self, unet: torch.nn.Module, path: str | Path) -> Path:
        """``pytorch_lora_weights.safetensors`` that the pipeline's ``load_lora_weights`` reads."""
        from ..lora import save_lora

        return save_lora(unet, self.pipeline_class(), path)

    def load_lora(self, pipe, folder: str | Path) -> None:
        """Load a LoRA folder written by ``save_lora`` into a pipeline of the family."""
        pipe.load_lora_weights(str(folder), use_safetensors=True)

    # ---- samples ------------------------------------------------------------------------------
    def sample_latents(self, pipe, prompts: list[str], generators: list, guidance_scale: float,
                       num_inference_steps: int) -> torch.Tensor:
        """The sampler's final latents ``[N, C, h, w]`` fp32 on the CPU (``output_type="latent"``),
        one generator per sample."""
        return pipe(prompts, generator=generators, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
                    output_type="latent").images.float().cpu()

    @torch.no_grad()
    def encode_samples(self, comp: Components, pixels: torch.Tensor) -> torch.Tensor:
        """VAE posterior means × scaling factor: ``[N, 3, H, W]`` in [−1, 1] → ``[N, C, H/f, W/f]`` fp32.

        The mean (not a posterior sample) is used on both the cached and the uncached path, so the
        two train on identical latents.
        """
        vae = comp.vae
        lat = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean
        shift = vae.config.shift_factor or 0.0
        return ((lat - shift) * comp.vae_scale).float()

    @torch.no_grad()
    def decode_samples(self, comp: Components, latents: torch.Tensor) -> torch.Tensor:
        """Latents → pixels ``[N, 3, H, W]`` in [0, 1] (fp32), the inverse of ``encode_samples``."""
        vae = comp.vae
        shift = vae.config.shift_factor or 0.0
        x = vae.decode((latents / comp.vae_scale + shift).to(device=vae.device, dtype=vae.dtype)).sample
        return (x.float() / 2 + 0.5).clamp(0, 1)

    # ---- conditioning -------------------------------------------------------------------------
    def encode_prompts(self, comp: Components, prompts: list[str], device=None) -> dict[str, torch.Tensor]:
        """Text conditioning of prompts as the family's pipeline computes it: ``{field: [B, ...]}``
        for each of ``text_fields``."""
        raise NotImplementedError

    def empty_conditioning(self, comp: Components, device=None) -> dict[str, torch.Tensor]:
        """The unconditional input the pipeline guides with (caption dropout trains on it): the
        encoding of ``""``."""
        return self.encode_prompts(comp, [""], device)

    def conditioning(self, text: dict[str, torch.Tensor], time_ids: torch.Tensor | None) -> Conditioning:
        """The U-Net conditioning of ``N`` samples from their text fields (``[N, ...]``) and
        per-image micro-conditioning facts ``[N, 6]`` (used by families that read them)."""
        raise NotImplementedError

    def model_index(self, comp: Components) -> dict:
        return json.loads((Path(comp.path) / "model_index.json").read_text())
