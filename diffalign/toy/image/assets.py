"""Where the shapes-world assets live and how to load them (sampling: ``diffalign.sampling.pipeline.sample``).

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

from diffalign.toy.common import asset_dir as _asset_dir, read_json  # noqa: F401  (read_json: re-exported)
from diffalign.toy.common import sampling_defaults as _recorded_sampling

# Default sampling of the toy pipeline; the build writes it into build_info.json["sampling"].
SAMPLING = {"guidance_scale": 3.0, "num_inference_steps": 25, "scheduler": "DDIMScheduler", "eta": 0.0}


def image_asset_dir() -> Path:
    """The committed image assets (``diffalign.toy.common.asset_dir``)."""
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
