"""``toy_audio_judge``: an independent signal-processing judge of the tones world (pitch band and timbre).

It did not label the preference pairs (``toy_pitch`` did) and drives no training; it reads each
clip with other methods than ``toy_pitch``:

1. **f0 by harmonic summation** — the mean magnitude spectrum over Hann frames of 4096 samples
   (3.9 Hz bins); for candidates ``f`` on a log grid 80–2400 Hz, ``S(f) = Σ_{k=1..5} 0.8^{k−1}
   |X(k f)|`` (linear interpolation between bins); ``f0 = argmax S``. The band is the one whose
   log-centre is nearest (as the world defines bands).
2. **timbre from partials 2 and 3** — ``r_k = A(k f0) / A(f0)`` with ``A`` the peak magnitude within
   ±3% of ``k f0``. The world's timbres have ``(r2, r3)`` = sine (0, 0), square (0, 1/3), sawtooth
   (1/2, 1/3); the nearest prototype is the verdict.

``details``: ``band_ok``, ``timbre_ok`` (1/0 per clip; NaN for a prompt outside the grammar, whose score is 0), ``joint``
(both right), ``f0``, ``r2``, ``r3``. The score is the joint verdict (1 or 0).
"""

from __future__ import annotations

import math

import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples
from diffalign.toy.audio.world import BANDS, SAMPLE_RATE, TIMBRES, parse_prompt

__all__ = ["ToyAudioJudge", "build_toy_audio_judge", "judge_clips", "judge_prompts"]

N_FFT, HOP = 4096, 1024
F_LO, F_HI, N_CAND, N_HARM, DECAY = 80.0, 2400.0, 600, 5, 0.8
PARTIAL_TOL = 0.03
PROTOTYPES = {"sine": (0.0, 0.0), "square": (0.0, 1 / 3), "sawtooth": (0.5, 1 / 3)}
_CENTRES = torch.tensor([0.5 * math.log2(lo * hi) for lo, hi in BANDS.values()], dtype=torch.float64)


def _magnitude(wave: torch.Tensor) -> torch.Tensor:
    x = wave.double()
    if x.shape[-1] < N_FFT:
        x = torch.nn.functional.pad(x, (0, N_FFT - x.shape[-1]))
    spec = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT, dtype=torch.float64, device=x.device),
                      center=False, return_complex=True)
    return spec.abs().mean(dim=-1)  # [B, F]


def _at(mag: torch.Tensor, hz: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``mag`` ``[B, F]`` at frequencies ``hz`` ``[B, K]``."""
    pos = (hz / (SAMPLE_RATE / N_FFT)).clamp(0, mag.shape[-1] - 1.001)
    lo = pos.floor().long()
    frac = pos - lo
    return mag.gather(1, lo) * (1 - frac) + mag.gather(1, lo + 1) * frac


def _peak_near(mag: torch.Tensor, hz: torch.Tensor) -> torch.Tensor:
    """Peak of ``mag`` ``[B, F]`` within ±``PARTIAL_TOL`` of ``hz`` ``[B]``: ``[B]``."""
    bin_hz = SAMPLE_RATE / N_FFT
    freqs = torch.arange(mag.shape[-1], dtype=torch.float64, device=mag.device) * bin_hz
    near = (freqs[None] - hz[:, None]).abs() <= (PARTIAL_TOL * hz[:, None] + bin_hz)
    return torch.where(near, mag, torch.zeros_like(mag)).max(dim=-1).values


def judge_clips(wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """``[B, T]`` 16 kHz clips → ``f0`` ``[B]``, band index ``[B]`` (into ``BANDS``), timbre index
    ``[B]`` (into ``TIMBRES``), ``r2``, ``r3``."""
    mag = _magnitude(wave)  # [B, F]
    cand = torch.exp(torch.linspace(math.log(F_LO), math.log(F_HI), N_CAND, dtype=torch.float64, device=mag.device))
    b = mag.shape[0]
    score = torch.zeros(b, N_CAND, dtype=torch.float64, device=mag.device)
    for k in range(1, N_HARM + 1):
        score += DECAY ** (k - 1) * _at(mag, (k * cand)[None].expand(b, -1).clamp(max=SAMPLE_RATE / 2 - 1))
    f0 = cand[score.argmax(dim=-1)]  # [B]
    a1 = _peak_near(mag, f0).clamp_min(1e-12)
    r2 = _peak_near(mag, 2 * f0) / a1
    r3 = _peak_near(mag, 3 * f0) / a1
    protos = torch.tensor([PROTOTYPES[t] for t in TIMBRES], dtype=torch.float64, device=mag.device)  # [3, 2]
    d = (torch.stack([r2, r3], -1)[:, None] - protos[None]).pow(2).sum(-1)  # [B, 3]
    band = (torch.log2(f0)[:, None] - _CENTRES.to(f0.device)[None]).abs().argmin(dim=-1)
    return {"f0": f0, "band": band, "timbre": d.argmin(dim=-1), "r2": r2, "r3": r3}


def judge_prompts(wave: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
    """The judge's verdicts on ``[B, T]`` 16 kHz clips against their prompts (CPU tensors ``[B]``):
    ``band_ok``, ``timbre_ok`` (1/0; NaN for a prompt outside the grammar), ``joint`` (both right; 0 for such
    a prompt), ``f0``, ``r2``, ``r3``."""
    got = judge_clips(wave)
    bands, timbres = list(BANDS), list(TIMBRES)
    want = [_parse(p) for p in prompts]
    nan = float("nan")
    band_ok = torch.tensor([nan if w is None else float(bands.index(w.band) == int(g)) for w, g in zip(want, got["band"])])
    timbre_ok = torch.tensor([nan if w is None else float(timbres.index(w.timbre) == int(g))
                              for w, g in zip(want, got["timbre"])])
    joint = torch.nan_to_num(band_ok * timbre_ok, nan=0.0)  # a prompt the world cannot voice scores 0
    return {"band_ok": band_ok, "timbre_ok": timbre_ok, "joint": joint, "f0": got["f0"].float().cpu(),
            "r2": got["r2"].float().cpu(), "r3": got["r3"].float().cpu()}


def _parse(prompt: str):
    try:
        return parse_prompt(prompt)
    except ValueError:
        return None


class ToyAudioJudge(Reward):
    """Pitch band and timbre of tones-world clips against their prompts (see the module docstring)."""

    spec = RewardSpec("toy_audio_judge", "audio", needs_prompt=True, differentiable=False, sample_rate=SAMPLE_RATE)

    def score(self, samples: Samples) -> RewardResult:
        wave = samples.data.mean(dim=1) if samples.data.ndim == 3 else samples.data
        details = judge_prompts(wave, list(samples.prompts))
        dev = samples.data.device
        return RewardResult(details["joint"].to(dev), {k: v.to(dev) for k, v in details.items()})


def build_toy_audio_judge(weights=None) -> ToyAudioJudge:
    """Entry point of ``toy_audio_judge`` (no weights)."""
    return ToyAudioJudge()
