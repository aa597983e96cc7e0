"""Torch-native image preprocessing and CLIP-family helpers shared by the image rewards.

Every step is a differentiable tensor op (``F.interpolate(..., mode="bicubic", antialias=True)``,
slicing, padding, affine normalisation) replacing the PIL pipelines of the original repositories
(``CLIPProcessor``, torchvision ``Resize`` on PIL images), so rewards can be back-propagated into the
generator (ReFL, arXiv:2304.05977; DRaFT, arXiv:2309.17400; AlignProp, arXiv:2310.03739).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "PreferenceMLP",
    "image_size_of",
    "normalize",
    "pooled",
    "resize_center_crop",
    "resize_longest_pad",
    "tiny_open_clip",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    # Bicubic + antialias ≈ PIL's bicubic; clamp like PIL's uint8 output (bicubic overshoots).
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Shortest side → ``size`` (bicubic), then a centred ``size × size`` crop (CLIP preprocessing).

    Output sizes follow torchvision ``Resize(int)`` / ``CenterCrop``: the long side is
    ``int(size · long / short)``, the crop offset ``round((L − size) / 2)``.

    Args:
        x (torch.Tensor): ``[B, 3, H, W]`` in [0, 1].
        size (int): Model input size.

    Returns:
        torch.Tensor: ``[B, 3, size, size]``.
    """
    h, w = x.shape[-2:]
    if h <= w:
        new = (size, int(size * w / h))
    else:
        new = (int(size * h / w), size)
    x = _resize(x, new)
    top, left = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def resize_longest_pad(x: torch.Tensor, size: int, fill: float = 0.0) -> torch.Tensor:
    """Longest side → ``size`` (bicubic), then centred padding to a square with ``fill`` (HPS ``ResizeMaxSize``).

    Padding happens before normalisation, as in HPSv2 (``fill=0`` = black pixels).

    Args:
        x (torch.Tensor): ``[B, 3, H, W]`` in [0, 1].
        size (int): Model input size.
        fill (float): Padding value in [0, 1]. Default is 0.

    Returns:
        torch.Tensor: ``[B, 3, size, size]``.
    """
    h, w = x.shape[-2:]
    scale = size / max(h, w)
    new = (round(h * scale), round(w * scale))
    # HPSv2 skips padding too when the long side already equals `size`; a non-square input would then
    # not fit the ViT, so we pad it (identical output for square inputs).
    x = _resize(x, new)
    pad_h, pad_w = size - new[0], size - new[1]
    if pad_h == pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = OPENAI_MEAN, std: tuple[float, ...] = OPENAI_STD) -> torch.Tensor:
    """``(x − mean) / std`` per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - m) / s


def pooled(out: Any) -> torch.Tensor:
    """transformers ≥ 5 ``get_*_features`` return ``BaseModelOutputWithPooling`` (PR #42564); 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def image_size_of(visual: torch.nn.Module) -> int:
    """Square input size of an open_clip visual tower."""
    size = visual.image_size
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def tiny_open_clip(embed_dim: int = 32, image_size: int = 32, quick_gelu: bool = False) -> torch.nn.Module:
    """A random open_clip ``CLIP`` small enough for CPU tests (≈ 1.7 M parameters).

    ``vocab_size`` stays 49408 so that the bundled BPE tokenizer (``open_clip.get_tokenizer``) fits.
    """
    from open_clip.model import CLIP

    return CLIP(
        embed_dim=embed_dim,
        vision_cfg={"image_size": image_size, "patch_size": 16, "width": 32, "layers": 2, "head_width": 16},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        quick_gelu=quick_gelu,
    )


class PreferenceMLP(torch.nn.Module):
    """The 5-layer affine head of the LAION aesthetic predictor v2 and ImageReward.

    ``Linear(d,1024) → Dropout(.2) → Linear(1024,128) → Dropout(.2) → Linear(128,64) → Dropout(.1) →
    Linear(64,16) → Linear(16,1)``: the ReLUs are commented out in both originals, so at eval it is
    one affine map (kept layer by layer so the released state dicts, ``layers.{0,2,4,6,7}.*``, load).
    """

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 16),
            torch.nn.Linear(16, 1),
        )
        for name, param in self.layers.named_parameters():  # the originals' init: N(0, 1/(d+1)), zero bias
            if name.endswith("weight"):
                torch.nn.init.normal_(param, std=1.0 / (dim + 1))
            else:
                torch.nn.init.zeros_(param)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` → ``[B]``."""
        return self.layers(emb).squeeze(-1)
