"""The benchmark's inputs, built offline and byte-identical per seed: a randomly initialised Stable
Diffusion pipeline of a shipped architecture and Pick-a-Pic-style preference pairs.

* ``build_pipeline(out, arch, resolution)`` — ``configs/bench/<arch>.json`` (``sd-small``: the
  peer harness's 24.25 M-param U-Net; ``sd15``: the SD 1.5 U-Net, VAE and CLIP ViT-L/14 text
  architectures), random weights, a byte-level CLIP tokenizer, a DDPM SD-1.x schedule, saved in
  diffusers format (safetensors) so that both our trainer and diffusers' ``train_diffusion_dpo.py``
  load it with ``from_pretrained``. Nothing is downloaded.
* ``build_pairs(out, n, resolution)`` — ``caption``, ``jpg_0``, ``jpg_1``, ``label_0``,
  ``label_1`` as ``out/data/train-00000-of-00001.parquet`` plus the README ``configs:`` header that
  ``datasets.load_dataset(out, split="train")`` (the script's loader) reads.

The weights are random: these inputs measure speed and memory, not quality.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

__all__ = ["ARCHS", "arch_config", "build_pipeline", "build_pairs"]

ARCHS = ("sd-small", "sd15")
_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "bench"


def arch_config(arch: str) -> dict:
    """The component configs of a shipped benchmark architecture (``configs/bench/<arch>.json``)."""
    path = _CONFIGS / f"{arch}.json"
    if arch not in ARCHS or not path.is_file():
        raise ValueError(f"unknown benchmark architecture {arch!r}; shipped: {list(ARCHS)} (configs/bench/)")
    cfg = json.loads(path.read_text())
    cfg.pop("_comment", None)
    return cfg


def build_pipeline(out: str | Path, arch: str = "sd-small", resolution: int = 128, seed: int = 0) -> dict:
    """Write a random-weight SD pipeline of ``arch`` to ``out`` (skipped when ``out/build_info.json``
    already records the same arch, resolution and seed). Returns the build info (parameter counts)."""
    out = Path(out)
    want = {"arch": arch, "resolution": resolution, "seed": seed}
    info_path = out / "build_info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            return info
    if resolution % 8:
        raise ValueError(f"resolution must be a multiple of 8, got {resolution}")
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..rewards._tokenizers import tiny_clip_tokenizer

    cfg = arch_config(arch)
    tok = tiny_clip_tokenizer(cfg["text_encoder"].get("max_position_embeddings", 77))
    te_cfg = {"vocab_size": len(tok), **cfg["text_encoder"]}
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                pad_token_id=tok.pad_token_id)).eval()
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**cfg["vae"], sample_size=resolution).eval()
    torch.manual_seed(seed + 2)
    unet = UNet2DConditionModel(**cfg["unet"], sample_size=resolution // 8).eval()
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet,
                                   scheduler=DDPMScheduler(**cfg["scheduler"]), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    info = {**want, "unet_params": count(unet), "vae_params": count(vae), "text_encoder_params": count(text_encoder)}
    info_path.write_text(json.dumps(info, indent=2))
    return info


_COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 215, 40),
            "purple": (140, 50, 170), "orange": (245, 140, 30), "white": (240, 240, 240), "black": (20, 20, 20)}
_SHAPES = ("circle", "square", "triangle")


def _draw(rng, size: int, shape: str, fg, bg) -> bytes:
    """A shape on a gradient background with pixel noise, as JPEG bytes (real decode work per image)."""
    import numpy as np
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    gx, gy = rng.uniform(-40, 40, size=2)
    img = np.asarray(bg, np.float32)[None, None] + (gx * xx + gy * yy)[..., None]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(pil)
    r = rng.uniform(0.18, 0.35) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    arr = np.asarray(pil, np.float32) + rng.normal(0, 6, size=(size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_pairs(out: str | Path, n: int = 256, resolution: int = 128, seed: int = 0, split: str = "train") -> Path:
    """Write ``n`` Pick-a-Pic-style pairs (``caption, jpg_0, jpg_1, label_0, label_1``) to
    ``out/data/<split>-00000-of-00001.parquet`` (skipped when already built with the same
    arguments). The preferred image draws the caption, the other a different colour or shape;
    ``label_0`` is a fair coin. Returns the parquet path."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    path = out / "data" / f"{split}-00000-of-00001.parquet"
    want = {"n": n, "resolution": resolution, "seed": seed, "split": split}
    info_path = out / "pairs_info.json"
    if path.is_file() and info_path.is_file() and json.loads(info_path.read_text()) == want:
        return path
    rng = np.random.default_rng(seed)
    names = list(_COLOURS)
    rows = {"caption": [], "jpg_0": [], "jpg_1": [], "label_0": [], "label_1": []}
    for _ in range(n):
        fg, bg = rng.choice(len(names), size=2, replace=False)
        shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
        good = _draw(rng, resolution, shape, _COLOURS[names[fg]], _COLOURS[names[bg]])
        other = _SHAPES[(_SHAPES.index(shape) + 1 + int(rng.integers(len(_SHAPES) - 1))) % len(_SHAPES)]
        bad = _draw(rng, resolution, other, _COLOURS[names[(fg + 1) % len(names)]], _COLOURS[names[bg]])
        first = bool(rng.integers(2))
        rows["caption"].append(f"a {names[fg]} {shape} on a {names[bg]} background")
        rows["jpg_0"].append(good if first else bad)
        rows["jpg_1"].append(bad if first else good)
        rows["label_0"].append(1.0 if first else 0.0)
        rows["label_1"].append(0.0 if first else 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)
    (out / "README.md").write_text(f"---\nconfigs:\n- config_name: default\n  data_files:\n  - split: {split}\n"
                                   f"    path: data/{split}-*.parquet\n---\nSynthetic pairs for `diffalign bench diffusion`.\n")
    info_path.write_text(json.dumps(want))
    return path
