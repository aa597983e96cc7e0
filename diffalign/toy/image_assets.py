"""Where the shapes-world assets live, how to load them and how to sample the toy pipeline.

Layout of `assets/toy/image/` (written by `diffalign toy build image`)::

    pipeline/              diffusers StableDiffusionPipeline (fp32 safetensors)
    toy_clip/              open_clip model: open_clip_config.json, open_clip_model.safetensors, tokenizer
    prompts.json           {"train": [...], "held_out": [...]}
    prefs_train.parquet    Pick-a-Pic columns (caption, jpg_0, jpg_1, label_0) + scores; training prompts
    prefs_held_out.parquet the same on held-out prompts (for evaluation only)
    exemplars.parquet      rendered ground-truth images (PNG bytes) and their captions
    build_info.json        seeds, settings, wall times, sizes, sampling defaults, fidelity measured at build
"""

from __future__ import annotations

from pathlib import Path

from diffalign.toy.assets import asset_dir as _asset_dir, read_json  # noqa: F401  (read_json: re-exported)
from diffalign.toy.assets import sampling_defaults as _recorded_sampling

# Default sampling of the toy pipeline; the build writes it into build_info.json["sampling"].
SAMPLING = {"guidance_scale": 3.0, "num_inference_steps": 25, "scheduler": "DDIMScheduler", "eta": 0.0}


def image_asset_dir() -> Path:
    """The committed image assets (``diffalign.toy.assets.asset_dir``)."""
    return _asset_dir("image")


def sampling_defaults(asset_dir: str | Path | None = None) -> dict:
    """Guidance scale and step count every consumer of the toy pipeline should use."""
    return _recorded_sampling(asset_dir or image_asset_dir(), SAMPLING)


def load_pipeline(asset_dir: str | Path | None = None):
    """Loads the toy `StableDiffusionPipeline` (fp32, CPU, progress bar off)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(Path(asset_dir or image_asset_dir()) / "pipeline"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_images(
    pipe,
    prompts: list[str],
    seeds: list[int],
    guidance_scale: float = SAMPLING["guidance_scale"],
    num_inference_steps: int = SAMPLING["num_inference_steps"],
    batch: int = 64,
    progress: bool = False,
):
    """Samples one image per (prompt, seed); each image's noise depends only on its own seed.

    Args:
        pipe: a StableDiffusionPipeline.
        prompts (list[str]): N prompts.
        seeds (list[int]): N seeds (same prompt + seed -> same image, whatever the batching).
        guidance_scale (float): classifier-free guidance. Default is 3.
        num_inference_steps (int): DDIM steps. Default is 25.
        batch (int): images per pipeline call. Default is 64.
        progress (bool): show a tqdm bar over batches. Default is False.

    Returns:
        torch.Tensor: [N, 3, H, W] float in [0, 1].
    """
    import torch
    from tqdm.auto import tqdm

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    out = []
    starts = range(0, len(prompts), batch)
    for i in tqdm(starts, desc="sample", disable=not progress, mininterval=10):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch]]
        with torch.no_grad():
            images = pipe(
                prompts[i : i + batch],
                generator=gens,
                guidance_scale=guidance_scale,
                num_inference_steps=num_inference_steps,
                output_type="pt",
            ).images  # [b, 3, H, W] in [0, 1]
        out.append(images.float().clamp(0, 1))
    return torch.cat(out)
