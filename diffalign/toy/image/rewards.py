"""Rewards of the toy image world "shapes": `toy_fidelity` (programmatic), `toy_clip` (learned) and the
independent judge `toy_judge` (learned on renders only).

- `toy_fidelity`: graded agreement with everything the prompt names (colour, shape, background, size)
  in [0, 1] (`diffalign.toy.image.scorer.score_fidelity`); `details` carry the parts, the binary
  `joint` accuracy and per-attribute `<attr>_ok`. Prompts outside the grammar are read leniently: a colour or shape the
  prompt does not name scores 0. Images of any size are resized to the world's 32×32.
- `toy_clip`: CLIP score (cosine of normalised embeddings) under the tiny open_clip model shipped in
  `assets/toy/image/toy_clip`, loaded through open_clip's `local-dir:` route and scored by the same
  `ClipScore` module as real CLIP / HPS checkpoints.

Example:
    >>> from diffalign.rewards import load
    >>> reward = load("toy_fidelity")
    >>> reward(Samples(images, prompts=["a red circle"] * len(images))).scores  # [B]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples

__all__ = ["TOY_CLIP_SPEC", "ToyFidelity", "ToyJudgeReward", "build_toy_clip", "build_toy_fidelity", "build_toy_judge"]

RESOLUTION = 32
# ClipScore's spec renamed (the registry reads it from the factory's `spec` without building)
TOY_CLIP_SPEC = RewardSpec("toy_clip", "image", needs_prompt=True, differentiable=True, max_batch_size=32)


class ToyFidelity(Reward):
    """Graded toy fidelity in [0, 1] over every attribute the prompt names (`scorer.score_fidelity`); `[B]`.
    `details`: the graded parts, `joint`, and `<attr>_ok` (1/0, NaN where the prompt does not name it)."""

    spec = RewardSpec("toy_fidelity", "image", needs_prompt=True, differentiable=False)

    def score(self, samples: Samples) -> RewardResult:
        from diffalign.toy.image.scorer import score_fidelity

        x = samples.data.detach().float().clamp(0, 1)  # [B, 3, H, W]
        if tuple(x.shape[-2:]) != (RESOLUTION, RESOLUTION):
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        from diffalign.toy.image.world import parse_lenient

        out = score_fidelity(x.cpu(), list(samples.prompts), strict=False)
        device = samples.data.device
        details = {k: out[k].float().to(device) for k in ("colour", "shape", "background", "size", "joint")}
        parsed = [parse_lenient(p) for p in samples.prompts]
        for a in ("colour", "shape", "background", "size"):  # NaN where the prompt does not name the attribute
            named = torch.tensor([getattr(p, a) is not None for p in parsed])
            details[f"{a}_ok"] = torch.where(named, out[f"{a}_ok"].float(), torch.nan).to(device)
        return RewardResult(out["graded"].to(device), {"raw": out["graded"].to(device), **details})


def build_toy_fidelity(weights: Any = None) -> ToyFidelity:
    """Entry-point factory (`toy_fidelity`). Programmatic: there are no weights."""
    if weights is not None:
        raise ValueError(f"toy_fidelity is programmatic and takes no weights, got weights={weights!r}")
    return ToyFidelity()


build_toy_fidelity.spec = ToyFidelity.spec  # type: ignore[attr-defined]


def build_toy_clip(weights: Any = None, scale: float = 1.0, clamp_min: float | None = None) -> Reward:
    """Entry-point factory (`toy_clip`).

    Args:
        weights: an open_clip `local-dir` folder (open_clip_config.json, open_clip_model.safetensors,
            tokenizer files); None uses the shipped `assets/toy/image/toy_clip`.
        scale (float): multiplier of the cosine (see `ClipScore`). Default is 1.
        clamp_min (float | None): lower clamp after scaling. Default is None.
    """
    import open_clip

    from diffalign.rewards.image.clip_score import ClipScore
    from diffalign.toy.image.assets import image_asset_dir

    folder = Path(weights) if weights is not None else image_asset_dir() / "toy_clip"
    if not (folder / "open_clip_config.json").is_file():
        raise FileNotFoundError(f"toy_clip weights: no open_clip_config.json in {folder}")
    name = f"local-dir:{folder}"
    model = open_clip.create_model(name)
    reward = ClipScore(model, open_clip.get_tokenizer(name), scale=scale, clamp_min=clamp_min)
    reward.spec = TOY_CLIP_SPEC
    return reward


build_toy_clip.spec = TOY_CLIP_SPEC  # type: ignore[attr-defined]


class ToyJudgeReward(Reward):
    """`toy_judge`: the independent judge's probability that everything the prompt names is in the
    image (`diffalign.toy.image.judge`); `[B]` in [0, 1].

    `details`: `joint` (every named attribute right), and per attribute (`colour`, `shape`,
    `background`, `size`) `<attr>_ok` (1/0, NaN where the prompt does not name it) and `p_<attr>`.
    The judge was trained on renders only; it labels no data and is no method's training reward
    unless a config makes it one (then it is no longer independent for that run).
    """

    spec = RewardSpec("toy_judge", "image", needs_prompt=True, differentiable=False)

    def __init__(self, model):
        super().__init__()
        self.model = model

    def score(self, samples: Samples) -> RewardResult:
        from diffalign.toy.image.judge import ATTRIBUTES, judge_prompts

        x = samples.data.detach().float().clamp(0, 1)
        if tuple(x.shape[-2:]) != (RESOLUTION, RESOLUTION):
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        out = judge_prompts(self.model, x, list(samples.prompts), strict=False)
        device = samples.data.device
        keys = ["joint", *(f"{a}_ok" for a in ATTRIBUTES), *(f"p_{a}" for a in ATTRIBUTES)]
        details = {k: out[k].float().to(device) for k in keys}
        return RewardResult(out["p_all"].to(device), {"raw": out["p_all"].to(device), **details})


def build_toy_judge(weights: Any = None) -> ToyJudgeReward:
    """Entry-point factory (`toy_judge`).

    Args:
        weights: a judge folder (`config.json`, `model.safetensors`); None uses the shipped
            `assets/toy/image/toy_judge`.
    """
    from diffalign.toy.image.assets import image_asset_dir
    from diffalign.toy.image.judge import load_judge

    folder = Path(weights) if weights is not None else image_asset_dir() / "toy_judge"
    return ToyJudgeReward(load_judge(folder))


build_toy_judge.spec = ToyJudgeReward.spec  # type: ignore[attr-defined]
