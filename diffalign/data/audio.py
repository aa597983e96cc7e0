"""Audio cells of preference pairs: decode, check, resample, fit to the clip length.

A cell holds encoded audio bytes (WAV, FLAC, OGG: anything ``soundfile`` reads), an HF
``Audio`` dict (``{"bytes": …, "path": …}`` or ``{"array": […], "sampling_rate": …}``) or a
file path. Every clip becomes mono float32 at the model's sample rate and is cut or zero-padded
(at the end) to the clip length the model trains on. A cell that does not decode, is silent
(peak below ``SILENCE``), or has another sample rate while ``data.resample`` is off is a bad row:
the message names the item; ``on_bad_row: skip`` drops and counts it.
"""

from __future__ import annotations

import io
from math import gcd

import numpy as np
import torch

__all__ = ["SILENCE", "decode_cell", "fit_length"]

SILENCE = 1e-4  # peak amplitude below which a clip counts as silent


def _soundfile():
    try:
        import soundfile
    except ImportError:  # pragma: no cover - the audio extra is installed in CI
        raise ImportError("audio data needs soundfile: pip install 'diffalign[audio]'") from None
    return soundfile


def _read(value, where: str) -> tuple[np.ndarray, int]:
    if isinstance(value, dict) and value.get("array") is not None:
        if value.get("sampling_rate") is None:
            raise ValueError(f"{where}: an audio array without a sampling_rate")
        return np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{where}: expected audio bytes, a path or an {{array, sampling_rate}} dict, "
                         f"got {type(value).__name__}")
    try:
        wave, rate = _soundfile().read(io.BytesIO(bytes(value)), dtype="float32", always_2d=False)
    except Exception as e:  # noqa: BLE001 — soundfile raises several types for bad bytes
        raise ValueError(f"{where}: audio does not decode ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]})") from None
    return wave, int(rate)


def decode_cell(value, where: str, sample_rate: int, resample: bool = False) -> torch.Tensor:
    """One audio cell → ``[T]`` float32 mono at ``sample_rate``.

    Args:
        value: bytes, or ``{"array", "sampling_rate"}`` (paths are read to bytes by the row source).
        where (str): dataset, row and column, for the error message.
        sample_rate (int): the model's rate. resample (bool): resample other rates (polyphase,
            ``scipy.signal.resample_poly``) instead of refusing them.

    Raises:
        ValueError: one line naming ``where`` (does not decode, wrong rate, silent, not finite).
    """
    wave, rate = _read(value, where)
    if wave.ndim == 2:  # soundfile gives [T, channels]; arrays may be [channels, T]
        wave = wave.mean(axis=1 if wave.shape[0] > wave.shape[1] else 0)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"{where}: expected a mono or multi-channel clip, got shape {tuple(wave.shape)}")
    if not np.isfinite(wave).all():
        raise ValueError(f"{where}: audio holds NaN or infinite samples")
    if rate != sample_rate:
        if not resample:
            raise ValueError(f"{where}: sample rate {rate} Hz, the model's is {sample_rate} Hz "
                             f"(set data.resample: true to resample)")
        from scipy.signal import resample_poly

        g = gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // g, rate // g).astype(np.float32)
    if float(np.abs(wave).max()) < SILENCE:
        raise ValueError(f"{where}: the clip is silent (peak {float(np.abs(wave).max()):.1e} < {SILENCE:g})")
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


def fit_length(wave: torch.Tensor, n: int) -> torch.Tensor:
    """``[T]`` → ``[n]``: the first ``n`` samples, or the clip zero-padded at the end."""
    if wave.shape[0] >= n:
        return wave[:n]
    return torch.nn.functional.pad(wave, (0, n - wave.shape[0]))
