"""Committed tones-world assets: size, plain-diffusers generation, pairs, exemplars, report."""

import json

import numpy as np
import pytest
import torch

from diffalign.toy.audio.world import CLIP_SAMPLES, TonesWorld


@pytest.fixture(scope="module")
def audio_assets():
    """The committed tones-world assets (assets/toy/audio)."""
    from diffalign.toy.audio.assets import audio_asset_dir

    return audio_asset_dir()


def _load_plain(folder):
    """``AudioLDMPipeline.from_pretrained`` exactly as a diffusers user would call it."""
    from diffusers import AudioLDMPipeline

    return AudioLDMPipeline.from_pretrained(str(folder / "pipeline"))


def test_committed_pipeline_is_small_and_loads_fast(audio_assets):
    # library imports are not asset loading: import every class the pipeline folder names first
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel  # noqa: F401
    from transformers import ClapTextModelWithProjection, RobertaTokenizer, RobertaTokenizerFast, SpeechT5HifiGan  # noqa: F401

    sizes = [f.stat().st_size for f in (audio_assets / "pipeline").rglob("*") if f.is_file()]
    assert sum(sizes) <= 25e6
    assert max(f.stat().st_size for f in audio_assets.rglob("*") if f.is_file()) < 10e6
    pipe = _load_plain(audio_assets)  # load time: printed by `diffalign toy report audio` (no timed tests)
    assert type(pipe).__name__ == "AudioLDMPipeline" and pipe.vocoder.config.sampling_rate == 16000
    audio = pipe(["a loud high square wave", "a deep sine tone"], num_inference_steps=3,
                 generator=torch.Generator().manual_seed(0)).audios
    assert audio.shape == (2, CLIP_SAMPLES) and np.isfinite(audio).all() and np.abs(audio).max() > 1e-3


def test_committed_build_info_meets_the_budget(audio_assets):
    info = json.loads((audio_assets / "build_info.json").read_text())
    assert info["pretrain_seconds"] <= 3600 and info["config"]["n_clips"] >= 1000
    fid = info["metrics"]["base_fidelity_at_build"]["band_accuracy"]["all"]
    assert 0.30 <= fid <= 0.80


def test_committed_preference_pairs(audio_assets):
    from diffalign.toy.audio.assets import decode_audio, read_parquet

    table = read_parquet(audio_assets / "prefs_train-*.parquet")
    assert table.num_rows >= 500
    assert {"caption", "audio_0", "audio_1", "label_0"} <= set(table.column_names)
    labels = np.asarray(table["label_0"])
    assert set(np.unique(labels)) <= {0.0, 0.5, 1.0} and (labels == 0.5).mean() < 0.5  # 195 / 560 ties at build
    assert set(table["caption"].to_pylist()) <= set(TonesWorld().train_prompts)
    s0, s1 = np.asarray(table["score_0"]), np.asarray(table["score_1"])
    m = json.loads((audio_assets / "build_info.json").read_text())["config"]["tie_margin"]
    np.testing.assert_array_equal(labels, np.where(s0 > s1 + m, 1.0, np.where(s1 > s0 + m, 0.0, 0.5)))
    audio = decode_audio(table["audio_0"].to_pylist()[:4])
    assert audio.shape == (4, CLIP_SAMPLES)


def test_committed_exemplars_are_ground_truth(audio_assets):
    from diffalign.toy.audio.assets import decode_audio, read_parquet
    from diffalign.toy.audio.scorer import score_pitch

    table = read_parquet(audio_assets / "exemplars.parquet")
    assert set(table["caption"].to_pylist()) == set(TonesWorld().train_prompts)
    rows = table.slice(0, 60)
    out = score_pitch(decode_audio(rows["audio"].to_pylist()), rows["caption"].to_pylist())
    assert out["correct"].float().mean() >= 0.95


def test_committed_report_runs_on_a_few_prompts(audio_assets, tmp_path):
    from diffalign.toy.audio.report import report_audio

    report = report_audio(n=6, out_dir=tmp_path, asset_dir=audio_assets, threads=1, grid_size=6, wavs=0)
    assert report["rows"]["ground_truth"]["band_accuracy"]["mean"] == 1.0
    assert (tmp_path / "grid.png").is_file() and report["load_seconds"] > 0


def test_committed_vocoder_round_trip_under_the_judge(audio_assets):
    """Held-out renders (fresh seeds) → log-mel → the committed vocoder, and → VAE → vocoder, read by
    ``toy_audio_judge``. Band: the issue's bar (95%) on both paths. Timbre: 95% is not reached by any
    vocoder tried (README "Audio"); this guards what the committed one keeps (≥ 70%, chance 33%)."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    from diffalign.toy.audio import pretrain as at
    from diffalign.toy.audio.judge import judge_clips
    from diffalign.toy.audio.world import BANDS, TIMBRES, parse_prompt

    world = TonesWorld()
    prompts = [p for p in world.held_out_prompts for _ in range(2)]
    _, mels = at.render_mels(world, prompts, seed=123)
    vae = AutoencoderKL.from_pretrained(str(audio_assets / "pipeline" / "vae")).eval()
    voc = SpeechT5HifiGan.from_pretrained(str(audio_assets / "pipeline" / "vocoder")).eval()
    want_band = torch.tensor([list(BANDS).index(parse_prompt(p).band) for p in prompts])
    want_timbre = torch.tensor([TIMBRES.index(parse_prompt(p).timbre) for p in prompts])
    for path, mel in (("true mel", mels), ("VAE", at.reconstruct_mels(vae, mels))):
        got = judge_clips(at.vocode(voc, mel))
        band = (got["band"] == want_band).float().mean().item()
        timbre = (got["timbre"] == want_timbre).float().mean().item()
        assert band >= 0.95, f"{path}: band {band:.1%}"
        assert timbre >= 0.70, f"{path}: timbre {timbre:.1%}"
