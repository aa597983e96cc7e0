"""PickScore v1: a CLIP-H fine-tuned on Pick-a-Pic human preferences.

Kirstain et al., "Pick-a-Pic: An Open Dataset of User Preferences for Text-to-Image Generation",
arXiv:2305.01569 (github.com/yuvalkirstain/PickScore, MIT). ``score = exp(logit_scale) · cos(î, t̂)``
(the paper's Eq. 1 logits; ``logit_scale`` read from the checkpoint, ≈ 100). Several images of one
prompt give preference probabilities ``softmax(scores)``; Flow-GRPO (arXiv:2505.05470) divides by
26, here ``scale=1/26``. Backbone: transformers ``CLIPModel``; with transformers ≥ 5
``get_*_features`` return ``BaseModelOutputWithPooling`` (handled). Weights: HF
``yuvalkirstain/PickScore_v1`` (no licence metadata: load from your cache, do not redistribute);
tokenizer from ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffalign.models.loading import safe_from_pretrained
from diffalign.rewards._tokenizers import check_tokenizer, tiny_clip_tokenizer
from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.image._common import normalize, pooled, resize_center_crop
from diffalign.rewards.weights import resolve_weights

__all__ = ["SPEC", "PickScore", "build", "tiny_clip_model"]

ARTIFACTS = ("hf://yuvalkirstain/PickScore_v1/model.safetensors", "hf://yuvalkirstain/PickScore_v1/pytorch_model.bin")
TOKENIZER_ARTIFACTS = (
    "hf://laion/CLIP-ViT-H-14-laion2B-s32B-b79K/tokenizer.json",
    "hf://laion/CLIP-ViT-H-14-laion2B-s32B-b79K/vocab.json",
)
SPEC = RewardSpec("pickscore", "image", needs_prompt=True, differentiable=True, max_batch_size=32, weights=ARTIFACTS)


class PickScore(Reward):
    """``scale · exp(logit_scale) · cos(E_img(x), E_txt(c))``; ``[B]`` (≈ 18–23 with real weights).

    Args:
        model: transformers ``CLIPModel``.
        tokenizer: Its ``CLIPTokenizer`` (77 tokens, truncation).
        scale (float): Multiplier (``1/26`` as in Flow-GRPO). Default is 1.
    """

    spec = SPEC

    def __init__(self, model: torch.nn.Module, tokenizer: Any, scale: float = 1.0) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer, self.scale = tokenizer, scale
        self.image_size = int(model.config.vision_config.image_size)
        self.embed_dim = int(model.config.projection_dim)

    def embed(self, samples: Samples) -> torch.Tensor:
        """L2-normalised image embeddings ``[B, D]``."""
        x = normalize(resize_center_crop(samples.data, self.image_size))
        return F.normalize(pooled(self.model.get_image_features(pixel_values=x)), dim=-1)

    def embed_text(self, prompts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings ``[B, D]``."""
        t = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        t = t.to(self.model.logit_scale.device)
        return F.normalize(pooled(self.model.get_text_features(input_ids=t.input_ids, attention_mask=t.attention_mask)), dim=-1)

    def score(self, samples: Samples) -> RewardResult:
        img = self.embed(samples)
        raw = self.model.logit_scale.exp() * (img * self.embed_text(samples.prompts)).sum(-1)
        return RewardResult(self.scale * raw, {"raw": raw.detach()})


def tiny_clip_model(vocab_size: int = 514, image_size: int = 32):
    """A random transformers ``CLIPModel`` for tests (hidden 32, 2 layers, projection 16)."""
    from transformers import CLIPConfig, CLIPModel

    common = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {**common, "vocab_size": vocab_size, "max_position_embeddings": 77, "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513}
    vision = {**common, "image_size": image_size, "patch_size": 16}
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))


def build(weights: Any = None, tokenizer: str | Path | None = None, scale: float = 1.0,
          trust_pickle: bool = False) -> PickScore:
    """Entry-point factory (``pickscore``).

    Args:
        weights: None (tiny random ``CLIPModel`` + byte-level tokenizer), a ``from_pretrained`` folder
            or weights file (its folder must hold ``config.json``), ``"auto"`` or an ``hf://`` id.
        tokenizer (str | Path | None): Tokenizer folder; default: the weights folder when it has one,
            else ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` from the HF cache.
        scale (float): See :class:`PickScore`.
        trust_pickle (bool): also read a pickled ``pytorch_model.bin`` (off: safetensors only).
    """
    if weights is None:
        return PickScore(tiny_clip_model(), tiny_clip_tokenizer(), scale=scale)
    from transformers import CLIPModel, CLIPTokenizer

    path = resolve_weights(weights, "pickscore", ARTIFACTS, note=" (with config.json)")
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"pickscore: provide 'config.json' from https://huggingface.co/yuvalkirstain/PickScore_v1 in {folder}")
    if tokenizer is None:
        has_vocab = (folder / "tokenizer.json").is_file() or (folder / "vocab.json").is_file()
        tokenizer = folder if has_vocab else resolve_weights("auto", "pickscore tokenizer", TOKENIZER_ARTIFACTS).parent
    model = safe_from_pretrained(CLIPModel, str(folder), "pickscore", None, trust_pickle, local_files_only=True)
    tok = check_tokenizer(CLIPTokenizer.from_pretrained(tokenizer, local_files_only=True, model_max_length=77), str(tokenizer))
    return PickScore(model, tok, scale=scale)
