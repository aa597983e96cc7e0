"""Image preprocessing of preference pairs: resize, crop, flip, normalise — with the facts SDXL needs.

Each image is resized so its shorter side is ``resolution`` (bilinear), cropped to a square
(center, or random), optionally flipped horizontally, and mapped to ``[−1, 1]``. Its original
size and crop corner are returned for SDXL's micro-conditioning (``add_time_ids``), computed
as the diffusers SDXL training scripts do (after a flip the left corner is mirrored).

Random decisions come from ``pair_rng(seed, epoch, index)``: they depend only on the pair and
the epoch, never on batching or on how far a run got — so a resumed run, a cached run and an
uncached run see the same augmentation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Prepared", "Augmentation", "pair_rng", "augmentation", "decode", "prepare"]


@dataclass
class Prepared:
    """One preprocessed image.

    Attributes:
        pixels (torch.Tensor): ``[3, R, R]`` float in [−1, 1].
        original_size (tuple[int, int]): (height, width) before resizing.
        crop_top_left (tuple[int, int]): (top, left) of the crop in the resized image.
    """

    pixels: torch.Tensor
    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]

    def time_ids(self) -> torch.Tensor:
        """``[6]`` = original (h, w), crop (top, left), target (h, w): SDXL's ``add_time_ids``."""
        r = tuple(self.pixels.shape[-2:])
        return torch.tensor([*self.original_size, *self.crop_top_left, *r], dtype=torch.float32)


@dataclass
class Augmentation:
    """The random decisions for one pair in one epoch (the same for both images of the pair).

    Attributes:
        flip (bool): mirror horizontally. crop_offset (tuple[float, float]): (y, x) of a random
            crop in [0, 1]². drop_caption (bool): train this pair with the empty prompt.
    """

    flip: bool
    crop_offset: tuple[float, float]
    drop_caption: bool


def pair_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one pair in one epoch (flip, random crop, caption dropout)."""
    return np.random.default_rng([seed, epoch, index])


def augmentation(seed: int, epoch: int, index: int, hflip: bool, caption_dropout: float) -> Augmentation:
    """The draws of pair ``index`` in ``epoch``: always four uniforms (flip, crop y, crop x, caption
    dropout), so changing one option never shifts the others' draws."""
    u = pair_rng(seed, epoch, index).random(4)
    return Augmentation(bool(hflip and u[0] < 0.5), (float(u[1]), float(u[2])), bool(u[3] < caption_dropout))


def decode(data: bytes):
    """Encoded image bytes → RGB ``PIL.Image`` (fully decoded; raises on corrupt data)."""
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB")


def prepare(image, resolution: int, crop: str = "center", flip: bool = False, crop_offset: tuple[float, float] = (0.5, 0.5)) -> Prepared:
    """Resize the shorter side to ``resolution``, crop a square, flip, normalise.

    Args:
        image (PIL.Image.Image): RGB image.
        resolution (int): output side in pixels.
        crop (str): ``center`` or ``random`` (``crop_offset`` in [0, 1]² picks the corner).
        flip (bool): mirror horizontally.
        crop_offset (tuple[float, float]): (y, x) fraction of the free room above/left of the crop.

    Returns:
        Prepared: pixels ``[3, R, R]`` and SDXL's size/crop facts.
    """
    from PIL import Image

    w, h = image.size
    original = (h, w)
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.BILINEAR)
    fy, fx = (0.5, 0.5) if crop == "center" else crop_offset
    top, left = int(round((nh - resolution) * fy)), int(round((nw - resolution) * fx))
    image = image.crop((left, top, left + resolution, top + resolution))
    arr = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 127.5 - 1.0  # [3, R, R]
    if flip:
        arr = arr.flip(-1)
        left = nw - left - resolution  # the crop's left corner in the mirrored image
    return Prepared(arr, original, (top, left))
