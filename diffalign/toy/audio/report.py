"""``diffalign toy report audio``: how well the base toy AudioLDM pipeline follows held-out prompts.

Samples the committed toy pipeline on the held-out prompts (fixed seeds, the asset's default
sampling), scores the clips with ``toy_pitch`` (the labeller of the pairs: pitch-band accuracy, overall and per
band, and the graded score), the independent ``toy_audio_judge`` (band, timbre and both),
``toy_audio_fad`` and ``toy_audio_vendi``, prints means with 95% confidence intervals next to the
renderer's own ground truth for the same prompts and next to those renders sent through the
pipeline's mel front-end and vocoder (the world's ceiling for a model), and writes ``report.json``,
a labelled spectrogram grid ``grid.png`` (log-frequency axis 60 Hz–4 kHz, dotted lines at the band
edges; green frame: the judge finds band and timbre right, red: not) and the first clips as WAV files.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from diffalign.eval.winrate import mean_ci

GRID_F_LO, GRID_F_HI, GRID_ROWS = 60.0, 4000.0, 96


def _log_freq_spectrogram(wave: np.ndarray) -> np.ndarray:
    """``[T]`` 16 kHz audio -> ``[GRID_ROWS, frames]`` dB on a log-frequency axis (row 0 = highest)."""
    import torch

    x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
    spec = torch.stft(x, 1024, 128, window=torch.hann_window(1024), return_complex=True).abs().numpy()  # [513, F]
    bins = np.arange(spec.shape[0]) * 16000 / 1024
    rows = np.exp(np.linspace(np.log(GRID_F_HI), np.log(GRID_F_LO), GRID_ROWS))  # top = high
    img = np.stack([np.interp(rows, bins, spec[:, j]) for j in range(spec.shape[1])], axis=1)
    return 20 * np.log10(img + 1e-4)


def _colour(db: np.ndarray) -> np.ndarray:
    """dB image -> uint8 RGB, a dark-blue / purple / orange / yellow ramp on a fixed scale (-30..50 dB)."""
    v = np.clip((db + 30.0) / 80.0, 0.0, 1.0)[..., None]
    stops = np.array([[0, 0, 20], [90, 20, 120], [230, 90, 30], [255, 240, 120]], dtype=np.float64)
    pos = v * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = pos - lo
    return (stops[lo[..., 0]] * (1 - frac) + stops[lo[..., 0] + 1] * frac).astype(np.uint8)


def save_spectrogram_grid(waves, captions: list[str], ok: list[bool], path: str | Path, cols: int = 6) -> Path:
    """Writes a captioned grid of spectrograms of ``[N, T]`` 16 kHz clips as PNG (``eval.report.save_grid``);
    dotted lines mark the pitch-band edges."""
    import torch

    from diffalign.eval.report import save_grid
    from diffalign.toy.audio.world import BAND_WORDS as _BW
    from diffalign.toy.audio.world import BANDS

    band_words = {w for ws in _BW.values() for w in ws}
    tiles = []
    for w in np.asarray(waves):
        tile = np.repeat(np.repeat(_colour(_log_freq_spectrogram(w)), 2, axis=0), 2, axis=1)  # [2 rows, 2 cols]
        th = tile.shape[0]
        for f in sorted({f for band in BANDS.values() for f in band}):  # band edges, dotted
            r = int(th * (math.log(GRID_F_HI) - math.log(f)) / (math.log(GRID_F_HI) - math.log(GRID_F_LO)))
            if 0 <= r < th:
                tile[r, ::6] = 200
                tile[r, 1::6] = 200
        tiles.append(torch.from_numpy(tile).permute(2, 0, 1).float() / 255)
    lines = []
    for c in captions:
        words = c.split(" ")[1:]  # drop the article; line 1 ends at the band word
        cut = next((j + 1 for j, w in enumerate(words) if w in band_words), len(words))
        lines.append(" ".join(words[:cut]) + "\n" + " ".join(words[cut:]))
    rows = [torch.stack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    return save_grid(rows, path, captions=[lines[i : i + cols] for i in range(0, len(tiles), cols)],
                     ok=[list(ok[i : i + cols]) for i in range(0, len(tiles), cols)], min_side=1)


def report_audio(n: int = 216, out_dir: str | Path = "toy_report/audio", asset_dir: str | Path | None = None,
                 seed: int = 0, grid_size: int = 36, threads: int = 2, wavs: int = 12) -> dict:
    """Samples held-out prompts, scores them, prints the summary and writes report.json + grid.png.

    Args:
        n (int): samples; the 54 held-out prompts are cycled band-balanced (216 = 4 per prompt). Default is 216.
        out_dir (str | Path): output folder. Default is ``toy_report/audio``.
        asset_dir (str | Path | None): asset folder (default: the committed assets).
        seed (int): seeds are ``seed * 1_000_003 + i``. Default is 0.
        grid_size (int): clips in the grid. Default is 36.
        threads (int): torch CPU threads. Default is 2.
        wavs (int): clips also written as WAV files. Default is 12.

    Returns:
        dict: the report (also written to ``<out_dir>/report.json``).
    """
    import soundfile as sf
    import torch

    from diffalign.rewards.base import Samples
    from diffalign.toy.audio.rewards import build_toy_audio_fad, build_toy_audio_vendi
    from diffalign.toy.audio.assets import audio_asset_dir, load_pipeline, sample_audio, sampling_defaults
    from diffalign.toy.audio.judge import judge_prompts
    from diffalign.toy.audio.pretrain import vocode
    from diffalign.toy.audio.scorer import BAND_NAMES, band_from_mel, score_pitch
    from diffalign.toy.audio.world import BANDS, TonesWorld, log_mel, parse_prompt

    torch.set_num_threads(threads)
    asset_dir = Path(asset_dir) if asset_dir is not None else audio_asset_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = TonesWorld()
    held = world.held_out_prompts  # band-major: interleave bands so any n is balanced
    by_band = [[p for p in held if parse_prompt(p).band == b] for b in BANDS]
    order = [p for trio in zip(*by_band) for p in trio]
    prompts = [order[i % len(order)] for i in range(n)]
    seeds = [seed * 1_000_003 + i for i in range(n)]
    sampling = sampling_defaults(asset_dir)
    # library imports are not asset loading: import every class the pipeline folder names first
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: F401
    from transformers import ClapTextModelWithProjection, RobertaTokenizer, RobertaTokenizerFast, SpeechT5HifiGan  # noqa: F401

    t0 = time.time()
    pipe = load_pipeline(asset_dir)
    load_s = time.time() - t0
    t0 = time.time()
    audio, mel = sample_audio(pipe, prompts, seeds, guidance_scale=sampling["guidance_scale"],
                              num_inference_steps=sampling["num_inference_steps"], return_mel=True)  # [n, T]
    sample_s = time.time() - t0
    truth, _ = world.render_prompts(prompts, seed + 7)
    truth = torch.from_numpy(truth)
    with torch.no_grad():
        vocoded = vocode(pipe.vocoder, log_mel(truth)).float()  # renders -> mel -> the pipeline's vocoder

    fad = build_toy_audio_fad(asset_dir)
    vendi = build_toy_audio_vendi(asset_dir)
    rows = {}
    bands = np.array([parse_prompt(p).band for p in prompts])
    target = np.array([BAND_NAMES.index(b) for b in bands])
    for name, wave, m in (("base", audio, mel), ("ground_truth", truth, log_mel(truth)),
                          ("vocoded_renders", vocoded, log_mel(truth))):
        s = score_pitch(wave, prompts)
        correct = s["correct"].numpy()
        batch = Samples(wave[:, None], sample_rate=16000)
        j = judge_prompts(wave, prompts)
        j_band, j_timbre, j_joint = (j[k].numpy() == 1 for k in ("band_ok", "timbre_ok", "joint"))
        rows[name] = {
            "judge": {"band": mean_ci(j_band, binary=True), "timbre": mean_ci(j_timbre, binary=True),
                      "joint": mean_ci(j_joint, binary=True),
                      "timbre_per_band": {b: mean_ci(j_timbre[bands == b], binary=True) for b in BANDS
                                          if (bands == b).any()}},
            "band_accuracy": mean_ci(correct, binary=True),
            "per_band": {b: mean_ci(correct[bands == b], binary=True) for b in BANDS if (bands == b).any()},
            "toy_pitch": mean_ci(s["graded"].numpy()),
            "mel_band_accuracy": mean_ci(band_from_mel(m).numpy() == target, binary=True),
            "toy_audio_fad": float(fad(batch).scores) if n >= 2 else float("nan"),
            "toy_audio_vendi": float(vendi(batch).scores) if n >= 2 else float("nan"),
        }
        if name == "base":
            ok = j_joint.tolist()
    k = min(grid_size, n)
    grid = save_spectrogram_grid(audio[:k].numpy(), prompts[:k], ok[:k], out / "grid.png")
    (out / "wav").mkdir(exist_ok=True)
    for i in range(min(wavs, n)):
        sf.write(out / "wav" / f"{i:02d}_{prompts[i].replace(' ', '_')}.wav", audio[i].numpy(), 16000)
    report = {"world": "tones", "n": n, "held_out_prompts": len(held), "sampling": sampling, "seed": seed,
              "assets": str(asset_dir), "load_seconds": round(load_s, 2), "sample_seconds": round(sample_s, 1),
              "rows": rows, "grid": str(grid), "chance_band_accuracy": 1 / 3}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    """The printed summary of a report dict."""
    def ci(d: dict, pct: bool = True) -> str:
        f = (lambda v: f"{100 * v:5.1f}%") if pct else (lambda v: f"{v:6.3f}")
        return f"{f(d['mean'])} [{f(d['lo']).strip()}, {f(d['hi']).strip()}]"

    base, truth = report["rows"]["base"], report["rows"]["ground_truth"]
    voc = report["rows"].get("vocoded_renders")
    s = report["sampling"]
    lines = [
        f"toy report audio: {report['n']} clips of the base pipeline on {report['held_out_prompts']} held-out prompts "
        f"(guidance {s['guidance_scale']}, {s['num_inference_steps']} DDIM steps; load {report['load_seconds']} s, "
        f"sampling {report['sample_seconds']} s)",
        f"{'':26s}{'base pipeline':28s}{'ground truth (renderer)':28s}{'renders -> mel -> vocoder' if voc else ''}",
        "toy_audio_judge (independent: it neither labelled the pairs nor serves as a training reward)",
    ]
    if "judge" in base:
        for key in ("band", "timbre", "joint"):
            lines.append(f"{'  ' + key:26s}{ci(base['judge'][key]):28s}{ci(truth['judge'][key]):28s}"
                         + (ci(voc["judge"][key]) if voc else ""))
        for band in base["judge"]["timbre_per_band"]:
            lines.append(f"{'    timbre, ' + band:26s}{ci(base['judge']['timbre_per_band'][band]):28s}"
                         f"{ci(truth['judge']['timbre_per_band'][band]):28s}"
                         + (ci(voc["judge"]["timbre_per_band"][band]) if voc else ""))
    lines.append(f"{'toy_pitch band (labeller)':26s}{ci(base['band_accuracy']):28s}{ci(truth['band_accuracy']):28s}"
                 + (ci(voc["band_accuracy"]) if voc else ""))
    for band in base["per_band"]:
        lines.append(f"{'  ' + band:26s}{ci(base['per_band'][band]):28s}{ci(truth['per_band'][band]):28s}"
                     + (ci(voc["per_band"][band]) if voc else ""))
    lines += [
        f"{'  read from the mel':26s}{ci(base['mel_band_accuracy']):28s}{ci(truth['mel_band_accuracy'])}",
        f"{'toy_pitch (graded)':26s}{ci(base['toy_pitch'], False):28s}{ci(truth['toy_pitch'], False):28s}"
        + (ci(voc["toy_pitch"], False) if voc else ""),
        f"{'toy_audio_fad (lower=better)':26s}{base['toy_audio_fad']:<28.3f}{truth['toy_audio_fad']:<28.3f}"
        + (f"{voc['toy_audio_fad']:.3f}" if voc else ""),
        f"{'toy_audio_vendi':26s}{base['toy_audio_vendi']:<28.3f}{truth['toy_audio_vendi']:<28.3f}"
        + (f"{voc['toy_audio_vendi']:.3f}" if voc else ""),
        "chance band and timbre accuracy 33.3%; 95% CIs: Wilson (accuracy), mean ± 1.96 s.e. (graded); 'read from the mel' =",
        "  band of the log-mel the vocoder received (UNet + VAE alone; the gap to the line above is the vocoder's)",
        f"spectrogram grid: {report['grid']}",
    ]
    return "\n".join(lines)
