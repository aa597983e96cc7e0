"""Audio pieces of the evaluation: reward batches, set-scope comparisons, spectrogram tiles, WAV files.

An audio pipeline's samples are waveforms ``[N, T]``; rewards take ``Samples([N, 1, T],
sample_rate=…)``. A ``set``-scope reward (FAD of the generated set, Vendi) gives one number per
set, so base and tuned are compared set against set: the value of each, their difference, and a
percentile bootstrap over the paired (prompt, seed) rows (the same resampled rows for both sets).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["is_audio", "to_samples", "set_compare", "spectrogram_tiles", "save_wavs", "SET_BOOT"]

SET_BOOT = 200  # bootstrap resamples of a set reward (each one re-scores two whole sets)


def is_audio(pipe) -> bool:
    """True for a text-to-audio pipeline (it has a vocoder)."""
    return getattr(pipe, "vocoder", None) is not None


def to_samples(x: torch.Tensor, prompts: list[str], sample_rate: int | None, device=None):
    """``Samples`` of images ``[N, 3, H, W]`` or waveforms ``[N, T]`` (given a ``[N, 1, T]`` channel axis)."""
    from ..rewards import Samples

    if x.ndim == 2:
        return Samples(x[:, None].to(device), prompts, sample_rate=sample_rate)
    return Samples(x.to(device), prompts)


def set_compare(module, base: torch.Tensor, tuned: torch.Tensor, prompts: list[str], sample_rate: int | None,
                device=None, n_boot: int = SET_BOOT, seed: int = 0, level: float = 0.95) -> dict:
    """A ``set``-scope reward on the base set and the tuned set of the same rows.

    Returns:
        dict: ``n``, ``base`` / ``tuned`` / ``gain`` (tuned − base) as ``{"mean", "lo", "hi"}``
        (bootstrap over rows), and ``higher_is_better``.
    """

    n = base.shape[0]
    rows = list(range(n))
    if hasattr(module, "embed") and hasattr(module, "score_embeddings"):  # a SetReward: embed each set once
        with torch.no_grad():
            embs = {id(x): module.embed(module._prepare(to_samples(x, prompts, sample_rate, device))) for x in (base, tuned)}

        def value(x, idx):
            with torch.no_grad():
                return float(module.score_embeddings(embs[id(x)][torch.as_tensor(idx, device=embs[id(x)].device)]))
    else:
        def value(x, idx):
            with torch.no_grad():
                return float(module(to_samples(x[idx], [prompts[i] for i in idx], sample_rate, device)).scores)

    b0, t0 = value(base, rows), value(tuned, rows)
    rng = np.random.default_rng(seed)
    bs, ts = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, n, size=n).tolist()
        bs.append(value(base, idx))
        ts.append(value(tuned, idx))
    bs, ts = np.array(bs), np.array(ts)
    q = [(1 - level) / 2, (1 + level) / 2]

    def ci(point, draws):
        lo, hi = np.nanquantile(draws, q)
        return {"mean": point, "lo": float(lo), "hi": float(hi), "n": n}

    spec = getattr(type(module), "spec", None)
    return {"n": n, "base": ci(b0, bs), "tuned": ci(t0, ts), "gain": ci(t0 - b0, ts - bs),
            "higher_is_better": bool(getattr(spec, "higher_is_better", True)), "scope": "set"}


def _colour(db: np.ndarray) -> np.ndarray:
    """dB → RGB in [0, 1] on a fixed scale (−30..50 dB): dark blue, purple, orange, yellow."""
    v = np.clip((db + 30.0) / 80.0, 0.0, 1.0)[..., None]
    stops = np.array([[0, 0, 20], [90, 20, 120], [230, 90, 30], [255, 240, 120]], dtype=np.float64) / 255
    pos = v * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = pos - lo
    return stops[lo[..., 0]] * (1 - frac) + stops[lo[..., 0] + 1] * frac


def spectrogram_tiles(waves: torch.Tensor, sample_rate: int, f_lo: float = 60.0, f_hi: float | None = None,
                      rows: int = 96) -> torch.Tensor:
    """Spectrograms of ``[N, T]`` clips as ``[N, 3, rows, frames]`` images in [0, 1]: magnitude STFT
    (1024 / hop 128) in dB on a log-frequency axis from ``f_lo`` to ``f_hi`` (default a quarter of the
    rate), high frequencies at the top."""
    f_hi = f_hi or sample_rate / 4
    x = waves.float().cpu()
    spec = torch.stft(x, 1024, 128, window=torch.hann_window(1024), return_complex=True).abs().numpy()  # [N, 513, F]
    bins = np.arange(spec.shape[1]) * sample_rate / 1024
    want = np.exp(np.linspace(math.log(f_hi), math.log(f_lo), rows))
    tiles = []
    for s in spec:
        img = np.stack([np.interp(want, bins, s[:, j]) for j in range(s.shape[1])], axis=1)  # [rows, F]
        tiles.append(torch.from_numpy(_colour(20 * np.log10(img + 1e-4))).permute(2, 0, 1).float())
    return torch.stack(tiles)


def save_wavs(waves: torch.Tensor, sample_rate: int, folder: str | Path, names: list[str]) -> list[Path]:
    """16-bit WAV files of ``[N, T]`` clips (clipped to [−1, 1]) named ``names``."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for w, name in zip(waves.float().cpu().numpy(), names):
        p = folder / f"{name}.wav"
        sf.write(p, np.clip(w, -1, 1), sample_rate, subtype="PCM_16")
        out.append(p)
    return out
