"""`toy_clip`: a tiny open_clip model trained contrastively on the shapes world.

It is a plain open_clip `CLIP` (ViT 32 px, patch 4; 2-layer text transformer) saved in open_clip's
`local-dir:` format — `open_clip_config.json` + `open_clip_model.safetensors` — beside the toy CLIP
tokenizer files, which open_clip loads through its `HFTokenizer` (the config names an
`hf_tokenizer_name`, and a `local-dir:` model always takes the tokenizer from its own folder). So
the learned-reward path is the same as for real CLIP / HPS checkpoints::

    model = open_clip.create_model("local-dir:assets/toy/image/toy_clip")
    tokenizer = open_clip.get_tokenizer("local-dir:assets/toy/image/toy_clip")

Training uses the InfoNCE loss with *all* consistent pairs as positives: in this world many
captions in a batch describe the same image ("a red circle" fits every red circle), and treating
them as negatives would teach the model contradictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffalign.toy.image.world import BACKGROUNDS, COLOURS, SHAPES, SIZES, Prompt, ShapesWorld, render

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ToyClipConfig:
    """Model size and training settings of toy_clip.

    Args:
        embed_dim (int): joint embedding size.
        width (int): width of both towers.
        layers (int): transformer layers of both towers.
        steps (int): optimiser steps on fresh renders.
        batch (int): image-caption pairs per step.
        lr (float): peak AdamW learning rate (cosine decay).
        noise_max (float): augmentation: Gaussian pixel noise with σ ~ U(0, noise_max).
    """

    embed_dim: int = 64
    width: int = 64
    layers: int = 2
    steps: int = 700
    batch: int = 128
    lr: float = 2e-3
    noise_max: float = 0.08


def model_cfg(cfg: ToyClipConfig, tokenizer) -> dict:
    """The open_clip `model_cfg` for the toy tokenizer (its <|endoftext|> has the highest id)."""
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {"image_size": 32, "patch_size": 4, "width": cfg.width, "layers": cfg.layers, "head_width": 16},
        "text_cfg": {
            "context_length": tokenizer.model_max_length,
            "vocab_size": len(tokenizer),
            "width": cfg.width,
            "heads": 4,
            "layers": cfg.layers,
            "hf_tokenizer_name": "diffalign-toy-shapes",  # any name: local-dir reads the tokenizer in place
        },
    }


def _augment(images: torch.Tensor, gen: torch.Generator, noise_max: float) -> torch.Tensor:
    """Blur half the images a little and add pixel noise, like decoded samples. [B, 3, H, W]."""
    b = images.shape[0]
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    mix = torch.rand(b, 1, 1, 1, generator=gen) * (torch.rand(b, 1, 1, 1, generator=gen) < 0.5)
    images = images * (1 - mix) + blurred * mix
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * noise_max
    return (images + sigma * torch.randn(images.shape, generator=gen)).clamp(0, 1)


def normalise(images: torch.Tensor, model) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> the model's input: resized (bicubic, antialiased) and normalised."""
    pp = model.visual.preprocess_cfg
    size = model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(pp["mean"], dtype=images.dtype, device=images.device)[:, None, None]
    std = torch.tensor(pp["std"], dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean) / std


def _consistent(images: list[Prompt], captions: list[Prompt]) -> torch.Tensor:
    """[B, B] bool: caption j describes image i (its colour, shape and any size / background it names).

    `images` are fully specified prompts (a size and a background: what was drawn).
    """
    def codes(prompts: list[Prompt]) -> torch.Tensor:  # [B, 4]: colour, shape, size, background (0 = unnamed)
        vocab = [list(COLOURS), list(SHAPES), [None, *SIZES], [None, *BACKGROUNDS]]
        return torch.tensor([[v.index(x) for v, x in zip(vocab, (p.colour, p.shape, p.size, p.background))]
                             for p in prompts])

    a, b = codes(images)[:, None], codes(captions)[None]  # [B, 1, 4], [1, B, 4]
    same = a == b
    return same[..., 0] & same[..., 1] & (same[..., 2] | (b[..., 2] == 0)) & (same[..., 3] | (b[..., 3] == 0))


def train_toy_clip(
    world: ShapesWorld, tokenizer, cfg: ToyClipConfig, seed: int, log: Callable[[str], None] = print
) -> tuple[torch.nn.Module, dict]:
    """Trains toy_clip on renders of all world prompts (it is a judge of the whole world).

    Images are drawn for fully specified prompts (a size and a background); each is captioned by
    a random phrasing that is true of it (with or without size / background).

    Returns:
        tuple: the model (eval mode) and {"loss", "seconds", "steps"}.
    """
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**model_cfg(cfg, tokenizer))
    model.visual.preprocess_cfg = {"mean": OPENAI_MEAN, "std": OPENAI_STD}
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    full = [p for p in world.prompts if p.size and p.background]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.05)
    t0, losses = time.time(), []
    model.train()
    for step in tqdm(range(cfg.steps), desc="toy_clip", mininterval=10):
        picks = [full[i] for i in rng.integers(len(full), size=cfg.batch)]
        specs = world.sample_specs([p.text for p in picks], seed=int(rng.integers(2**31)))
        images = _augment(torch.from_numpy(render(specs)), gen, cfg.noise_max)
        keep = rng.random((cfg.batch, 2)) < 0.5  # drop size / background from the caption
        captions = [
            Prompt(p.colour, p.shape, p.size if k[0] else None, p.background if k[1] else None)
            for p, k in zip(picks, keep)
        ]
        pos = _consistent(picks, captions).float()  # [B, B]
        img = F.normalize(model.encode_image(normalise(images, model)), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer([c.text for c in captions], padding="max_length",
                                                      max_length=tokenizer.model_max_length,
                                                      return_tensors="pt").input_ids), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T  # [B, B]
        loss_i = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(dim=1)).sum(1).mean()
        loss_t = -(pos.T / pos.T.sum(1, keepdim=True) * logits.T.log_softmax(dim=1)).sum(1).mean()
        loss = (loss_i + loss_t) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)  # ≤ 100, as in CLIP
        losses.append(loss.item())
    model.eval()
    out = {"loss": float(np.mean(losses[-50:])), "seconds": time.time() - t0, "steps": cfg.steps}
    log(f"toy_clip: {cfg.steps} steps, loss {out['loss']:.3f}, {out['seconds']:.0f} s")
    return model, out


def save_toy_clip(model: torch.nn.Module, cfg: ToyClipConfig, tokenizer, folder: str | Path) -> Path:
    """Writes the open_clip `local-dir:` folder: config, safetensors weights, tokenizer files."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg(cfg, tokenizer),
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "interpolation": "bicubic",
                           "resize_mode": "shortest"},
    }
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    tokenizer.save_pretrained(str(folder))
    return folder


def load_toy_clip(folder: str | Path):
    """Loads toy_clip exactly as a real open_clip checkpoint: `local-dir:` model and tokenizer.

    Returns:
        tuple: (model in eval mode, open_clip tokenizer).
    """
    import open_clip

    name = f"local-dir:{Path(folder)}"
    model = open_clip.create_model(name)
    model.eval()
    return model, open_clip.get_tokenizer(name)


@torch.no_grad()
def clip_scores(model, tokenizer, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """CLIP score: cosine of the normalised image and text embeddings.

    Args:
        images (torch.Tensor): [B, 3, H, W] in [0, 1].
        prompts (list[str]): B prompts.

    Returns:
        torch.Tensor: [B] cosines in [-1, 1].
    """
    img = F.normalize(model.encode_image(normalise(images.float(), model)), dim=-1)
    txt = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    return (img * txt).sum(-1)
