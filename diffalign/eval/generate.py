"""Sampling the base and the tuned pipeline on fixed prompts and seeds.

A tuned result is either a LoRA folder (``pytorch_lora_weights.safetensors``, loaded into the
base pipeline with ``load_lora_weights``) or a whole pipeline folder (``model_index.json``).
Every image gets its own ``torch.Generator`` seeded with its seed, so the same (prompt, seed)
gives the same starting noise for base and tuned, whatever the batching.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

__all__ = ["is_lora", "load_pipeline", "sample"]

LORA_FILE = "pytorch_lora_weights.safetensors"


def is_lora(path: str | Path) -> bool:
    """True for a LoRA folder, False for a pipeline folder; raises for anything else."""
    p = Path(path)
    if (p / LORA_FILE).is_file():
        return True
    if (p / "model_index.json").is_file():
        return False
    raise FileNotFoundError(f"{p}: neither a LoRA folder ({LORA_FILE}) nor a pipeline folder (model_index.json)")


def load_pipeline(path: str, lora: str | None = None, device: str | torch.device = "cpu"):
    """A text-to-image pipeline (its class from ``model_index.json``), optionally with a LoRA.

    Args:
        path (str): pipeline folder (or cached hub id). lora (str | None): LoRA folder to load.
    """
    from diffusers import DiffusionPipeline

    from ..models.loading import resolve_pretrained

    pipe = DiffusionPipeline.from_pretrained(resolve_pretrained(path, "eval base"))
    if lora is not None:
        pipe.load_lora_weights(lora)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@torch.no_grad()
def sample(pipe, prompts: list[str], seeds: list[int], guidance_scale: float, num_inference_steps: int,
           batch_size: int = 32, desc: str = "sampling", resolution: int | None = None) -> torch.Tensor:
    """One image per (prompt, seed): ``[N, 3, H, W]`` float in [0, 1] on the CPU."""
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    kw = {} if resolution is None else {"height": resolution, "width": resolution}
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc, mininterval=5):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
        images = pipe(prompts[i : i + batch_size], generator=gens, guidance_scale=guidance_scale,
                      num_inference_steps=num_inference_steps, output_type="pt", **kw).images
        out.append(images.float().clamp(0, 1).cpu())
    return torch.cat(out)
