"""Loading the base and the tuned pipeline for evaluation.

A tuned result is either a LoRA folder (``pytorch_lora_weights.safetensors``, loaded into the
base pipeline with ``load_lora_weights``) or a whole pipeline folder (``model_index.json``).
Sampling is ``diffalign.sampling.pipeline.sample`` (one generator per (prompt, seed), so base and
tuned start from the same noise whatever the batching).
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["is_lora", "load_pipeline", "load_lora"]

LORA_FILE = "pytorch_lora_weights.safetensors"


def is_lora(path: str | Path) -> bool:
    """True for a LoRA folder, False for a pipeline folder; raises for anything else."""
    p = Path(path)
    if (p / LORA_FILE).is_file():
        return True
    if (p / "model_index.json").is_file():
        return False
    raise FileNotFoundError(f"{p}: neither a LoRA folder ({LORA_FILE}) nor a pipeline folder (model_index.json)")


def load_pipeline(path: str, lora: str | None = None, device: str | torch.device = "cpu", trust_pickle: bool = False):
    """A text-to-image pipeline (its class from ``model_index.json``), optionally with a LoRA.

    Safetensors only unless ``trust_pickle``; no remote code (``custom_pipeline`` is never passed).

    Args:
        path (str): pipeline folder (or cached hub id). lora (str | None): LoRA folder to load.
    """
    from diffusers import DiffusionPipeline

    from ..models.loading import resolve_pretrained, safe_from_pretrained

    pipe = safe_from_pretrained(DiffusionPipeline, resolve_pretrained(path, "eval base"), "pipeline", None, trust_pickle)
    if lora is not None:
        load_lora(pipe, lora, trust_pickle)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_lora(pipe, folder: str | Path, trust_pickle: bool = False) -> None:
    """A LoRA folder into ``pipe``: ``load_lora_weights`` where the pipeline has it, else (AudioLDM,
    whose pipeline has no LoRA loader) the U-Net's ``load_lora_adapter`` with the ``unet`` prefix."""
    safe = None if trust_pickle else True
    if hasattr(pipe, "load_lora_weights"):
        pipe.load_lora_weights(str(folder), use_safetensors=safe)
    else:
        pipe.unet.load_lora_adapter(str(folder), prefix="unet", use_safetensors=safe)
