"""Tones-world builder (``--quick``): every stage, plain-diffusers loading of its pipeline and the report."""

import json

import numpy as np
import pytest
import torch

from diffalign.toy.audio.world import CLIP_SAMPLES


@pytest.fixture(scope="module")
def audio_quick_build(tmp_path_factory):
    """A ``--quick`` audio build (every stage, tiny sizes): what ``diffalign toy build audio --quick`` runs."""
    from diffalign.toy.audio.build import build_audio_world

    out = tmp_path_factory.mktemp("toy_audio") / "audio"
    build_audio_world(out, seed=0, quick=True, threads=1)
    return out


def _load_plain(folder):
    """``AudioLDMPipeline.from_pretrained`` exactly as a diffusers user would call it."""
    from diffusers import AudioLDMPipeline

    return AudioLDMPipeline.from_pretrained(str(folder / "pipeline"))


def test_quick_build_writes_every_asset(audio_quick_build):
    out = audio_quick_build
    info = json.loads((out / "build_info.json").read_text())
    assert list(info["stage_seconds"]) == ["render", "vae", "vocoder", "unet", "embedder", "fidelity", "prefs",
                                           "exemplars"]
    for name in ("pipeline/model_index.json", "embedder.safetensors", "fad_reference.npz", "exemplars.parquet",
                 "prompts.json", "prefs_train-00000.parquet"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin")) and list(out.rglob("*.safetensors"))
    assert not out.with_name(out.name + ".partial").exists()


def test_quick_pipeline_loads_offline_with_plain_diffusers(audio_quick_build):
    pipe = _load_plain(audio_quick_build)
    audio = pipe(["a low sine tone"], num_inference_steps=2, generator=torch.Generator().manual_seed(0)).audios
    assert audio.shape == (1, CLIP_SAMPLES) and np.isfinite(audio).all()


def test_quick_report_runs(audio_quick_build, tmp_path, capsys):
    from diffalign.toy.audio.report import report_audio

    report_audio(n=6, out_dir=tmp_path, asset_dir=audio_quick_build, threads=1)
    text = capsys.readouterr().out
    assert "pitch-band accuracy" in text and "spectrogram grid" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 6 and report["rows"]["ground_truth"]["band_accuracy"]["mean"] == 1.0
    assert (tmp_path / "grid.png").stat().st_size > 0 and len(list((tmp_path / "wav").glob("*.wav"))) == 6


def test_quick_reuse_and_resample(audio_quick_build, tmp_path):
    """A build may take VAE + vocoder from an identical-config build; stages 6-8 may be re-run alone."""
    from diffalign.toy.audio.build import AudioBuildConfig, build_audio_world, resample_audio_world

    info = build_audio_world(tmp_path / "audio", cfg=AudioBuildConfig.quick(0), threads=1, reuse=audio_quick_build)
    assert info["reused_stages"]["stages"] == ["vae", "vocoder"]
    again = resample_audio_world(tmp_path / "audio", sampling={"guidance_scale": 1.0, "num_inference_steps": 1})
    assert again["updates"][-1]["stages"] == ["fidelity", "prefs", "exemplars"] and again["sampling"]["guidance_scale"] == 1.0
    assert len(list((tmp_path / "audio").glob("prefs_train-*.parquet"))) >= 1
