"""Where the tones-world assets live, how to load them, sample the toy pipeline and store audio.

Layout of ``assets/toy/audio/`` (written by ``diffalign toy build audio``)::

    pipeline/                 diffusers AudioLDMPipeline (fp32 safetensors): tokenizer, text_encoder,
                              unet, vae, vocoder, scheduler
    embedder.safetensors      standardisation of the toy audio embedding (mean / std, 64-d)
    fad_reference.npz         Gaussian statistics (mu, cov, n) of rendered clips in that embedding
    prompts.json              {"train": [...], "held_out": [...]}
    exemplars.parquet         rendered ground truth (FLAC bytes) of every training prompt + labels
    prefs_train-NNNNN.parquet preference pairs on training prompts: caption, audio_0, audio_1 (FLAC),
                              label_0 (1 / 0 / 0.5 tie), score_0, score_1, seed_0, seed_1
    build_info.json           seeds, settings, wall times, sizes, sampling defaults, fidelities
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from diffalign.toy.common import asset_dir as _asset_dir, read_json  # noqa: F401  (read_json: re-exported)
from diffalign.toy.common import sampling_defaults as _recorded_sampling

# Default sampling of the toy pipeline; the build writes it into build_info.json["sampling"].
SAMPLING = {"guidance_scale": 2.5, "num_inference_steps": 25, "scheduler": "DDIMScheduler", "eta": 0.0}


def audio_asset_dir() -> Path:
    """The committed audio assets (``diffalign.toy.common.asset_dir``)."""
    return _asset_dir("audio")


def sampling_defaults(asset_dir: str | Path | None = None) -> dict:
    """Guidance scale and step count every consumer of the toy pipeline should use."""
    return _recorded_sampling(asset_dir or audio_asset_dir(), SAMPLING)


def load_pipeline(asset_dir: str | Path | None = None):
    """Loads the toy ``AudioLDMPipeline`` (fp32, CPU, progress bar off, deprecation warning muted)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from diffusers import AudioLDMPipeline

    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # AudioLDMPipeline.__init__ logs a deprecation notice
    try:
        pipe = AudioLDMPipeline.from_pretrained(str(Path(asset_dir or audio_asset_dir()) / "pipeline"))
    finally:
        dlogging.set_verbosity(level)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_audio(
    pipe,
    prompts: list[str],
    seeds: list[int],
    guidance_scale: float = SAMPLING["guidance_scale"],
    num_inference_steps: int = SAMPLING["num_inference_steps"],
    batch: int = 32,
    return_mel: bool = False,
):
    """Samples one clip per (prompt, seed) with ``diffalign.sampling.pipeline.sample``, at the toy
    latent shape; each clip's noise depends only on its own seed.

    Args:
        pipe: an AudioLDMPipeline.
        prompts (list[str]): N prompts.
        seeds (list[int]): N seeds (same prompt + seed -> same clip, whatever the batching).
        guidance_scale (float): classifier-free guidance. Default is 2.5.
        num_inference_steps (int): DDIM steps. Default is 25.
        batch (int): clips per pipeline call. Default is 32.
        return_mel (bool): also return the decoded log-mels the vocoder received. Default is False.

    Returns:
        torch.Tensor: ``[N, T]`` float32 waveforms at 16 kHz (and ``[N, frames, n_mels]`` log-mels).
    """
    import torch

    from diffalign.sampling.pipeline import sample

    vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.vocoder.config.model_in_dim // vae_scale)
    mels = []
    to_wave = pipe.mel_spectrogram_to_waveform

    def capture(mel):  # records the vocoder's input: the UNet + VAE output
        mels.append(mel.detach().reshape(mel.shape[0], *mel.shape[-2:]).float())
        return to_wave(mel)

    pipe.mel_spectrogram_to_waveform = capture
    try:
        audio = sample(pipe, prompts, seeds, guidance_scale, num_inference_steps, batch_size=batch, progress=False,
                       latent_shape=shape)
    finally:
        del pipe.mel_spectrogram_to_waveform  # back to the class method
    return (audio, torch.cat(mels)) if return_mel else audio


def flac_bytes(waves) -> list[bytes]:
    """16-bit FLAC bytes (16 kHz mono) of ``[N, T]`` waveforms (clipped to [-1, 1])."""
    import soundfile as sf

    arr = np.clip(np.asarray(waves, dtype=np.float32), -1.0, 1.0)
    out = []
    for x in arr:
        buf = io.BytesIO()
        sf.write(buf, x, 16000, format="FLAC", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


def decode_audio(blobs: list[bytes], where: str = "audio", sample_rate: int | None = 16000):
    """Decodes audio bytes (any format soundfile reads) to a ``[N, T]`` float32 tensor (equal lengths).

    Args:
        where: named in errors (``<where>[i]``), e.g. ``prefs_train.parquet:audio_0``.
        sample_rate: the rate every clip must have (the toy world's 16 kHz); None accepts any.

    Raises:
        ValueError: one line naming the item that does not decode or has another sample rate.
    """
    import soundfile as sf
    import torch

    waves = []
    for i, b in enumerate(blobs):
        try:
            wave, rate = sf.read(io.BytesIO(b), dtype="float32")
        except Exception as e:  # noqa: BLE001 - soundfile raises several types for bad bytes
            raise ValueError(f"{where}[{i}]: audio does not decode ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:120]})") from None
        if sample_rate is not None and rate != sample_rate:
            raise ValueError(f"{where}[{i}]: sample rate {rate} Hz, expected {sample_rate} Hz")
        waves.append(wave)
    return torch.from_numpy(np.stack(waves))


def read_parquet(path_or_glob: str | Path):
    """Reads one parquet file or several shards (``prefs_train-*.parquet``) into one pyarrow table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path_or_glob)
    files = sorted(path.parent.glob(path.name)) if any(c in path.name for c in "*?[") else [path]
    if not files:
        raise FileNotFoundError(f"no parquet files match {path}")
    return pa.concat_tables([pq.read_table(str(f)) for f in files])


def write_parquet_shards(table, folder: str | Path, stem: str, max_bytes: int = 8_000_000) -> list[Path]:
    """Writes ``table`` as ``<stem>-00000.parquet``, ... each below about ``max_bytes`` (zstd)."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    row_bytes = max(1, table.nbytes // max(1, table.num_rows))
    rows = max(1, int(max_bytes * 0.9) // row_bytes)
    paths = []
    for k, start in enumerate(range(0, table.num_rows, rows)):
        path = folder / f"{stem}-{k:05d}.parquet"
        pq.write_table(table.slice(start, rows), str(path), compression="zstd")
        paths.append(path)
    return paths
