"""Helpers shared by the tests: tiny SD and SDXL components (real diffusers / transformers classes
built from configs), small Pick-a-Pic-style parquet files, and the one-thread fixture.

The session fixtures that use them (``sd_path``, ``sdxl_path``, ``pairs_parquet``, ``dcfg``, …)
are in ``tests/conftest.py``."""

import io
import json

import numpy as np
import pytest
import torch

RES = 16  # training resolution of the tests (the tiny VAE downsamples ×2: 8×8 latents)


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models gain nothing from more, and two OpenMP threads on the shared
    2-core machine made a tiny U-Net step ~20× slower (0.57 s vs 0.03 s per forward). Restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_clip_vocab(d):
    """Byte-level CLIP vocab/merges files (reference/environment.md §9)."""
    from diffalign.rewards._tokenizers import byte_level_chars

    chars = byte_level_chars()
    toks = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    d.mkdir(parents=True, exist_ok=True)
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(toks)}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d


def _parts(tmp, xl: bool, prediction_type: str = "epsilon"):
    torch.set_num_threads(1)  # session fixtures are set up before the autouse one
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(write_clip_vocab(tmp / "vocab"), model_max_length=16)
    tcfg = CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=16, intermediate_size=32,
                          num_attention_heads=2, num_hidden_layers=2, vocab_size=514, max_position_embeddings=16,
                          projection_dim=16)
    extra = {}
    if xl:
        extra = dict(addition_embed_type="text_time", addition_time_embed_dim=4,
                     projection_class_embeddings_input_dim=6 * 4 + 16, use_linear_projection=True)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                cross_attention_dim=32 if xl else 16, norm_num_groups=4, **extra)
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=4, sample_size=RES)
    torch.manual_seed(0)
    te = CLIPTextModel(tcfg)
    sch = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                        set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    parts = dict(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sch)
    if xl:
        torch.manual_seed(1)
        parts.update(text_encoder_2=CLIPTextModelWithProjection(tcfg), tokenizer_2=tok)
    return parts


def png(rng, h=20, w=24):
    from PIL import Image

    arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def pair_rows(n, seed=0, labels=(1.0, 0.0)):
    rng = np.random.default_rng(seed)
    caps = ["a red circle", "a blue square", "a green triangle"]
    return [{"caption": caps[i % 3], "jpg_0": png(rng, 20 + i % 3, 24), "jpg_1": png(rng, 24, 20),
             "label_0": labels[i % len(labels)]} for i in range(n)]


def write_parquet(rows, path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), str(path))
    return str(path)


def probe(xl: bool = False):
    """A fixed input ``(x_t, t, cond)`` of the tiny U-Nets (``RES`` px → 8×8 latents)."""
    from diffalign.models.denoiser import Conditioning

    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700])
    if xl:
        return x, t, Conditioning(torch.randn(2, 16, 32, generator=g), torch.randn(2, 16, generator=g),
                                  torch.tensor([[20.0, 24, 0, 2, 16, 16]] * 2))
    return x, t, Conditioning(torch.randn(2, 16, 16, generator=g))


def trainable(module):
    """Copies of the trainable parameters, by name."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def recording(unet, seen: list, grad_only: bool = False):
    """A ``Denoiser`` of ``unet`` that appends ``(x_t, t)`` of each call to ``seen`` (only calls with
    gradients enabled when ``grad_only``: the loss forward, not an inversion) — for shared-noise tests."""
    from diffalign.models.denoiser import Denoiser

    class Recorder(Denoiser):
        def __call__(self, x_t, t, cond):
            if not grad_only or torch.is_grad_enabled():
                seen.append((x_t.clone(), t.clone()))
            return super().__call__(x_t, t, cond)

    return Recorder(unet)


# (case → the message the user saw) of the bad-input suite; conftest.py writes it when
# DIFFALIGN_RELIABILITY_TABLE is set (the source of the README's Reliability table).
MESSAGES: dict[str, str] = {}
