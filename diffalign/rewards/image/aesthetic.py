"""LAION aesthetic predictor v2: an MLP on L2-normalised CLIP ViT-L/14 image embeddings.

Schuhmann, "improved-aesthetic-predictor" (github.com/christophschuhmann/improved-aesthetic-predictor,
Apache-2.0), trained on SAC + LAION-Logos + AVA (Murray et al., CVPR 2012) ratings, 1–10 scale
(typically 4–7). The head is ``Linear(768,1024) → Dropout(.2) → Linear(1024,128) → Dropout(.2) →
Linear(128,64) → Dropout(.1) → Linear(64,16) → Linear(16,1)`` (no activations: affine at eval), applied
to ``ê = E_img(x) / ‖E_img(x)‖``. The backbone is OpenAI CLIP ViT-L/14 (arXiv:2103.00020), which uses
**QuickGELU**: loaded from a file into open_clip it needs the ``ViT-L-14-quickgelu`` config, else the
embeddings are silently wrong. Used as a reward by DDPO (arXiv:2305.13301) and DRaFT.
"""

from __future__ import annotations

from typing import Any

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.image._common import PreferenceMLP, image_size_of, normalize, resize_center_crop, tiny_open_clip
from diffalign.rewards.weights import load_state_dict, resolve_weights

__all__ = ["SPEC", "AestheticHead", "AestheticV2", "build"]

HEAD_ARTIFACTS = ("hf://camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth",)
CLIP_ARTIFACTS = (
    "hf://timm/vit_large_patch14_clip_224.openai/open_clip_model.safetensors",
    "hf://timm/vit_large_patch14_clip_224.openai/open_clip_pytorch_model.bin",
)
SPEC = RewardSpec(
    "aesthetic",
    "image",
    needs_prompt=False,
    differentiable=True,
    max_batch_size=32,
    weights=HEAD_ARTIFACTS + CLIP_ARTIFACTS,
)


AestheticHead = PreferenceMLP  # parameter names match the released .pth (``layers.{0,2,4,6,7}.*``)


class AestheticV2(Reward):
    """Predicted aesthetic rating of each image (``[B]``, AVA 1–10 scale with real weights).

    Args:
        clip (torch.nn.Module): open_clip ``CLIP`` with QuickGELU (OpenAI ViT-L/14 for real weights).
        head (AestheticHead): The MLP.
    """

    spec = SPEC

    def __init__(self, clip: torch.nn.Module, head: AestheticHead) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.head = head.eval().requires_grad_(False)
        self.image_size = image_size_of(clip.visual)
        self.embed_dim = int(clip.visual.output_dim)

    def embed(self, samples: Samples) -> torch.Tensor:
        """L2-normalised CLIP image embeddings ``ê`` ``[B, D]``."""
        x = normalize(resize_center_crop(samples.data, self.image_size))
        return self.clip.encode_image(x, normalize=True)

    def score(self, samples: Samples) -> RewardResult:
        rating = self.head(self.embed(samples))
        return RewardResult(rating, {"raw": rating.detach()})


def build(weights: Any = None, clip_weights: Any = "auto") -> AestheticV2:
    """Entry-point factory (``aesthetic``).

    Args:
        weights: The head: None (random head on a tiny random QuickGELU CLIP), a ``.pth`` /
            ``.safetensors`` path, ``"auto"`` or an ``hf://`` id (``sac+logos+ava1-l14-linearMSE.pth``).
        clip_weights: The OpenAI ViT-L/14 open_clip checkpoint (path, ``"auto"`` or ``hf://`` id);
            ignored when ``weights`` is None.
    """
    if weights is None:
        clip = tiny_open_clip(quick_gelu=True)
        return AestheticV2(clip, AestheticHead(int(clip.visual.output_dim)))
    import open_clip

    head_path = resolve_weights(weights, "aesthetic", HEAD_ARTIFACTS)
    clip_path = resolve_weights(clip_weights, "aesthetic (CLIP ViT-L/14 backbone)", CLIP_ARTIFACTS)
    head = AestheticHead(768)
    state = load_state_dict(head_path)
    # The released .pth has `layers.N.*`; some mirrors re-save the bare Sequential (`N.*`).
    head.load_state_dict({k if k.startswith("layers.") else f"layers.{k}": v for k, v in state.items()})
    clip = open_clip.create_model("ViT-L-14-quickgelu", pretrained=str(clip_path), weights_only=True)
    return AestheticV2(clip, head)
