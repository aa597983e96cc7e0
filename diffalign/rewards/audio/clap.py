"""CLAP score: cosine similarity of CLAP audio and text embeddings, with deterministic windowing.

Wu, Chen et al., "Large-scale Contrastive Language-Audio Pretraining with Feature Fusion and
Keyword-to-Caption Augmentation", arXiv:2211.06687 (LAION-CLAP: HTSAT audio encoder, RoBERTa text
encoder). CLAP score = ``cos(E_a(x), E_t(c))``, no ×100 and no clamp (Make-An-Audio 2,
arXiv:2305.18474; frechet-audio-distance's ``clap_score.py``).

Backends:

* ``"transformers"`` (default): ``ClapModel`` (HF ``laion/clap-htsat-unfused``, ``laion/larger_clap_*``,
  Apache-2.0) with a torch log-mel front-end equal to ``ClapFeatureExtractor``'s unfused path
  (Hann STFT 1024 / hop 480 at 48 kHz, Slaney mel 64 bins 50 Hz–14 kHz, power → dB), so the
  reward is differentiable (the extractor is numpy).
* ``"laion_clap"`` (``pip install diffalign[laion]``): the original ``laion_clap.CLAP_Module``
  (see :mod:`diffalign.rewards.audio._laion`); its checkpoints are pickles → ``trust_pickle=True``.

Windowing (both backends; no hidden RNG, unlike ``rand_trunc``): channels are averaged to mono; a
clip of at most ``window_s`` is one window, repeated and zero-padded to ``window_s`` ("repeatpad", as
CLAP was trained); a longer clip is cut into full windows starting every ``hop_s`` plus one window
ending at the last sample. The clip embedding is the normalised mean of its window embeddings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffalign.models.loading import safe_from_pretrained
from diffalign.rewards._tokenizers import check_tokenizer, tiny_roberta_tokenizer
from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.rewards.weights import resolve_weights

__all__ = ["SPEC", "ClapMel", "ClapScore", "build", "repeatpad", "windows"]

ARTIFACTS = ("hf://laion/clap-htsat-unfused/model.safetensors", "hf://laion/clap-htsat-unfused/pytorch_model.bin")
SPEC = RewardSpec(
    "clap", "audio", needs_prompt=True, differentiable=True, sample_rate=48000, max_batch_size=16, weights=ARTIFACTS
)


def repeatpad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Tiles ``x`` ``[N, T]`` ``floor(length / T)`` times, then zero-pads to ``length`` (CLAP "repeatpad")."""
    t = x.shape[-1]
    if t >= length:
        return x[..., :length]
    x = x.repeat(1, length // t)
    return F.pad(x, (0, length - x.shape[-1]))


def windows(x: torch.Tensor, length: int, hop: int) -> torch.Tensor:
    """Deterministic windows of mono audio ``[B, T]`` → ``[B, W, length]`` (see the module docstring)."""
    t = x.shape[-1]
    if t <= length:
        return repeatpad(x, length)[:, None]
    starts = [*range(0, t - length, hop), t - length]
    return torch.stack([x[:, s : s + length] for s in starts], dim=1)


class ClapMel(torch.nn.Module):
    """Log-mel spectrogram equal to ``ClapFeatureExtractor._np_extract_fbank_features`` (Slaney filters).

    ``10·log10(max(M·|STFT(x)|², 1e-10))`` with a periodic Hann window, centred frames, reflect padding.

    Args:
        sample_rate (int): Default 48000.
        n_fft (int): Default 1024.
        hop_length (int): Default 480.
        n_mels (int): Default 64.
        f_min (float): Default 50 (laion_clap's HTSAT config).
        f_max (float): Default 14000.
    """

    def __init__(
        self, sample_rate: int = 48000, n_fft: int = 1024, hop_length: int = 480, n_mels: int = 64, f_min: float = 50.0, f_max: float = 14000.0
    ) -> None:
        from transformers.audio_utils import mel_filter_bank

        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        fb = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=f_min,
            max_frequency=f_max,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("filters", torch.from_numpy(fb).float(), persistent=False)  # [F, n_mels]
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` waveform → ``[N, frames, n_mels]`` dB, ``frames = 1 + T // hop_length``."""
        spec = torch.stft(
            x.float(), self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )
        power = spec.real.pow(2) + spec.imag.pow(2)  # [N, F, frames]
        mel = torch.einsum("nft,fm->ntm", power, self.filters)
        return 10.0 * torch.log10(mel.clamp_min(1e-10))


class TransformersClap(torch.nn.Module):
    """``ClapModel`` backend: windows ``[N, L]`` → ``[N, D]``, prompts → ``[N, D]`` (both L2-normalised)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, mel: ClapMel) -> None:
        super().__init__()
        self.model, self.tokenizer, self.mel = model.eval().requires_grad_(False), tokenizer, mel
        self.embed_dim = int(model.config.projection_dim)

    def audio(self, wav: torch.Tensor) -> torch.Tensor:
        feats = self.mel(wav)[:, None]  # [N, 1, frames, mels]
        longer = torch.zeros(wav.shape[0], 1, dtype=torch.bool, device=wav.device)
        out = self.model.get_audio_features(input_features=feats, is_longer=longer)
        return F.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)

    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        t = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=77, return_tensors="pt")
        t = t.to(self.model.logit_scale_a.device)
        out = self.model.get_text_features(input_ids=t.input_ids, attention_mask=t.attention_mask)
        return F.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)


class ClapScore(Reward):
    """``cos(E_a(x), E_t(c))``; ``[B]`` in [-1, 1].

    Args:
        backend (torch.nn.Module): :class:`TransformersClap` or ``_laion.LaionClap``.
        window_s (float): Window length in seconds (CLAP was trained on 10 s). Default is 10.
        hop_s (float | None): Hop between windows of long clips; None = ``window_s``.
    """

    spec = SPEC

    def __init__(self, backend: torch.nn.Module, window_s: float = 10.0, hop_s: float | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.window = round(window_s * self.spec.sample_rate)
        self.hop = round((hop_s or window_s) * self.spec.sample_rate)
        self.embed_dim = backend.embed_dim

    def embed_frames(self, samples: Samples) -> torch.Tensor:
        """Per-window audio embeddings ``[B, W, D]`` (L2-normalised)."""
        w = windows(samples.data.mean(dim=1), self.window, self.hop)  # [B, W, L]
        b, n, length = w.shape
        return self.backend.audio(w.reshape(b * n, length)).reshape(b, n, -1)

    def embed(self, samples: Samples) -> torch.Tensor:
        """Clip embeddings ``[B, D]``: normalised mean of the window embeddings."""
        return F.normalize(self.embed_frames(samples).mean(dim=1), dim=-1)

    def embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings ``[B, D]`` (L2-normalised)."""
        return self.backend.text(prompts)

    def score(self, samples: Samples) -> RewardResult:
        cos = (self.embed(samples) * self.embed_text(samples.prompts)).sum(-1)
        return RewardResult(cos, {"raw": cos.detach()})


def tiny_clap_model(vocab_size: int = 261, n_mels: int = 16):
    """A random ``ClapModel`` (≈ 46k parameters). HTSAT constraint: ``hidden_size ==
    patch_embeds_hidden_size · 2^(len(depths) − 1)``; ``spec_size // num_mel_bins`` is the freq ratio."""
    from transformers import ClapConfig, ClapModel

    audio = {"spec_size": 64, "num_mel_bins": n_mels, "window_size": 4, "patch_size": 4, "patch_stride": (4, 4),
             "depths": [1, 1], "num_attention_heads": [2, 2], "patch_embeds_hidden_size": 16, "hidden_size": 32,
             "projection_dim": 16, "enable_fusion": False}
    text = {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 37, "max_position_embeddings": 80, "projection_dim": 16,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    return ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16))


def _mel_config(folder: Path) -> dict[str, Any]:
    """Front-end parameters from ``preprocessor_config.json`` when present (else the HTSAT defaults)."""
    path = folder / "preprocessor_config.json"
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    keys = {"sampling_rate": "sample_rate", "fft_window_size": "n_fft", "hop_length": "hop_length",
            "feature_size": "n_mels", "frequency_min": "f_min", "frequency_max": "f_max"}
    return {ours: cfg[theirs] for theirs, ours in keys.items() if theirs in cfg}


def build(
    weights: Any = None,
    backend: str = "transformers",
    window_s: float | None = None,
    hop_s: float | None = None,
    trust_pickle: bool = False,
    **backend_kwargs: Any,
) -> ClapScore:
    """Entry-point factory (``clap``).

    Args:
        weights: None (tiny random model, 1 s windows), a ``from_pretrained`` folder / weights file
            (transformers) or a ``.pt`` checkpoint (laion_clap), ``"auto"`` or an ``hf://`` id.
        backend (str): ``"transformers"`` (default) or ``"laion_clap"``.
        window_s (float | None): Window length; default 10 s (1 s for ``weights=None``).
        hop_s (float | None): Hop for long clips; default ``window_s``.
        trust_pickle (bool): Required for laion_clap checkpoints (``torch.load(weights_only=False)``
            runs code from the file): pass True only for files you trust. With the transformers
            backend it also allows a pickled ``pytorch_model.bin`` (default: safetensors only).
        **backend_kwargs: laion_clap: ``amodel`` (``"HTSAT-tiny"``; ``"HTSAT-base"`` for the music
            checkpoints), ``tokenizer`` (roberta-base folder).
    """
    if window_s is None:
        window_s = 1.0 if weights is None else 10.0
    if backend == "laion_clap":
        from diffalign.rewards.audio._laion import build_laion_backend

        return ClapScore(build_laion_backend(weights, trust_pickle=trust_pickle, **backend_kwargs), window_s, hop_s)
    if backend != "transformers":
        raise ValueError(f"clap: backend must be 'transformers' or 'laion_clap', got {backend!r}")
    if backend_kwargs:
        raise TypeError(f"clap: unexpected arguments for the transformers backend: {sorted(backend_kwargs)}")
    if weights is None:
        return ClapScore(TransformersClap(tiny_clap_model(), tiny_roberta_tokenizer(), ClapMel(n_mels=16)), window_s, hop_s)
    from transformers import AutoTokenizer, ClapModel

    path = resolve_weights(weights, "clap", ARTIFACTS, note=" (with config.json and the tokenizer files)")
    folder = path if path.is_dir() else path.parent
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"clap: provide 'config.json' of the CLAP model next to its weights in {folder}")
    model = safe_from_pretrained(ClapModel, str(folder), "clap", None, trust_pickle, local_files_only=True)
    tok = check_tokenizer(AutoTokenizer.from_pretrained(folder, local_files_only=True), str(folder))
    mel = ClapMel(**_mel_config(folder))
    return ClapScore(TransformersClap(model, tok, mel), window_s, hop_s)
