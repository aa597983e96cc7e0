"""Rollouts for the online trainer: K samples per prompt, stored as **groups** of clean latents.

The forward-process online methods (SePPO, DRAGON, online DPO) re-noise clean latents with the
Diffusion-DPO / KTO losses, so a rollout keeps only what they need: the prompt, the K clean latents
the sampler ended at (the pipeline's ``output_type="latent"``: the denoiser's space), the decoded
samples the reward reads, and the seeds — no trajectories (online.md: "to avoid").

Scoring may overlap sampling: the samples are drawn in chunks, and each chunk is scored in a
worker thread while the next one samples. Scores do not depend on the order, so overlapped and
synchronous scoring give the same results (tested).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

__all__ = ["Groups", "roll_out"]


@dataclass
class Groups:
    """``G`` prompts × ``K`` samples, flattened prompt-major (row ``g·K + k``).

    Attributes:
        prompts (list[str]): ``G`` prompts. k (int): samples per prompt.
        latents (torch.Tensor): ``[G·K, C, h, w]`` clean latents (CPU, fp32).
        samples (torch.Tensor): ``[G·K, 3, H, W]`` decoded samples in [0, 1] (CPU).
        seeds (list[int]): ``G·K`` sampling seeds.
        scores (torch.Tensor | None): ``[G·K]`` rewards (NaN: not applicable).
        details (dict): the reward's per-sample details (``[G·K]`` each).
        anchors (torch.Tensor | None): ``[G, C, h, w]`` a dataset sample per prompt (SePPO's
            winning image), addressed as rows ``G·K + g`` by builders and ``latent`` / ``prompt_of``.
    """

    prompts: list[str]
    k: int
    latents: torch.Tensor
    samples: torch.Tensor
    seeds: list[int]
    scores: torch.Tensor | None = None
    details: dict | None = None
    anchors: torch.Tensor | None = None

    @property
    def n(self) -> int:
        """Sampled rows ``G·K`` (anchor rows follow them)."""
        return self.latents.shape[0]

    def prompt_of(self, row: int) -> str:
        return self.prompts[row - self.n if row >= self.n else row // self.k]

    def latent(self, rows: torch.Tensor) -> torch.Tensor:
        """Clean latents ``[len(rows), C, h, w]`` of sample rows (``< G·K``) and anchor rows (``≥ G·K``)."""
        if self.anchors is None:
            return self.latents[rows]
        return torch.cat([self.latents, self.anchors.to(self.latents)])[rows]


@torch.no_grad()
def roll_out(pipe, decode, prompts: list[str], k: int, seeds: list[int], guidance_scale: float,
             num_inference_steps: int, score=None, chunk: int = 64, overlap: bool = True, sampler=None) -> Groups:
    """Sample ``k`` latents per prompt with per-sample generators, decode them and (optionally) score.

    Args:
        pipe: a diffusers pipeline whose U-Net is the model to sample (the policy or a reference).
        decode: ``latents -> samples`` (the family's ``decode_samples``: images in [0, 1], or waveforms).
        prompts (list[str]): ``G`` prompts. k (int): samples per prompt. seeds (list[int]): ``G·k`` seeds.
        score: ``(samples, prompts) -> (scores [n], details)`` for a chunk, or None.
        chunk (int): samples per pipeline call (and per scoring call).
        overlap (bool): score a chunk in a worker thread while the next one samples.
        sampler: ``(pipe, prompts, generators, guidance_scale, steps) -> latents`` (the family's
            ``sample_latents``); default: the pipeline with ``output_type="latent"``.
    """
    flat = [p for p in prompts for _ in range(k)]
    if len(seeds) != len(flat):
        raise ValueError(f"{len(flat)} samples but {len(seeds)} seeds")
    lat, dec, futures, results = [], [], [], []
    pool = ThreadPoolExecutor(max_workers=1) if (overlap and score is not None) else None
    try:
        for i in range(0, len(flat), chunk):
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds[i : i + chunk]]
            if sampler is not None:
                z = sampler(pipe, flat[i : i + chunk], gens, guidance_scale, num_inference_steps).float().cpu()
            else:
                z = pipe(flat[i : i + chunk], generator=gens, guidance_scale=guidance_scale,
                         num_inference_steps=num_inference_steps, output_type="latent").images.float().cpu()
            x = decode(z).float().cpu()
            lat.append(z)
            dec.append(x)
            if score is not None:
                if pool is not None:
                    futures.append(pool.submit(score, x, flat[i : i + chunk]))
                else:
                    results.append(score(x, flat[i : i + chunk]))
        results += [f.result() for f in futures]
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    groups = Groups(list(prompts), k, torch.cat(lat), torch.cat(dec), list(seeds))
    if score is not None:
        groups.scores = torch.cat([r[0].float().cpu() for r in results])
        keys = results[0][1].keys() if results else []
        groups.details = {key: torch.cat([r[1][key].float().cpu() for r in results]) for key in keys}
    return groups
