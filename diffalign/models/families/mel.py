"""The log-mel front-end of an AudioLDM-class pipeline: waveform → the VAE's ``[N, 1, frames, mels]`` "image".

diffusers ships AudioLDM's decoder side (VAE decoder → mel → ``SpeechT5HifiGan``) but not the
mel extraction its VAE was trained on. The front-end is therefore a small config, read from
``mel_config.json`` at the pipeline root when present, else AudioLDM's own (Liu et al., arXiv
2301.12503 §4; the ``TacotronSTFT`` of the audioldm repo: 16 kHz, n_fft 1024, hop 160, 64 Slaney
mel bands 0–8 kHz, ``log(clamp(mel, 1e-5))``)::

    mel[n, f, m] = Σ_k |STFT(x_n)[k, f]| · W[k, m]         (magnitude STFT, Hann, frames padded
                                                            (n_fft − hop)/2 each side, no centring)
    logmel       = log(max(mel, floor))                     [N, 1, frames = T // hop, mels]

The hop and the mel count are the vocoder's (``prod(upsample_rates)``, ``model_in_dim``), so a
config that disagrees with the vocoder is an error. Filters come from
``transformers.audio_utils.mel_filter_bank`` (HTK or Slaney scale, optional Slaney area norm).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

__all__ = ["MelConfig", "MEL_CONFIG", "log_mel"]

MEL_CONFIG = "mel_config.json"


@dataclass(frozen=True)
class MelConfig:
    """The mel front-end of a pipeline (defaults: AudioLDM's).

    Attributes:
        sample_rate (int): Hz. n_fft (int): STFT size (= window). hop (int): samples per frame.
        n_mels (int): mel bands. f_min, f_max (float): Hz. mel_scale (str): ``slaney`` or ``htk``.
        norm (str | None): ``slaney`` (area-normalised filters) or None. log_floor (float): clamp
            before the log.
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    mel_scale: str = "slaney"
    norm: str | None = "slaney"
    log_floor: float = 1e-5

    @classmethod
    def of_pipeline(cls, root: str | Path, vocoder_config=None) -> "MelConfig":
        """The front-end of the pipeline folder ``root``; checked against its vocoder's config."""
        path = Path(root) / MEL_CONFIG
        base = cls()
        if path.is_file():
            raw = json.loads(path.read_text())
            unknown = set(raw) - set(asdict(base))
            if unknown:
                raise ValueError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(asdict(base))})")
            conf = cls(**raw)
        elif vocoder_config is not None:  # AudioLDM's STFT, sized to the vocoder
            conf = cls(sample_rate=int(vocoder_config.sampling_rate), hop=int(math.prod(vocoder_config.upsample_rates)),
                       n_mels=int(vocoder_config.model_in_dim))
        else:
            conf = base
        if vocoder_config is not None:
            hop, mels = int(math.prod(vocoder_config.upsample_rates)), int(vocoder_config.model_in_dim)
            if (conf.hop, conf.n_mels, conf.sample_rate) != (hop, mels, int(vocoder_config.sampling_rate)):
                raise ValueError(f"{path}: hop {conf.hop}, {conf.n_mels} mels at {conf.sample_rate} Hz disagree with the "
                                 f"vocoder (hop {hop}, {mels} mels at {vocoder_config.sampling_rate} Hz)")
        return conf

    def save(self, root: str | Path) -> None:
        (Path(root) / MEL_CONFIG).write_text(json.dumps(asdict(self), indent=1))

    def filters(self) -> torch.Tensor:
        """``[n_fft // 2 + 1, n_mels]`` float32 triangular filters."""
        from transformers.audio_utils import mel_filter_bank

        w = mel_filter_bank(num_frequency_bins=self.n_fft // 2 + 1, num_mel_filters=self.n_mels, min_frequency=self.f_min,
                            max_frequency=self.f_max, sampling_rate=self.sample_rate, norm=self.norm,
                            mel_scale=self.mel_scale)
        return torch.from_numpy(w).float()


_FILTERS: dict[tuple, torch.Tensor] = {}


def log_mel(wave: torch.Tensor, conf: MelConfig) -> torch.Tensor:
    """``[N, T]`` waveforms → ``[N, 1, T // hop, n_mels]`` log-mels (float32, differentiable)."""
    key = (conf, str(wave.device))
    if key not in _FILTERS:
        _FILTERS[key] = conf.filters().to(wave.device)
    pad = (conf.n_fft - conf.hop) // 2
    x = torch.nn.functional.pad(wave.float()[:, None], (pad, pad), mode="reflect")[:, 0]  # [N, T + n_fft - hop]
    window = torch.hann_window(conf.n_fft, device=wave.device)
    spec = torch.stft(x, conf.n_fft, conf.hop, window=window, center=False, return_complex=True)  # [N, F, frames]
    mel = spec.abs().clamp_min(1e-9).transpose(1, 2) @ _FILTERS[key]  # [N, frames, n_mels]
    return torch.log(mel.clamp_min(conf.log_floor))[:, None]
