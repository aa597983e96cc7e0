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


# ---- tiny AudioLDM (built from configs) and audio pairs --------------------------------------------
AUDIO_SR, AUDIO_HOP, AUDIO_MELS, AUDIO_FRAMES = 16000, 64, 16, 16  # 1024-sample clips, latents [4, 8, 8]


def audioldm_parts(attention: bool = False):
    """Components of a tiny ``AudioLDMPipeline``: CLAP text tower (byte-level RoBERTa tokenizer),
    a U-Net conditioned through ``class_labels`` (no attention block at all, as the toy tones
    U-Net, unless ``attention``), a 1-channel
    VAE on ``[1, 16 frames, 16 mels]`` and a HiFi-GAN with hop 64."""
    torch.set_num_threads(1)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    from diffalign.rewards._tokenizers import tiny_roberta_tokenizer

    tok = tiny_roberta_tokenizer(max_length=16)
    torch.manual_seed(0)
    te = ClapTextModelWithProjection(ClapTextConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32, projection_dim=8,
                                                    max_position_embeddings=20, pad_token_id=1))
    blocks = (("DownBlock2D", "CrossAttnDownBlock2D"), ("CrossAttnUpBlock2D", "UpBlock2D")) if attention else \
        (("DownBlock2D", "DownBlock2D"), ("UpBlock2D", "UpBlock2D"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=AUDIO_FRAMES // 2, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=blocks[0], up_block_types=blocks[1],
                                norm_num_groups=4, cross_attention_dim=16, attention_head_dim=2,
                                class_embed_type="simple_projection", projection_class_embeddings_input_dim=8,
                                class_embeddings_concat=True, mid_block_type="UNetMidBlock2D",
                                resnet_time_scale_shift="scale_shift")  # as the toy tones U-Net
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=4, sample_size=AUDIO_FRAMES)
    torch.manual_seed(0)
    voc = SpeechT5HifiGan(SpeechT5HifiGanConfig(model_in_dim=AUDIO_MELS, sampling_rate=AUDIO_SR, upsample_initial_channel=8,
                                                upsample_rates=[4, 4, 4], upsample_kernel_sizes=[8, 8, 8],
                                                resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                                                normalize_before=False))
    # torch's default layer init, not transformers' (5.25 draws the HiFi-GAN's convs with std 0.01: its
    # waveforms come out ~1e-8, silent to every audio reward)
    torch.manual_seed(0)
    for m in voc.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            m.reset_parameters()
    sch = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                        set_alpha_to_one=False, prediction_type="epsilon")
    return dict(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sch, vocoder=voc)


def save_audioldm(folder, attention: bool = False) -> str:
    from diffusers import AudioLDMPipeline

    from diffalign.models.families.mel import MelConfig

    AudioLDMPipeline(**audioldm_parts(attention)).save_pretrained(folder)
    MelConfig(sample_rate=AUDIO_SR, n_fft=256, hop=AUDIO_HOP, n_mels=AUDIO_MELS, mel_scale="htk", norm=None,
              log_floor=1e-2).save(folder)
    return str(folder)


def tone(f0: float, n: int = AUDIO_FRAMES * AUDIO_HOP, sr: int = AUDIO_SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f0 * np.arange(n) / sr)).astype(np.float32)


def wav_bytes(wave: np.ndarray, sr: int = AUDIO_SR, fmt: str = "FLAC") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def audio_pair_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` audio pairs (FLAC bytes): a low tone against a high one, the low one preferred for "low" captions."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lo, hi = tone(float(rng.uniform(150, 250))), tone(float(rng.uniform(900, 1500)))
        low = i % 2 == 0
        rows.append({"caption": "a low tone" if low else "a high tone", "audio_0": wav_bytes(lo), "audio_1": wav_bytes(hi),
                     "label_0": 1.0 if low else 0.0})
    return rows


def audioldm2_parts():
    """Components of a tiny ``AudioLDM2Pipeline``: CLAP (text and a tiny HTSAT audio tower), a T5 encoder
    (with the byte-level tokenizer: no sentencepiece model offline), projection, GPT-2, a two-stream
    U-Net, and the VAE / vocoder / scheduler of :func:`audioldm_parts`."""
    from diffusers import AudioLDM2ProjectionModel
    from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
    from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig, GPT2Config,
                              GPT2LMHeadModel, T5Config, T5EncoderModel)

    from diffalign.rewards._tokenizers import tiny_roberta_tokenizer

    base = audioldm_parts()
    tok, tok2 = tiny_roberta_tokenizer(max_length=16), tiny_roberta_tokenizer(max_length=12)
    torch.manual_seed(0)
    clap = ClapModel(ClapConfig(
        text_config=ClapTextConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=20, pad_token_id=1).to_dict(),
        audio_config=ClapAudioConfig(spec_size=64, window_size=4, num_mel_bins=64, intermediate_size=37, depths=[2, 2],
                                     num_attention_heads=[2, 2], num_hidden_layers=2, hidden_size=192, patch_size=2,
                                     patch_stride=2, patch_embed_input_channels=4).to_dict(),
        projection_dim=16))
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_ff=37, d_kv=8, num_heads=2, num_layers=1))
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=2, n_layer=1, vocab_size=100, n_ctx=64, n_positions=64))
    lm.config.max_new_tokens = 8
    torch.manual_seed(0)
    proj = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    torch.manual_seed(0)
    unet = AudioLDM2UNet2DConditionModel(sample_size=AUDIO_FRAMES // 2, in_channels=4, out_channels=4,
                                         block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                         cross_attention_dim=([None, 16, 32], [None, 16, 32]),  # self, GPT-2, T5
                                         attention_head_dim=2)
    return dict(vae=base["vae"], text_encoder=clap, text_encoder_2=t5, projection_model=proj, language_model=lm,
                tokenizer=tok, tokenizer_2=tok2,
                feature_extractor=ClapFeatureExtractor(feature_size=64, sampling_rate=AUDIO_SR), unet=unet, scheduler=base["scheduler"],
                vocoder=base["vocoder"])


def save_audioldm2(folder) -> str:
    from diffusers import AudioLDM2Pipeline

    from diffalign.models.families.mel import MelConfig

    AudioLDM2Pipeline(**audioldm2_parts()).save_pretrained(folder)
    MelConfig(sample_rate=AUDIO_SR, n_fft=256, hop=AUDIO_HOP, n_mels=AUDIO_MELS, mel_scale="htk", norm=None,
              log_floor=1e-2).save(folder)
    return str(folder)
