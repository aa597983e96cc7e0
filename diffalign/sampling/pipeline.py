"""Per-seed sampling of a diffusers pipeline: the one copy every evaluation, report and builder uses.

Every sample gets its own ``torch.Generator`` seeded with its seed, so the same (prompt, seed)
gives the same starting noise — for a base and a tuned model alike — whatever the batching.
Image pipelines (``.images``) give ``[N, 3, H, W]`` float in [0, 1]; audio pipelines
(``.audios``) give ``[N, T]`` float waveforms.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

__all__ = ["sample"]


@torch.no_grad()
def sample(
    pipe,
    prompts: list[str],
    seeds: list[int],
    guidance_scale: float,
    num_inference_steps: int,
    batch_size: int = 32,
    desc: str = "sampling",
    progress: bool = True,
    latent_shape: tuple[int, ...] | None = None,
    **kwargs,
) -> torch.Tensor:
    """One sample per (prompt, seed), on the CPU.

    Args:
        pipe: a diffusers text-to-image or text-to-audio pipeline.
        prompts (list[str]): N prompts. seeds (list[int]): N seeds.
        guidance_scale (float): classifier-free guidance. num_inference_steps (int): sampler steps.
        batch_size (int): samples per pipeline call. desc (str): progress-bar label.
        progress (bool): show a progress bar over batches.
        latent_shape (tuple | None): draw each sample's initial latents ``[C, h, w]`` from its seed
            here and pass them as ``latents`` (for pipelines whose own latent shape is not the one
            wanted); default: the pipeline draws them from the per-sample generators.
        **kwargs: passed to the pipeline (e.g. ``height``/``width``, ``negative_prompt``).

    Returns:
        torch.Tensor: ``[N, 3, H, W]`` float32 in [0, 1] (images) or ``[N, T]`` float32 (audio).
    """
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, mininterval=5):
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + batch_size]]
        noise = {} if latent_shape is None else {"latents": torch.stack([torch.randn(latent_shape, generator=g) for g in gens])}
        res = pipe(prompts[i : i + batch_size], generator=gens, guidance_scale=guidance_scale,
                   num_inference_steps=num_inference_steps, output_type="pt", **noise, **kwargs)
        images = getattr(res, "images", None)
        if images is not None:
            out.append(images.float().clamp(0, 1).cpu())
        else:
            out.append(torch.as_tensor(res.audios).float().cpu())
    return torch.cat(out)
