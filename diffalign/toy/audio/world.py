"""The toy audio world "tones": prompt grammar, renderer, mel front-end and the fixed split.

Every clip is one periodic tone, 16 kHz mono, ``CLIP_SAMPLES`` = 16384 samples (1.024 s), with a
random fundamental inside its pitch band, a little vibrato, an attack/release envelope and a
peak level set by its loudness. Timbres are band-limited additive syntheses (no aliasing), and in
all of them the fundamental is the strongest partial::

    sine      partial 1 only
    square    odd partials, amplitude 1/k
    sawtooth  all partials, amplitude 1/k

Prompts come from a small grammar::

    a [<loudness>] <band> <timbre>

with 4 loudness forms (quiet, soft, loud, none) × 6 band words (low/deep, mid/medium, high/shrill)
× 9 timbre phrases (sine tone, pure tone, sine wave, square wave, buzzing square wave, square tone,
sawtooth wave, bright sawtooth, sawtooth tone) = 216 distinct prompts. The held-out split keeps out
a quarter of the prompt strings of every band × timbre combination (6 of 24, seeded): every word
and every combination is seen in training, the held-out strings are not.

The mel front-end (:func:`log_mel`) is the representation of the toy AudioLDM pipeline: magnitude
STFT (n_fft 1024, hop 256, Hann), 32 HTK mel bands 0–8 kHz, ``log(clamp(mel, 1e-2))``; a clip gives
64 frames, the pipeline's ``[B, 1, 64, 32]`` log-mel "image".

Example:
    >>> world = TonesWorld()
    >>> wave, specs = world.render_prompts(world.train_prompts[:4], seed=0)  # [4, 16384]
    >>> mel = log_mel(torch.from_numpy(wave))  # [4, 64, 32]
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16384  # 1.024 s = 64 mel frames of 256 samples
N_FFT, HOP, N_MELS, F_MAX = 1024, 256, 32, 8000.0
TABLE_SIZE = 4096  # wavetable points per period
LOG_FLOOR = 1e-2  # mel magnitude floor: log-mel lives in about [-4.6, 5.5]

BANDS: dict[str, tuple[float, float]] = {"low": (110.0, 220.0), "mid": (330.0, 660.0), "high": (880.0, 1760.0)}
TIMBRES: tuple[str, ...] = ("sine", "square", "sawtooth")
LOUDNESS: dict[str, tuple[float, float]] = {"quiet": (0.08, 0.16), "loud": (0.5, 0.8)}  # peak amplitude

BAND_WORDS = {"low": ("low", "deep"), "mid": ("mid", "medium"), "high": ("high", "shrill")}
TIMBRE_WORDS = {
    "sine": ("sine tone", "pure tone", "sine wave"),
    "square": ("square wave", "buzzing square wave", "square tone"),
    "sawtooth": ("sawtooth wave", "bright sawtooth", "sawtooth tone"),
}
LOUDNESS_WORDS = {"quiet": ("quiet", "soft"), "loud": ("loud",)}
HELD_OUT_PER_COMBO = 6  # of the 24 prompt strings of each band × timbre combination
SPLIT_SEED = 4321


@dataclass(frozen=True)
class TonePrompt:
    """One parsed prompt.

    Args:
        band (str): one of ``BANDS``.
        timbre (str): one of ``TIMBRES``.
        loudness (str | None): one of ``LOUDNESS``, or None when the prompt does not say.
    """

    band: str
    timbre: str
    loudness: str | None


@dataclass(frozen=True)
class ToneSpec:
    """Everything the renderer needs for one clip (all drawn by :meth:`TonesWorld.sample_specs`)."""

    prompt: str
    band: str
    timbre: str
    loudness: str
    f0: float  # Hz, the centre of the vibrato
    amplitude: float  # peak of the clip
    vibrato_rate: float  # Hz
    vibrato_depth: float  # fraction of f0
    attack: float  # s
    release: float  # s
    phase: float  # rad


def _lookup(words: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {w: key for key, ws in words.items() for w in ws}


_BAND_OF, _TIMBRE_OF, _LOUD_OF = _lookup(BAND_WORDS), _lookup(TIMBRE_WORDS), _lookup(LOUDNESS_WORDS)
_PATTERN = re.compile(
    r"^an? (?:(?P<loud>%s) )?(?P<band>%s) (?P<timbre>%s)$"
    % ("|".join(_LOUD_OF), "|".join(_BAND_OF), "|".join(sorted(_TIMBRE_OF, key=len, reverse=True)))
)


def parse_prompt(prompt: str) -> TonePrompt:
    """Parses a grammar prompt; raises ValueError naming the prompt otherwise."""
    m = _PATTERN.match(prompt.strip().lower())
    if m is None:
        raise ValueError(f"not a tones-world prompt: {prompt!r} (expected 'a [quiet|soft|loud] <band> <timbre>')")
    loud = m.group("loud")
    return TonePrompt(_BAND_OF[m.group("band")], _TIMBRE_OF[m.group("timbre")], _LOUD_OF[loud] if loud else None)


def all_prompts() -> list[str]:
    """The 216 prompts of the grammar, in a fixed order."""
    louds = [None, *(w for ws in LOUDNESS_WORDS.values() for w in ws)]
    out = []
    for band, timbre in itertools.product(BANDS, TIMBRES):
        for loud, bw, tw in itertools.product(louds, BAND_WORDS[band], TIMBRE_WORDS[timbre]):
            out.append(" ".join(w for w in ("a", loud, bw, tw) if w))
    return out


def toy_words() -> list[str]:
    """Every word of the grammar (for the tokenizer)."""
    return sorted({w for p in all_prompts() for w in p.split()})


def split_prompts() -> tuple[list[str], list[str]]:
    """The fixed train / held-out split: ``HELD_OUT_PER_COMBO`` strings of each band × timbre held out.

    Returns:
        tuple[list[str], list[str]]: 162 training and 54 held-out prompts (held-out ordered band-major).
    """
    rng = np.random.default_rng(SPLIT_SEED)
    train, held = [], []
    prompts = all_prompts()
    for band, timbre in itertools.product(BANDS, TIMBRES):
        combo = [p for p in prompts if (parse_prompt(p).band, parse_prompt(p).timbre) == (band, timbre)]
        out = set(rng.permutation(len(combo))[:HELD_OUT_PER_COMBO].tolist())
        for i, p in enumerate(combo):
            (held if i in out else train).append(p)
    return train, held


class TonesWorld:
    """The world: prompts, split, sampling of clip parameters and rendering.

    Attributes:
        prompts (list[str]): all 216 prompts.
        train_prompts (list[str]): 162 training prompts.
        held_out_prompts (list[str]): 54 held-out prompts (18 per band).
    """

    def __init__(self) -> None:
        self.prompts = all_prompts()
        self.train_prompts, self.held_out_prompts = split_prompts()

    def sample_specs(self, prompts: list[str], seed: int | np.random.Generator) -> list[ToneSpec]:
        """Draws the free parameters of one clip per prompt (loudness too, when the prompt omits it)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        specs = []
        for prompt in prompts:
            p = parse_prompt(prompt)
            lo, hi = BANDS[p.band]
            loud = p.loudness or ("quiet", "loud")[int(rng.integers(2))]
            specs.append(ToneSpec(
                prompt=prompt, band=p.band, timbre=p.timbre, loudness=loud,
                f0=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),  # log-uniform inside the band
                amplitude=float(rng.uniform(*LOUDNESS[loud])),
                vibrato_rate=float(rng.uniform(4.0, 7.0)),
                vibrato_depth=float(rng.uniform(0.0, 0.008)),
                attack=float(rng.uniform(0.005, 0.05)),
                release=float(rng.uniform(0.05, 0.2)),
                phase=float(rng.uniform(0, 2 * np.pi)),
            ))
        return specs

    def render_prompts(self, prompts: list[str], seed: int | np.random.Generator) -> tuple[np.ndarray, list[ToneSpec]]:
        """Samples specs and renders them: ``[B, CLIP_SAMPLES]`` float32 in [-1, 1] and the specs."""
        specs = self.sample_specs(prompts, seed)
        return render(specs), specs

    def sample_training_prompts(self, n: int, seed: int | np.random.Generator) -> list[str]:
        """``n`` training prompts drawn uniformly with replacement."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return [self.train_prompts[i] for i in rng.integers(len(self.train_prompts), size=n)]


def render_one(spec: ToneSpec, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Renders one clip: ``[n]`` float32 with peak ``spec.amplitude``."""
    t = np.arange(n) / SAMPLE_RATE
    freq = spec.f0 * (1.0 + spec.vibrato_depth * np.sin(2 * np.pi * spec.vibrato_rate * t))  # [n] Hz
    phase = spec.phase + 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE  # [n]
    top = SAMPLE_RATE / 2 / (spec.f0 * (1 + spec.vibrato_depth)) * 0.95  # highest partial below Nyquist
    if spec.timbre == "sine":
        ks = np.array([1.0])
    elif spec.timbre == "square":
        ks = np.arange(1, int(top) + 1, 2, dtype=np.float64)
    else:
        ks = np.arange(1, int(top) + 1, dtype=np.float64)
    # one period as a wavetable (additive synthesis), read at the running phase: ~1 ms per clip
    theta = np.arange(TABLE_SIZE + 1) * (2 * np.pi / TABLE_SIZE)  # [TABLE_SIZE + 1], closed period
    table = (np.sin(ks[:, None] * theta[None, :]) / ks[:, None]).sum(axis=0)
    wave = np.interp(np.mod(phase, 2 * np.pi), theta, table)  # [n]
    env = np.minimum(1.0, t / spec.attack) * np.clip((t[-1] - t) / spec.release, 0.0, 1.0)
    wave = wave * env
    return (wave * spec.amplitude / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def render(specs: list[ToneSpec], n: int = CLIP_SAMPLES) -> np.ndarray:
    """Renders specs: ``[B, n]`` float32."""
    return np.stack([render_one(s, n) for s in specs]) if specs else np.zeros((0, n), np.float32)


# ------------------------------------------------------------------------------------------ mel front-end
def _hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, f_max: float = F_MAX) -> torch.Tensor:
    """HTK triangular mel filters, ``[n_fft // 2 + 1, n_mels]`` float32 (rows: FFT bins)."""
    mels = torch.linspace(0.0, float(_hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)  # [n_mels + 2] band edges
    bins = torch.linspace(0.0, SAMPLE_RATE / 2, n_fft // 2 + 1, dtype=torch.float64)[:, None]  # [F, 1]
    lo, mid, hi = hz[:-2][None], hz[1:-1][None], hz[2:][None]  # [1, n_mels] each
    up = (bins - lo) / (mid - lo)
    down = (hi - bins) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


_FB: dict[str, torch.Tensor] = {}


def mel_magnitude(wave: torch.Tensor) -> torch.Tensor:
    """Mel magnitudes (not log) of ``[B, T]`` audio: ``[B, T // HOP, N_MELS]`` (differentiable).

    Frames are centred the HiFi-GAN way: ``(N_FFT - HOP) / 2`` reflect padding and no ``center``.
    """
    key = f"{wave.device}"
    if key not in _FB:
        _FB[key] = mel_filterbank().to(wave.device)
    pad = (N_FFT - HOP) // 2
    x = torch.nn.functional.pad(wave[:, None], (pad, pad), mode="reflect")[:, 0]  # [B, T + N_FFT - HOP]
    window = torch.hann_window(N_FFT, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(x, N_FFT, HOP, window=window, center=False, return_complex=True)  # [B, F, frames]
    mag = spec.abs().clamp_min(1e-9).transpose(1, 2)  # [B, frames, F]
    return mag @ _FB[key].to(mag.dtype)  # [B, frames, N_MELS]


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel "image" of ``[B, T]`` audio: ``[B, T // HOP, N_MELS]``, ``log(clamp(mel, LOG_FLOOR))``."""
    return torch.log(mel_magnitude(wave).clamp_min(LOG_FLOOR))


def mel_bin_centres() -> np.ndarray:
    """Centre frequency (Hz) of each mel band, ``[N_MELS]``."""
    mels = np.linspace(0.0, float(_hz_to_mel(F_MAX)), N_MELS + 2)[1:-1]
    return 700.0 * (10 ** (mels / 2595.0) - 1.0)


def band_of_frequency(f0: float) -> str:
    """The band whose log-centre is nearest to ``f0`` (Hz)."""
    return min(BANDS, key=lambda b: abs(math.log2(f0) - 0.5 * math.log2(BANDS[b][0] * BANDS[b][1])))
