"""Programmatic pitch-band fidelity and a fixed audio embedding for the tones world.

Pitch (``score_pitch``, the ``toy_pitch`` reward):

1. average the power spectrum of the clip over Hann frames of 4096 samples (3.9 Hz bins);
2. take the strongest peak between ``F_LO`` and ``F_HI`` as the fundamental ``f0`` (parabolic
   interpolation on the log power). Every timbre of the world has its fundamental as the strongest
   partial, so no subharmonic search is needed (such searches misfire on vocoder artefacts);
3. ``correct``: the band whose log-centre is nearest to ``f0`` is the prompt's band;
4. timbre (the prompt names one, so the labeller must score it: a reward blind to an attribute lets
   a method break it for free). The power ``P_k`` within ±3% of each partial ``k f0``, ``k = 1..K``
   (``K`` = the partials below 7.6 kHz, at most 8, as the renderer draws them), gives two shares of
   the harmonic power: odd overtones ``x = Σ_{k odd ≥ 3} P_k / Σ P_k`` and even overtones
   ``y = Σ_{k even} P_k / Σ P_k``. The world's timbres, drawn with amplitudes ``1/k``, sit at
   sine (0, 0), square (≈0.15, 0) and sawtooth (≈0.11, ≈0.23) for K = 8 (each clip's prototypes are
   computed for its own K); ``q = softmax(−dist² / (2 · 0.04²))`` over the three. This reads the
   power of every partial up to K, not the two amplitude ratios that ``toy_audio_judge`` compares;
5. a graded score, continuous so that pairs of generated clips rarely tie, dominated by being right
   on everything the prompt names (band and timbre)::

       d_b      = |log2 f0 − log2 centre_b|                 (octaves, per band b)
       p_target = softmax_b(−d_b² / (2 · 0.3²))[target]     (soft band decision)
       q_target = q[prompt's timbre]                        (soft timbre decision; 1 if none is named)
       closeness= exp(−d_target / 0.5)                      (how central in its band)
       clarity  = power within ±3% of f0's partials / total power (80 Hz–8 kHz)
       graded   = presence · (0.75 p_target q_target + 0.25 closeness) · (0.6 + 0.4 clarity)

   ``presence`` ramps from 0 to 1 as the RMS rises from 1e-4 to 1e-3 (silence scores 0).
   (Until 2026-12-07 the score read the band alone: with the first toy vocoder no timbre could be
   heard; the vocoder that replaced it keeps timbre, and DPO on band-only labels traded it away.)

Embedding (``embed_audio``, used for FAD and Vendi on this world): per mel band, the mean and the
standard deviation over time of the world's log-mel (32 + 32 = 64 dimensions), standardised with
fixed statistics of rendered clips (``EmbeddingStats``), so that the cosine kernel of Vendi and the
Gaussian of FAD see pitch, timbre and loudness on comparable scales. ``embed_frames`` gives the
same features over 0.26 s windows (hop 0.13 s) for per-clip FAD.

Example:
    >>> out = score_pitch(wave, ["a low sine tone", "a loud high square wave"])  # wave [B, T] at 16 kHz
    >>> out["graded"], out["correct"], out["f0"]  # [B] each
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from diffalign.toy.audio.world import BAND_WORDS, BANDS, SAMPLE_RATE, TIMBRE_WORDS, TIMBRES, log_mel

BAND_NAMES = list(BANDS)
_CENTRES = torch.tensor([0.5 * math.log2(lo * hi) for lo, hi in BANDS.values()], dtype=torch.float64)  # [3] log2 Hz
F_LO, F_HI = 80.0, 2400.0  # Hz, search range of the fundamental
PITCH_N_FFT, PITCH_HOP = 4096, 1024
BAND_TAU = 0.3  # octaves: width of the soft band decision
CLOSENESS_SCALE = 0.5  # octaves
CLARITY_TOL = 0.03  # relative half-width of a partial's window
EMBED_DIM = 64
_BAND_WORD = re.compile(r"\b(%s)\b" % "|".join(w for ws in BAND_WORDS.values() for w in ws))
_TIMBRE_WORD = re.compile(r"\b(%s)\b" % "|".join(sorted((w for ws in TIMBRE_WORDS.values() for w in ws), key=len,
                                                         reverse=True)))
TIMBRE_PARTIALS, TIMBRE_TOP_HZ, TIMBRE_TAU = 8, 7600.0, 0.04
FRAME_WIN, FRAME_HOP = 16, 8  # mel frames per window / hop of embed_frames


def _power_spectrum(wave: torch.Tensor) -> torch.Tensor:
    """Mean power spectrum over Hann frames: ``[B, T]`` -> ``[B, PITCH_N_FFT // 2 + 1]`` float64."""
    x = wave.double()
    if x.shape[-1] < PITCH_N_FFT:
        x = torch.nn.functional.pad(x, (0, PITCH_N_FFT - x.shape[-1]))
    window = torch.hann_window(PITCH_N_FFT, dtype=torch.float64, device=x.device)
    spec = torch.stft(x, PITCH_N_FFT, PITCH_HOP, window=window, center=False, return_complex=True)  # [B, F, frames]
    return spec.abs().pow(2).mean(dim=-1)


def estimate_f0(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Fundamental frequency and tonal clarity of each clip.

    Args:
        wave (torch.Tensor): ``[B, T]`` mono audio.
        sample_rate (int): Hz. Default is 16000.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``f0`` ``[B]`` (Hz, float64) and ``clarity`` ``[B]`` in [0, 1].
    """
    return _f0_and_clarity(_power_spectrum(wave), sample_rate)


def _f0_and_clarity(power: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """``estimate_f0`` on a mean power spectrum ``[B, F]`` (``_power_spectrum``)."""
    bin_hz = sample_rate / PITCH_N_FFT
    freqs = torch.arange(power.shape[-1], dtype=torch.float64, device=power.device) * bin_hz  # [F]
    lo, hi = int(math.ceil(F_LO / bin_hz)), int(F_HI / bin_hz)
    logp = torch.log(power + 1e-20)
    k = lo + power[:, lo : hi + 1].argmax(dim=-1)  # [B] peak bin
    a, b, c = (logp.gather(1, (k + o)[:, None])[:, 0] for o in (-1, 0, 1))
    denom = a - 2 * b + c
    shift = torch.where(denom.abs() > 1e-12, 0.5 * (a - c) / denom, torch.zeros_like(denom)).clamp(-0.5, 0.5)
    f0 = (k.double() + shift) * bin_hz  # [B]
    # clarity: share of the power (80 Hz .. 8 kHz) that sits on f0's partials
    ratio = freqs[None] / f0[:, None]  # [B, F] in units of f0
    harmonic = ratio.round()
    on_partial = (harmonic >= 1) & ((ratio - harmonic).abs() <= CLARITY_TOL * harmonic.clamp_min(1) + bin_hz / f0[:, None])
    band = (freqs >= F_LO)[None]
    total = (power * band).sum(-1).clamp_min(1e-20)
    clarity = ((power * (band & on_partial)).sum(-1) / total).clamp(0, 1)
    return f0, clarity


def target_band(prompt: str) -> int | None:
    """Index (into ``BAND_NAMES``) of the first band word in ``prompt``; None when it names no band."""
    m = _BAND_WORD.search(prompt.lower())
    if m is None:
        return None
    return next(i for i, b in enumerate(BAND_NAMES) if m.group(1) in BAND_WORDS[b])


def target_timbre(prompt: str) -> int | None:
    """Index (into ``TIMBRES``) of the timbre phrase in ``prompt``; None when it names none."""
    m = _TIMBRE_WORD.search(prompt.lower())
    if m is None:
        return None
    return next(i for i, t in enumerate(TIMBRES) if m.group(1) in TIMBRE_WORDS[t])


def timbre_shares(power: torch.Tensor, f0: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, ...]:
    """Odd- and even-overtone shares of the harmonic power, and the timbre posterior (item 4 of the module docstring).

    Args:
        power (torch.Tensor): ``[B, F]`` mean power spectrum (``_power_spectrum``).
        f0 (torch.Tensor): ``[B]`` Hz.

    Returns:
        tuple: ``x`` ``[B]``, ``y`` ``[B]``, ``q`` ``[B, 3]`` (rows sum to 1, columns in ``TIMBRES`` order).
    """
    bin_hz = sample_rate / PITCH_N_FFT
    freqs = torch.arange(power.shape[-1], dtype=torch.float64, device=power.device) * bin_hz  # [F]
    ks = torch.arange(1, TIMBRE_PARTIALS + 1, dtype=torch.float64, device=power.device)  # [8]
    centre = f0[:, None] * ks[None]  # [B, 8]
    near = (freqs[None, None] - centre[..., None]).abs() <= (CLARITY_TOL * centre[..., None] + bin_hz)  # [B, 8, F]
    pk = (near * power[:, None]).sum(-1)  # [B, 8] power per partial
    present = centre <= TIMBRE_TOP_HZ  # [B, 8] partials the renderer draws (below 0.95 Nyquist)
    pk = pk * present
    total = pk.sum(-1).clamp_min(1e-20)
    odd, even = (ks % 2 == 1) & (ks > 1), ks % 2 == 0  # [8]
    x, y = (pk * odd).sum(-1) / total, (pk * even).sum(-1) / total  # [B] each
    # prototypes per clip: amplitudes 1/k on the drawn partials (square: odd k only; sine: k = 1)
    amp2 = (1.0 / ks.pow(2))[None] * present  # [B, 8] power of a sawtooth's partials
    def shares(p):  # noqa: E306 - [B, 8] -> ([B], [B])
        t = p.sum(-1).clamp_min(1e-20)
        return (p * odd).sum(-1) / t, (p * even).sum(-1) / t
    protos = [shares(amp2 * (ks == 1)), shares(amp2 * (ks % 2 == 1)), shares(amp2)]  # sine, square, sawtooth
    d2 = torch.stack([(x - px).pow(2) + (y - py).pow(2) for px, py in protos], dim=-1)  # [B, 3]
    return x, y, torch.softmax(-d2 / (2 * TIMBRE_TAU**2), dim=-1)


def score_pitch(wave: torch.Tensor, prompts: list[str], sample_rate: int = SAMPLE_RATE) -> dict[str, torch.Tensor]:
    """Pitch-band fidelity of clips to their prompts (see the module docstring).

    Args:
        wave (torch.Tensor): ``[B, T]`` or ``[B, 1, T]`` audio in [-1, 1].
        prompts (list[str]): one prompt per clip; its band is its first band word (low/deep,
            mid/medium, high/shrill). A prompt without one asks for no band: it scores 0, not correct.
        sample_rate (int): Hz. Default is 16000.

    Returns:
        dict[str, torch.Tensor]: ``graded`` ``[B]`` float in [0, 1], ``correct`` ``[B]`` bool (the band),
        ``timbre_correct`` ``[B]`` bool (the most probable timbre is the prompt's; True when it names none),
        ``joint`` ``[B]`` bool (both), ``f0`` ``[B]`` Hz, ``band`` ``[B]`` long (index into ``BAND_NAMES``),
        ``timbre`` ``[B]`` long (index into ``TIMBRES``), ``clarity`` ``[B]``, ``p_target`` ``[B]``, ``q_target``
        ``[B]``, ``has_band`` ``[B]`` bool.
    """
    if wave.ndim == 3:
        wave = wave.mean(dim=1)
    if len(prompts) != wave.shape[0]:
        raise ValueError(f"score_pitch: {wave.shape[0]} clips but {len(prompts)} prompts")
    bands = [target_band(p) for p in prompts]
    has_band = torch.tensor([b is not None for b in bands], device=wave.device)
    target = torch.tensor([0 if b is None else b for b in bands], device=wave.device)
    timbres = [target_timbre(p) for p in prompts]
    has_timbre = torch.tensor([t is not None for t in timbres], device=wave.device)
    want_timbre = torch.tensor([0 if t is None else t for t in timbres], device=wave.device)
    power = _power_spectrum(wave)  # [B, F], shared by the pitch and the timbre readings
    f0, clarity = _f0_and_clarity(power, sample_rate)
    d = (torch.log2(f0)[:, None] - _CENTRES.to(f0.device)[None]).abs()  # [B, 3] octaves
    p = torch.softmax(-d.pow(2) / (2 * BAND_TAU**2), dim=-1)
    p_target = p.gather(1, target[:, None])[:, 0]
    _, _, q = timbre_shares(power, f0, sample_rate)  # [B, 3]
    q_target = torch.where(has_timbre, q.gather(1, want_timbre[:, None])[:, 0], torch.ones_like(p_target))
    closeness = torch.exp(-d.gather(1, target[:, None])[:, 0] / CLOSENESS_SCALE)
    rms = wave.double().pow(2).mean(-1).sqrt()
    presence = ((torch.log10(rms.clamp_min(1e-12)) + 4.0) / 1.0).clamp(0, 1)  # 1e-4 -> 0, 1e-3 -> 1
    graded = has_band * presence * (0.75 * p_target * q_target + 0.25 * closeness) * (0.6 + 0.4 * clarity)
    band, timbre = d.argmin(dim=-1), q.argmax(dim=-1)
    correct = (band == target) & (presence > 0) & has_band
    timbre_correct = (timbre == want_timbre) | ~has_timbre
    return {"graded": graded.float(), "correct": correct, "timbre_correct": timbre_correct,
            "joint": correct & timbre_correct, "f0": f0.float(), "band": band, "timbre": timbre,
            "clarity": clarity.float(), "p_target": p_target.float(), "q_target": q_target.float(),
            "has_band": has_band}


def band_from_mel(mel: torch.Tensor) -> torch.Tensor:
    """Pitch band read off log-mels ``[B, frames, 32]`` (or ``[B, 1, frames, 32]``): ``[B]`` long.

    The lowest mel band (centre within ``F_LO``..``F_HI``) whose time-averaged magnitude reaches half
    of the largest one is taken as the fundamental. This reads the UNet + VAE output before the
    vocoder, so that a pipeline's errors can be split between the two.
    """
    from diffalign.toy.audio.world import mel_bin_centres

    if mel.ndim == 4:
        mel = mel[:, 0]
    centres = torch.tensor(mel_bin_centres(), dtype=torch.float64)
    keep = (centres >= F_LO) & (centres <= F_HI)
    mag = mel.double().exp().mean(dim=1)[:, keep]  # [B, K]
    strong = mag >= 0.5 * mag.max(dim=-1, keepdim=True).values
    first = strong.float().argmax(dim=-1)  # lowest strong bin
    f0 = centres[keep][first]
    return (torch.log2(f0)[:, None] - _CENTRES[None]).abs().argmin(dim=-1)


# ------------------------------------------------------------------------------------------ embedding
@dataclass
class EmbeddingStats:
    """Standardisation of the raw 64-d features (fitted once on rendered clips, stored with the assets).

    Attributes:
        mean (torch.Tensor): ``[64]``.
        std (torch.Tensor): ``[64]``.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, wave: torch.Tensor) -> EmbeddingStats:
        """Fits the statistics on ``[N, T]`` rendered clips."""
        feats = raw_features(wave)
        return cls(feats.mean(0), feats.std(0).clamp_min(1e-3))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({"mean": self.mean.float().contiguous(), "std": self.std.float().contiguous()}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingStats:
        from safetensors.torch import load_file

        t = load_file(str(path))
        return cls(t["mean"], t["std"])


def _mean_std(mel: torch.Tensor) -> torch.Tensor:
    """``[..., frames, mels]`` -> ``[..., 2 * mels]``: per-band mean and std over frames."""
    return torch.cat([mel.mean(dim=-2), mel.std(dim=-2)], dim=-1)


def raw_features(wave: torch.Tensor) -> torch.Tensor:
    """Unstandardised features of ``[B, T]`` (or ``[B, 1, T]``) 16 kHz audio: ``[B, 64]``."""
    if wave.ndim == 3:
        wave = wave.mean(dim=1)
    return _mean_std(log_mel(wave.float()))


def embed_audio(wave: torch.Tensor, stats: EmbeddingStats) -> torch.Tensor:
    """Standardised clip embeddings ``[B, 64]`` (differentiable w.r.t. ``wave``)."""
    return (raw_features(wave) - stats.mean.to(wave.device)) / stats.std.to(wave.device)


def embed_audio_frames(wave: torch.Tensor, stats: EmbeddingStats) -> torch.Tensor:
    """Standardised embeddings of 16-frame windows (hop 8): ``[B, W, 64]`` (W = 7 for a 1.024 s clip)."""
    if wave.ndim == 3:
        wave = wave.mean(dim=1)
    mel = log_mel(wave.float())  # [B, frames, mels]
    win = mel.unfold(1, FRAME_WIN, FRAME_HOP).transpose(-1, -2)  # [B, W, FRAME_WIN, mels]
    return (_mean_std(win) - stats.mean.to(wave.device)) / stats.std.to(wave.device)
