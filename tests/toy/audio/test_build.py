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
    assert "toy_audio_judge" in text and "toy_pitch band (labeller)" in text and "spectrogram grid" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 6 and report["rows"]["ground_truth"]["band_accuracy"]["mean"] == 1.0
    assert report["rows"]["ground_truth"]["judge"]["joint"]["mean"] == 1.0  # the judge reads renders
    assert set(report["rows"]) == {"base", "ground_truth", "vocoded_renders"}
    assert (tmp_path / "grid.png").stat().st_size > 0 and len(list((tmp_path / "wav").glob("*.wav"))) == 6


def test_quick_reuse_and_resample(audio_quick_build, tmp_path):
    """A build may take VAE + vocoder from an identical-config build; stages 6-8 may be re-run alone."""
    from diffalign.toy.audio.build import AudioBuildConfig, build_audio_world, resample_audio_world

    info = build_audio_world(tmp_path / "audio", cfg=AudioBuildConfig.quick(0), threads=1, reuse=audio_quick_build)
    assert info["reused_stages"]["stages"] == ["vae", "vocoder"]
    again = resample_audio_world(tmp_path / "audio", sampling={"guidance_scale": 1.0, "num_inference_steps": 1})
    assert again["updates"][-1]["stages"] == ["fidelity", "prefs", "exemplars"] and again["sampling"]["guidance_scale"] == 1.0
    assert len(list((tmp_path / "audio").glob("prefs_train-*.parquet"))) >= 1


def test_quick_vocoder_rerun_replaces_only_the_vocoder(audio_quick_build, tmp_path):
    """`--only vocoder,fidelity,prefs`: a new vocoder (and new pairs) over the same VAE and UNet; alone it is refused."""
    import shutil

    import pytest

    from diffalign.toy.audio.build import resample_audio_world
    from diffalign.toy.audio.pretrain import VocoderConfig

    out = tmp_path / "audio"
    shutil.copytree(audio_quick_build, out)
    with pytest.raises(ValueError, match="fidelity,prefs"):
        resample_audio_world(out, only=["vocoder"])
    before = {p: (out / "pipeline" / p).read_bytes() for p in ("vae/diffusion_pytorch_model.safetensors",
                                                              "unet/diffusion_pytorch_model.safetensors",
                                                              "vocoder/model.safetensors")}
    new = VocoderConfig(initial_channels=8, upsample_rates=(64, 4), resblock_kernels=(3,), steps=2, batch=4,
                        stft_floor=0.1)
    info = resample_audio_world(out, only=["prefs", "vocoder", "fidelity"], vocoder=new)
    assert info["updates"][-1]["stages"] == ["render", "vocoder", "fidelity", "prefs"]
    assert list(info["config"]["vocoder"]["upsample_rates"]) == [64, 4] and info["config"]["vocoder"]["stft_floor"] == 0.1
    judge = info["metrics"]["vocoder"]["judge"]
    assert judge["render"]["joint"]["all"] == 1.0 and 0.0 <= judge["vae_mel"]["timbre"]["all"] <= 1.0
    after = {p: (out / "pipeline" / p).read_bytes() for p in before}
    assert after["vae/diffusion_pytorch_model.safetensors"] == before["vae/diffusion_pytorch_model.safetensors"]
    assert after["unet/diffusion_pytorch_model.safetensors"] == before["unet/diffusion_pytorch_model.safetensors"]
    assert after["vocoder/model.safetensors"] != before["vocoder/model.safetensors"]
    from transformers import SpeechT5HifiGan

    assert SpeechT5HifiGan.from_pretrained(out / "pipeline" / "vocoder").config.upsample_rates == [64, 4]
