"""Human Preference Score v2 / v2.1: OpenCLIP ViT-H-14 fine-tuned on HPD v2 human choices.

Wu et al., "Human Preference Score v2: A Solid Benchmark for Evaluating Human Preferences of
Text-to-Image Synthesis", arXiv:2306.09341 (github.com/tgxs002/HPSv2, Apache-2.0).
``hps = cos(E_img(x), E_txt(c))`` of L2-normalised features, no ``logit_scale`` (≈ 0.2–0.35); the
benchmark reports ×100 (``scale=100``). **v2.0 and v2.1 are not comparable.** Preprocessing is
``ResizeMaxSize(224, fill=0)``: longest side → 224, zero-pad to a square (not a centre crop), then
OpenAI mean/std. Upstream ``open_clip`` ViT-H-14 has the same state-dict keys as the hpsv2 fork, so
the ``hpsv2`` package (which pins pytest and lacks its BPE vocabulary) is not needed.
Weights: HF ``xswu/HPSv2`` (Apache-2.0), ``{"state_dict": ...}`` loaded with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.image._common import image_size_of, normalize, resize_longest_pad, tiny_open_clip
from diffalign.rewards.weights import load_state_dict, resolve_weights

__all__ = ["SPEC", "HPSv2", "build"]

ARTIFACTS = {"2.1": ("hf://xswu/HPSv2/HPS_v2.1_compressed.pt",), "2.0": ("hf://xswu/HPSv2/HPS_v2_compressed.pt",)}
SPEC = RewardSpec(
    "hpsv2", "image", needs_prompt=True, differentiable=True, max_batch_size=32, weights=ARTIFACTS["2.1"] + ARTIFACTS["2.0"]
)


class HPSv2(Reward):
    """``scale · cos(E_img(pad(x)), E_txt(c))``; ``[B]``.

    Args:
        model (torch.nn.Module): open_clip ``CLIP`` (ViT-H-14 with HPS weights).
        tokenizer: open_clip tokenizer.
        scale (float): 1 (raw cosine, as Flow-GRPO / DanceGRPO) or 100 (HPS benchmark). Default is 1.
    """

    spec = SPEC

    def __init__(self, model: torch.nn.Module, tokenizer: Any, scale: float = 1.0) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.scale = tokenizer, scale
        self.image_size = image_size_of(model.visual)
        self.embed_dim = int(model.text_projection.shape[1])

    def embed(self, samples: Samples) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, D]`` (longest-side resize + zero padding)."""
        x = normalize(resize_longest_pad(samples.data, self.image_size, fill=0.0))
        return self.model.encode_image(x, normalize=True)

    def score(self, samples: Samples) -> RewardResult:
        ids = self.tokenizer(list(samples.prompts)).to(self.model.logit_scale.device)
        cos = (self.embed(samples) * self.model.encode_text(ids, normalize=True)).sum(-1)
        return RewardResult(self.scale * cos, {"raw": cos.detach()})


def build(weights: Any = None, version: str = "2.1", scale: float = 1.0) -> HPSv2:
    """Entry-point factory (``hpsv2``).

    Args:
        weights: None (tiny random open_clip), a checkpoint path, ``"auto"`` (``HPS_v2.1_compressed.pt``
            or ``HPS_v2_compressed.pt`` per ``version``) or an ``hf://`` id.
        version (str): ``"2.1"`` (default) or ``"2.0"``.
        scale (float): See :class:`HPSv2`.
    """
    if version not in ARTIFACTS:
        raise ValueError(f"hpsv2: version must be one of {sorted(ARTIFACTS)}, got {version!r}")
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-H-14")
    if weights is None:
        return HPSv2(tiny_open_clip(), tokenizer, scale=scale)
    path = resolve_weights(weights, f"hpsv2 (v{version})", ARTIFACTS[version])
    model = open_clip.create_model("ViT-H-14", pretrained=None)
    model.load_state_dict(load_state_dict(path, key="state_dict"))
    return HPSv2(model, tokenizer, scale=scale)
