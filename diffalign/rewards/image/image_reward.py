"""ImageReward v1.0: BLIP image–text cross-encoder + MLP, trained on 137k expert comparisons.

Xu et al., "ImageReward: Learning and Evaluating Human Preferences for Text-to-Image Generation",
arXiv:2304.05977 (github.com/THUDM/ImageReward, Apache-2.0; weights HF ``THUDM/ImageReward``,
Apache-2.0). Backbone: BLIP (Li et al., arXiv:2201.12086; github.com/salesforce/BLIP, BSD-3).

``r = (MLP(h_[CLS]) − 0.16717362830052426) / 1.0333394966054072`` where ``h`` is the last hidden state
of the BERT-base text encoder run bidirectionally on the prompt with cross-attention to the ViT-L/16
patch tokens (``score_gard`` in ImageReward.py: ``[CLS]`` first token, no ``[ENC]`` substitution).
Prompt: ``bert-base-uncased`` tokens, ``max_length=35``, padded to it. Image: 224 bicubic, centre
crop, OpenAI mean/std. Ported here instead of depending on ``image-reward`` (which pins timm 0.6.13
and imports APIs removed in transformers 5): the ViT is re-written below with BLIP's parameter names,
the text encoder is transformers' ``BlipTextModel`` (a port of BLIP's ``med.py`` with the same keys).
The normalised score is ≈ N(0, 1) over the training prompts; ``details["raw"]`` is ``r`` and
``details["mlp"]`` the head output before standardisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffalign.rewards._tokenizers import check_tokenizer, tiny_bert_tokenizer
from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.image._common import PreferenceMLP, normalize, resize_center_crop
from diffalign.rewards.weights import load_state_dict, resolve_weights

__all__ = ["SPEC", "BlipViT", "ImageReward", "ImageRewardModel", "build"]

ARTIFACTS = ("hf://THUDM/ImageReward/ImageReward.pt",)
TOKENIZER_ARTIFACTS = ("hf://google-bert/bert-base-uncased/vocab.txt",)
SPEC = RewardSpec("image_reward", "image", needs_prompt=True, differentiable=True, max_batch_size=16, weights=ARTIFACTS)
MEAN, STD = 0.16717362830052426, 1.0333394966054072
PROMPT_LENGTH = 35
# ImageReward's med_config.json (BERT-base + cross-attention to 1024-d ViT-L tokens), fields BlipTextConfig knows.
MED_CONFIG = {
    "vocab_size": 30524,
    "hidden_size": 768,
    "encoder_hidden_size": 1024,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 512,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}
VIT_LARGE = {"image_size": 224, "patch_size": 16, "dim": 1024, "depth": 24, "heads": 16}


class _PatchEmbed(torch.nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


class _Attention(torch.nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, dim * 3)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3×[B, h, N, d/h]
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class _Mlp(torch.nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(torch.nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = torch.nn.LayerNorm(dim, eps=1e-6), _Attention(dim, heads)
        self.norm2, self.mlp = torch.nn.LayerNorm(dim, eps=1e-6), _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlipViT(torch.nn.Module):
    """BLIP's ViT (``models/vit.py``, timm-style pre-norm, LayerNorm eps 1e-6, exact GELU), inference only.

    Returns all tokens after the final norm, ``[B, 1 + N, D]`` (class token first). Stochastic depth
    (drop_path 0.1 in training) is the identity at eval and omitted.
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, dim: int = 1024, depth: int = 24, heads: int = 16) -> None:
        super().__init__()
        self.image_size = image_size
        self.patch_embed = _PatchEmbed(patch_size, dim)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = torch.nn.Parameter(0.02 * torch.randn(1, 1 + (image_size // patch_size) ** 2, dim))
        self.blocks = torch.nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed[:, : x.shape[1] + 1]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class ImageRewardModel(torch.nn.Module):
    """``blip.visual_encoder`` + ``blip.text_encoder`` + ``mlp``: the parameter layout of ``ImageReward.pt``."""

    def __init__(self, vit: dict[str, int], med: dict[str, Any]) -> None:
        from transformers import BlipTextConfig, BlipTextModel

        super().__init__()
        self.blip = torch.nn.Module()
        self.blip.visual_encoder = BlipViT(**vit)
        # is_decoder=True only builds the cross-attention blocks; forward runs bidirectionally (is_decoder=False).
        self.blip.text_encoder = BlipTextModel(BlipTextConfig(**med, is_decoder=True), add_pooling_layer=False)
        self.mlp = PreferenceMLP(med["hidden_size"])

    def forward(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Head output before standardisation, ``[B]``."""
        image_embeds = self.blip.visual_encoder(pixels)  # [B, 1 + N, D_v]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.blip.text_encoder(
            input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
            is_decoder=False,
        )
        return self.mlp(out.last_hidden_state[:, 0])


class ImageReward(Reward):
    """Standardised ImageReward score; ``[B]``.

    Args:
        model (ImageRewardModel): BLIP + head.
        tokenizer: Uncased BERT tokenizer (``bert-base-uncased`` for real weights).
    """

    spec = SPEC

    def __init__(self, model: ImageRewardModel, tokenizer: Any) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = model.blip.visual_encoder.image_size

    def score(self, samples: Samples) -> RewardResult:
        pixels = normalize(resize_center_crop(samples.data, self.image_size))
        t = self.tokenizer(
            list(samples.prompts), padding="max_length", truncation=True, max_length=PROMPT_LENGTH, return_tensors="pt"
        ).to(pixels.device)
        head = self.model(pixels, t.input_ids, t.attention_mask)
        r = (head - MEAN) / STD
        return RewardResult(r, {"raw": r.detach(), "mlp": head.detach()})


def _load(model: ImageRewardModel, path: Path) -> None:
    """Loads ``ImageReward.pt``: every parameter of ours must be present (extra BLIP heads are ignored)."""
    state = load_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise KeyError(f"image_reward: {path} lacks {len(missing)} parameters, e.g. {missing[:3]}")
    model.load_state_dict({k: state[k] for k in own})


def build(weights: Any = None, tokenizer: str | Path | None = None) -> ImageReward:
    """Entry-point factory (``image_reward``).

    Args:
        weights: None (tiny random BLIP: ViT 32-d / 2 layers, BERT 32-d / 2 layers, character
            tokenizer), a path to ``ImageReward.pt``, ``"auto"`` or an ``hf://`` id.
        tokenizer (str | Path | None): Folder or ``vocab.txt`` of ``bert-base-uncased``; default: the
            HF cache (``google-bert/bert-base-uncased``), local files only.
    """
    if weights is None:
        tok = tiny_bert_tokenizer()
        med = {**MED_CONFIG, "vocab_size": len(tok), "hidden_size": 32, "encoder_hidden_size": 32,
               "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
               "bos_token_id": None, "eos_token_id": 3, "sep_token_id": 3}
        return ImageReward(ImageRewardModel({"image_size": 32, "patch_size": 16, "dim": 32, "depth": 2, "heads": 2}, med), tok)
    from transformers import BertTokenizer

    path = resolve_weights(weights, "image_reward", ARTIFACTS)
    vocab = Path(tokenizer) if tokenizer is not None else resolve_weights("auto", "image_reward tokenizer", TOKENIZER_ARTIFACTS)
    tok = BertTokenizer.from_pretrained(vocab if vocab.is_dir() else vocab.parent, local_files_only=True)
    model = ImageRewardModel(VIT_LARGE, MED_CONFIG)
    _load(model, path)
    return ImageReward(model, check_tokenizer(tok, str(vocab)))
