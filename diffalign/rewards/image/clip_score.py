"""CLIP score: image–text cosine similarity under an open_clip model.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
arXiv:2103.00020; CLIPScore, Hessel et al., arXiv:2104.08718 (``w · max(cos, 0)``, ``w = 2.5``);
torchmetrics' ``CLIPScore`` is ``max(100 · cos, 0)``. Here ``score = scale · cos`` clamped below at
``clamp_min`` when given; ``details["raw"]`` is the cosine. Default backbone: OpenCLIP ViT-H-14
trained on LAION-2B (Cherti et al., arXiv:2212.07143), weights MIT per the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.image._common import image_size_of, normalize, resize_center_crop, tiny_open_clip
from diffalign.rewards.weights import resolve_weights

__all__ = ["SPEC", "ClipScore", "build"]

ARTIFACTS = (
    "hf://laion/CLIP-ViT-H-14-laion2B-s32B-b79K/open_clip_model.safetensors",
    "hf://laion/CLIP-ViT-H-14-laion2B-s32B-b79K/open_clip_pytorch_model.bin",
)
SPEC = RewardSpec("clip_score", "image", needs_prompt=True, differentiable=True, max_batch_size=32, weights=ARTIFACTS)


class ClipScore(Reward):
    """``scale · cos(E_img(x), E_txt(c))``, optionally clamped; ``[B]``.

    Args:
        model (torch.nn.Module): open_clip ``CLIP`` (``encode_image`` / ``encode_text``).
        tokenizer: open_clip tokenizer, ``list[str] -> LongTensor [B, L]``.
        scale (float): Multiplier (1 raw cosine, 2.5 Hessel et al., 100 torchmetrics). Default is 1.
        clamp_min (float | None): Lower clamp after scaling (0 in both papers). Default is None.
    """

    spec = SPEC

    def __init__(self, model: torch.nn.Module, tokenizer: Any, scale: float = 1.0, clamp_min: float | None = None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.scale, self.clamp_min = tokenizer, scale, clamp_min
        self.image_size = image_size_of(model.visual)
        self.embed_dim = int(model.text_projection.shape[1])

    def embed(self, samples: Samples) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, D]``."""
        x = normalize(resize_center_crop(samples.data, self.image_size))
        return self.model.encode_image(x, normalize=True)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``[B, D]``."""
        ids = self.tokenizer(list(prompts)).to(self.model.logit_scale.device)
        return self.model.encode_text(ids, normalize=True)

    def score(self, samples: Samples) -> RewardResult:
        img = self.embed(samples)
        cos = (img * self.embed_text(samples.prompts)).sum(-1)
        out = self.scale * cos
        if self.clamp_min is not None:
            out = out.clamp_min(self.clamp_min)
        return RewardResult(out, {"raw": cos.detach()})


def build(
    weights: Any = None,
    model: str = "ViT-H-14",
    scale: float = 1.0,
    clamp_min: float | None = None,
    quick_gelu: bool = False,
) -> ClipScore:
    """Entry-point factory (``clip_score``).

    Args:
        weights: None (tiny random open_clip), a checkpoint path, ``"auto"`` (LAION ViT-H-14 from
            ``$DIFFALIGN_WEIGHTS_DIR`` or the HF cache) or an ``hf://`` id.
        model (str): open_clip architecture name for real weights. Default is ``"ViT-H-14"``.
        scale (float): See :class:`ClipScore`.
        clamp_min (float | None): See :class:`ClipScore`.
        quick_gelu (bool): Needed for OpenAI-trained weights loaded from a file (``-quickgelu`` archs).
    """
    import open_clip

    tokenizer = open_clip.get_tokenizer(model)  # BPE vocab ships with open_clip: offline
    if weights is None:
        net = tiny_open_clip(quick_gelu=quick_gelu)
    else:
        path = resolve_weights(weights, "clip_score", ARTIFACTS if model == "ViT-H-14" else ())
        net = open_clip.create_model(model, pretrained=str(path), force_quick_gelu=quick_gelu, weights_only=True)
    return ClipScore(net, tokenizer, scale=scale, clamp_min=clamp_min)
